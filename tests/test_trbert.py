"""TR-BERT: ONNX parity with real pruning, selection points, the upstream-folder loader and the model.pt round trip."""

from __future__ import annotations

import math

import numpy as np
import onnx
import pytest
import torch

from pruneport.calibration.thresholds import name_thresholds
from pruneport.methods import get_method, load_checkpoint
from pruneport.methods.backbone import BackboneConfig
from pruneport.methods.checkpoint import CheckpointError, CheckpointKeyError, save_model_pt
from pruneport.methods.trbert.model import build, default_selection_layers, policy_key_map
from tests.parity import check_export_parity
from tests.tiny import hf_state_dict, peaky_init, random_batch, tiny_hf_config, torch_feeds, write_hf_folder

CASES = {
    # layout, layers (selection points 1 and L//2), policy output bias: prunes 20-70% of tokens by the last layer.
    # "roberta-6" is exported with last_hidden_state in tests/test_hidden_outputs.py (one export per case)
    "bert-4": ("bert", 4, 0.7),
    "roberta-6": ("roberta", 6, 0.7),
}
PARITY_HERE = ["bert-4"]


def make_trbert(layout: str, layers: int, bias: float, seed: int = 0, output_hidden: bool = False):
    """A tiny TR-BERT with peaky attention and random policies whose output bias sets how much is pruned."""
    cfg = BackboneConfig.from_hf_dict(tiny_hf_config(layout, layers=layers))
    model = peaky_init(build(cfg, {}, output_hidden=output_hidden), seed=seed)
    gen = torch.Generator().manual_seed(seed + 100)
    with torch.no_grad():
        for lin1, lin2 in zip(model.pruner.linear_1, model.pruner.linear_2, strict=True):
            lin1.weight.copy_(torch.randn(lin1.weight.shape, generator=gen) / math.sqrt(cfg.hidden_size))
            lin1.bias.zero_()
            lin2.weight.copy_(torch.randn(lin2.weight.shape, generator=gen) / math.sqrt(lin2.weight.shape[1]))
            lin2.bias.fill_(bias)
    return model.eval()


def pruned_share(model: torch.nn.Module, n_inputs: int = 40, seed: int = 1) -> float:
    """Share of real tokens (inputs of 8+ tokens, batch 1, torch) that no longer enter the last layer."""
    cfg = model.config
    rng = np.random.default_rng(seed)
    real = last = 0
    for n in rng.integers(8, cfg.max_tokens + 1, n_inputs).tolist():
        feeds = random_batch(rng, [n], cfg.vocab_size, cfg.pad_token_id, cfg.uses_token_type_ids)
        with torch.no_grad():
            tokens = model(*torch_feeds(feeds))[1][0]
        real, last = real + n, last + int(tokens[-1])
    return 1 - last / real


@pytest.mark.parametrize("case", PARITY_HERE)
def test_onnx_matches_reference_with_real_pruning(case, tmp_path):
    layout, layers, bias = CASES[case]
    model = make_trbert(layout, layers, bias, seed=layers)
    share = pruned_share(model)
    assert 0.2 <= share <= 0.7, f"policies prune {share:.0%} of tokens; the test needs 20-70%"
    stats = check_export_parity(model, tmp_path, n_inputs=56, batch=8)
    assert stats.inputs >= 50
    assert (stats.tokens_last < stats.tokens_first).any(), "no input was pruned in the exported graph"
    # the keep probability is one scalar constant per selection point, found by the threshold calibration
    slots = name_thresholds(onnx.load(str(tmp_path / "model.onnx")), "trbert", {}, layers)
    assert [(s.layer, s.value) for s in slots] == [(1, 0.5), (layers // 2, 0.5)]


def test_selection_points_follow_upstream():
    assert default_selection_layers(12) == (1, 6)
    assert default_selection_layers(6) == (1, 3)
    assert default_selection_layers(3) == (1,)
    with pytest.raises(ValueError, match="at least 2 layers"):
        default_selection_layers(1)
    model = make_trbert("bert", 6, 0.0, seed=6)
    rng = np.random.default_rng(3)
    feeds = random_batch(rng, [60, 40, 25], model.config.vocab_size, 0, True)
    with torch.no_grad():
        tokens = model(*torch_feeds(feeds))[1].numpy()
    np.testing.assert_array_equal(tokens[:, 0], [60, 40, 25])
    changes = {i for i in range(1, 6) if (tokens[:, i] != tokens[:, i - 1]).any()}
    assert changes and changes <= {1, 3}, f"token counts changed before layers {sorted(changes)}, not only 1 and 3"


def upstream_state(model: torch.nn.Module, layout: str) -> dict[str, torch.Tensor]:
    """The model's weights under upstream TR-BERT names (HF layout plus ``bert.encoder.linear_*``)."""
    state = hf_state_dict(model, layout)
    prefix = "roberta." if layout == "roberta" else "bert."
    ours = model.state_dict()
    state.update({up: ours[mine].clone() for up, mine in policy_key_map(prefix).items()})
    return state


@pytest.fixture(scope="module")
def upstream_folder(tmp_path_factory):
    model = make_trbert("bert", 4, 0.0, seed=11)
    folder = tmp_path_factory.mktemp("trbert") / "upstream"
    config = tiny_hf_config("bert", layers=4, architectures=["AUTOBertForSequenceClassification"], temperature=1.0)
    write_hf_folder(folder, config, upstream_state(model, "bert"))
    return folder, model


def _outputs(model, feeds):
    with torch.no_grad():
        return [t.numpy() for t in model(*torch_feeds(feeds))]


def _feeds(model):
    return random_batch(np.random.default_rng(5), [50, 17, 33, 2], model.config.vocab_size, 0, True)


def test_loader_reads_upstream_folder(upstream_folder):
    folder, original = upstream_folder
    loaded = load_checkpoint(folder, "trbert")
    assert loaded.method == "trbert" and loaded.pruning == {"selection_layers": [1, 2], "keep_probability": [0.5, 0.5]}
    assert loaded.label_names == ["class_0", "class_1"]
    feeds = _feeds(original)
    for got, want in zip(_outputs(loaded.model, feeds), _outputs(original, feeds), strict=True):
        np.testing.assert_array_equal(got, want)


def test_loader_names_wrong_keys(upstream_folder, tmp_path):
    folder, original = upstream_folder
    state = upstream_state(original, "bert")
    state["bert.encoder.linear1.0.weight"] = state.pop("bert.encoder.linear_1.0.weight")
    bad = write_hf_folder(tmp_path / "bad", tiny_hf_config("bert", layers=4), state)
    with pytest.raises(CheckpointKeyError) as err:
        get_method("trbert").load_folder(bad, {})
    assert err.value.missing == ["bert.encoder.linear_1.0.weight"]
    assert "bert.encoder.linear1.0.weight" in str(err.value) and "bert.encoder.linear_1.0.weight" in str(err.value)


def test_distilbert_is_refused_with_the_reason(tmp_path):
    folder = tmp_path / "distil"
    folder.mkdir()
    (folder / "config.json").write_text('{"model_type": "distilbert", "dim": 32, "n_layers": 3}', encoding="utf-8")
    with pytest.raises(CheckpointError, match="DistilBERT"):
        load_checkpoint(folder, "trbert")


def test_model_pt_round_trip(upstream_folder, tmp_path):
    folder, original = upstream_folder
    loaded = load_checkpoint(folder, "trbert")
    path = save_model_pt(loaded, tmp_path / "model.pt")
    again = load_checkpoint(path)
    assert again.method == "trbert" and again.pruning == loaded.pruning
    feeds = _feeds(original)
    for got, want in zip(_outputs(again.model, feeds), _outputs(original, feeds), strict=True):
        np.testing.assert_array_equal(got, want)

"""Transkimmer: ONNX parity (removal and master semantics), the upstream-folder loader and the model.pt round trip."""

from __future__ import annotations

import math

import numpy as np
import onnx
import pytest
import torch

from pruneport.methods import get_method, load_checkpoint
from pruneport.methods.backbone import BackboneConfig
from pruneport.methods.checkpoint import CheckpointKeyError, save_model_pt
from pruneport.methods.transkimmer.model import build, predictor_key_map
from tests.parity import check_export_parity
from tests.test_trbert import pruned_share
from tests.tiny import hf_state_dict, peaky_init, random_batch, tiny_hf_config, torch_feeds, write_hf_folder

CASES = {
    # layout, layers, semantics, keep-logit bias of every predictor: prunes 20-70% of tokens by the last layer.
    # "removal-roberta-3" is exported with last_hidden_state in tests/test_hidden_outputs.py (through the CLI)
    "removal-bert-3": ("bert", 3, "removal", 1.0),
    "master-roberta-3": ("roberta", 3, "master", 1.0),
    "removal-roberta-3": ("roberta", 3, "removal", 1.0),
}
PARITY_HERE = ["removal-bert-3", "master-roberta-3"]


def make_transkimmer(
    layout: str, layers: int, semantics: str, bias: float, seed: int = 0, output_hidden: bool = False
) -> torch.nn.Module:
    """A tiny Transkimmer: peaky attention, predictors with unit-scale LayerNorms and a keep-logit bias."""
    cfg = BackboneConfig.from_hf_dict(tiny_hf_config(layout, layers=layers))
    model = peaky_init(build(cfg, {"semantics": semantics}, output_hidden=output_hidden), seed=seed)
    gen = torch.Generator().manual_seed(seed + 100)
    with torch.no_grad():
        for skim in model.pruner.skim_predictors:
            norm_1, linear_1, norm_2, _, linear_2 = skim.predictor
            norm_1.reset_parameters()
            norm_2.reset_parameters()
            for linear in (linear_1, linear_2):
                linear.weight.copy_(torch.randn(linear.weight.shape, generator=gen) / math.sqrt(cfg.hidden_size))
                linear.bias.zero_()
            linear_2.bias[1] = bias
    return model.eval()


def _outputs(model, feeds):
    with torch.no_grad():
        return [t.numpy() for t in model(*torch_feeds(feeds))]


@pytest.mark.parametrize("case", PARITY_HERE)
def test_onnx_matches_reference_with_real_pruning(case, tmp_path):
    layout, layers, semantics, bias = CASES[case]
    # master is exported with last_hidden_state (forwarded states of skimmed tokens), removal-bert without it
    model = make_transkimmer(layout, layers, semantics, bias, seed=layers, output_hidden=semantics == "master")
    share = pruned_share(model)
    assert 0.2 <= share <= 0.7, f"skim predictors prune {share:.0%} of tokens; the test needs 20-70%"
    stats = check_export_parity(model, tmp_path, n_inputs=56, batch=8)
    assert stats.inputs >= 50
    ops = {node.op_type for node in onnx.load(str(tmp_path / "model.onnx")).graph.node}
    if semantics == "removal":  # tokens are really gathered out; master only masks
        assert "GatherND" in ops
        assert (stats.tokens_first < 64).any(), "no token was skimmed before layer 0 in the exported graph"
    else:
        assert "GatherND" not in ops
    assert (stats.tokens_last < stats.tokens_first).any()


def test_master_masks_after_softmax_and_removal_renormalizes():
    """Same weights, two semantics: same decisions at layer 0, different logits (no renormalization in master)."""
    removal = make_transkimmer("bert", 3, "removal", 1.0, seed=3)
    master = build(removal.config, {"semantics": "master"})
    master.load_state_dict(removal.state_dict())
    master.eval()
    feeds = random_batch(np.random.default_rng(2), [40, 25, 60], removal.config.vocab_size, 0, True)
    (logits_r, tokens_r), (logits_m, tokens_m) = _outputs(removal, feeds), _outputs(master, feeds)
    np.testing.assert_array_equal(tokens_r[:, 0], tokens_m[:, 0])
    assert (tokens_m[:, 0] < [40, 25, 60]).all(), "nothing skimmed before layer 0"
    assert np.abs(logits_r - logits_m).max() > 1e-3


def upstream_state(model: torch.nn.Module, layout: str) -> dict[str, torch.Tensor]:
    """Weights under upstream Transkimmer names: HF layout plus ``{prefix}encoder.skim_predictors.*``."""
    state = hf_state_dict(model, layout)
    prefix = "roberta." if layout == "roberta" else "bert."
    ours = model.state_dict()
    state.update(
        {up: ours[mine].clone() for up, mine in predictor_key_map(prefix, model.config.num_hidden_layers).items()}
    )
    return state


def write_upstream_folder(folder, model, layout: str):
    config = tiny_hf_config(layout, layers=model.config.num_hidden_layers, skim_coefficient=0.5)
    return write_hf_folder(folder, config, upstream_state(model, layout))


@pytest.fixture(scope="module")
def upstream(tmp_path_factory):
    model = make_transkimmer("roberta", 3, "removal", 1.0, seed=21)
    folder = write_upstream_folder(tmp_path_factory.mktemp("transkimmer") / "upstream", model, "roberta")
    return folder, model


def _feeds(model):
    return random_batch(np.random.default_rng(5), [50, 17, 33, 2], model.config.vocab_size, 1, False)


@pytest.mark.parametrize("semantics", ["removal", "master"])
def test_loader_reads_upstream_folder(upstream, semantics):
    folder, original = upstream
    options = {"transkimmer_semantics": semantics} if semantics == "master" else {}
    loaded = load_checkpoint(folder, "transkimmer", **options)
    assert loaded.method == "transkimmer" and loaded.pruning == {"semantics": semantics}
    reference = original
    if semantics == "master":
        reference = build(original.config, {"semantics": "master"})
        reference.load_state_dict(original.state_dict())
        reference.eval()
    feeds = _feeds(original)
    for got, want in zip(_outputs(loaded.model, feeds), _outputs(reference, feeds), strict=True):
        np.testing.assert_array_equal(got, want)


def test_loader_names_wrong_keys(upstream, tmp_path):
    folder, original = upstream
    state = upstream_state(original, "roberta")
    state["roberta.encoder.skim_predictor.1.predictor.4.bias"] = state.pop(
        "roberta.encoder.skim_predictors.1.predictor.4.bias"
    )
    bad = write_upstream_folder(tmp_path / "bad", original, "roberta")
    torch.save(state, bad / "pytorch_model.bin")
    with pytest.raises(CheckpointKeyError) as err:
        get_method("transkimmer").load_folder(bad, {})
    assert err.value.missing == ["roberta.encoder.skim_predictors.1.predictor.4.bias"]
    assert err.value.unexpected == ["roberta.encoder.skim_predictor.1.predictor.4.bias"]


def test_plain_model_is_not_taken_for_transkimmer(upstream, tmp_path):
    folder, original = upstream
    plain = write_hf_folder(tmp_path / "plain", tiny_hf_config("roberta", layers=3), hf_state_dict(original, "roberta"))
    with pytest.raises(CheckpointKeyError, match="has no skim predictors") as err:
        load_checkpoint(plain, "transkimmer")
    assert "roberta.encoder.skim_predictors.0.predictor.0.weight" in err.value.missing


@pytest.mark.parametrize("semantics", ["removal", "master"])
def test_model_pt_round_trip(upstream, tmp_path, semantics):
    folder, original = upstream
    loaded = load_checkpoint(folder, "transkimmer", transkimmer_semantics=semantics)
    path = save_model_pt(loaded, tmp_path / "model.pt")
    again = load_checkpoint(path, "transkimmer")
    assert again.method == "transkimmer" and again.pruning == {"semantics": semantics}
    feeds = _feeds(original)
    for got, want in zip(_outputs(again.model, feeds), _outputs(loaded.model, feeds), strict=True):
        np.testing.assert_array_equal(got, want)

"""Pyramid-BERT: ONNX parity with real pruning, the in-graph k-center selection against a plain numpy greedy,
the schedule, the folder loader and model.pt."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch

from pruneport.methods import load_checkpoint
from pruneport.methods.backbone import BackboneConfig
from pruneport.methods.checkpoint import save_model_pt
from pruneport.methods.pyramid.model import PyramidParams, build, kcenter_keep, write_schedule
from tests.parity import check_export_parity, ort_session
from tests.tiny import hf_state_dict, peaky_init, random_batch, tiny_hf_config, torch_feeds, write_hf_folder

CASES = {
    # layout, layers, schedule: 50% and 60% of tokens pruned by the last layer
    "bert-3-m1-euclidean": ("bert", 3, PyramidParams(0.5, 2, 1, "euclidean")),
    "roberta-4-oneshot-cosine": ("roberta", 4, PyramidParams(0.4, 3, "k-1", "cosine")),
}


def make_model(case: str) -> torch.nn.Module:
    layout, layers, params = CASES[case]
    cfg = BackboneConfig.from_hf_dict(tiny_hf_config(layout, layers=layers))
    return peaky_init(build(cfg, params.to_dict()), seed=layers).eval()


@pytest.mark.parametrize("case", sorted(CASES))
def test_onnx_matches_reference_with_real_pruning(case, tmp_path):
    model = make_model(case)
    stats = check_export_parity(model, tmp_path, n_inputs=56, batch=8)
    long_inputs = stats.tokens_first >= 8
    pruned_share = 1 - stats.tokens_last[long_inputs].sum() / stats.tokens_first[long_inputs].sum()
    assert 0.2 <= pruned_share <= 0.7, f"the schedule prunes {pruned_share:.0%} of tokens; the test needs 20-70%"


# ----------------------------------------------------------------------------------------------------------------
# Plain numpy greedy k-center, the reference for the selection
# ----------------------------------------------------------------------------------------------------------------


def numpy_kcenter(hidden: np.ndarray, k: int, m: int | str, distance: str) -> list[int]:
    """hidden [n, D] (live tokens, CLS first) -> the sorted positions of the k selected tokens."""
    h = hidden.astype(np.float64)
    if distance == "cosine":
        unit = h / np.linalg.norm(h, axis=1, keepdims=True)
        dist = 1.0 - unit @ unit.T
    else:
        dist = np.sqrt(((h[:, None, :] - h[None, :, :]) ** 2).sum(-1))
    selected = [0]
    nearest = dist[0].copy()
    while len(selected) < k:
        take = (k - 1) if m == "k-1" else min(int(m), k - len(selected))
        rest = sorted((i for i in range(len(h)) if i not in selected), key=lambda i: (-nearest[i], i))
        new = rest[:take]
        selected += new
        for j in new:
            nearest = np.minimum(nearest, dist[j])
    return sorted(selected)


VARIANTS = [(1, "euclidean"), (1, "cosine"), ("k-1", "euclidean"), ("k-1", "cosine"), (3, "euclidean")]


class Selector(torch.nn.Module):
    """Every selection variant in one graph: hidden [B,S,D], mask [B,S], k [B] -> keep [V,B,S] int64."""

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        live = mask.bool()
        return torch.stack([kcenter_keep(hidden, live, k, m, d).long() for m, d in VARIANTS])


@pytest.fixture(scope="module")
def selector_session(tmp_path_factory):
    path = tmp_path_factory.mktemp("selector") / "selector.onnx"
    gen = torch.Generator().manual_seed(0)
    hidden = torch.randn(2, 12, 8, generator=gen)
    mask = torch.ones(2, 12, dtype=torch.long)
    mask[1, 7:] = 0
    k = torch.tensor([5, 3])
    batch, seq = torch.export.Dim("batch", min=1, max=64), torch.export.Dim("seq", min=2, max=512)
    dim = torch.export.Dim("dim", min=2, max=4096)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            Selector(),
            (hidden, mask, k),
            input_names=["hidden", "mask", "k"],
            output_names=["keep"],
            dynamic_shapes={"hidden": {0: batch, 1: seq, 2: dim}, "mask": {0: batch, 1: seq}, "k": {0: batch}},
            opset_version=18,
            dynamo=True,
        )
    program.save(str(path))
    return ort_session(path)


def _check_selection(keep_by_variant: np.ndarray, hidden: np.ndarray, mask: np.ndarray, k: np.ndarray, what: str):
    for v, (m, distance) in enumerate(VARIANTS):
        for b in range(hidden.shape[0]):
            n = int(mask[b].sum())
            expected = numpy_kcenter(hidden[b, :n], int(k[b]), m, distance)
            got = np.nonzero(keep_by_variant[v, b])[0].tolist()
            assert got == expected, f"{what}, row {b}, m={m}, {distance}: graph kept {got}, numpy greedy {expected}"


def test_graph_selection_equals_numpy_greedy_on_random_states(selector_session):
    rng = np.random.default_rng(1)
    for trial in range(6):
        lengths = rng.integers(2, 40, 5)
        width = int(lengths.max())
        hidden = rng.normal(size=(5, width, 16)).astype(np.float32)
        mask = (np.arange(width)[None] < lengths[:, None]).astype(np.int64)
        hidden[mask == 0] = 100.0  # padding far away: it must still never be chosen
        k = np.array([rng.integers(1, n + 1) for n in lengths], dtype=np.int64)
        keep = selector_session.run(None, {"hidden": hidden, "mask": mask, "k": k})[0]
        _check_selection(keep, hidden, mask, k, f"trial {trial}")
        with torch.no_grad():
            ref = Selector()(torch.from_numpy(hidden), torch.from_numpy(mask), torch.from_numpy(k)).numpy()
        np.testing.assert_array_equal(keep, ref)


@pytest.mark.parametrize("case", sorted(CASES))
def test_selection_in_model_equals_numpy_greedy_on_its_hidden_states(case, selector_session):
    """The states entering each prune point of the model, selected by the model, the graph and numpy."""
    model = make_model(case)
    params = CASES[case][2]
    calls = []
    original = model.pruner.before_layer

    def recording(layer, hidden, live, state):
        keep = original(layer, hidden, live, state)
        if keep is not None:
            calls.append((hidden.clone(), live.clone(), keep.clone()))
        return keep

    model.pruner.before_layer = recording
    rng = np.random.default_rng(2)
    cfg = model.config
    feeds = random_batch(rng, [64, 40, 9, 23], cfg.vocab_size, cfg.pad_token_id, cfg.uses_token_type_ids)
    with torch.no_grad():
        model(*torch_feeds(feeds))
    assert calls, "the model made no selection"
    index = VARIANTS.index((params.m, params.distance))
    for hidden, live, keep in calls:
        h, mask, k = hidden.numpy(), live.numpy().astype(np.int64), keep.sum(1).numpy()
        for b in range(h.shape[0]):
            n = int(mask[b].sum())
            expected = numpy_kcenter(h[b, :n], int(k[b]), params.m, params.distance)
            assert np.nonzero(keep[b].numpy())[0].tolist() == expected
        graph = selector_session.run(None, {"hidden": h, "mask": mask, "k": k})[0]
        np.testing.assert_array_equal(graph[index].astype(bool), keep.numpy())
        _check_selection(graph, h, mask, k, f"{case} hidden states")


def test_schedule_gives_the_paper_lengths():
    model = make_model("roberta-4-oneshot-cosine")
    params = CASES["roberta-4-oneshot-cosine"][2]
    rng = np.random.default_rng(4)
    lengths = [1, 2, 3, 7, 10, 33, 64]
    feeds = random_batch(rng, lengths, model.config.vocab_size, model.config.pad_token_id, False)
    with torch.no_grad():
        tokens = model(*torch_feeds(feeds))[1].numpy()
    for row, n in enumerate(lengths):
        expected = [math.ceil(n * 0.4 ** (min(j, 3) / 3) - 1e-9) for j in range(4)]
        assert tokens[row].tolist() == expected
        assert [params.length(n, j) for j in range(4)] == expected


# ----------------------------------------------------------------------------------------------------------------
# Loader and model.pt
# ----------------------------------------------------------------------------------------------------------------


@pytest.fixture()
def hf_folder(tmp_path):
    layout, layers, params = CASES["bert-3-m1-euclidean"]
    config = tiny_hf_config(layout, layers=layers)
    model = make_model("bert-3-m1-euclidean")
    folder = write_hf_folder(tmp_path / "finetuned", config, hf_state_dict(model, layout))
    return folder, model, params


def _logits(model, feeds):
    with torch.no_grad():
        return [t.numpy() for t in model(*torch_feeds(feeds))]


def test_folder_with_schedule_file_loads_and_round_trips(hf_folder, tmp_path):
    folder, reference, params = hf_folder
    write_schedule(folder, params)
    loaded = load_checkpoint(folder, "pyramid")
    assert loaded.method == "pyramid" and loaded.pruning == params.to_dict()
    feeds = random_batch(np.random.default_rng(3), [30, 12, 64], reference.config.vocab_size, 0, True)
    expected = _logits(reference, feeds)
    for got, ref in zip(_logits(loaded.model, feeds), expected, strict=True):
        np.testing.assert_array_equal(got, ref)
    again = load_checkpoint(save_model_pt(loaded, tmp_path / "model.pt"))
    assert again.method == "pyramid" and again.pruning == loaded.pruning
    for got, ref in zip(_logits(again.model, feeds), expected, strict=True):
        np.testing.assert_array_equal(got, ref)


def test_options_override_the_schedule_file(hf_folder):
    folder, _, params = hf_folder
    write_schedule(folder, params)
    loaded = load_checkpoint(folder, "pyramid", keep_ratio=0.3, kcenter_m="k-1", distance="cosine")
    assert loaded.pruning == {"keep_ratio": 0.3, "prune_upto": 2, "m": "k-1", "distance": "cosine"}


def test_missing_or_bad_schedule_is_a_clear_error(hf_folder):
    folder, _, _ = hf_folder
    with pytest.raises(ValueError, match="pyramid_schedule.json"):
        load_checkpoint(folder, "pyramid")
    with pytest.raises(ValueError, match="m must be"):
        load_checkpoint(folder, "pyramid", keep_ratio=0.5, prune_upto=2, kcenter_m="two")
    with pytest.raises(ValueError, match="keep_ratio"):
        load_checkpoint(folder, "pyramid", keep_ratio=1.5, prune_upto=2)

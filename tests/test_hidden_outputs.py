"""``--outputs hidden``: ``last_hidden_state`` [batch, seq, hidden] in original positions, each pruned token carrying
its state from the moment it was pruned.

Two kinds of check: ONNX Runtime against the PyTorch reference at every real position (with the full parity rules),
and the reference's semantics against a straightforward full-length, mask-based computation written here (no
compaction, no scatter tracker): each token's state is recorded at the layer where it is dropped.
"""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import onnx
import pytest
import torch

from pruneport.cli import main as cli_main
from pruneport.methods import load_checkpoint
from pruneport.methods.backbone import BackboneConfig
from pruneport.methods.ltp.model import LTPParams
from pruneport.methods.ltp.model import build as build_ltp
from tests import parity
from tests.test_transkimmer import CASES as TK_CASES
from tests.test_transkimmer import make_transkimmer, write_upstream_folder
from tests.test_trbert import CASES as TR_CASES
from tests.test_trbert import make_trbert, pruned_share
from tests.tiny import peaky_init, random_batch, tiny_hf_config, torch_feeds

LTP_NORM = 32
LTP_CASES = {  # layout, layers, per-layer thresholds with N = 32 (as tests/test_ltp_parity.py)
    "bert-3": ("bert", 3, (0.0, 0.02, 0.03)),
    "roberta-4": ("roberta", 4, (0.01, 0.0, 0.015, 0.02)),
}


def make_ltp(case: str, output_hidden: bool = False) -> torch.nn.Module:
    layout, layers, thresholds = LTP_CASES[case]
    cfg = BackboneConfig.from_hf_dict(tiny_hf_config(layout, layers=layers))
    params = LTPParams(thresholds, score_norm_length=LTP_NORM)
    return peaky_init(build_ltp(cfg, params.to_dict(), output_hidden=output_hidden), seed=layers).eval()


# ---------------------------------------------------------------------------------------------------------------
# ONNX Runtime vs PyTorch, last_hidden_state included (check_export_parity compares it at every real position)
# ---------------------------------------------------------------------------------------------------------------


def _assert_hidden_graph(path) -> None:
    graph = onnx.load(str(path)).graph
    out = {o.name: o for o in graph.output}
    assert list(out) == ["logits", "tokens_per_layer", "last_hidden_state"]
    hidden_type = out["last_hidden_state"].type.tensor_type
    assert hidden_type.elem_type == onnx.TensorProto.FLOAT and len(hidden_type.shape.dim) == 3


def test_ltp_hidden_matches_reference(tmp_path):
    model = make_ltp("bert-3", output_hidden=True)
    stats = parity.check_export_parity(model, tmp_path, n_inputs=56, batch=8)
    _assert_hidden_graph(tmp_path / "model.onnx")
    assert (stats.tokens_last < stats.tokens_first).any()


def test_trbert_hidden_matches_reference(tmp_path):
    layout, layers, bias = TR_CASES["roberta-6"]
    model = make_trbert(layout, layers, bias, seed=layers, output_hidden=True)
    share = pruned_share(model)
    assert 0.2 <= share <= 0.7, f"policies prune {share:.0%} of tokens; the test needs 20-70%"
    stats = parity.check_export_parity(model, tmp_path, n_inputs=56, batch=8)
    _assert_hidden_graph(tmp_path / "model.onnx")
    assert (stats.tokens_last < stats.tokens_first).any()


def test_transkimmer_cli_export_with_hidden_matches_reference(tmp_path, monkeypatch):
    """``pruneport export --method transkimmer FOLDER --outputs hidden``; its model.onnx passes the parity rules."""
    layout, layers, semantics, bias = TK_CASES["removal-roberta-3"]
    model = make_transkimmer(layout, layers, semantics, bias, seed=layers)
    share = pruned_share(model)
    assert 0.2 <= share <= 0.7, f"skim predictors prune {share:.0%} of tokens; the test needs 20-70%"
    folder = write_upstream_folder(tmp_path / "upstream", model, layout)
    out = tmp_path / "export"
    assert cli_main(["export", "--method", "transkimmer", str(folder), "-o", str(out), "--outputs", "hidden"]) == 0
    manifest = json.loads((out / "pruneport.json").read_text(encoding="utf-8"))
    assert manifest["method"] == "transkimmer" and manifest["pruning"] == {"semantics": "removal"}
    assert manifest["outputs"] == ["logits", "tokens_per_layer", "last_hidden_state"]
    _assert_hidden_graph(out / "model.onnx")
    reference = load_checkpoint(folder, "transkimmer", output_hidden=True).model
    # check the CLI's graph, not a fresh export of the reference
    monkeypatch.setattr(parity, "export_onnx_model", lambda _model, path: shutil.copy(out / "model.onnx", path))
    stats = parity.check_export_parity(reference, tmp_path, n_inputs=56, batch=8)
    assert (stats.tokens_last < stats.tokens_first).any()


# ---------------------------------------------------------------------------------------------------------------
# The reference's semantics against a full-length, mask-based computation
# ---------------------------------------------------------------------------------------------------------------


def _attention(layer, x: torch.Tensor, key_mask: torch.Tensor, post_softmax: torch.Tensor | None):
    """Layer's attention block on the full-length sequence; keys outside key_mask get no weight."""
    sa = layer.attention.self
    batch, seq, dim = x.shape

    def heads(t):
        return t.view(batch, seq, sa.num_heads, sa.head_dim).transpose(1, 2)

    q, k, v = heads(sa.query(x)), heads(sa.key(x)), heads(sa.value(x))
    scores = (q @ k.transpose(-1, -2)) / math.sqrt(sa.head_dim)
    probs = torch.softmax(scores.masked_fill(~key_mask[:, None, None, :], -1e30), dim=-1)
    if post_softmax is not None:  # Transkimmer master: multiply after the softmax, no renormalization
        probs = probs * post_softmax[:, None, None, :].float()
    context = (probs @ v).transpose(1, 2).reshape(batch, seq, dim)
    return layer.attention.output(context, x), probs


def _decide_before(method: str, model, layer: int, hidden: torch.Tensor) -> torch.Tensor | None:
    """Keep decision before ``layer`` for every position (the caller intersects it with the live tokens)."""
    num_layers = model.config.num_hidden_layers
    if method == "trbert":
        points = sorted({1, num_layers // 2})
        if layer not in points:
            return None
        w = points.index(layer)
        lin1, lin2 = model.pruner.linear_1[w], model.pruner.linear_2[w]
        return torch.sigmoid(lin2(torch.nn.functional.gelu(lin1(hidden)))).squeeze(-1) >= 0.5
    if method.startswith("transkimmer"):
        logits = model.pruner.skim_predictors[layer].predictor(hidden)
        return logits[..., 1] > logits[..., 0]
    return None


def _decide_after_attention(method: str, model, layer: int, probs: torch.Tensor, alive: torch.Tensor):
    if method != "ltp":
        return None
    threshold = model.pruner.params.thresholds[layer]
    if threshold == 0.0:
        return None
    heads = probs.shape[1]
    received = (probs * alive[:, None, :, None].float()).sum(dim=(1, 2)) / (heads * LTP_NORM)
    return received >= max(1e-5, threshold)


def masked_reference(method: str, model, feeds: dict[str, np.ndarray]):
    """(logits, tokens_per_layer, last_hidden_state) by masking on the full-length sequence."""
    args = torch_feeds(feeds)
    real = args[1].bool()
    hidden = model.embeddings(args[0], real, args[2] if len(args) > 2 else None)
    alive = real.clone()
    cls = torch.zeros_like(alive)
    cls[:, 0] = True
    final = torch.zeros_like(hidden)
    counts = []

    def drop(keep: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        keep = (keep | cls) & alive
        dropped = alive & ~keep
        final.copy_(torch.where(dropped[..., None], state, final))
        return keep

    for i, layer in enumerate(model.layer):
        keep = _decide_before(method, model, i, hidden)
        if keep is not None:
            alive = drop(keep, hidden)
        counts.append(alive.sum(1))
        if method == "transkimmer-master":
            attended, probs = _attention(layer, hidden, real, post_softmax=alive)
        else:
            attended, probs = _attention(layer, hidden, alive, post_softmax=None)
        keep = _decide_after_attention(method, model, i, probs, alive)
        if keep is not None:
            alive = drop(keep, attended)
        hidden = layer.ffn(attended)
    final = torch.where(alive[..., None], hidden, final)
    return model.classifier(hidden[:, 0]), torch.stack(counts, 1), final


def _semantics_model(method: str) -> torch.nn.Module:
    if method == "ltp":
        return make_ltp("roberta-4", output_hidden=True)
    if method == "trbert":
        return make_trbert("bert", 6, 0.7, seed=6, output_hidden=True)
    semantics = "master" if method == "transkimmer-master" else "removal"
    return make_transkimmer("bert", 4, semantics, 1.0, seed=4, output_hidden=True)


@pytest.mark.parametrize("method", ["ltp", "trbert", "transkimmer", "transkimmer-master"])
def test_hidden_semantics_match_mask_based_computation(method):
    model = _semantics_model(method)
    cfg = model.config
    lengths = [64, 37, 12, 50, 1, 23]
    feeds = random_batch(np.random.default_rng(7), lengths, cfg.vocab_size, cfg.pad_token_id, cfg.uses_token_type_ids)
    with torch.no_grad():
        logits, tokens, hidden = model(*torch_feeds(feeds))
        ref_logits, ref_tokens, ref_hidden = masked_reference(method, model, feeds)
    real = torch.from_numpy(feeds["attention_mask"]).bool()[..., None]
    np.testing.assert_array_equal(tokens.numpy(), ref_tokens.numpy())
    np.testing.assert_allclose(logits.numpy(), ref_logits.numpy(), atol=1e-4, rtol=0)
    np.testing.assert_allclose((hidden * real).numpy(), (ref_hidden * real).numpy(), atol=1e-4, rtol=0)
    # not trivial: real tokens were dropped at two or more depths, so states come from different layers
    entering = np.concatenate([np.array(lengths)[:, None], tokens.numpy()], axis=1)
    dropped_at = np.nonzero((np.diff(entering, axis=1) < 0).any(axis=0))[0]
    assert len(dropped_at) >= 2, f"tokens dropped only before layers {dropped_at.tolist()}"

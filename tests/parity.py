"""Parity checks shared by every method's tests: ONNX Runtime against the PyTorch reference.

The rule (DEVELOPERS.md, "How we work"): logits within a stated tolerance, identical tokens_per_layer, at batch 1
and in mixed-length batches, where each batch row equals its batch-1 result.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from pruneport.export.onnx_export import export_onnx_model
from tests.tiny import random_batch, row, torch_feeds

LOGITS_ATOL = 1e-4


@dataclass
class ParityStats:
    """What a parity run saw, for assertions that the pruning was not trivial."""

    inputs: int
    tokens_first: np.ndarray  # tokens entering layer 0, per batch-1 input
    tokens_last: np.ndarray  # tokens entering the last layer, per batch-1 input


def ort_session(path: Path) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def reference(model: torch.nn.Module, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    with torch.no_grad():
        return [t.numpy() for t in model(*torch_feeds(feeds))]


def run_onnx(session: ort.InferenceSession, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    names = [i.name for i in session.get_inputs()]
    return session.run(None, {n: feeds[n] for n in names})


def assert_same(ref: list[np.ndarray], got: list[np.ndarray], names: list[str], atol: float, what: str) -> None:
    assert len(ref) == len(got), f"{what}: {len(ref)} reference outputs, {len(got)} ONNX outputs"
    for name, r, g in zip(names, ref, got, strict=True):
        assert r.shape == g.shape, f"{what}: {name} shape {g.shape} != reference {r.shape}"
        if r.dtype.kind in "iub":
            np.testing.assert_array_equal(g, r, err_msg=f"{what}: {name} differs")
        else:
            np.testing.assert_allclose(g, r, atol=atol, rtol=0, err_msg=f"{what}: {name} differs")


def check_export_parity(
    model: torch.nn.Module,
    tmp_path: Path,
    n_inputs: int = 56,
    batch: int = 8,
    seed: int = 0,
    atol: float = LOGITS_ATOL,
    max_len: int | None = None,
) -> ParityStats:
    """Export ``model`` and compare ONNX Runtime with the reference on random inputs of lengths 1..max.

    Every input runs at batch 1 (ORT vs torch), and in mixed-length batches of ``batch`` (ORT vs torch, and each
    ORT batch row vs that input's ORT batch-1 result). ``last_hidden_state`` is compared on real positions only.
    """
    model.eval()
    path = tmp_path / "model.onnx"
    export_onnx_model(model, path)
    session = ort_session(path)
    cfg = model.config
    max_len = max_len or cfg.max_tokens
    rng = np.random.default_rng(seed)
    lengths = [1, 2, max_len, *rng.integers(1, max_len + 1, n_inputs - 3).tolist()]
    names = model.output_names
    singles: list[list[np.ndarray]] = []
    for n in lengths:
        feeds = random_batch(rng, [n], cfg.vocab_size, cfg.pad_token_id, cfg.uses_token_type_ids)
        ref, got = reference(model, feeds), run_onnx(session, feeds)
        assert_same(ref, got, names, atol, f"batch-1 input of length {n}")
        singles.append((feeds, got))
    for start in range(0, len(lengths), batch):
        group = list(range(start, min(start + batch, len(lengths))))
        width = max(lengths[i] for i in group)
        feeds = _stack([singles[i][0] for i in group], width, cfg.pad_token_id)
        ref, got = reference(model, feeds), run_onnx(session, feeds)
        hidden = names.index("last_hidden_state") if "last_hidden_state" in names else None
        if hidden is not None:  # padded positions carry no defined state
            mask = feeds["attention_mask"].astype(bool)[..., None]
            ref[hidden], got[hidden] = ref[hidden] * mask, got[hidden] * mask
        assert_same(ref, got, names, atol, f"batch of lengths {[lengths[i] for i in group]}")
        for r, i in enumerate(group):
            single = singles[i][1]
            per_row = [out[r : r + 1] for out in got]
            if hidden is not None:
                per_row[hidden] = per_row[hidden][:, : lengths[i]]
            assert_same(single, per_row, names, atol, f"batch row {r} (length {lengths[i]}) vs its batch-1 result")
        assert row(feeds, 0)["input_ids"].shape[1] == lengths[group[0]]
    tokens = np.concatenate([s[1][names.index("tokens_per_layer")] for s in singles])
    return ParityStats(len(lengths), tokens[:, 0], tokens[:, -1])


def _stack(feeds: list[dict[str, np.ndarray]], width: int, pad_id: int) -> dict[str, np.ndarray]:
    out = {}
    for name in feeds[0]:
        fill = pad_id if name == "input_ids" else 0
        rows = [np.pad(f[name][0], (0, width - f[name].shape[1]), constant_values=fill) for f in feeds]
        out[name] = np.stack(rows).astype(np.int64)
    return out

"""Parity of an optimized graph with its source: both run in ONNX Runtime on the same random inputs.

Used by ``pruneport optimize`` as a gate (nothing is written when it fails) and by the tests. Integer outputs
(``tokens_per_layer``) must be identical, float outputs within ``atol``; ``last_hidden_state`` is compared on real
positions only (padding carries no defined state).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

DEFAULT_ATOL = 1e-5


class ParityError(ValueError):
    """The optimized graph's outputs differ from the source's."""


@dataclass
class ParityResult:
    """What :func:`check_parity` compared when it found no mismatch."""

    inputs: int  # examples compared (batch-1 runs plus rows of the mixed batch)
    max_abs_diff: float  # largest float-output difference seen (rows whose integer outputs agree)
    rows_equal: int | None = None  # with exact_ints=False: rows whose integer outputs (tokens_per_layer) agree


def random_feeds(
    rng: np.random.Generator, lengths: list[int], vocab_size: int, pad_id: int, input_names: list[str]
) -> dict[str, np.ndarray]:
    """Right-padded int64 feeds, one row per entry of ``lengths`` (id 2 first, like a CLS token)."""
    width = max(lengths)
    ids = np.full((len(lengths), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(lengths), width), dtype=np.int64)
    for row, n in enumerate(lengths):
        ids[row, :n] = rng.integers(5, vocab_size, n)
        ids[row, 0] = 2
        mask[row, :n] = 1
    feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
    return {name: feeds[name] for name in input_names}


class _Runner:
    """One model on one engine: ``run(feeds) -> outputs`` in graph order (OpenVINO pinned to f32)."""

    def __init__(self, path: Path, engine: str) -> None:
        if engine == "onnxruntime":
            from pruneport.runtime.ort import cpu_session

            session = cpu_session(path, threads=2)
            self.inputs = [i.name for i in session.get_inputs()]
            self.outputs = [o.name for o in session.get_outputs()]
            self.run = lambda feeds: session.run(None, feeds)
        elif engine == "openvino":
            from pruneport.runtime.openvino import compile_cpu

            compiled = compile_cpu(path)
            request = compiled.create_infer_request()
            self.inputs = [i.get_any_name() for i in compiled.inputs]
            self.outputs = [o.get_any_name() for o in compiled.outputs]
            self.run = lambda feeds: [np.array(v) for v in request.infer(feeds).values()]
        else:
            raise ValueError(f"unknown engine {engine!r}; use onnxruntime or openvino")


def check_parity(
    before: Path,
    after: Path,
    vocab_size: int,
    pad_id: int,
    max_length: int,
    n_inputs: int = 8,
    batch: int = 4,
    atol: float = DEFAULT_ATOL,
    seed: int = 0,
    engine: str = "onnxruntime",
    exact_ints: bool = True,
) -> ParityResult:
    """Run ``before`` and ``after`` on ``n_inputs`` batch-1 inputs and one mixed batch; raise ParityError on a mismatch.

    Lengths are random in 1..``max_length`` (always including 1 and ``max_length``). ``engine`` runs both models
    (onnxruntime, or openvino in f32). exact_ints False (a pass that lowers precision, e.g. fp16): integer outputs
    (``tokens_per_layer``) may differ per row; such rows are counted (``rows_equal``) and their float outputs not
    compared (a different decision changes them by more than rounding); the other rows must stay within ``atol``.
    """
    ref, got = _Runner(before, engine), _Runner(after, engine)
    input_names, names = ref.inputs, ref.outputs
    if got.outputs != names or sorted(got.inputs) != sorted(input_names):
        raise ParityError(f"optimized graph changed the I/O contract: inputs {got.inputs}, outputs {got.outputs}")
    rng = np.random.default_rng(seed)
    lengths = [1, max_length, *rng.integers(1, max_length + 1, max(0, n_inputs - 2)).tolist()][:n_inputs]
    runs = [[n] for n in lengths] + [lengths[:batch]]
    worst, rows_equal = 0.0, 0
    for run in runs:
        feeds = random_feeds(rng, run, vocab_size, pad_id, input_names)
        mask = feeds["attention_mask"].astype(bool)
        pairs = list(zip(names, ref.run(feeds), got.run(feeds), strict=True))
        same = np.ones(len(run), dtype=bool)
        for name, r, g in pairs:
            if r.shape != g.shape:
                raise ParityError(f"{name}: shape {g.shape} after optimization, {r.shape} before (lengths {run})")
            if r.dtype.kind in "iub":
                if exact_ints and not np.array_equal(r, g):
                    raise ParityError(
                        f"{name} differs after optimization (lengths {run}): {g.tolist()} != {r.tolist()}"
                    )
                same &= (r == g).reshape(len(run), -1).all(1)
        rows_equal += int(same.sum())
        for name, r, g in pairs:
            if r.dtype.kind in "iub":
                continue
            if name == "last_hidden_state":
                r, g = r * mask[..., None], g * mask[..., None]
            r, g = r[same], g[same]
            diff = float(np.max(np.abs(r.astype(np.float64) - g))) if r.size else 0.0
            worst = max(worst, diff)
            if not diff <= atol:
                raise ParityError(f"{name} differs by {diff:.3g} > {atol:g} after optimization (lengths {run})")
    return ParityResult(
        inputs=len(lengths) + len(runs[-1]), max_abs_diff=worst, rows_equal=None if exact_ints else rows_equal
    )

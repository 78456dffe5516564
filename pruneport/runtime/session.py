"""Inference sessions behind one small protocol: ``run(feeds) -> {output name: array}``; ``open_session`` picks the
engine (:mod:`pruneport.runtime.ort`, :mod:`pruneport.runtime.openvino`, where each engine is set up).

Engines are imported lazily so that ``pruneport.runtime`` needs only numpy, tokenizers and the engine in use
(never torch).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Protocol

import numpy as np

from pruneport.errors import ModelLoadError, one_line  # noqa: F401 - re-exported (pruneport.runtime)
from pruneport.runtime.openvino import OpenVINOSession
from pruneport.runtime.ort import OrtSession

log = logging.getLogger(__name__)


class Session(Protocol):
    """What every engine session offers: ``run(feeds) -> {output name: array}``."""

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """feeds {input name: array} -> {output name: array}."""


BACKENDS = ("onnxruntime", "openvino")
PRECISIONS = ("f32", "bf16", "f16")
MODES = ("latency", "throughput")


def open_session(model_path: Path, backend: str, device: str, **options) -> Session:
    """A session of the named backend; unknown backends raise ValueError naming the known ones.

    Options: ``threads``; ``precision`` ("f32" default; OpenVINO also "bf16"/"f16"); ``mode`` ("latency" or
    "throughput": OpenVINO's performance hint and a pool of async infer requests, one intra-op thread per parallel
    run on ORT).
    """
    precision = options.pop("precision", "f32") or "f32"
    mode = options.pop("mode", "latency") or "latency"
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; use one of {', '.join(PRECISIONS)}")
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; use 'latency' or 'throughput'")
    if backend == "onnxruntime":
        if precision != "f32":
            raise ValueError(f"precision {precision!r} is an OpenVINO option; ONNX Runtime runs the graph as stored")
        if mode == "throughput" and not options.get("threads"):
            options["threads"] = 1  # parallel runs, one thread each (see run_many)
        session = OrtSession(model_path, device=device, **options)
        session.jobs = 0 if mode == "latency" else (os.cpu_count() or 1)
        return session
    if backend == "openvino":
        return OpenVINOSession(model_path, device=device, precision=precision, mode=mode, **options)
    raise ValueError(f"unknown backend {backend!r}; known backends: {', '.join(BACKENDS)}")


def run_many(session: Session, feeds_list: list[dict[str, np.ndarray]], jobs: int = 0) -> list[dict[str, np.ndarray]]:
    """Run independent batches; concurrently when the session supports it (results in input order).

    Sessions with their own ``run_many`` (OpenVINO's request pool) use it; others run ``jobs`` (default: the
    session's ``jobs`` attribute, 0 = sequential) threads over ``session.run`` (ONNX Runtime and OpenVINO release
    the GIL while running).
    """
    own = getattr(session, "run_many", None)
    if own is not None and getattr(session, "jobs", 0) > 0:
        return own(feeds_list)
    jobs = jobs or getattr(session, "jobs", 0)
    if jobs <= 1 or len(feeds_list) <= 1:
        return [session.run(f) for f in feeds_list]
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        return list(pool.map(session.run, feeds_list))

"""Inference sessions behind one small protocol: ``run(feeds) -> {output name: array}``.

Engines are imported lazily so that ``pruneport.runtime`` needs only numpy, tokenizers and the engine in use
(never torch).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Protocol

import numpy as np

log = logging.getLogger(__name__)


class ModelLoadError(RuntimeError):
    """The model file of an export folder cannot be loaded (missing, corrupt, or not runnable here)."""


class Session(Protocol):
    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]: ...


class OrtSession:
    """ONNX Runtime on CPU or CUDA. ``threads`` sets intra-op threads (0 = ORT's default)."""

    def __init__(self, model_path: Path, device: str = "cpu", threads: int = 0, spinning: bool = True) -> None:
        import onnxruntime as ort

        if not model_path.exists():
            raise ModelLoadError(f"model file not found: {model_path}")
        options = ort.SessionOptions()
        options.log_severity_level = 3
        if threads:
            options.intra_op_num_threads = threads
        if not spinning:
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        if device == "cpu":
            providers = ["CPUExecutionProvider"]
        elif device in ("gpu", "cuda"):
            if "CUDAExecutionProvider" not in ort.get_available_providers():
                raise ModelLoadError(
                    "device='gpu' needs onnxruntime-gpu with CUDA (pip install 'pruneport[gpu]'); available "
                    f"providers: {ort.get_available_providers()}"
                )
            providers = ["CUDAExecutionProvider", "CPUExecutionProvider"]
        else:
            raise ValueError(f"unknown device {device!r} for onnxruntime; use 'cpu' or 'gpu'")
        try:
            self._session = ort.InferenceSession(str(model_path), options, providers=providers)
        except Exception as err:  # ORT raises its own Fail/InvalidProtobuf/InvalidGraph classes
            raise ModelLoadError(f"cannot load {model_path} with ONNX Runtime: {err}") from None
        self.output_names = [o.name for o in self._session.get_outputs()]
        self.input_names = [i.name for i in self._session.get_inputs()]
        self.providers = self._session.get_providers()

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        values = self._session.run(self.output_names, {k: feeds[k] for k in self.input_names})
        return dict(zip(self.output_names, values, strict=True))


def open_session(model_path: Path, backend: str, device: str, **options) -> Session:
    """A session of the named backend; unknown backends raise ValueError naming the known ones."""
    if backend == "onnxruntime":
        return OrtSession(model_path, device=device, **options)
    raise ValueError(f"unknown backend {backend!r}; known backends: onnxruntime")

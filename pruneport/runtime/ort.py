"""ONNX Runtime, set up in one place for every caller: the runtime's sessions, calibration runs, the parity checks of
graph passes and bench all take their session options, providers and CPU sessions from here.

Imported lazily (``onnxruntime`` only when a session is made), so ``pruneport.runtime`` needs no torch.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pruneport.errors import ModelLoadError, one_line


def session_options(threads: int = 0, spinning: bool = True):
    """``ort.SessionOptions``: warnings off; ``threads`` intra-op threads (0: ORT's default); ``spinning`` False
    stops idle worker threads from spinning (several runtimes in one process, or a calibration loop)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    if threads:
        options.intra_op_num_threads = threads
    if not spinning:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


def providers_for(device: str) -> list[str]:
    """Execution providers for "cpu" or "gpu" ("cuda"); a GPU without onnxruntime-gpu raises ModelLoadError."""
    import onnxruntime as ort

    if device == "cpu":
        return ["CPUExecutionProvider"]
    if device in ("gpu", "cuda"):
        if "CUDAExecutionProvider" not in ort.get_available_providers():
            raise ModelLoadError(
                "device='gpu' needs onnxruntime-gpu with CUDA (pip install 'pruneport[gpu]'); available "
                f"providers: {ort.get_available_providers()}"
            )
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    raise ValueError(f"unknown device {device!r} for onnxruntime; use 'cpu' or 'gpu'")


def cpu_session(model: Path | bytes, threads: int = 0, spinning: bool = True):
    """A plain ``ort.InferenceSession`` on CPU for a model file or serialized model (calibration, parity checks)."""
    import onnxruntime as ort

    source = str(model) if isinstance(model, Path) else model
    return ort.InferenceSession(source, session_options(threads, spinning), providers=providers_for("cpu"))


class OrtSession:
    """ONNX Runtime on CPU or CUDA. ``threads`` sets intra-op threads (0 = ORT's default)."""

    def __init__(self, model_path: Path, device: str = "cpu", threads: int = 0, spinning: bool = True) -> None:
        import onnxruntime as ort

        if not model_path.exists():
            raise ModelLoadError(f"model file not found: {model_path}")
        options = session_options(threads, spinning)
        providers = providers_for(device)
        try:
            self._session = ort.InferenceSession(str(model_path), options, providers=providers)
        except Exception as err:  # ORT raises its own Fail/InvalidProtobuf/InvalidGraph classes
            raise ModelLoadError(f"cannot load {model_path} with ONNX Runtime: {one_line(err)}") from None
        self.output_names = [o.name for o in self._session.get_outputs()]
        self.input_names = [i.name for i in self._session.get_inputs()]
        self.providers = self._session.get_providers()

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        values = self._session.run(self.output_names, {k: feeds[k] for k in self.input_names})
        return dict(zip(self.output_names, values, strict=True))

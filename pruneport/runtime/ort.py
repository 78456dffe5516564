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


# CUDA EP options that matter for pruneport: TF32 off, so that MatMuls round like FP32 and pruning decisions match the
# CPU's (TF32 keeps 10 mantissa bits); the arena grows by what is requested (sequence lengths vary a lot between
# prune points and calls, and the default power-of-two growth over-reserves).
CUDA_OPTIONS = {"use_tf32": "0", "arena_extend_strategy": "kSameAsRequested"}


def providers_for(device: str) -> list:
    """Execution providers for "cpu" or "gpu" ("cuda"; with :data:`CUDA_OPTIONS`); a GPU without onnxruntime-gpu
    raises ModelLoadError."""
    import onnxruntime as ort

    if device == "cpu":
        return ["CPUExecutionProvider"]
    if device in ("gpu", "cuda"):
        if "CUDAExecutionProvider" not in ort.get_available_providers():
            raise ModelLoadError(
                "device='gpu' needs onnxruntime-gpu with CUDA (pip install 'pruneport[gpu]'); available "
                f"providers: {ort.get_available_providers()}"
            )
        return [("CUDAExecutionProvider", dict(CUDA_OPTIONS)), "CPUExecutionProvider"]
    raise ValueError(f"unknown device {device!r} for onnxruntime; use 'cpu' or 'gpu'")


def cpu_session(model: Path | bytes, threads: int = 0, spinning: bool = True):
    """A plain ``ort.InferenceSession`` on CPU for a model file or serialized model (calibration, parity checks)."""
    import onnxruntime as ort

    source = str(model) if isinstance(model, Path) else model
    return ort.InferenceSession(source, session_options(threads, spinning), providers=providers_for("cpu"))


class OrtSession:
    """ONNX Runtime on CPU or CUDA. ``threads`` sets intra-op threads (0 = ORT's default).

    io_binding: run through an ``IOBinding`` (inputs bound from host memory once, outputs allocated on the device and
    fetched once at the end); None = on for "gpu", off for "cpu" (where it changes nothing but is tested).
    """

    def __init__(
        self,
        model_path: Path,
        device: str = "cpu",
        threads: int = 0,
        spinning: bool = True,
        io_binding: bool | None = None,
    ) -> None:
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
        self.io_binding = (device != "cpu") if io_binding is None else io_binding
        self._output_device = "cuda" if self.providers[0] == "CUDAExecutionProvider" else "cpu"

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Outputs by name for ``feeds`` (extra entries are ignored)."""
        if self.io_binding:
            return self._run_bound(feeds)
        values = self._session.run(self.output_names, {k: feeds[k] for k in self.input_names})
        return dict(zip(self.output_names, values, strict=True))

    def _run_bound(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """One run through an IOBinding: host inputs bound once, outputs left on the device until fetched once."""
        binding = self._session.io_binding()
        for name in self.input_names:
            binding.bind_cpu_input(name, np.ascontiguousarray(feeds[name]))
        for name in self.output_names:
            binding.bind_output(name, self._output_device)
        self._session.run_with_iobinding(binding)
        return dict(zip(self.output_names, binding.copy_outputs_to_cpu(), strict=True))

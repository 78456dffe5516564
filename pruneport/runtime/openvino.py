"""OpenVINO, set up in one place: the compile configuration (precision pinned to f32 unless asked: OpenVINO would pick
bf16 on CPUs with native bf16, which changes pruning decisions), replacing named constants in a read model (the
thresholds that calibration moves), and the runtime's :class:`OpenVINOSession`.

Imported lazily (``openvino`` only when used).
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections import deque
from pathlib import Path

import numpy as np

from pruneport.errors import ModelLoadError, one_line

PRECISION_HINTS = {"f32": "f32", "bf16": "bf16", "f16": "f16"}


def compile_config(target: str = "CPU", threads: int = 0, precision: str = "f32", mode: str = "latency") -> dict:
    """``compile_model`` configuration: performance hint, inference precision (not for AUTO), CPU threads."""
    config: dict[str, str] = {"PERFORMANCE_HINT": mode.upper()}
    if target != "AUTO":
        config["INFERENCE_PRECISION_HINT"] = PRECISION_HINTS[precision]
    if threads and target == "CPU":
        config["INFERENCE_NUM_THREADS"] = str(threads)
    return config


def compile_cpu(model, threads: int = 0):
    """An OpenVINO model (or a model file) compiled for CPU in f32, latency mode: calibration runs, parity checks."""
    import openvino as ov

    source = str(model) if isinstance(model, Path) else model
    return ov.Core().compile_model(source, "CPU", compile_config("CPU", threads))


def replace_constants(model, values: dict[str, float]) -> dict[str, object]:
    """Replace the scalar-like Constants named in ``values`` (friendly names) in an OpenVINO model, in place.

    Each new constant keeps the old one's dtype, shape and friendly name. Returns name -> new node; a name with no
    Constant raises KeyError naming it.
    """
    import openvino as ov

    constants = {op.get_friendly_name(): op for op in model.get_ops() if op.get_type_name() == "Constant"}
    replaced = {}
    for name, value in values.items():
        old = constants.get(name)
        if old is None:
            raise KeyError(name)
        dtype = np.asarray(old.get_data()).dtype
        new = ov.opset13.constant(np.asarray(value, dtype=dtype).reshape(tuple(old.get_output_shape(0))))
        new.set_friendly_name(old.get_friendly_name())
        old.output(0).replace(new.output(0))
        replaced[name] = new
    return replaced


def _read_ov_model(core, model_path: Path):
    if not model_path.exists():
        raise ModelLoadError(f"model file not found: {model_path}")
    try:
        return core.read_model(str(model_path))
    except Exception as err:  # OpenVINO raises RuntimeError subclasses of its own
        raise ModelLoadError(f"cannot load {model_path} with OpenVINO: {one_line(err)}") from None


class OpenVINOSession:
    """OpenVINO on "cpu", "gpu" or "auto"; reads IR (model.xml) or ONNX.

    precision: "f32" by default (OpenVINO would pick bf16 on CPUs with native bf16, which changes pruning
    decisions: deployment-notes section 1), "bf16" or "f16" on request. mode: "latency" (one request at a time) or
    "throughput" (``run_many`` over a pool of async infer requests). ``run`` is thread-safe (one infer request per
    thread). static_shapes: compile one static-shape model per distinct input shape (cached; for split stages,
    whose shapes the runtime buckets; single-thread use only).
    """

    DEVICES = {"cpu": "CPU", "gpu": "GPU", "auto": "AUTO"}

    def __init__(
        self,
        model_path: Path,
        device: str = "cpu",
        threads: int = 0,
        precision: str = "f32",
        mode: str = "latency",
        jobs: int = 0,
        spinning: bool = True,
        static_shapes: bool = False,
    ) -> None:
        try:
            import openvino as ov
        except ImportError:
            raise ModelLoadError("backend='openvino' needs openvino (pip install 'pruneport[openvino]')") from None
        if device.lower() not in self.DEVICES:
            raise ValueError(f"unknown device {device!r} for openvino; use 'cpu', 'gpu' or 'auto'")
        target = self.DEVICES[device.lower()]
        core = ov.Core()
        if target == "GPU" and not any(d.startswith("GPU") for d in core.available_devices):
            raise ModelLoadError(f"device='gpu': OpenVINO sees no GPU here (devices: {core.available_devices})")
        model = _read_ov_model(core, model_path)
        config = compile_config(target, threads, precision, mode)
        try:
            self._compiled = core.compile_model(model, target, config)
        except Exception as err:
            raise ModelLoadError(f"OpenVINO cannot compile {model_path} for {target}: {one_line(err)}") from None
        self._static: dict | None = {} if static_shapes else None
        self._static_args = (core, model, target, config)
        self.input_names = [i.get_any_name() for i in self._compiled.inputs]
        self.output_names = [o.get_any_name() for o in self._compiled.outputs]
        self.device = target
        self.precision = precision
        self.mode = mode
        self.jobs = jobs if jobs > 0 else (0 if mode == "latency" or static_shapes else self._optimal_requests())
        self._local = threading.local()
        self._pool: list = []
        self._pool_lock = threading.Lock()

    def _optimal_requests(self) -> int:
        try:
            return int(self._compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
        except Exception:
            return os.cpu_count() or 1

    def _request(self):
        request = getattr(self._local, "request", None)
        if request is None:
            request = self._local.request = self._compiled.create_infer_request()
        return request

    def _outputs(self, request) -> dict[str, np.ndarray]:
        return {n: request.get_tensor(n).data.copy() for n in self.output_names}

    def _static_request(self, feeds: dict[str, np.ndarray]):
        key = tuple(feeds[n].shape for n in self.input_names)
        request = self._static.get(key)
        if request is None:
            core, model, target, config = self._static_args
            fixed = model.clone()
            fixed.reshape({n: list(feeds[n].shape) for n in self.input_names})
            request = self._static[key] = core.compile_model(fixed, target, config).create_infer_request()
        return request

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run one batch: feeds by input name -> output arrays (copies) by name, on this thread's infer request
        (or, with static shapes, on a request compiled for the feeds' shapes)."""
        request = self._request() if self._static is None else self._static_request(feeds)
        request.infer({n: feeds[n] for n in self.input_names})
        return self._outputs(request)

    def run_many(self, feeds_list: list[dict[str, np.ndarray]]) -> list[dict[str, np.ndarray]]:
        """Run independent batches concurrently on a pool of ``jobs`` infer requests; results in input order.

        The requests belong to the session and are started and waited on from the calling thread. OpenVINO's
        ``AsyncInferQueue`` with a Python callback was used before: its callback threads could hold the last
        reference to a request while the queue was dropped, and OpenVINO then aborted the process
        ("Resource deadlock avoided", a worker thread joining itself).
        """
        with self._pool_lock:
            if len(self._pool) < max(1, self.jobs):
                self._pool.extend(
                    self._compiled.create_infer_request() for _ in range(max(1, self.jobs) - len(self._pool))
                )
            results: list[dict[str, np.ndarray] | None] = [None] * len(feeds_list)
            free = list(self._pool)
            running: deque = deque()
            try:
                for index, feeds in enumerate(feeds_list):
                    if not free:
                        free.append(self._collect(running.popleft(), results))
                    request = free.pop()
                    request.start_async({n: feeds[n] for n in self.input_names})
                    running.append((index, request))
                while running:
                    self._collect(running.popleft(), results)
            finally:  # after an error, leave no request busy for the next call
                for _, request in running:
                    with contextlib.suppress(Exception):
                        request.wait()
        return results  # type: ignore[return-value]

    def _collect(self, started: tuple[int, object], results: list) -> object:
        """Wait for a started request, store its outputs at its input's index, and hand the request back."""
        index, request = started
        request.wait()
        results[index] = self._outputs(request)
        return request

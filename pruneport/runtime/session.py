"""Inference sessions behind one small protocol: ``run(feeds) -> {output name: array}``.

Engines are imported lazily so that ``pruneport.runtime`` needs only numpy, tokenizers and the engine in use
(never torch).
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections import deque
from pathlib import Path
from typing import Protocol

import numpy as np

from pruneport.errors import ModelLoadError  # raised here; pruneport.runtime re-exports it

log = logging.getLogger(__name__)


def one_line(err: BaseException) -> str:
    """An engine's error message on one line (OpenVINO's span several, prefixed by source locations)."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    kept = [line for line in lines if not line.startswith("Exception from src/")]
    return " ".join(kept or lines) or type(err).__name__


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
            raise ModelLoadError(f"cannot load {model_path} with ONNX Runtime: {one_line(err)}") from None
        self.output_names = [o.name for o in self._session.get_outputs()]
        self.input_names = [i.name for i in self._session.get_inputs()]
        self.providers = self._session.get_providers()

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        values = self._session.run(self.output_names, {k: feeds[k] for k in self.input_names})
        return dict(zip(self.output_names, values, strict=True))


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
        config: dict[str, str] = {"PERFORMANCE_HINT": mode.upper()}
        if target != "AUTO":
            config["INFERENCE_PRECISION_HINT"] = {"f32": "f32", "bf16": "bf16", "f16": "f16"}[precision]
        if threads and target == "CPU":
            config["INFERENCE_NUM_THREADS"] = str(threads)
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

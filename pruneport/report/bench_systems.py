"""What ``pruneport bench`` times: a :class:`System` (a model on a backend behind ``run(feeds)``) and how one is
opened from an export folder or the PyTorch baseline.

Its own module so that the benchmark (:mod:`pruneport.report.bench`) and the memory probe's child process
(:mod:`pruneport.report.bench_memory`) both open systems without importing each other.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pruneport.export.manifest import Manifest, read_tokenizer


@dataclass
class System:
    """One thing to time: a model on a backend, behind ``run(feeds) -> {name: array}``."""

    model: str
    method: str
    backend: str
    precision: str
    run: Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]
    tokenizer_json: str
    pad_token_id: int
    input_names: list[str]
    max_length: int
    backbone: dict[str, Any]
    bucket: int = 0
    spec: dict[str, Any] = field(default_factory=dict)  # how bench_memory opens it again
    notes: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        """model/backend/precision: the system's name in progress lines and memory probes."""
        return f"{self.model}/{self.backend}/{self.precision}"


# ------------------------------------------------------------------------------------------------------------------
# Opening systems
# ------------------------------------------------------------------------------------------------------------------


def open_runtime_session(folder: Path, manifest: Manifest, backend: str, threads: int, device: str = "cpu"):
    """(session, bucket) of an export folder through pruneport's runtime, ORT spinning off, latency mode."""
    from pruneport.runtime.split import open_export

    options: dict[str, Any] = {"threads": threads, "mode": "latency", "spinning": False}
    return open_export(folder, manifest, backend, device, **options)


def folder_precision(manifest: Manifest) -> str:
    """The folder's precision in lower case (fp32, fp16, int8)."""
    return str(manifest.precision or "fp32").lower()


def folder_system(folder: Path, backend: str, threads: int, name: str | None = None, device: str = "cpu") -> System:
    """A pruneport (or plain baseline) export folder on ``backend`` and ``device`` ("cpu" or "gpu": ONNX Runtime's
    CUDA EP, OpenVINO's GPU plugin); raises when the backend cannot run it there."""
    from pruneport.runtime.session import ModelLoadError
    from pruneport.runtime.split import SplitSession

    manifest = Manifest.read(folder)
    model_file = manifest.model_file
    if backend == "onnxruntime" and not model_file.endswith(".onnx"):
        raise ModelLoadError(f"{folder} holds {model_file} (OpenVINO IR), which ONNX Runtime cannot read")
    session, bucket = open_runtime_session(folder, manifest, backend, threads, device)
    tokenizer = read_tokenizer(folder, manifest)
    notes: dict[str, Any] = {"model_file": model_file}
    if "baseline_exporter" in manifest.extra:
        notes["baseline_exporter"] = manifest.extra["baseline_exporter"]
    quant = manifest.extra.get("quantization")
    if quant:
        notes["quantization"] = quant.get("scheme")
    if isinstance(session, SplitSession):
        notes["split"] = True
    return System(
        model=name or folder.name,
        method=manifest.method,
        backend=backend,
        precision=folder_precision(manifest),
        run=session.run,
        tokenizer_json=tokenizer,
        pad_token_id=manifest.pad_token_id,
        input_names=list(manifest.inputs),
        max_length=manifest.max_length,
        backbone=dict(manifest.backbone),
        bucket=bucket,
        spec={"kind": "folder", "folder": str(folder), "backend": backend, "device": device},
        notes=notes,
    )


def eager_system(hf_folder: Path, plain_folder: Path, threads: int, exporter_note: str) -> System:
    """PyTorch eager on the baseline HF folder; tokenizer and I/O names from the plain ONNX folder."""
    from pruneport.report.bench_baselines import EAGER_METHOD, EagerSession

    manifest = Manifest.read(plain_folder)
    session = EagerSession(hf_folder, threads)
    return System(
        model="unpruned",
        method=EAGER_METHOD,
        backend="pytorch",
        precision="fp32",
        run=session.run,
        tokenizer_json=read_tokenizer(plain_folder, manifest),
        pad_token_id=manifest.pad_token_id,
        input_names=list(manifest.inputs),
        max_length=manifest.max_length,
        backbone=dict(manifest.backbone),
        spec={"kind": "eager", "folder": str(hf_folder), "plain": str(plain_folder)},
        notes={"baseline": "transformers eager (default attention implementation)", "source_exporter": exporter_note},
    )

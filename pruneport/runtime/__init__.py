"""The torch-free runtime that apps embed: ``load(folder).predict(texts)``.

Needs numpy, tokenizers and the chosen engine (onnxruntime; openvino where installed). Importing it never imports
torch or transformers (a test enforces this).
"""

from __future__ import annotations

from pathlib import Path

from pruneport.export.manifest import Manifest, NotAnExportError
from pruneport.runtime.classifier import Predictions, TextClassifier
from pruneport.runtime.session import ModelLoadError, open_session
from pruneport.runtime.text import InvalidTextError, TextTooLongError

__all__ = [
    "InvalidTextError",
    "ModelLoadError",
    "NotAnExportError",
    "Predictions",
    "TextClassifier",
    "TextTooLongError",
    "load",
    "open_session",
]


def load(
    folder: str | Path,
    backend: str = "onnxruntime",
    device: str = "cpu",
    batch_size: int = 32,
    threads: int = 0,
    precision: str = "f32",
    mode: str = "latency",
    split: bool | None = None,
    bucket: int | None = None,
) -> TextClassifier:
    """Load an export folder for inference.

    Args:
        folder: a folder written by ``pruneport export`` (or optimize / quantize).
        backend: "onnxruntime" or "openvino" (reads the IR of ``pruneport convert``, else the ONNX).
        device: "cpu" or "gpu" (OpenVINO also "auto").
        batch_size: texts per run in ``predict`` (>= 1).
        threads: intra-op threads (0 = the engine's default; never negative).
        precision: "f32" (default); OpenVINO also "bf16" or "f16" (may change which tokens are kept).
        mode: "latency" (one batch at a time) or "throughput" (batches run concurrently).
        split: run the loop-split export (``export --split``): None = the backend's default when present.
        bucket: pad input lengths (and, for split exports, kept lengths) up to a multiple of this; None = the
            manifest's value or the backend's default, 0 = off.
    """
    from pruneport.runtime.split import open_export
    from pruneport.validate import check_count

    batch_size = check_count(batch_size, "batch_size")
    threads = check_count(threads, "threads", minimum=0)
    if bucket is not None:
        bucket = check_count(bucket, "bucket", minimum=0)
    folder = Path(folder)
    manifest = Manifest.read(folder)
    session, bucket = open_export(
        folder, manifest, backend, device, split=split, bucket=bucket, threads=threads, precision=precision, mode=mode
    )
    unfed = sorted(set(getattr(session, "input_names", ())) - set(manifest.inputs))
    if unfed:
        raise ModelLoadError(f"{folder}: the model takes inputs {unfed} that the manifest's inputs do not list")
    return TextClassifier(folder, manifest, session, batch_size=batch_size, bucket=bucket, mode=mode)

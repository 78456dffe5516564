"""The torch-free runtime that apps embed: ``load(folder).predict(texts)``.

Needs numpy, tokenizers and the chosen engine (onnxruntime; openvino where installed). Importing it never imports
torch or transformers (a test enforces this).
"""

from __future__ import annotations

from pathlib import Path

from pruneport.export.manifest import Manifest, NotAnExportError
from pruneport.runtime.classifier import Predictions, TextClassifier
from pruneport.runtime.session import ModelLoadError, open_session
from pruneport.runtime.text import TextTooLongError

__all__ = ["ModelLoadError", "NotAnExportError", "Predictions", "TextClassifier", "TextTooLongError", "load"]


def load(
    folder: str | Path,
    backend: str = "onnxruntime",
    device: str = "cpu",
    batch_size: int = 32,
    threads: int = 0,
) -> TextClassifier:
    """Load an export folder for inference.

    Args:
        folder: a folder written by ``pruneport export`` (or optimize / quantize).
        backend: "onnxruntime".
        device: "cpu" or "gpu".
        batch_size: texts per run in ``predict``.
        threads: intra-op threads (0 = the engine's default).
    """
    folder = Path(folder)
    manifest = Manifest.read(folder)
    session = open_session(folder / manifest.model_file, backend, device, threads=threads)
    return TextClassifier(folder, manifest, session, batch_size=batch_size)

"""The exceptions that mean "the user gave something wrong": the CLI reports them in one line.

Torch-free. Each stage raises a ValueError/FileNotFoundError subclass with a message that says what to fix;
``ModelLoadError`` covers model files the engine cannot load (missing, corrupt).
"""

from __future__ import annotations


class ModelLoadError(RuntimeError):
    """The model file of an export folder cannot be loaded (missing, corrupt, or not runnable here)."""


USER_ERRORS: tuple[type[BaseException], ...] = (
    ValueError,
    FileNotFoundError,
    FileExistsError,
    NotADirectoryError,
    ModelLoadError,
)


def one_line(err: BaseException) -> str:
    """An engine's error message on one line (OpenVINO's span several, prefixed by source locations)."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    kept = [line for line in lines if not line.startswith("Exception from src/")]
    return " ".join(kept or lines) or type(err).__name__

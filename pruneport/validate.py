"""Checks of option values, in one place for the command line (argparse types) and the API.

Every count (batch sizes, example limits, repeats, steps, threads, lengths, ...) goes through :func:`check_count`,
the CLI through the argparse types built on it (:func:`positive_int`, :func:`non_negative_int`, ...), so
``--batch-size -1`` and ``load(folder, batch_size=-1)`` fail alike instead of running with a nonsense value.
Light to import (no numpy, no torch): the CLI builds every parser at start-up.
"""

from __future__ import annotations

import argparse
import errno
import math
import numbers
import os
from pathlib import Path


class OptionError(ValueError):
    """An option value out of its range (a count below 1, an opset the exporter cannot produce, ...)."""


def check_count(value: object, name: str = "", minimum: int = 1) -> int:
    """``value`` as an int if it is an integer >= ``minimum``; else OptionError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or int(value) < minimum:
        wanted = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        raise OptionError(f"{name} must be {wanted}, got {value!r}".strip())
    return int(value)


def check_number(value: object, name: str = "", minimum: float = 0.0, inclusive: bool = False) -> float:
    """``value`` as a float if it is a finite number > ``minimum`` (>= with ``inclusive``); else OptionError."""
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(float(value))
    ok = ok and (float(value) >= minimum if inclusive else float(value) > minimum)
    if not ok:
        wanted = f"a number {'>=' if inclusive else '>'} {minimum:g}"
        raise OptionError(f"{name} must be {wanted}, got {value!r}".strip())
    return float(value)


def _int(text: str) -> int:
    try:
        return int(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None


def _float(text: str) -> float:
    try:
        return float(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None


def _argtype(check):
    """Run ``check`` as an argparse type: its OptionError becomes argparse's one-line usage error (exit 2)."""

    def parse(text: str):
        try:
            return check(text)
        except OptionError as err:
            raise argparse.ArgumentTypeError(str(err)) from None

    parse.__name__ = check.__name__
    return parse


@_argtype
def positive_int(text: str) -> int:
    """argparse type: an integer >= 1 (counts: batch sizes, limits, repeats, steps, lengths)."""
    return check_count(_int(text))


@_argtype
def non_negative_int(text: str) -> int:
    """argparse type: an integer >= 0 (counts where 0 has a documented meaning: threads, bucket, warm-up)."""
    return check_count(_int(text), minimum=0)


def _comma_separated(text: str, parse_one, what: str) -> list:
    """``parse_one`` applied to each comma-separated item of ``text`` (blanks ignored); OptionError when empty."""
    values = [parse_one(t) for t in text.replace(" ", "").split(",") if t]
    if not values:
        raise OptionError(f"expected one or more comma-separated {what}, got {text!r}")
    return values


@_argtype
def positive_ints(text: str) -> list[int]:
    """argparse type: comma-separated integers >= 1 (``--batch-sizes 1,32``)."""
    return _comma_separated(text, lambda t: check_count(_int(t), "each value"), "positive integers")


@_argtype
def non_negative_floats(text: str) -> list[float]:
    """argparse type: comma-separated finite numbers >= 0 (per-layer thresholds, ETA)."""
    return _comma_separated(
        text, lambda t: check_number(_float(t), "each value", inclusive=True), "finite numbers >= 0"
    )


@_argtype
def positive_float(text: str) -> float:
    """argparse type: a finite number > 0 (epochs, learning rates, temperatures)."""
    return check_number(_float(text))


@_argtype
def non_negative_float(text: str) -> float:
    """argparse type: a finite number >= 0 (tolerances, epochs where 0 skips a phase)."""
    return check_number(_float(text), inclusive=True)


def check_output_file(path: Path, flag: str) -> Path:
    """Refuse an output file that cannot be written, before any work: a folder, or under a file, or not writable.

    Call it when the command starts, so that ``bench --json FOLDER`` fails at once instead of after the benchmark.
    """
    path = Path(path)
    if path.is_dir():
        raise OptionError(f"{flag} {path} is a folder; give a file name")
    parent = _existing_parent(path)
    if not parent.is_dir():
        raise OptionError(f"{flag} {path}: {parent} is a file, not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise PermissionError(errno.EACCES, "cannot write there (permission denied)", str(parent))
    return path


def check_output_folder(path: Path, flag: str) -> Path:
    """Refuse an output folder that is a file, sits under a file, or cannot be written (before any work)."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OptionError(f"{flag} {path} is a file; give a folder")
    parent = _existing_parent(path)
    if not parent.is_dir():
        raise OptionError(f"{flag} {path}: {parent} is a file, not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise PermissionError(errno.EACCES, "cannot write there (permission denied)", str(parent))
    return path


def _existing_parent(path: Path) -> Path:
    """The nearest existing ancestor of ``path`` (itself excluded), ``.`` for a bare relative name."""
    parent = path.absolute().parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    return parent


__all__ = [
    "OptionError",
    "check_count",
    "check_number",
    "check_output_file",
    "check_output_folder",
    "non_negative_float",
    "non_negative_int",
    "positive_float",
    "positive_int",
    "positive_ints",
]

"""Writing an output folder atomically: every stage that writes a folder (export, convert, optimize, quantize,
calibrate) builds it under a temporary name beside ``out`` and renames it into place only when complete, so a
failure leaves nothing half-written. Torch-free.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def check_writable(out: Path, overwrite: bool) -> None:
    """Refuse to replace a non-empty ``out`` unless ``overwrite`` (call before expensive work)."""
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise FileExistsError(f"{out} exists and is not empty; pass --overwrite to replace it")


@contextmanager
def staged_folder(out: Path) -> Iterator[Path]:
    """Yield a fresh temporary folder beside ``out``; on success it replaces ``out``, on any error it is removed."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        yield tmp
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise

"""Writing output folders without losing data: every stage that writes a folder (export, convert, optimize,
quantize, calibrate, and report/train for their outputs) goes through these helpers. Torch-free.

- :func:`check_output` (call before expensive work): refuses an output that is, contains or is inside an input
  (replacing it would delete or change the input), a non-empty output without ``overwrite``, and, with
  ``overwrite``, an output that holds anything pruneport did not write there (``--overwrite`` never deletes files
  the command did not write).
- :func:`staged_folder`: the folder is built in a hidden staging folder beside ``out``
  (``.OUT.pruneport-PID-XXXX/out``) and renamed into place only when complete, so a failure or a signal leaves
  nothing half-written. Temporary files of the same run go under :func:`scratch_dir` in that staging folder (and
  :func:`temp_files_under` points Python's ``tempfile`` there), so one cleanup covers both. Staging folders of the
  same output whose process is gone (SIGKILL) are swept at the next run. The folder gets the umask's permissions.
- :func:`carry_over`: copies the files a manifest names (nothing else) from one export folder to another.
- :func:`created_folder`: makes a folder for outputs written in place (train) and removes it again if the command
  fails before writing anything into it.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from fnmatch import fnmatch
from pathlib import Path, PurePosixPath

from pruneport.export.manifest import MANIFEST_NAME, Manifest, NotAnExportError

log = logging.getLogger(__name__)

STAGING_TAG = ".pruneport-"  # .OUT.pruneport-<pid>-<random>/
STAGED_NAME = "out"  # the folder being built, inside the staging folder
SCRATCH_NAME = "scratch"  # temporary files of the same run, inside the staging folder


class OutputError(ValueError):
    """An output location that would lose data (it overlaps an input or holds files pruneport did not write)."""


def _overlap(out: Path, source: Path) -> str | None:
    """How ``out`` overlaps ``source`` ("is", "contains", "is inside"), or None."""
    target, src = out.resolve(), source.resolve()
    if target == src:
        return "is"
    if src.is_relative_to(target):
        return "contains"
    if target.is_relative_to(src):
        return "is inside"
    return None


def check_output(
    out: str | Path,
    inputs: Iterable[str | Path | None] = (),
    overwrite: bool = False,
    *,
    in_place: bool = False,
    owned: Iterable[str] | None = None,
) -> None:
    """Refuse an output location that would lose data (call before expensive work).

    Args:
        out: the output folder.
        inputs: files and folders the command reads (None entries are skipped).
        overwrite: replace a non-empty ``out`` (only when everything in it is pruneport's, see ``owned``).
        in_place: ``out`` may be the input itself (``calibrate --in-place``); it may still not contain or sit
            inside another input.
        owned: name patterns of the entries pruneport writes in ``out`` (default: an export folder's, read from
            its manifest).
    """
    if check_overlap(out, inputs, in_place=in_place):
        return
    check_writable(out, overwrite, owned)


def check_overlap(out: str | Path, inputs: Iterable[str | Path | None], *, in_place: bool = False) -> bool:
    """Refuse an ``out`` that is, contains or is inside one of ``inputs`` (OutputError); returns True when it is an
    input and ``in_place`` allows that."""
    out = Path(out)
    same = False
    for source in inputs:
        if source is None:
            continue
        relation = _overlap(out, Path(source))
        if relation == "is" and in_place:
            same = True
            continue
        if relation is not None:
            if relation == "is inside":
                consequence = "writing there would change the input"
            else:
                consequence = "replacing it would delete the input"
            raise OutputError(f"the output {out} {relation} the input {source}: {consequence}; write to another folder")
    return same


def check_writable(out: str | Path, overwrite: bool, owned: Iterable[str] | None = None) -> None:
    """Refuse a non-empty ``out`` unless ``overwrite``, and even then when it holds files pruneport did not write."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"{out} exists and is not a folder; choose a folder for the output")
    if not out.exists() or not any(out.iterdir()):
        return
    if not overwrite:
        raise FileExistsError(f"{out} exists and is not empty; pass --overwrite to replace it")
    foreign = foreign_entries(out, owned)
    if foreign:
        more = f" and {len(foreign) - 1} more" if len(foreign) > 1 else ""
        raise OutputError(
            f"--overwrite replaces only what pruneport wrote, but {out} also holds {foreign[0]!r}{more}; move it "
            "away or choose another output folder"
        )


def export_entries(folder: Path) -> set[str]:
    """Top-level names an export folder's manifest accounts for (its files, their folders, the manifest)."""
    try:
        manifest = Manifest.read(folder)
    except NotAnExportError:
        return set()
    names = {MANIFEST_NAME}
    for _, name in manifest.file_entries():
        names.add(PurePosixPath(name).parts[0])
    return names


def foreign_entries(out: Path, owned: Iterable[str] | None = None) -> list[str]:
    """Entries of ``out`` that pruneport did not write there (sorted); ``owned``: name patterns, default export."""
    patterns = list(owned) if owned is not None else sorted(export_entries(out))
    return sorted(e.name for e in out.iterdir() if not any(fnmatch(e.name, p) for p in patterns))


# -- staging ---------------------------------------------------------------------------------------------------
def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    if os.name == "nt":  # os.kill would terminate it; treat as alive (the folder is swept once stale by age)
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError: another user's live process
        return True
    try:  # a killed process not yet reaped by its parent is a zombie: gone for our purposes
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
        return stat.rpartition(")")[2].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def sweep_stale_staging(out: str | Path) -> list[Path]:
    """Remove staging folders of ``out`` left by runs that were killed (their process is gone); returns them.

    Also removes the ``.OUT.XXXXXXXX`` staging folders of pruneport versions before the pid was recorded.
    """
    out = Path(out)
    if not out.parent.is_dir():
        return []
    prefix = f".{out.name}{STAGING_TAG}"
    legacy = re.compile(rf"\.{re.escape(out.name)}\.[a-z0-9_]{{8}}")
    removed = []
    for entry in out.parent.iterdir():
        if entry.name.startswith(prefix):
            pid = entry.name[len(prefix) :].split("-", 1)[0]
            if pid.isdigit() and _pid_alive(int(pid)):
                continue
        elif not legacy.fullmatch(entry.name):
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
            log.info("removed %s, left by an interrupted run", entry)
            removed.append(entry)
    return removed


@contextmanager
def staged_folder(out: str | Path) -> Iterator[Path]:
    """Yield a fresh folder in a staging folder beside ``out``; on success it replaces ``out``, on any error or
    signal (SIGINT, SIGTERM through the CLI's handler) the staging folder is removed."""
    out = Path(out)
    with no_empty_leftovers(out.parent):
        out.parent.mkdir(parents=True, exist_ok=True)
        sweep_stale_staging(out)
        root = Path(tempfile.mkdtemp(prefix=f".{out.name}{STAGING_TAG}{os.getpid()}-", dir=out.parent))
        try:
            staged = root / STAGED_NAME
            staged.mkdir()  # mkdtemp's folder is private (0700); this one follows the umask
            yield staged
            if out.exists() or out.is_symlink():
                out.rename(root / "replaced")
            staged.rename(out)
        finally:
            shutil.rmtree(root, ignore_errors=True)


def scratch_dir(staged: Path) -> Path:
    """A folder for temporary files of the run building ``staged`` (removed with its staging folder)."""
    root = staged.parent
    if STAGING_TAG not in root.name or staged.name != STAGED_NAME:
        raise ValueError(f"{staged} is not a folder made by staged_folder")
    scratch = root / SCRATCH_NAME
    scratch.mkdir(exist_ok=True)
    return scratch


@contextmanager
def temp_files_under(folder: Path) -> Iterator[Path]:
    """Point Python's ``tempfile`` (used by ONNX Runtime's quantizer, NNCF, ...) at ``folder`` for the block."""
    saved = tempfile.tempdir
    tempfile.tempdir = str(folder)
    try:
        yield folder
    finally:
        tempfile.tempdir = saved


@contextmanager
def created_folder(out: str | Path) -> Iterator[Path]:
    """``mkdir -p out`` for a command that writes into ``out`` directly; if the block fails, the folders it
    created are removed again while still empty (a failed command leaves no empty output folder)."""
    out = Path(out)
    with no_empty_leftovers(out):
        out.mkdir(parents=True, exist_ok=True)
        yield out


@contextmanager
def no_empty_leftovers(*folders: str | Path) -> Iterator[None]:
    """If the block fails, remove those of ``folders`` (and their parents) that did not exist before it and are
    empty now."""
    missing: set[Path] = set()
    for folder in folders:
        for path in [Path(folder), *Path(folder).parents]:
            if path.exists():
                break
            missing.add(path)
    try:
        yield
    except BaseException:
        for path in sorted(missing, key=lambda p: len(p.parts), reverse=True):
            try:
                path.rmdir()
            except OSError:
                pass
        raise


# -- derived files ---------------------------------------------------------------------------------------------
def carry_over(source: Path, staged: Path, manifest: Manifest, model: bool = True) -> list[str]:
    """Copy every file ``manifest`` names from the export folder ``source`` into ``staged``; returns the names.

    Drop the derived entries (``manifest.drop_derived``) that the writer neither keeps valid nor regenerates first:
    their files are then not copied. ``model=False`` skips the model file (a writer that writes a new one). The
    manifest was validated on reading, so every name stays inside both folders.
    """
    names = []
    for (what, name), src in zip(manifest.file_entries(), manifest.check_files(source), strict=True):
        if not model and what in ("model_file", "model_file weights"):
            continue
        if not src.is_file():
            raise FileNotFoundError(f"{source} names {what} {name!r}, which is not there")
        dst = staged / name
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dst)
        names.append(name)
    return names

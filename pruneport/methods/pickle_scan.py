"""What a file given as a checkpoint is, found without unpickling it: a PyTorch zip, a bare pickle, or neither.

Used to explain a failed ``torch.load(weights_only=True)`` honestly: a file that is no checkpoint at all gets "not a
PyTorch checkpoint" (never the advice to pass ``--trust-pickle``), and a pickle that the safe loader refused gets the
list of the Python globals it would import. The pickle is only walked with :func:`pickletools.genops`, which decodes
opcodes and runs nothing. Torch-free.
"""

from __future__ import annotations

import io
import pickletools
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

ZIP_MAGIC = b"PK\x03\x04"
# Globals torch's weights-only loader accepts for plain tensors and containers (a name outside is shown to the user).
SAFE_GLOBAL_PREFIXES = ("torch.", "collections.OrderedDict", "builtins.set", "builtins.frozenset", "_codecs.encode")
MAX_PICKLES = 8  # the legacy torch format is a few pickles in a row (magic, protocol, sys info, object, keys)
SCAN_BYTES = 64 * 2**20  # pickles are read from memory: a bogus length field then cannot allocate gigabytes


@dataclass
class CheckpointFileKind:
    """``kind``: "zip" (torch.save's archive), "pickle" (a bare pickle, incl. torch's legacy format), or "other"
    with ``reason``; ``globals``: the module.name globals the pickle imports, in order of appearance."""

    kind: str
    reason: str = ""
    globals: list[str] = field(default_factory=list)

    @property
    def unsafe_globals(self) -> list[str]:
        """The ``globals`` outside ``SAFE_GLOBAL_PREFIXES`` (the names shown to the user), in order."""
        return [g for g in self.globals if not g.startswith(SAFE_GLOBAL_PREFIXES)]


def inspect_checkpoint_file(path: Path) -> CheckpointFileKind:
    """Classify ``path`` (see :class:`CheckpointFileKind`) without executing any of it."""
    try:
        with open(path, "rb") as f:
            head = f.read(4)
            if not head:
                return CheckpointFileKind("other", "the file is empty")
            if head == ZIP_MAGIC:
                return _inspect_zip(path)
            f.seek(0)
            return _inspect_pickles(io.BytesIO(f.read(SCAN_BYTES)))
    except OSError as err:
        return CheckpointFileKind("other", f"cannot read it: {err.strerror or err}")


def _inspect_zip(path: Path) -> CheckpointFileKind:
    try:
        with zipfile.ZipFile(path) as archive:
            data = [n for n in archive.namelist() if n.endswith("/data.pkl") or n == "data.pkl"]
            if not data:
                return CheckpointFileKind("other", "a zip archive without the data.pkl of torch.save")
            payload = archive.read(data[0])
    except (zipfile.BadZipFile, OSError, EOFError) as err:
        return CheckpointFileKind("other", f"a damaged zip archive ({err})")
    found = _inspect_pickles(io.BytesIO(payload))
    return CheckpointFileKind("zip", found.reason, found.globals)


def _inspect_pickles(stream: io.BytesIO) -> CheckpointFileKind:
    """Walk the pickles at the start of ``stream``; the first must be complete for the file to count as a pickle."""
    names: list[str] = []
    for index in range(MAX_PICKLES):
        try:
            names.extend(_globals_of_one_pickle(stream))
        except (ValueError, EOFError, UnicodeDecodeError, KeyError, IndexError) as err:
            if index == 0:
                return CheckpointFileKind("other", f"neither a zip archive nor a pickle ({err})")
            break
    return CheckpointFileKind("pickle", globals=list(dict.fromkeys(names)))


def _globals_of_one_pickle(stream: io.BytesIO) -> list[str]:
    names: list[str] = []
    strings: list[str] = []  # recent string operands: STACK_GLOBAL takes module and name from the stack
    for opcode, arg, _ in pickletools.genops(stream):
        if opcode.name == "GLOBAL":
            names.append(str(arg).replace(" ", "."))
        elif opcode.name == "STACK_GLOBAL" and len(strings) >= 2:
            names.append(f"{strings[-2]}.{strings[-1]}")
        elif isinstance(arg, str):
            strings.append(arg)
    return names

"""Labeled text data for training, calibration, reports and benchmarks, read through ``datasets``.

A data spec is one of:

- a short name of the local benchmark copies, ``sst2``, ``mrpc`` or ``imdb``, found under ``$PRUNEPORT_DATA``
  (default: ``../shared/data`` beside the repository or the current folder); splits ``train`` and ``dev``
  (IMDB's ``test`` file serves as its ``dev``);
- a path to a TSV, CSV, JSON or JSON-lines file, or to a folder holding ``{split}.tsv`` / ``.csv`` / ``.json``;
- ``hub:NAME`` or ``hub:NAME/CONFIG`` (``hub:glue/sst2``), a Hugging Face hub data set, which needs network access.

Anything else (a typo such as ``sst``, a file or folder that does not exist) fails at once with :class:`DataError`:
the hub is only asked when the spec says ``hub:``. Local files must be non-empty UTF-8 text; a file the reader
cannot parse is reported in one line.

Local TSVs are read with quoting disabled and a BOM-tolerant encoding (the benchmark files contain bare ``"``
characters and MRPC starts with a BOM). Text columns are found by name: ``sentence``/``text``/``review`` for single
texts, ``#1 String``/``#2 String``, ``sentence1``/``sentence2`` or ``question``/``sentence`` for pairs; labels from
``label``/``Quality``.
"""

from __future__ import annotations

import logging
import os
import random
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

SHORT_NAMES = {"sst2": "sst2", "sst-2": "sst2", "mrpc": "mrpc", "imdb": "imdb"}
HUB_PREFIX = "hub:"
DATA_SUFFIXES = (".tsv", ".csv", ".json", ".jsonl")
SINGLE_COLUMNS = ("sentence", "text", "review", "content")
PAIR_COLUMNS = (
    ("#1 String", "#2 String"),
    ("sentence1", "sentence2"),
    ("question", "sentence"),
    ("premise", "hypothesis"),
    ("text_a", "text_b"),
)
LABEL_COLUMNS = ("label", "Quality", "labels")


class DataError(ValueError):
    """A data spec or data file that cannot be used: unknown name, missing path, empty, not UTF-8, unparsable."""


class DataNotFoundError(DataError, FileNotFoundError):
    """A data file or folder that does not exist (also a FileNotFoundError)."""


@dataclass
class LabeledTexts:
    """Texts (strings or pairs) and integer labels (None where unlabeled)."""

    texts: list
    labels: list[int] | None
    source: str

    def __len__(self) -> int:
        return len(self.texts)

    def subset(self, n: int | None, seed: int = 0, shuffle: bool = True) -> LabeledTexts:
        """The first ``n`` examples after a seeded shuffle (IMDB's files are sorted by label)."""
        order = list(range(len(self.texts)))
        if shuffle:
            random.Random(seed).shuffle(order)
        if n is not None:
            order = order[:n]
        labels = [self.labels[i] for i in order] if self.labels is not None else None
        return LabeledTexts([self.texts[i] for i in order], labels, self.source)


def data_root() -> Path:
    """Where the local benchmark data lives: ``$PRUNEPORT_DATA`` or ``../shared/data``."""
    env = os.environ.get("PRUNEPORT_DATA")
    if env:
        return Path(env)
    for base in (Path(__file__).resolve().parents[2], Path.cwd()):
        candidate = base.parent / "shared" / "data"
        if candidate.is_dir():
            return candidate
    return Path("../shared/data")


def resolve_data_file(spec: str, split: str) -> Path | None:
    """The local file for a spec and split, or None for a ``hub:`` spec; DataError for anything unknown."""
    if spec.lower().startswith(HUB_PREFIX):
        if not spec[len(HUB_PREFIX) :].strip("/ "):
            raise DataError(f"--data {spec!r}: write a hub data set as hub:NAME or hub:NAME/CONFIG")
        return None
    short = SHORT_NAMES.get(spec.lower())
    if short:
        folder = data_root() / short
        name = "test" if (short == "imdb" and split in ("dev", "validation", "test")) else split
        name = "dev" if name == "validation" else name
        path = folder / f"{name}.tsv"
        if not path.exists():
            raise DataNotFoundError(
                f"{spec} {split}: {path} not found; set PRUNEPORT_DATA to the folder holding sst2/, mrpc/, imdb/"
            )
        return path
    path = Path(spec)
    if path.is_dir():
        for ext in DATA_SUFFIXES:
            candidate = path / f"{split}{ext}"
            if candidate.exists():
                return candidate
        raise DataNotFoundError(f"{path} has no {split}.tsv/.csv/.json/.jsonl")
    if path.exists():
        return path
    raise _unknown_spec(spec)


def _unknown_spec(spec: str) -> DataError:
    """The error for a spec that is neither a known set, nor an existing path, nor ``hub:...`` (no network asked)."""
    import difflib

    hint = f"for a Hugging Face hub data set write {HUB_PREFIX}NAME[/CONFIG]"
    if any(c in spec for c in "/\\") or spec.startswith(".") or Path(spec).suffix.lower() in DATA_SUFFIXES:
        return DataNotFoundError(f"data file or folder not found: {spec} ({hint})")
    close = difflib.get_close_matches(spec.lower(), sorted(set(SHORT_NAMES)), n=1)
    guess = f" (did you mean {close[0]!r}?)" if close else ""
    known = ", ".join(sorted(set(SHORT_NAMES.values())))
    return DataError(f"unknown data {spec!r}{guess}: not a local set ({known}) nor an existing file or folder; {hint}")


def check_text_file(path: Path) -> None:
    """Refuse a data file that is empty, not UTF-8, binary (NUL bytes) or, for TSV/CSV, a header without rows."""
    import codecs

    decoder = codecs.getincrementaldecoder("utf-8-sig")()
    lines, offset, content = 0, 0, False
    try:
        with path.open("rb") as f:
            while chunk := f.read(1 << 20):
                try:
                    text = decoder.decode(chunk)
                except UnicodeDecodeError as err:
                    bad = chunk[err.start]
                    raise DataError(
                        f"{path} is not UTF-8 text (byte 0x{bad:02x} at offset {offset + err.start}); save it as UTF-8"
                    ) from None
                if "\x00" in text:
                    raise DataError(f"{path} holds NUL bytes: it is not a text file")
                content = content or bool(text.strip())
                lines += sum(1 for line in text.splitlines() if line.strip())
                offset += len(chunk)
            decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        raise DataError(f"{path} is not UTF-8 text (it ends inside a multi-byte character)") from None
    except IsADirectoryError:
        raise DataError(f"{path} is a folder without {'/'.join(DATA_SUFFIXES)} files") from None
    if not content:
        raise DataError(f"{path} is empty")
    if path.suffix not in (".json", ".jsonl") and lines < 2:
        raise DataError(f"{path} holds no examples: a header line and at least one row are needed")


def _reason(err: BaseException) -> str:
    """The first line of the innermost cause of ``err`` (``datasets`` wraps the reader's error)."""
    while err.__cause__ is not None or err.__context__ is not None:
        err = err.__cause__ or err.__context__  # type: ignore[assignment]
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0]}" if text else type(err).__name__


def _read_local(path: Path):
    check_text_file(path)
    kind = "JSON" if path.suffix in (".json", ".jsonl") else ("TSV" if path.suffix == ".tsv" else "CSV")
    with _quiet_datasets():
        return _load_local(path, kind)


def _load_local(path: Path, kind: str):
    import csv

    from datasets import load_dataset

    try:
        if kind == "JSON":
            return load_dataset("json", data_files=str(path), split="train")
        return load_dataset(
            "csv",
            data_files=str(path),
            split="train",
            delimiter="\t" if kind == "TSV" else ",",
            quoting=csv.QUOTE_NONE if kind == "TSV" else csv.QUOTE_MINIMAL,
            encoding="utf-8-sig",
            keep_default_na=False,
        )
    except Exception as err:  # datasets wraps the reader's error in its own classes (DatasetGenerationError, ...)
        raise DataError(f"cannot read {path} as {kind}: {_reason(err)}") from err


@contextmanager
def _quiet_datasets() -> Iterator[None]:
    """No ``datasets`` progress bars ("Generating train split ...") while reading a local file; pruneport's own
    log line says what was read."""
    import datasets

    was_enabled = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()
    try:
        yield
    finally:
        if was_enabled:
            datasets.enable_progress_bars()


def load_texts(spec: str, split: str = "train", limit: int | None = None, seed: int = 0) -> LabeledTexts:
    """Read labeled texts from a spec (see the module docstring); ``limit`` takes a seeded random subset."""
    path = resolve_data_file(spec, split)
    if path is not None:
        table = _read_local(path)
        source = str(path)
    else:
        from datasets import load_dataset

        hub_name = spec[len(HUB_PREFIX) :].strip("/ ")
        name, _, config = hub_name.partition("/")
        hub_split = "validation" if split == "dev" else split
        try:
            table = load_dataset(name, config or None, split=hub_split)
        except Exception as err:  # network errors, unknown names or splits: datasets and huggingface_hub classes
            raise DataError(f"cannot load hub data set {hub_name!r} split {hub_split!r}: {_reason(err)}") from err
        source = f"{HUB_PREFIX}{hub_name}:{hub_split}"
    columns = list(table.column_names)
    texts = _texts_from(table, columns, source)
    label_col = next((c for c in LABEL_COLUMNS if c in columns), None)
    labels = [int(v) for v in table[label_col]] if label_col else None
    data = LabeledTexts(texts, labels, source)
    log.info("read %d examples from %s", len(data), source)
    return data.subset(limit, seed=seed) if limit is not None else data


def _texts_from(table, columns: list[str], source: str) -> list:
    for a, b in PAIR_COLUMNS:
        if a in columns and b in columns:
            return [(str(x), str(y)) for x, y in zip(table[a], table[b], strict=True)]
    for c in SINGLE_COLUMNS:
        if c in columns:
            return [str(x) for x in table[c]]
    raise ValueError(f"{source}: no text column found among {columns}; expected one of {SINGLE_COLUMNS}")

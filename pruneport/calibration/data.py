"""Labeled text data for training, calibration, reports and benchmarks, read through ``datasets``.

A data spec is one of:

- a short name of the local benchmark copies, ``sst2``, ``mrpc`` or ``imdb``, found under ``$PRUNEPORT_DATA``
  (default: ``../shared/data`` beside the repository or the current folder); splits ``train`` and ``dev``
  (IMDB's ``test`` file serves as its ``dev``);
- a path to a TSV, CSV, JSON or JSON-lines file, or to a folder holding ``{split}.tsv`` / ``.csv`` / ``.json``;
- a hub dataset name (``glue/sst2`` style ``name/config``), which needs network access.

Local TSVs are read with quoting disabled and a BOM-tolerant encoding (the benchmark files contain bare ``"``
characters and MRPC starts with a BOM). Text columns are found by name: ``sentence``/``text``/``review`` for single
texts, ``#1 String``/``#2 String``, ``sentence1``/``sentence2`` or ``question``/``sentence`` for pairs; labels from
``label``/``Quality``.
"""

from __future__ import annotations

import logging
import os
import random
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

SHORT_NAMES = {"sst2": "sst2", "sst-2": "sst2", "mrpc": "mrpc", "imdb": "imdb"}
SINGLE_COLUMNS = ("sentence", "text", "review", "content")
PAIR_COLUMNS = (
    ("#1 String", "#2 String"),
    ("sentence1", "sentence2"),
    ("question", "sentence"),
    ("premise", "hypothesis"),
    ("text_a", "text_b"),
)
LABEL_COLUMNS = ("label", "Quality", "labels")


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
    """The local file for a spec and split, or None when the spec is not local."""
    short = SHORT_NAMES.get(spec.lower())
    if short:
        folder = data_root() / short
        name = "test" if (short == "imdb" and split in ("dev", "validation", "test")) else split
        name = "dev" if name == "validation" else name
        path = folder / f"{name}.tsv"
        if not path.exists():
            raise FileNotFoundError(
                f"{spec} {split}: {path} not found; set PRUNEPORT_DATA to the folder holding sst2/, mrpc/, imdb/"
            )
        return path
    path = Path(spec)
    if path.is_dir():
        for ext in (".tsv", ".csv", ".json", ".jsonl"):
            candidate = path / f"{split}{ext}"
            if candidate.exists():
                return candidate
        raise FileNotFoundError(f"{path} has no {split}.tsv/.csv/.json/.jsonl")
    if path.suffix in (".tsv", ".csv", ".json", ".jsonl") or path.exists():
        if not path.exists():
            raise FileNotFoundError(f"data file not found: {path}")
        return path
    return None


def _read_local(path: Path):
    import csv

    from datasets import load_dataset

    if path.suffix in (".json", ".jsonl"):
        return load_dataset("json", data_files=str(path), split="train")
    delimiter = "\t" if path.suffix == ".tsv" else ","
    quoting = csv.QUOTE_NONE if path.suffix == ".tsv" else csv.QUOTE_MINIMAL
    return load_dataset(
        "csv",
        data_files=str(path),
        split="train",
        delimiter=delimiter,
        quoting=quoting,
        encoding="utf-8-sig",
        keep_default_na=False,
    )


def load_texts(spec: str, split: str = "train", limit: int | None = None, seed: int = 0) -> LabeledTexts:
    """Read labeled texts from a spec (see the module docstring); ``limit`` takes a seeded random subset."""
    path = resolve_data_file(spec, split)
    if path is not None:
        table = _read_local(path)
        source = str(path)
    else:
        from datasets import load_dataset

        name, _, config = spec.partition("/")
        hub_split = "validation" if split == "dev" else split
        table = load_dataset(name, config or None, split=hub_split)
        source = f"hub:{spec}:{hub_split}"
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

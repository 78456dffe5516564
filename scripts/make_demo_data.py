#!/usr/bin/env python3
"""Regenerate the SST-2 subsets packaged for ``pruneport demo`` (pruneport/data/sst2_demo_*.tsv.gz).

Reads the local GLUE SST-2 copy (``$PRUNEPORT_DATA/sst2`` or ``../shared/data/sst2``: train.tsv, dev.tsv; see its
SOURCE.md) and writes, with the standard library only (defaults: 4,000 phrases, at least 8 words, seed 0):

- ``sst2_demo_train.tsv.gz``: ``--train-size`` distinct train phrases of at least ``--min-words`` words, drawn with
  ``random.Random(--seed)`` from the train file in file order (duplicates and any sentence also in dev removed
  first), in the drawn order;
- ``sst2_demo_dev.tsv.gz``: the held-out evaluation set: all of dev.tsv (872 full sentences), in file order
  (``--dev-size`` draws a seeded subset instead).

Source lines are copied unchanged (``sentence<TAB>label``, trailing space included) under the ``sentence\\tlabel``
header. The gzip files carry no name and mtime 0, so the same inputs and options give byte-identical outputs:

    python scripts/make_demo_data.py            # rewrites pruneport/data/sst2_demo_{train,dev}.tsv.gz
    python scripts/make_demo_data.py --check    # verifies the packaged files equal a fresh regeneration
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import os
import random
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
HEADER = "sentence\tlabel\n"


def data_root() -> Path:
    env = os.environ.get("PRUNEPORT_DATA")
    return Path(env) if env else REPO.parent / "shared" / "data"


def read_rows(path: Path) -> list[str]:
    """The data lines of a GLUE SST-2 TSV (header dropped), each checked to be ``sentence<TAB>0|1``."""
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    if not lines or lines[0] != HEADER:
        raise SystemExit(f"{path}: expected the header {HEADER!r}")
    rows = lines[1:]
    for i, line in enumerate(rows, start=2):
        parts = line.rstrip("\n").split("\t")
        if len(parts) != 2 or parts[1] not in ("0", "1"):
            raise SystemExit(f"{path}:{i}: not 'sentence<TAB>0|1': {line!r}")
    return rows


def sentence(row: str) -> str:
    return row.split("\t")[0].strip()


def gzip_bytes(rows: list[str]) -> bytes:
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, compresslevel=9, mtime=0) as f:
        f.write((HEADER + "".join(rows)).encode("utf-8"))
    return buf.getvalue()


def build(root: Path, train_size: int, min_words: int, dev_size: int | None, seed: int) -> dict[str, list[str]]:
    train_rows = read_rows(root / "sst2" / "train.tsv")
    dev_rows = read_rows(root / "sst2" / "dev.tsv")
    if dev_size is not None:
        dev_rows = random.Random(seed).sample(dev_rows, dev_size)
    dev_sentences = {sentence(r) for r in dev_rows}
    seen: set[str] = set()
    pool = []
    for row in train_rows:
        s = sentence(row)
        if s in seen or s in dev_sentences or len(s.split()) < min_words:
            continue
        seen.add(s)
        pool.append(row)
    if len(pool) < train_size:
        raise SystemExit(f"only {len(pool)} train phrases of >= {min_words} words, asked for {train_size}")
    train = random.Random(seed).sample(pool, train_size)
    assert not {sentence(r) for r in train} & dev_sentences
    return {"sst2_demo_train.tsv.gz": train, "sst2_demo_dev.tsv.gz": dev_rows}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=None, help="folder holding sst2/ (default: $PRUNEPORT_DATA)")
    ap.add_argument("--out", type=Path, default=REPO / "pruneport" / "data")
    ap.add_argument("--train-size", type=int, default=4000)
    ap.add_argument("--min-words", type=int, default=8)
    ap.add_argument("--dev-size", type=int, default=None, help="default: all of dev.tsv")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--check", action="store_true", help="compare with the files in --out instead of writing")
    args = ap.parse_args(argv)
    files = build(args.data or data_root(), args.train_size, args.min_words, args.dev_size, args.seed)
    differs = []
    for name, rows in files.items():
        blob = gzip_bytes(rows)
        target = args.out / name
        labels = [r.rstrip("\n").split("\t")[1] for r in rows]
        desc = (
            f"{name}: {len(rows)} rows ({labels.count('1')} positive), {len(blob)} bytes, "
            f"sha256 {hashlib.sha256(blob).hexdigest()}"
        )
        if args.check:
            ok = target.exists() and target.read_bytes() == blob
            differs += [] if ok else [name]
            print(("same    " if ok else "DIFFERS ") + desc)
        else:
            args.out.mkdir(parents=True, exist_ok=True)
            target.write_bytes(blob)
            print(desc)
    return 1 if differs else 0


if __name__ == "__main__":
    sys.exit(main())

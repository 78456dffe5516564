"""Tokenized, variable-length batches of real text for calibration, threshold search and reports.

Every quantizer and calibrator in pruneport reads its data through :func:`tokenized_batches`: texts come from
:func:`pruneport.calibration.data.load_texts` (``datasets``: local benchmark copies, local files or hub names) and are
tokenized with the export folder's own ``tokenizer.json`` (:class:`pruneport.runtime.text.TextEncoder`), grouped by
length and right-padded per batch (:func:`pruneport.runtime.text.pad_batch`), so each batch is as wide as its longest
row and lengths vary from batch to batch, as in production. Torch-free.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pruneport.calibration.data import LabeledTexts, load_texts
from pruneport.export.manifest import Manifest, read_tokenizer
from pruneport.runtime.text import TextEncoder, length_batches, pad_batch

log = logging.getLogger(__name__)


@dataclass
class FeedBatch:
    """One padded batch: int64 feeds [batch, seq] by input name, labels [batch] (or None), source row indices."""

    feeds: dict[str, np.ndarray]
    labels: np.ndarray | None
    rows: list[int]

    @property
    def size(self) -> int:
        """Number of examples (rows) in the batch."""
        return len(self.rows)


@dataclass
class TokenizedData:
    """Batches over ``n`` examples; ``labels`` [n] in example order (None when unlabeled)."""

    batches: list[FeedBatch]
    labels: np.ndarray | None
    lengths: np.ndarray  # real token count per example [n]
    source: str

    @property
    def n(self) -> int:
        """Number of examples."""
        return len(self.lengths)

    def __iter__(self) -> Iterator[FeedBatch]:
        return iter(self.batches)

    def fixed_length(self, width: int) -> TokenizedData:
        """Examples at least ``width`` tokens long, cut to ``width``, one per batch: every batch has one shape.

        What histogram calibrators need: they stack each tensor over batches, so every shape must repeat. Padding
        would not do: pruned graphs drop padded positions, so intermediate widths would still follow each real length.
        """
        out, lengths = [], []
        for b in self.batches:
            real = b.feeds["attention_mask"].sum(1)
            for i, row in enumerate(b.rows):
                if real[i] >= width:
                    feeds = {k: np.ascontiguousarray(v[i : i + 1, :width]) for k, v in b.feeds.items()}
                    out.append(FeedBatch(feeds, b.labels[i : i + 1] if b.labels is not None else None, [row]))
                    lengths.append(width)
        if not out:
            raise ValueError(f"no calibration example has {width} tokens or more")
        return TokenizedData(out, None, np.asarray(lengths), self.source + f" (cut to {width} tokens)")


def tokenized_batches(
    folder: str | Path,
    data: str | LabeledTexts,
    split: str = "train",
    limit: int | None = None,
    batch_size: int = 16,
    seed: int = 0,
) -> TokenizedData:
    """Read ``data`` (a spec for :func:`load_texts` or texts already read) and tokenize it for the export ``folder``.

    Args:
        folder: a pruneport export folder (its manifest gives the inputs, max length and pad id; its tokenizer is
            used).
        data: a data spec (``sst2``, a file, ``hub:NAME``) or a :class:`LabeledTexts`.
        split: the split to read when ``data`` is a spec.
        limit: take a seeded random subset of this many examples.
        batch_size: examples per batch; batches group texts of similar length.
        seed: seed of the subset.
    """
    from pruneport.validate import check_count

    check_count(batch_size, "batch_size")
    if limit is not None:
        check_count(limit, "limit")
    folder = Path(folder)
    manifest = Manifest.read(folder)
    texts = load_texts(data, split, limit=limit, seed=seed) if isinstance(data, str) else data
    if isinstance(data, LabeledTexts) and limit is not None:
        texts = texts.subset(limit, seed=seed)
    if len(texts) == 0:
        raise ValueError(f"no examples in {texts.source}")
    encoder = TextEncoder(read_tokenizer(folder, manifest), manifest.max_length, manifest.pad_token_id)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # long texts are truncated to the model's maximum, as at inference
        encoded = encoder.encode(texts.texts)
    labels = np.asarray(texts.labels, dtype=np.int64) if texts.labels is not None else None
    with_types = "token_type_ids" in manifest.inputs
    batches = []
    for rows in length_batches([len(i) for i in encoded.ids], batch_size):
        feeds = pad_batch(
            [encoded.ids[i] for i in rows], [encoded.type_ids[i] for i in rows], manifest.pad_token_id, with_types
        )
        batches.append(FeedBatch(feeds, labels[rows] if labels is not None else None, list(rows)))
    lengths = np.asarray([len(i) for i in encoded.ids], dtype=np.int64)
    log.info("%d examples in %d batches from %s", len(lengths), len(batches), texts.source)
    return TokenizedData(batches, labels, lengths, texts.source)


class OrtCalibrationReader:
    """ONNX Runtime's ``CalibrationDataReader`` protocol (``get_next``/``rewind``) over :class:`TokenizedData`."""

    def __init__(self, data: TokenizedData, input_names: list[str]) -> None:
        self.data = data
        self.input_names = input_names
        self._it = iter(data.batches)

    def get_next(self) -> dict[str, np.ndarray] | None:
        """The next batch's feeds (``input_names`` only), or None when the batches are used up."""
        batch = next(self._it, None)
        return None if batch is None else {n: batch.feeds[n] for n in self.input_names}

    def rewind(self) -> None:
        """Start again from the first batch."""
        self._it = iter(self.data.batches)

    def __len__(self) -> int:
        return len(self.data.batches)

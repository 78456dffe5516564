"""Training data: labeled texts tokenized once, then served as seeded, dynamically padded mini-batches.

Texts are read with :func:`pruneport.calibration.data.load_texts` (local SST-2/MRPC/IMDB copies, TSV/CSV/JSON files
or ``hub:`` names) and tokenized with the model's own ``tokenizer.json`` through ``tokenizers`` (truncation to
``max_length``, no padding). Batches are padded to their longest row; LTP scores do not depend on the padded width
because their denominator is the fixed ``score_norm_length``.

The batch order is a pure function of (seed, epoch), so a resumed run sees exactly the batches it would have seen.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from pruneport.calibration.data import HUB_PREFIX, SHORT_NAMES, LabeledTexts, load_texts

log = logging.getLogger(__name__)

# Label names of the local benchmark copies (GLUE / aclImdb conventions).
KNOWN_LABEL_NAMES = {
    "sst2": ["negative", "positive"],
    "imdb": ["negative", "positive"],
    "mrpc": ["not_equivalent", "equivalent"],
}


class TrainingDataError(ValueError):
    """Training data that cannot be used as given (no labels, labels out of range, empty)."""


@dataclass
class EncodedData:
    """Tokenized examples: unpadded ids and token types per example, integer labels."""

    ids: list[list[int]]
    type_ids: list[list[int]]
    labels: list[int]
    source: str = ""

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def num_labels(self) -> int:
        """The largest label plus one."""
        return max(self.labels) + 1


@dataclass
class Batch:
    """Model inputs [batch, seq] (int64), labels [batch] and the examples' positions in the data (``indices``)."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    token_type_ids: torch.Tensor | None
    labels: torch.Tensor
    indices: tuple[int, ...] = ()

    @property
    def inputs(self) -> tuple[torch.Tensor, ...]:
        """The model's positional inputs: (input_ids, attention_mask[, token_type_ids])."""
        if self.token_type_ids is None:
            return (self.input_ids, self.attention_mask)
        return (self.input_ids, self.attention_mask, self.token_type_ids)


def read_labeled(spec: str, split: str, limit: int | None = None, seed: int = 0) -> LabeledTexts:
    """Labeled texts of ``spec``/``split`` (a seeded subset of ``limit`` examples); errors if unlabeled or empty."""
    data = load_texts(spec, split, limit=limit, seed=seed)
    if data.labels is None:
        raise TrainingDataError(f"{data.source} has no label column (expected 'label', 'Quality' or 'labels')")
    if len(data) == 0:
        raise TrainingDataError(f"{data.source} holds no examples")
    if min(data.labels) < 0:
        raise TrainingDataError(f"{data.source}: labels must be integers 0..K-1, found {min(data.labels)}")
    return data


def dev_split_available(spec: str) -> bool:
    """True when ``spec`` names a data set with its own dev split (a short name, a folder or a ``hub:`` name).

    A single file has no separate dev split (asking for one would give the training file back).
    """
    if spec.lower() in SHORT_NAMES or spec.lower().startswith(HUB_PREFIX):
        return True
    path = Path(spec)
    if path.is_dir():
        return any((path / f"dev{ext}").exists() for ext in (".tsv", ".csv", ".json", ".jsonl"))
    return False


def label_names_for(spec: str, num_labels: int) -> list[str]:
    """Label names of a known data set, else ``LABEL_i``."""
    names = KNOWN_LABEL_NAMES.get(SHORT_NAMES.get(spec.lower(), ""))
    if names is not None and len(names) == num_labels:
        return list(names)
    return [f"LABEL_{i}" for i in range(num_labels)]


def encode(data: LabeledTexts, tokenizer_json: str, max_length: int) -> EncodedData:
    """Tokenize texts (strings or pairs) with truncation to ``max_length`` tokens (longest side first)."""
    from tokenizers import Tokenizer

    if max_length < 2:
        raise TrainingDataError(f"max_length must be at least 2 (CLS and SEP), got {max_length}")
    tokenizer = Tokenizer.from_str(tokenizer_json)
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_length, strategy="longest_first")
    items = [t if isinstance(t, str) else (t[0], t[1]) for t in data.texts]
    encodings = tokenizer.encode_batch(items)
    assert data.labels is not None
    return EncodedData(
        ids=[e.ids for e in encodings],
        type_ids=[e.type_ids for e in encodings],
        labels=list(data.labels),
        source=data.source,
    )


def epoch_order(n: int, seed: int, epoch: int) -> list[int]:
    """The example order of one epoch: a shuffle seeded by (seed, epoch)."""
    order = list(range(n))
    random.Random(seed * 1_000_003 + epoch).shuffle(order)
    return order


LENGTH_GROUP_BATCHES = 32
"""Batches per length group: how many consecutive shuffled batches are pooled and sorted by length."""


def length_grouped_order(lengths: Sequence[int], batch_size: int, seed: int, epoch: int) -> list[int]:
    """One epoch's order with batches of similar length (less padding), still random.

    The epoch's shuffle is cut into pools of ``LENGTH_GROUP_BATCHES`` batches; each pool is sorted by length and cut
    into batches, and the order of all batches is shuffled (seeded by seed and epoch), as HF Trainer's
    ``group_by_length`` does. The result is a permutation of ``range(len(lengths))``.
    """
    order = epoch_order(len(lengths), seed, epoch)
    pool = batch_size * LENGTH_GROUP_BATCHES
    batches: list[list[int]] = []
    for start in range(0, len(order), pool):
        chunk = sorted(order[start : start + pool], key=lambda i: lengths[i], reverse=True)
        batches.extend(chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size))
    full, partial = [b for b in batches if len(b) == batch_size], [b for b in batches if len(b) < batch_size]
    random.Random(seed * 1_000_003 + epoch + 7).shuffle(full)
    return [i for b in full + partial for i in b]


def batch_indices(n: int, batch_size: int, seed: int, step: int, lengths: Sequence[int] | None = None) -> list[int]:
    """The example indices of training step ``step`` (0-based): epochs of shuffled, full batches (the last partial
    batch of an epoch is dropped unless the data is smaller than one batch). With ``lengths``, the batches of an
    epoch group examples of similar length (:func:`length_grouped_order`)."""
    per_epoch = max(1, n // batch_size)
    epoch, offset = divmod(step, per_epoch)
    if lengths is not None:
        order = length_grouped_order(lengths, batch_size, seed, epoch)
    else:
        order = epoch_order(n, seed, epoch)
    return order[offset * batch_size : (offset + 1) * batch_size]


def collate(data: EncodedData, indices: list[int], pad_token_id: int, with_types: bool) -> Batch:
    """Right-pad the chosen examples to the longest of them."""
    width = max(len(data.ids[i]) for i in indices)
    ids = torch.full((len(indices), width), pad_token_id, dtype=torch.long)
    mask = torch.zeros((len(indices), width), dtype=torch.long)
    types = torch.zeros((len(indices), width), dtype=torch.long) if with_types else None
    for row, i in enumerate(indices):
        n = len(data.ids[i])
        ids[row, :n] = torch.tensor(data.ids[i], dtype=torch.long)
        mask[row, :n] = 1
        if types is not None:
            types[row, :n] = torch.tensor(data.type_ids[i], dtype=torch.long)
    labels = torch.tensor([data.labels[i] for i in indices], dtype=torch.long)
    return Batch(ids, mask, types, labels, tuple(indices))


def eval_batches(data: EncodedData, batch_size: int) -> list[list[int]]:
    """Indices grouped by similar length (less padding); every example exactly once."""
    order = sorted(range(len(data)), key=lambda i: len(data.ids[i]))
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]

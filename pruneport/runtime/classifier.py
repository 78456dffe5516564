"""The embeddable text classifier: an export folder in, labels, probabilities and kept tokens out."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pruneport.export.manifest import Manifest, NotAnExportError, read_tokenizer
from pruneport.runtime.session import Session, run_many
from pruneport.runtime.text import TextEncoder, TextInput, length_batches, pad_batch
from pruneport.validate import check_count

log = logging.getLogger(__name__)


@dataclass
class Predictions:
    """Results in input order: label names and ids [n], probabilities and logits [n, labels],
    tokens_per_layer [n, layers] (real tokens entering each layer's attention)."""

    labels: list[str]
    label_ids: np.ndarray
    probabilities: np.ndarray
    logits: np.ndarray
    tokens_per_layer: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)


def softmax(logits: np.ndarray) -> np.ndarray:
    """Softmax over the last axis (max-shifted for stability)."""
    z = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


class TextClassifier:
    """Runs an export folder on texts. Build it with :func:`pruneport.runtime.load`."""

    def __init__(
        self,
        folder: Path,
        manifest: Manifest,
        session: Session,
        batch_size: int = 32,
        bucket: int = 0,
        mode: str = "latency",
    ) -> None:
        self.folder = folder
        self.bucket = bucket  # > 0: input widths padded up to a multiple (masked; results unchanged)
        self.mode = mode  # "throughput": batches run concurrently (run_many)
        self.manifest = manifest
        self.session = session
        self.batch_size = check_count(batch_size, "batch_size")
        try:
            self.encoder = TextEncoder(read_tokenizer(folder, manifest), manifest.max_length, manifest.pad_token_id)
        except NotAnExportError:
            raise
        except ValueError as err:
            raise NotAnExportError(f"{folder / manifest.tokenizer_file}: {err}") from None
        self.with_types = "token_type_ids" in manifest.inputs

    def run_feeds(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run one padded batch of int64 feeds; checks shapes and the model's maximum length."""
        return self.session.run(self._checked(feeds))

    def _checked(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        missing = [n for n in self.manifest.inputs if n not in feeds]
        if missing:
            raise ValueError(f"missing inputs {missing}; the model takes {self.manifest.inputs}")
        width = feeds["input_ids"].shape[1]
        if width > self.manifest.max_length:
            raise ValueError(f"sequence length {width} exceeds the model's maximum {self.manifest.max_length}")
        if width == 0:
            raise ValueError("empty input: sequence length 0")
        return {n: np.ascontiguousarray(feeds[n], dtype=np.int64) for n in self.manifest.inputs}

    def predict(
        self, texts: TextInput | Sequence[TextInput], batch_size: int | None = None, truncate: bool = True
    ) -> Predictions:
        """Classify texts (a string, a (text, text) pair, or a list of either).

        Texts are tokenized, truncated to the model's maximum (with a warning; ``truncate=False`` raises
        TextTooLongError instead), grouped into batches of similar length and run.
        """
        if isinstance(texts, str) or (isinstance(texts, tuple) and len(texts) == 2 and isinstance(texts[0], str)):
            texts = [texts]
        texts = list(texts)
        if not texts:
            raise ValueError("no texts given")
        encoded = self.encoder.encode(texts, truncate=truncate)
        n, layers = len(texts), self.manifest.num_layers
        logits = np.zeros((n, len(self.manifest.label_names)), dtype=np.float32)
        tokens = np.zeros((n, layers), dtype=np.int64)
        size = self.batch_size if batch_size is None else check_count(batch_size, "batch_size")
        batches = length_batches([len(i) for i in encoded.ids], size)
        all_feeds = [
            pad_batch(
                [encoded.ids[i] for i in batch],
                [encoded.type_ids[i] for i in batch],
                self.manifest.pad_token_id,
                self.with_types,
                self.bucket,
                self.manifest.max_length,
            )
            for batch in batches
        ]
        if self.mode == "throughput":
            outs = run_many(self.session, [self._checked(feeds) for feeds in all_feeds])
        else:
            outs = [self.run_feeds(feeds) for feeds in all_feeds]
        for batch, out in zip(batches, outs, strict=True):
            logits[batch] = out["logits"]
            tokens[batch] = out["tokens_per_layer"]
        ids = logits.argmax(-1)
        return Predictions(
            labels=[self.manifest.label_names[i] for i in ids],
            label_ids=ids,
            probabilities=softmax(logits),
            logits=logits,
            tokens_per_layer=tokens,
        )

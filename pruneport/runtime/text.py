"""Turning texts into right-padded int64 feeds with the export's tokenizer (the ``tokenizers`` library)."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from tokenizers import Encoding, Tokenizer

log = logging.getLogger(__name__)

TextInput = str | tuple[str, str]


class TextTooLongError(ValueError):
    """A text longer than the model's positions while truncation is off."""


class InvalidTextError(ValueError):
    """A text that is not valid Unicode: it holds a lone surrogate (undecodable bytes, e.g. non-UTF-8 input)."""


@dataclass
class EncodedTexts:
    """Token ids of a list of texts, unpadded, in input order."""

    ids: list[list[int]]
    type_ids: list[list[int]]
    truncated: list[int]  # indices of texts that were cut


class TextEncoder:
    """Tokenizes single texts or (text, text) pairs, truncating to ``max_length`` with a warning (or an error)."""

    def __init__(self, tokenizer_json: str, max_length: int, pad_token_id: int) -> None:
        try:
            self.tokenizer = Tokenizer.from_str(tokenizer_json)
        except Exception as err:  # the tokenizers library raises its own exception types
            reason = (str(err).splitlines() or [type(err).__name__])[0]
            raise ValueError(f"the tokenizer cannot be read by the tokenizers library: {reason}") from None
        self.tokenizer.no_padding()
        self.tokenizer.no_truncation()
        self.max_length = max_length
        self.pad_token_id = pad_token_id

    def encode(self, texts: Sequence[TextInput], truncate: bool = True) -> EncodedTexts:
        """Tokenize texts or (text, text) pairs; longer than ``max_length`` they are truncated with one warning,
        or raise TextTooLongError when ``truncate`` is False. Empty texts raise ValueError."""
        items = [_check_text(t, i) for i, t in enumerate(texts)]
        encodings = self.tokenizer.encode_batch(items)
        too_long = [i for i, e in enumerate(encodings) if len(e.ids) > self.max_length]
        if too_long and not truncate:
            first = too_long[0]
            raise TextTooLongError(
                f"text {first} has {len(encodings[first].ids)} tokens, more than the model's maximum "
                f"{self.max_length} ({len(too_long)} such texts); shorten it or allow truncation"
            )
        if too_long:
            message = (
                f"{len(too_long)} text(s) longer than the model's maximum of {self.max_length} tokens were truncated "
                f"(first: text {too_long[0]})"
            )
            warnings.warn(message, stacklevel=3)  # once: a warning, not also a log line (the CLI shows it as one line)
            self.tokenizer.enable_truncation(self.max_length, strategy="longest_first")
            try:
                for i in too_long:
                    encodings[i] = self.tokenizer.encode(*_as_args(items[i]))
            finally:
                self.tokenizer.no_truncation()
        return EncodedTexts(
            ids=[e.ids for e in encodings], type_ids=[e.type_ids for e in encodings], truncated=too_long
        )


def _check_text(text: object, index: int) -> TextInput:
    if isinstance(text, str):
        if not text.strip():
            raise ValueError(f"text {index} is empty")
        return check_unicode(text, f"text {index}")
    if isinstance(text, (tuple, list)) and len(text) == 2 and all(isinstance(t, str) for t in text):
        if not text[0].strip() or not text[1].strip():
            raise ValueError(f"text pair {index} has an empty side")
        return (check_unicode(text[0], f"text pair {index}"), check_unicode(text[1], f"text pair {index}"))
    raise TypeError(f"input {index} must be a string or a pair of strings, not {type(text).__name__}")


def check_unicode(text: str, what: str) -> str:
    """``text`` unchanged if it is valid Unicode; InvalidTextError for a lone surrogate (``tokenizers`` and any
    UTF-8 writer would fail on it: Python holds undecodable command-line bytes as such surrogates)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as err:
        char = text[err.start]
        raw = f" (byte 0x{ord(char) - 0xDC00:02x})" if 0xDC80 <= ord(char) <= 0xDCFF else ""
        raise InvalidTextError(
            f"{what} is not valid Unicode: lone surrogate {char!r} at position {err.start}{raw}; give UTF-8 text"
        ) from None
    return text


def _as_args(item: TextInput) -> tuple[str, ...]:
    return (item,) if isinstance(item, str) else item


def pad_batch(
    ids: Sequence[Sequence[int]],
    type_ids: Sequence[Sequence[int]],
    pad_token_id: int,
    with_types: bool,
    multiple: int = 0,
    max_width: int = 0,
) -> dict[str, np.ndarray]:
    """Right-pad rows to the longest one: input_ids, attention_mask (and token_type_ids), int64 [batch, seq].

    multiple > 0 pads the width further up to a multiple of it (never above ``max_width`` when that is > 0), so a
    runtime that compiles per shape (OpenVINO) sees few distinct widths; padding is masked, results do not change.
    """
    width = max(len(r) for r in ids)
    if multiple > 0:
        rounded = -(-width // multiple) * multiple
        width = max(width, min(rounded, max_width)) if max_width > 0 else rounded
    feeds = {
        "input_ids": np.full((len(ids), width), pad_token_id, dtype=np.int64),
        "attention_mask": np.zeros((len(ids), width), dtype=np.int64),
    }
    if with_types:
        feeds["token_type_ids"] = np.zeros((len(ids), width), dtype=np.int64)
    for r, row in enumerate(ids):
        feeds["input_ids"][r, : len(row)] = row
        feeds["attention_mask"][r, : len(row)] = 1
        if with_types:
            feeds["token_type_ids"][r, : len(row)] = type_ids[r]
    return feeds


def length_batches(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Indices grouped into batches of similar length (sorted by length), so padding stays small."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


__all__ = [
    "EncodedTexts",
    "Encoding",
    "InvalidTextError",
    "TextEncoder",
    "TextTooLongError",
    "check_unicode",
    "length_batches",
    "pad_batch",
]

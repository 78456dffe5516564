"""Plain-Python reference tokenizers, independent of ``tokenizers`` and transformers, for the tokenizer tests.

- :class:`ReferenceWordPiece`: the algorithm of Google's original BERT ``tokenization.py`` (BasicTokenizer: clean
  text, CJK spacing, lower case + accent stripping, punctuation split; then greedy longest-match-first WordPiece),
  with special tokens matched whole in the raw text first, as transformers does.
- :class:`ReferenceByteLevelBPE`: the algorithm of OpenAI's GPT-2 ``encoder.py`` (bytes-to-unicode, the GPT-2
  pre-tokenization regex, rank-ordered BPE merges), with RoBERTa's ``<s> A </s>`` / ``<s> A </s></s> B </s>``.
"""

from __future__ import annotations

import unicodedata
from collections import Counter
from functools import lru_cache

import regex


def _is_whitespace(ch: str) -> bool:
    return ch in " \t\n\r" or unicodedata.category(ch) == "Zs"


def _is_control(ch: str) -> bool:
    return ch not in "\t\n\r" and unicodedata.category(ch).startswith("C")


def _is_punctuation(ch: str) -> bool:
    cp = ord(ch)
    if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
        return True
    return unicodedata.category(ch).startswith("P")


def _is_cjk(cp: int) -> bool:
    return (
        0x4E00 <= cp <= 0x9FFF
        or 0x3400 <= cp <= 0x4DBF
        or 0x20000 <= cp <= 0x2A6DF
        or 0x2A700 <= cp <= 0x2B73F
        or 0x2B740 <= cp <= 0x2B81F
        or 0x2B820 <= cp <= 0x2CEAF
        or 0xF900 <= cp <= 0xFAFF
        or 0x2F800 <= cp <= 0x2FA1F
    )


class ReferenceWordPiece:
    """BERT tokenization as in the original implementation; ids from ``vocab`` (token -> id)."""

    def __init__(
        self,
        vocab: dict[str, int],
        lowercase: bool = True,
        strip_accents: bool | None = None,
        specials: tuple[str, ...] = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"),
    ) -> None:
        self.vocab = vocab
        self.lowercase = lowercase
        self.strip_accents = lowercase if strip_accents is None else strip_accents
        self.specials = [s for s in specials if s in vocab]

    def tokens(self, text: str) -> list[str]:
        out: list[str] = []
        for piece, special in _split_specials(text, self.specials):
            out.extend([piece] if special else self._basic_then_wordpiece(piece))
        return out

    def encode(self, text: str, pair: str | None = None) -> tuple[list[int], list[int]]:
        """(ids, token type ids) with [CLS] A [SEP] (B [SEP])."""
        a = [self.vocab[t] for t in self.tokens(text)]
        cls, sep = self.vocab["[CLS]"], self.vocab["[SEP]"]
        if pair is None:
            return [cls, *a, sep], [0] * (len(a) + 2)
        b = [self.vocab[t] for t in self.tokens(pair)]
        return [cls, *a, sep, *b, sep], [0] * (len(a) + 2) + [1] * (len(b) + 1)

    def _basic_then_wordpiece(self, text: str) -> list[str]:
        text = "".join(
            " " if _is_whitespace(c) else c for c in text if ord(c) not in (0, 0xFFFD) and not _is_control(c)
        )
        text = "".join(f" {c} " if _is_cjk(ord(c)) else c for c in text)
        words: list[str] = []
        for word in text.split():
            if self.lowercase:
                word = word.lower()
            if self.strip_accents:
                word = "".join(c for c in unicodedata.normalize("NFD", word) if unicodedata.category(c) != "Mn")
            current = ""
            for c in word:
                if _is_punctuation(c):
                    if current:
                        words.append(current)
                    words.append(c)
                    current = ""
                else:
                    current += c
            if current:
                words.append(current)
        return [piece for w in words for piece in self._wordpiece(w)]

    def _wordpiece(self, word: str) -> list[str]:
        if len(word) > 100:
            return ["[UNK]"]
        pieces, start = [], 0
        while start < len(word):
            end = len(word)
            found = None
            while start < end:
                candidate = word[start:end] if start == 0 else "##" + word[start:end]
                if candidate in self.vocab:
                    found = candidate
                    break
                end -= 1
            if found is None:
                return ["[UNK]"]
            pieces.append(found)
            start = end
        return pieces


@lru_cache(maxsize=1)
def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible map from bytes to printable unicode characters."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs), strict=True))


GPT2_PATTERN = regex.compile(r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+""")


def byte_words(text: str) -> list[str]:
    """Pre-tokenized words of ``text`` in GPT-2's byte alphabet."""
    table = bytes_to_unicode()
    return ["".join(table[b] for b in w.encode("utf-8")) for w in GPT2_PATTERN.findall(text)]


def train_merges(corpus: list[str], count: int) -> list[tuple[str, str]]:
    """A tiny BPE merge list learned from ``corpus`` (most frequent pair first, ties broken by the pair)."""
    words = Counter(tuple(w) for text in corpus for w in byte_words(text))
    merges: list[tuple[str, str]] = []
    for _ in range(count):
        pairs: Counter = Counter()
        for word, freq in words.items():
            for pair in zip(word, word[1:], strict=False):
                pairs[pair] += freq
        if not pairs:
            break
        best = min(pairs, key=lambda p: (-pairs[p], p))
        merges.append(best)
        merged: Counter = Counter()
        for word, freq in words.items():
            merged[_merge_pair(word, best)] += freq
        words = merged
    return merges


def _merge_pair(word: tuple[str, ...], pair: tuple[str, str]) -> tuple[str, ...]:
    out, i = [], 0
    while i < len(word):
        if i < len(word) - 1 and (word[i], word[i + 1]) == pair:
            out.append(word[i] + word[i + 1])
            i += 2
        else:
            out.append(word[i])
            i += 1
    return tuple(out)


class ReferenceByteLevelBPE:
    """RoBERTa tokenization as GPT-2's encoder.py does it; ids from ``vocab``."""

    def __init__(self, vocab: dict[str, int], merges: list[tuple[str, str]]) -> None:
        self.vocab = vocab
        self.ranks = {pair: i for i, pair in enumerate(merges)}

    def _bpe(self, word: str) -> list[str]:
        parts = tuple(word)
        while len(parts) > 1:
            pairs = set(zip(parts, parts[1:], strict=False))
            best = min(pairs, key=lambda p: self.ranks.get(p, float("inf")))
            if best not in self.ranks:
                break
            parts = _merge_pair(parts, best)
        return list(parts)

    def tokens(self, text: str) -> list[str]:
        return [piece for w in byte_words(text) for piece in self._bpe(w)]

    def encode(self, text: str, pair: str | None = None) -> list[int]:
        a = [self.vocab[t] for t in self.tokens(text)]
        bos, eos = self.vocab["<s>"], self.vocab["</s>"]
        if pair is None:
            return [bos, *a, eos]
        b = [self.vocab[t] for t in self.tokens(pair)]
        return [bos, *a, eos, eos, *b, eos]


def _split_specials(text: str, specials: list[str]) -> list[tuple[str, bool]]:
    """``text`` cut at whole occurrences of special tokens: [(piece, is_special)]."""
    if not specials:
        return [(text, False)]
    pattern = regex.compile("|".join(regex.escape(s) for s in sorted(specials, key=len, reverse=True)))
    out, last = [], 0
    for m in pattern.finditer(text):
        if m.start() > last:
            out.append((text[last : m.start()], False))
        out.append((m.group(), True))
        last = m.end()
    if last < len(text):
        out.append((text[last:], False))
    return out

"""tokenizer.json for a checkpoint folder: taken as it is, or built from vocab files with ``tokenizers`` directly.

Older BERT-family checkpoints (TR-BERT, Transkimmer, AdapLeR) ship only ``vocab.txt``; RoBERTa ones (upstream LTP's
``save_pretrained`` folders) ship ``vocab.json`` + ``merges.txt``. Converting them through transformers'
``BertTokenizerFast(vocab_file=...)`` silently stopped working in transformers 5 (the files are ignored and the result
holds 5 tokens), so the pipelines are assembled here from ``tokenizers`` components, the way transformers'
``convert_slow_tokenizer`` (BertConverter, RobertaConverter) assembles them:

- WordPiece: ``BertNormalizer`` (``do_lower_case``, ``strip_accents``, ``tokenize_chinese_chars`` from
  tokenizer_config.json, BERT's defaults otherwise), ``BertPreTokenizer``, ``[CLS] $A [SEP]`` / ``[CLS] $A [SEP] $B
  [SEP]`` with token types 0/1;
- byte-level BPE: ``ByteLevel`` pre-tokenizer (``add_prefix_space`` from the config, default off), ``<s> $A </s>`` /
  ``<s> $A </s></s> $B </s>`` (``RobertaProcessing``).

Special tokens are named by tokenizer_config.json / special_tokens_map.json (the usual names otherwise) and their ids
are looked up in the vocabulary, never assumed from position. A folder whose files do not make a usable tokenizer
(a special token missing from the vocabulary, a vocabulary of special tokens only, ids beyond the model's embedding
table, an unreadable file) is refused with :class:`TokenizerFilesError`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tokenizers import AddedToken, Tokenizer, decoders, normalizers, pre_tokenizers, processors
from tokenizers.models import BPE, WordPiece


class TokenizerFilesError(ValueError):
    """Tokenizer files that cannot be turned into a tokenizer that maps text to the model's vocabulary."""


BERT_SPECIALS = {
    "unk_token": "[UNK]",
    "sep_token": "[SEP]",
    "pad_token": "[PAD]",
    "cls_token": "[CLS]",
    "mask_token": "[MASK]",
}
ROBERTA_SPECIALS = {
    "bos_token": "<s>",
    "eos_token": "</s>",
    "unk_token": "<unk>",
    "sep_token": "</s>",
    "pad_token": "<pad>",
    "cls_token": "<s>",
    "mask_token": "<mask>",
}


def tokenizer_json_from_folder(folder: Path, vocab_size: int | None = None) -> str:
    """The tokenizer.json text for a HF folder: its tokenizer.json, else one built from vocab.txt or vocab.json +
    merges.txt. ``vocab_size`` (the model's embedding rows), when given, bounds every id the tokenizer can emit."""
    folder = Path(folder)
    tj = folder / "tokenizer.json"
    if tj.exists():
        text = _read_text(tj)
        try:
            tokenizer = Tokenizer.from_str(text)
        except Exception as err:  # tokenizers raises a bare Exception for malformed JSON
            raise TokenizerFilesError(f"{tj} is not a valid tokenizer.json: {_one_line(err)}") from None
    elif (folder / "vocab.txt").exists():
        tokenizer = wordpiece_tokenizer(folder / "vocab.txt", _tokenizer_config(folder))
    elif (folder / "vocab.json").exists() and (folder / "merges.txt").exists():
        tokenizer = byte_level_bpe_tokenizer(folder / "vocab.json", folder / "merges.txt", _tokenizer_config(folder))
    else:
        raise TokenizerFilesError(
            f"{folder} has no tokenizer files (tokenizer.json, vocab.txt, or vocab.json + merges.txt)"
        )
    check_vocab_fits(tokenizer, vocab_size, str(folder))
    return tokenizer.to_str()


def wordpiece_tokenizer(vocab_path: Path, config: dict[str, Any] | None = None) -> Tokenizer:
    """BERT's WordPiece tokenizer from ``vocab.txt`` (one token per line, id = line number)."""
    config = config or {}
    lines = _read_text(vocab_path).replace("\r\n", "\n").split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # the final newline
    # As BERT's load_vocab: id = line number, split on newlines only, a repeated token keeps its last line.
    vocab = {token: i for i, token in enumerate(lines)}
    specials = _special_tokens(config, BERT_SPECIALS)
    ids = _special_ids(vocab, specials, ("unk_token", "cls_token", "sep_token"), vocab_path)
    lowercase = bool(config.get("do_lower_case", True))
    strip_accents = config.get("strip_accents")
    tokenizer = Tokenizer(WordPiece(vocab, unk_token=specials["unk_token"], max_input_chars_per_word=100))
    tokenizer.normalizer = normalizers.BertNormalizer(
        clean_text=True,
        handle_chinese_chars=bool(config.get("tokenize_chinese_chars", True)),
        strip_accents=None if strip_accents is None else bool(strip_accents),
        lowercase=lowercase,
    )
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    cls, sep = specials["cls_token"], specials["sep_token"]
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{cls}:0 $A:0 {sep}:0",
        pair=f"{cls}:0 $A:0 {sep}:0 $B:1 {sep}:1",
        special_tokens=[(cls, ids["cls_token"]), (sep, ids["sep_token"])],
    )
    tokenizer.decoder = decoders.WordPiece(prefix="##")
    _add_specials(tokenizer, specials, vocab, lstrip=())
    return tokenizer


def byte_level_bpe_tokenizer(vocab_path: Path, merges_path: Path, config: dict[str, Any] | None = None) -> Tokenizer:
    """RoBERTa's byte-level BPE tokenizer from ``vocab.json`` and ``merges.txt``."""
    config = config or {}
    try:
        vocab, merges = BPE.read_file(str(vocab_path), str(merges_path))
    except Exception as err:  # tokenizers reports malformed files with a bare Exception
        raise TokenizerFilesError(f"cannot read {vocab_path} / {merges_path}: {_one_line(err)}") from None
    specials = _special_tokens(config, ROBERTA_SPECIALS)
    ids = _special_ids(vocab, specials, ("cls_token", "sep_token"), vocab_path)
    add_prefix_space = bool(config.get("add_prefix_space", False))
    tokenizer = Tokenizer(
        BPE(vocab, merges, dropout=None, continuing_subword_prefix="", end_of_word_suffix="", fuse_unk=False)
    )
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=add_prefix_space)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.post_processor = processors.RobertaProcessing(
        (specials["sep_token"], ids["sep_token"]),
        (specials["cls_token"], ids["cls_token"]),
        add_prefix_space=add_prefix_space,
        trim_offsets=bool(config.get("trim_offsets", True)),
    )
    _add_specials(tokenizer, specials, vocab, lstrip=("mask_token",))
    return tokenizer


def check_vocab_fits(tokenizer: Tokenizer, vocab_size: int | None, source: str) -> None:
    """Refuse a tokenizer that can only map text to special tokens, or emits ids past the embedding table."""
    vocab = tokenizer.get_vocab(with_added_tokens=True)
    specials = {t.content for t in tokenizer.get_added_tokens_decoder().values() if t.special}
    if len(set(vocab) - specials) == 0:
        raise TokenizerFilesError(f"{source}: the tokenizer's vocabulary holds only special tokens ({len(vocab)})")
    if vocab_size is not None and vocab and max(vocab.values()) >= vocab_size:
        raise TokenizerFilesError(
            f"{source}: the tokenizer has ids up to {max(vocab.values())}, but the model's embedding table has "
            f"{vocab_size} rows; tokenizer and weights do not belong together"
        )


def _special_tokens(config: dict[str, Any], defaults: dict[str, str]) -> dict[str, str]:
    """Special-token strings named by the config (plain strings or AddedToken dicts), else the defaults."""
    named = {}
    for key, default in defaults.items():
        value = config.get(key, default)
        if isinstance(value, dict):
            value = value.get("content", default)
        named[key] = value if isinstance(value, str) and value else default
    return named


def _special_ids(vocab: dict[str, int], specials: dict[str, str], required: tuple[str, ...], source: Path) -> dict:
    absent = [f"{key} {specials[key]!r}" for key in required if specials[key] not in vocab]
    if absent:
        raise TokenizerFilesError(f"{source}: the vocabulary lacks the special tokens {', '.join(absent)}")
    return {key: vocab[token] for key, token in specials.items() if token in vocab}


def _add_specials(tokenizer: Tokenizer, specials: dict[str, str], vocab: dict[str, int], lstrip: tuple) -> None:
    """Register the special tokens that are in the vocabulary, so they are matched whole in text (as HF does)."""
    seen: set[str] = set()
    tokens = []
    for key, token in specials.items():
        if token in vocab and token not in seen:
            seen.add(token)
            tokens.append(AddedToken(token, special=True, normalized=False, lstrip=key in lstrip))
    tokenizer.add_special_tokens(tokens)


def _tokenizer_config(folder: Path) -> dict[str, Any]:
    """tokenizer_config.json merged over special_tokens_map.json (either may be absent)."""
    config: dict[str, Any] = {}
    for name in ("special_tokens_map.json", "tokenizer_config.json"):
        path = folder / name
        if path.is_file():
            try:
                data = json.loads(_read_text(path))
            except json.JSONDecodeError as err:
                raise TokenizerFilesError(f"{path} is not valid JSON: {err}") from None
            if not isinstance(data, dict):
                raise TokenizerFilesError(f"{path} must hold a JSON object, not {type(data).__name__}")
            config.update(data)
    return config


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except IsADirectoryError:
        raise TokenizerFilesError(f"{path} is a directory, not a tokenizer file") from None
    except UnicodeDecodeError as err:
        raise TokenizerFilesError(f"{path} is not UTF-8 text: {err}") from None
    except OSError as err:
        raise TokenizerFilesError(f"cannot read {path}: {err.strerror or err}") from None


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split())

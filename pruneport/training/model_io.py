"""Models to train and models trained: reading a backbone or fine-tuned model, writing pruneport's ``model.pt``.

Every model here is a :class:`~pruneport.methods.pruned_encoder.PrunedSequenceClassifier` with an
:class:`~pruneport.methods.ltp.model.LTPPruner`. A fine-tuned, unpruned model is an LTP model whose thresholds are all 0
(no prune op at any layer), so ``pruneport export`` takes it as the unpruned baseline.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import torch

from pruneport.methods import checkpoint as ck
from pruneport.methods.backbone import BackboneConfig
from pruneport.methods.ltp.model import DEFAULT_SCORE_NORM_LENGTH, LTPParams, build

log = logging.getLogger(__name__)


def _head_init(model: torch.nn.Module, names: list[str], seed: int) -> None:
    """HF's initialisation (normal std 0.02, zero bias) for head parameters the checkpoint does not have."""
    gen = torch.Generator().manual_seed(seed)
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name in names:
            p = params[name]
            if name.endswith("bias"):
                p.zero_()
            else:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.02)


def _with_labels(config: dict[str, Any], label_names: list[str]) -> dict[str, Any]:
    config = dict(config)
    config["num_labels"] = len(label_names)
    config["id2label"] = {str(i): name for i, name in enumerate(label_names)}
    config["label2id"] = {name: i for i, name in enumerate(label_names)}
    return config


def load_for_training(
    path: str | Path,
    label_names: list[str] | None = None,
    score_norm_length: int = DEFAULT_SCORE_NORM_LENGTH,
    trust_pickle: bool = False,
    seed: int = 0,
) -> ck.LoadedModel:
    """An unpruned LTP classifier (all thresholds 0) holding the weights of ``path``.

    path: pruneport ``model.pt`` (its thresholds are dropped; its head is kept) or a HF folder: a bare encoder such
    as MiniLM's ``BertModel`` (the head is initialised) or a fine-tuned ``*ForSequenceClassification``.
    label_names: the labels to train; a stored head with another number of labels is an error.
    """
    p = ck.require_path(path, "model")
    if p.is_dir():
        config = ck.read_json(p / "config.json")
        state = ck.read_state_dict(p, trust_pickle)
        tokenizer_json = ck.tokenizer_json_from_folder(p, vocab_size=config.get("vocab_size"))
        cfg0 = BackboneConfig.from_hf_dict(config)
        mapped, leftover = ck.map_hf_state(state, cfg0)
        stored_labels = (
            ck.label_names_from_config(config, cfg0.num_labels) if "classifier.out_proj.weight" in mapped else None
        )
    else:
        payload = ck.read_model_pt(p, trust_pickle)
        config = payload["backbone_config"]
        mapped, leftover = dict(payload["state_dict"]), []
        tokenizer_json = payload["tokenizer"]
        stored_labels = list(payload.get("label_names") or ck.label_names_from_config(config, 2))
    if stored_labels is not None:
        if label_names is not None and len(label_names) != len(stored_labels):
            raise ValueError(
                f"{p} has a classifier for {len(stored_labels)} labels but the data has {len(label_names)}; "
                "train from the backbone instead"
            )
        label_names = label_names if label_names is not None else stored_labels
    if label_names is None:
        raise ValueError(f"{p} has no classifier head: say how many labels to train (give training data)")
    config = _with_labels(config, label_names)
    cfg = BackboneConfig.from_hf_dict(config)
    params = LTPParams(tuple(0.0 for _ in range(cfg.num_hidden_layers)), score_norm_length)
    model = build(cfg, params.to_dict())
    missing_head = ck.load_into(model, mapped, leftover, str(p), optional=lambda k: k.startswith("classifier."))
    if missing_head:
        log.info("initialising head parameters absent from %s: %s", p, ", ".join(missing_head))
        _head_init(model, missing_head, seed)
    return ck.LoadedModel(
        model=model,
        method="ltp",
        backbone=config,
        pruning=params.to_dict(),
        tokenizer_json=tokenizer_json,
        label_names=list(label_names),
        max_length=cfg.max_tokens,
        source=str(p),
    )


def with_thresholds(loaded: ck.LoadedModel, thresholds: list[float], score_norm_length: int) -> ck.LoadedModel:
    """A hard-pruning LTP model with the given effective thresholds and ``loaded``'s weights (copied)."""
    values = tuple(max(0.0, float(t)) for t in thresholds)
    if not all(math.isfinite(v) for v in values):
        raise ValueError(f"thresholds must be finite, got {values}")
    params = LTPParams(values, score_norm_length)
    cfg = BackboneConfig.from_hf_dict(loaded.backbone)
    model = build(cfg, params.to_dict())
    model.load_state_dict(loaded.model.state_dict())
    return ck.LoadedModel(
        model=model,
        method="ltp",
        backbone=loaded.backbone,
        pruning=params.to_dict(),
        tokenizer_json=loaded.tokenizer_json,
        label_names=list(loaded.label_names),
        max_length=loaded.max_length,
        source=loaded.source,
        notes=list(loaded.notes),
    )

"""A pruning method's model made from a fine-tuned, unpruned classifier: the starting point of its trainer.

The backbone and head weights are copied from the fine-tuned model; the method's own parameters (skim predictors,
policy networks, contribution predictors; Pyramid-BERT has none) are initialised, seeded, the way the method's
upstream code does (:data:`INITIALISERS`), or with BERT's initialisation (normal std 0.02, zero biases, LayerNorm
ones and zeros) where upstream has nothing special.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import torch

from pruneport.methods import get_method
from pruneport.methods.backbone import BackboneConfig
from pruneport.methods.checkpoint import LoadedModel

log = logging.getLogger(__name__)

TRANSKIMMER_KEEP_BIAS = 5.0  # upstream ``init_skim_predictor(mean_bias=5.0)``: every token kept at the start


def bert_init(module: torch.nn.Module, gen: torch.Generator) -> None:
    """HF BERT's ``_init_weights``: Linear normal(0, 0.02) with zero bias, LayerNorm weight 1 and bias 0."""
    with torch.no_grad():
        for sub in module.modules():
            if isinstance(sub, torch.nn.Linear):
                sub.weight.copy_(torch.randn(sub.weight.shape, generator=gen) * 0.02)
                if sub.bias is not None:
                    sub.bias.zero_()
            elif isinstance(sub, torch.nn.LayerNorm):
                sub.weight.fill_(1.0)
                sub.bias.zero_()


def transkimmer_init(pruner: torch.nn.Module, gen: torch.Generator, keep_bias: float = TRANSKIMMER_KEEP_BIAS) -> None:
    """BERT init, then upstream's ``init_skim_predictor`` on each predictor's last Linear: bias ~ N(+-keep_bias,
    0.02) so that every token starts kept (index 1 = keep), weight ~ N(0, 0.02)."""
    bert_init(pruner, gen)
    with torch.no_grad():
        for predictor in pruner.skim_predictors:
            last = predictor.predictor[-1]
            noise = torch.randn(2, generator=gen) * 0.02
            last.bias.copy_(torch.tensor([-keep_bias, keep_bias]) + noise)


INITIALISERS: dict[str, Callable[[torch.nn.Module, torch.Generator], None]] = {"transkimmer": transkimmer_init}


def method_model(
    finetuned: LoadedModel,
    method: str,
    pruning: dict[str, Any],
    seed: int = 0,
    init: Callable[[torch.nn.Module, torch.Generator], None] | None = None,
) -> LoadedModel:
    """``method``'s classifier with ``pruning`` parameters, ``finetuned``'s backbone and head, fresh method weights.

    init: how to initialise the pruner's parameters (default: :data:`INITIALISERS` of the method, else BERT's).

    Raises ValueError when the fine-tuned weights do not fill the new model's backbone (a different architecture).
    """
    cfg = BackboneConfig.from_hf_dict(finetuned.backbone)
    model = get_method(method).build(cfg, pruning)
    state = {k: v for k, v in finetuned.model.state_dict().items() if not k.startswith("pruner.")}
    result = model.load_state_dict(state, strict=False)
    missing = [k for k in result.missing_keys if not k.startswith("pruner.")]
    if missing or result.unexpected_keys:
        raise ValueError(
            f"the fine-tuned model's weights do not fit a {method} model: missing {missing}, "
            f"unexpected {result.unexpected_keys}"
        )
    gen = torch.Generator().manual_seed(seed)
    (init or INITIALISERS.get(method, bert_init))(model.pruner, gen)
    if result.missing_keys:
        log.info("initialised %d %s parameters (seed %d)", len(result.missing_keys), method, seed)
    return LoadedModel(
        model=model,
        method=method,
        backbone=finetuned.backbone,
        pruning=dict(pruning),
        tokenizer_json=finetuned.tokenizer_json,
        label_names=list(finetuned.label_names),
        max_length=finetuned.max_length,
        source=finetuned.source,
        notes=list(finetuned.notes),
    )

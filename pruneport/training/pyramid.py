"""Pyramid-BERT training (Huang et al., ACL'22): fine-tuning with core-set selection on the length schedule.

Pyramid-BERT adds no parameters: the fine-tuned model is fine-tuned again with the greedy k-center selection of
:class:`~pruneport.methods.pyramid.model.PyramidPruner` in its forward pass, so the later layers adapt to the shortened,
core-set sequences they will see at inference. Gradients flow through the gathers of the kept tokens (the selection
itself is discrete); the trained module is the one saved and exported.

The keep ratio p comes either from the user or from a search for a FLOPs target (like ``pruneport calibrate``):
:func:`keep_ratio_for_flops` bisects p so that the schedule's FLOPs on the training lengths, relative to the
unpruned model, are at most the target. Relative FLOPs only depend on the lengths and the schedule (Pyramid's token
counts are fixed by eq. 5), so the search needs no forward pass.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from pruneport.flops import relative_flops
from pruneport.methods.checkpoint import LoadedModel
from pruneport.methods.pyramid.model import DISTANCES, PyramidParams
from pruneport.training.data import EncodedData
from pruneport.training.method_model import method_model
from pruneport.training.results import (
    TrainingOptions,
    TrainOutcome,
    cross_entropy_step,
    finish,
    maybe_eval,
    phase_steps,
    run_phase,
    weight_groups,
)

log = logging.getLogger(__name__)

PHASES = ("pyramid",)


@dataclass
class PyramidOptions(TrainingOptions):
    """keep_ratio: p of eq. 5 (None: searched for ``flops_target``); flops_target: relative FLOPs to reach (0.5 =
    2x fewer); prune_upto, m, distance: the schedule (paper: the ratio reached by layer ``prune_upto``; m = 1 is the
    exact greedy of Algorithm 1)."""

    keep_ratio: float | None = None
    flops_target: float = 0.5
    prune_upto: int = 3
    m: int | str = 1
    distance: str = "euclidean"
    epochs: float = 2.0
    steps: int | None = None
    lr: float = 2e-5

    def __post_init__(self) -> None:
        if not 0.0 < self.flops_target <= 1.0:
            raise ValueError(f"FLOPs target must be in (0, 1], got {self.flops_target}")
        if self.distance not in DISTANCES:
            raise ValueError(f"distance must be one of {DISTANCES}, got {self.distance!r}")


def schedule_tokens(params: PyramidParams, lengths: np.ndarray, num_layers: int) -> np.ndarray:
    """tokens_per_layer [n, layers] of the schedule for real lengths ``lengths`` (what the model reports)."""
    prune_layers = min(params.prune_upto, num_layers - 1)
    return np.array(
        [[params.length(int(n), min(j, prune_layers)) for j in range(num_layers)] for n in lengths], dtype=np.int64
    )


def keep_ratio_for_flops(
    backbone: dict, lengths: np.ndarray, target: float, prune_upto: int, iterations: int = 40
) -> tuple[float, float]:
    """The largest keep ratio whose schedule costs at most ``target`` of the unpruned FLOPs on ``lengths``.

    Returns (keep ratio, its relative FLOPs). Relative FLOPs grow with the ratio, so bisection finds it; when even the
    smallest ratio cannot reach the target (short inputs keep at least CLS), the smallest tried is returned.
    """
    layers = int(backbone["num_hidden_layers"])

    def cost(ratio: float) -> float:
        params = PyramidParams(ratio, prune_upto)
        return relative_flops(backbone, schedule_tokens(params, lengths, layers), lengths)

    if cost(1.0) <= target:
        return 1.0, cost(1.0)
    low, high = 1e-3, 1.0
    if cost(low) > target:
        log.warning("no keep ratio reaches relative FLOPs %.3f on these lengths; using %.3g", target, low)
        return low, cost(low)
    for _ in range(iterations):
        mid = (low + high) / 2
        if cost(mid) <= target:
            low = mid
        else:
            high = mid
    return low, cost(low)


def train_pyramid(
    finetuned: LoadedModel,
    train: EncodedData,
    options: PyramidOptions,
    out_dir: Path | None = None,
    eval_data: EncodedData | None = None,
    resume: bool = False,
    progress: bool = True,
) -> TrainOutcome:
    """Pyramid-BERT on a fine-tuned, unpruned classifier; writes ``out_dir/model.pt`` (method "pyramid")."""
    lengths = np.array([len(ids) for ids in train.ids], dtype=np.int64)
    ratio = options.keep_ratio
    learned: dict[str, float] = {}
    if ratio is None:
        ratio, flops = keep_ratio_for_flops(finetuned.backbone, lengths, options.flops_target, options.prune_upto)
        learned = {"keep_ratio": ratio, "train_relative_flops": flops, "flops_target": options.flops_target}
        log.info("keep ratio %.4f gives relative FLOPs %.3f on the training lengths", ratio, flops)
    params = PyramidParams(ratio, options.prune_upto, options.m, options.distance)
    loaded = method_model(finetuned, "pyramid", params.to_dict(), options.seed)
    outcome = TrainOutcome(loaded, learned=learned)
    maybe_eval(finetuned.model, eval_data, "finetuned", outcome, options.batch_size)
    maybe_eval(loaded.model, eval_data, "start", outcome, options.batch_size)
    torch.manual_seed(options.seed)
    steps = phase_steps(options, options.steps, options.epochs, len(train))
    model = loaded.model
    groups = weight_groups(model, options.train_word_embeddings)
    extra = {"schedule": params.to_dict()}
    outcome.phases["pyramid"] = run_phase(
        "pyramid", model, cross_entropy_step, train, options, steps, options.lr, groups, model.config, out_dir, resume,
        progress, extra=extra,
    )  # fmt: skip
    maybe_eval(model, eval_data, "pyramid", outcome, options.batch_size)
    loaded.notes.append(f"Pyramid-BERT: {steps} steps with the schedule {params.to_dict()}")
    return finish(outcome, out_dir, "pyramid", options, train, PHASES)

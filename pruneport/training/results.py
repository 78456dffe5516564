"""What every training recipe shares around its phases: the outcome, evaluation, ``training.json`` and checkpoints.

A recipe (fine-tuning, LTP, Transkimmer, AdapLeR, TR-BERT, Pyramid-BERT) runs one or more phases of
:func:`pruneport.training.trainer.train_phase`, each checkpointing into ``OUT/checkpoint-<phase>.pt``; once its
``model.pt`` is written it records settings, losses and evaluations in ``training.json`` and deletes its
checkpoints (they hold the optimizer state too: 179 MB for MiniLM).
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from pruneport.methods.checkpoint import LoadedModel, save_model_pt
from pruneport.training.data import Batch, EncodedData
from pruneport.training.evaluate import EvalResult, evaluate
from pruneport.training.trainer import ParamGroup, PhaseResult, PhaseSettings, StepFn, steps_for, train_phase

log = logging.getLogger(__name__)


@dataclass
class TrainingOptions:
    """What every recipe's options have: batches, schedule shape, seed, checkpoints, the frozen word embeddings
    (training them costs about as much as the rest of a MiniLM step on CPU, for little accuracy) and length
    grouping. Each recipe's options extend these (and may change their defaults)."""

    batch_size: int = 32
    warmup_ratio: float = 0.1
    weight_decay: float = 0.01
    seed: int = 0
    checkpoint_every: int = 500
    train_word_embeddings: bool = False
    group_by_length: bool = False


def phase_steps(options: TrainingOptions, steps: int | None, epochs: float, examples: int) -> int:
    """``steps`` when given, else the steps of ``epochs`` passes over ``examples``."""
    return steps if steps is not None else steps_for(epochs, examples, options.batch_size)


def run_phase(
    name: str,
    model: torch.nn.Module,
    step_fn: StepFn,
    train: EncodedData,
    options: TrainingOptions,
    steps: int,
    lr: float,
    groups: list[ParamGroup],
    config,
    out_dir: Path | None,
    resume: bool,
    progress: bool,
    *,
    seed: int | None = None,
    weight_decay: float | None = None,
    extra: dict[str, Any] | None = None,
    after_step=None,
) -> PhaseResult:
    """One resumable phase (checkpoint ``OUT/checkpoint-<name>.pt``) with the recipe's common options.

    config: the backbone config (padding id, token types); seed / weight_decay default to the options'."""
    settings = PhaseSettings(
        name,
        steps,
        options.batch_size,
        lr,
        options.warmup_ratio,
        options.weight_decay if weight_decay is None else weight_decay,
        seed=options.seed if seed is None else seed,
        group_by_length=options.group_by_length,
        extra=extra or {},
    )
    return train_phase(
        model,
        step_fn,
        train,
        settings,
        groups,
        config.pad_token_id,
        config.uses_token_type_ids,
        checkpoint=checkpoints_in(out_dir)(name),
        checkpoint_every=options.checkpoint_every,
        resume=resume,
        after_step=after_step,
        progress=progress,
    )


def finish(
    outcome: TrainOutcome, out_dir: Path | None, recipe: str, options: Any, train: EncodedData, phases: tuple
) -> TrainOutcome:
    """Write ``model.pt`` (``outcome.loaded``) and ``training.json``, then drop the recipe's checkpoints."""
    if out_dir is not None:
        save_model_pt(outcome.loaded, out_dir / "model.pt")
    write_summary(out_dir, outcome, recipe, options, train.source)
    drop_checkpoints(out_dir, phases)
    return outcome


@dataclass
class TrainOutcome:
    """The trained model (ready to save or export), per-phase results, evaluations and learned parameters."""

    loaded: LoadedModel
    phases: dict[str, PhaseResult] = field(default_factory=dict)
    evals: dict[str, EvalResult] = field(default_factory=dict)
    thresholds: list[float] = field(default_factory=list)
    initial_thresholds: list[float] = field(default_factory=list)
    learned: dict[str, Any] = field(default_factory=dict)  # a method's learned pruning values, for training.json


def cross_entropy_step(model: torch.nn.Module, batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
    """Loss of a PrunedSequenceClassifier; shows accuracy and the share of tokens reaching the last layer."""
    logits, tokens = model(*batch.inputs)[:2]
    loss = torch.nn.functional.cross_entropy(logits, batch.labels)
    stats = {
        "acc": float((logits.argmax(-1) == batch.labels).float().mean()),
        "kept": float(tokens[:, -1].sum() / tokens[:, 0].sum()),
    }
    return loss, stats


def weight_groups(
    model: torch.nn.Module, train_word_embeddings: bool, lr: float | None = None, exclude: tuple[str, ...] = ()
) -> list[ParamGroup]:
    """AdamW groups: no weight decay on biases and LayerNorm weights (the usual BERT recipe). Freezes the
    word-embedding table unless ``train_word_embeddings``. Parameters named in ``exclude`` (or whose name starts
    with one of them) are left out, for a recipe that trains them in a group of their own."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if name.endswith("word_embeddings.weight"):
            p.requires_grad_(train_word_embeddings)
        if not p.requires_grad or name == "thresholds" or any(name.startswith(e) for e in exclude):
            continue
        (no_decay if name.endswith("bias") or "LayerNorm" in name else decay).append(p)
    return [ParamGroup(decay, lr=lr), ParamGroup(no_decay, lr=lr, weight_decay=0.0)]


def maybe_eval(model, data: EncodedData | None, name: str, outcome: TrainOutcome, batch_size: int) -> None:
    """Evaluate ``model`` on ``data`` (when given) and record it in ``outcome.evals[name]``."""
    if data is None:
        return
    result = evaluate(model, data, batch_size=max(64, batch_size))
    outcome.evals[name] = result
    log.info(
        "%s: accuracy %.4f, loss %.4f, relative FLOPs %.3f (%d examples)",
        name,
        result.accuracy,
        result.loss,
        result.relative_flops,
        result.examples,
    )


def checkpoint_path(out_dir: Path, phase: str) -> Path:
    """The resumable checkpoint of ``phase`` in ``out_dir``."""
    return out_dir / f"checkpoint-{phase}.pt"


def checkpoints_in(out_dir: Path | None):
    """phase -> checkpoint path in ``out_dir`` (None everywhere without an output folder)."""
    return (lambda phase: checkpoint_path(out_dir, phase)) if out_dir else (lambda phase: None)


def drop_checkpoints(out_dir: Path | None, phases: tuple[str, ...]) -> None:
    """Delete a recipe's resume checkpoints once its result is written (a finished run does not resume)."""
    if out_dir is None:
        return
    for phase in phases:
        checkpoint_path(out_dir, phase).unlink(missing_ok=True)


def write_summary(out_dir: Path | None, outcome: TrainOutcome, recipe: str, options: Any, data_source: str) -> None:
    """``training.json``: recipe, options, data, learned values, per-phase steps and losses, evaluations."""
    if out_dir is None:
        return
    summary = {
        "recipe": recipe,
        "options": asdict(options),
        "data": data_source,
        "thresholds": outcome.thresholds,
        "initial_thresholds": outcome.initial_thresholds,
        **({"learned": outcome.learned} if outcome.learned else {}),
        "phases": {
            name: {
                "steps": r.step,
                "resumed_from": r.resumed_from,
                "first_loss": r.losses[0] if r.losses else None,
                "last_loss": r.losses[-1] if r.losses else None,
            }
            for name, r in outcome.phases.items()
        },
        "eval": {name: e.to_dict() for name, e in outcome.evals.items()},
    }
    (out_dir / "training.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")

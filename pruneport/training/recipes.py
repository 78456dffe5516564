"""The two training recipes: fine-tuning a classifier, and LTP (paper Algorithm 1) on a fine-tuned one.

LTP = three steps: (1) soft pruning, training the weights and the per-layer thresholds with the soft mask and the
L1 mask regulariser (:mod:`pruneport.training.soft_ltp`); (2) fixing and binarizing the thresholds; (3) fine-tuning
the weights with hard pruning. Step 3 trains the very :class:`PrunedSequenceClassifier` with :class:`LTPPruner` that
is saved and exported (gradients flow through its gathers), so the exported model is exactly the trained one.

Each phase checkpoints into the output folder (``checkpoint-<phase>.pt``) and resumes from there; the result is
``model.pt`` plus ``training.json`` (settings, thresholds, loss and evaluation per phase). Once the result is
written, the recipe's checkpoints are deleted (they hold the optimizer state too: 179 MB for MiniLM).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch

from pruneport.methods.checkpoint import LoadedModel, save_model_pt
from pruneport.methods.ltp.model import DEFAULT_SCORE_NORM_LENGTH
from pruneport.training.data import Batch, EncodedData
from pruneport.training.model_io import with_thresholds
from pruneport.training.results import (
    TrainingOptions,
    TrainOutcome,
    cross_entropy_step,
    drop_checkpoints,
    maybe_eval,
    phase_steps,
    run_phase,
    weight_groups,
    write_summary,
)
from pruneport.training.soft_ltp import SoftLTPModel, mask_regularizer, rising_thresholds, soft_keep_fraction
from pruneport.training.trainer import ParamGroup

log = logging.getLogger(__name__)


@dataclass
class FinetuneOptions(TrainingOptions):
    """Plain fine-tuning. ``steps`` overrides ``epochs`` when given."""

    epochs: float = 2.0
    steps: int | None = None
    lr: float = 5e-5


@dataclass
class LTPOptions(TrainingOptions):
    """LTP soft then hard pruning (paper Table A.1 ranges: T in {1,2,5,10,20}e-4, lambda 0.001-0.2, final 0.01).

    lam: weight of the mask regulariser (more pruning when larger); temperature: the sigmoid's T;
    final_threshold: thresholds start at ``final_threshold * l / L``; threshold_lr: peak learning rate of the
    thresholds (the weights use ``lr`` in the soft phase and ``hard_lr`` in the hard phase);
    train_word_embeddings: also train the word-embedding table (off by default: on CPU its dense gradient and AdamW
    update cost about as much as the rest of a MiniLM step, for little accuracy).
    """

    lam: float = 0.1
    temperature: float = 1e-3
    final_threshold: float = 0.01
    score_norm_length: int = DEFAULT_SCORE_NORM_LENGTH
    soft_epochs: float = 1.0
    soft_steps: int | None = None
    hard_epochs: float = 1.0
    hard_steps: int | None = None
    lr: float = 2e-5
    hard_lr: float = 2e-5
    threshold_lr: float = 2e-4

    def __post_init__(self) -> None:
        if self.lam < 0:
            raise ValueError(f"lambda must be >= 0, got {self.lam}")
        if self.temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")
        if self.final_threshold < 0:
            raise ValueError(f"final threshold must be >= 0, got {self.final_threshold}")
        if self.score_norm_length < 1:
            raise ValueError(f"score_norm_length must be >= 1, got {self.score_norm_length}")


def finetune(
    loaded: LoadedModel,
    train: EncodedData,
    options: FinetuneOptions,
    out_dir: Path | None = None,
    eval_data: EncodedData | None = None,
    resume: bool = False,
    progress: bool = True,
) -> TrainOutcome:
    """Fine-tune ``loaded`` (an unpruned LTP classifier) with cross-entropy; writes ``out_dir/model.pt``."""
    model = loaded.model
    cfg = model.config
    steps = phase_steps(options, options.steps, options.epochs, len(train))
    torch.manual_seed(options.seed)
    outcome = TrainOutcome(loaded)
    groups = weight_groups(model, options.train_word_embeddings)
    outcome.phases["finetune"] = run_phase(
        "finetune", model, cross_entropy_step, train, options, steps, options.lr, groups, cfg, out_dir, resume, progress
    )
    outcome.thresholds = list(loaded.pruning["thresholds"])
    maybe_eval(model, eval_data, "finetune", outcome, options.batch_size)
    loaded.notes.append(f"fine-tuned {steps} steps on {train.source}")
    if out_dir is not None:
        save_model_pt(loaded, out_dir / "model.pt")
    write_summary(out_dir, outcome, "finetune", options, train.source)
    drop_checkpoints(out_dir, ("finetune",))
    return outcome


def train_ltp(
    loaded: LoadedModel,
    train: EncodedData,
    options: LTPOptions,
    out_dir: Path | None = None,
    eval_data: EncodedData | None = None,
    resume: bool = False,
    progress: bool = True,
) -> TrainOutcome:
    """LTP Algorithm 1 on a fine-tuned classifier ``loaded``; writes ``out_dir/model.pt`` (method "ltp")."""
    cfg = loaded.model.config
    layers = cfg.num_hidden_layers
    initial = rising_thresholds(options.final_threshold, layers)
    outcome = TrainOutcome(loaded, initial_thresholds=initial)
    torch.manual_seed(options.seed)
    if eval_data is not None:
        maybe_eval(with_thresholds(loaded, initial, options.score_norm_length).model, eval_data, "start", outcome, 64)

    # Step 1: soft pruning, weights and thresholds.
    soft = SoftLTPModel(loaded.model, initial, options.temperature, options.score_norm_length)
    soft_steps = phase_steps(options, options.soft_steps, options.soft_epochs, len(train))
    knobs = ("lam", "temperature", "threshold_lr", "final_threshold", "score_norm_length")
    soft_extra = {k: getattr(options, k) for k in knobs}

    def soft_step(model: SoftLTPModel, batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
        out = model(*batch.inputs)
        ce = torch.nn.functional.cross_entropy(out.logits, batch.labels)
        reg = mask_regularizer(out)
        stats = {"ce": ce.item(), "mask": reg.item(), "keep": soft_keep_fraction(out)}
        stats["thr_last"] = model.thresholds[-1].item()
        return ce + options.lam * reg, stats

    groups = weight_groups(soft, options.train_word_embeddings) + [
        ParamGroup([soft.thresholds], lr=options.threshold_lr, weight_decay=0.0)
    ]
    outcome.phases["soft"] = run_phase(
        "soft", soft, soft_step, train, options, soft_steps, options.lr, groups, cfg, out_dir, resume, progress,
        extra=soft_extra, after_step=lambda m: m.clamp_thresholds(),
    )  # fmt: skip
    # Step 2: fix and binarize the thresholds: the hard-pruning model with the learned effective thresholds.
    thresholds = soft.effective_thresholds()
    outcome.thresholds = thresholds
    log.info("learned thresholds: %s", ", ".join(f"{t:.5f}" for t in thresholds))
    hard = with_thresholds(loaded, thresholds, options.score_norm_length)
    maybe_eval(hard.model, eval_data, "soft", outcome, options.batch_size)

    # Step 3: fine-tune the weights under hard pruning (the model that is saved and exported).
    hard_steps = phase_steps(options, options.hard_steps, options.hard_epochs, len(train))
    hard_extra = {"thresholds": thresholds, "score_norm_length": options.score_norm_length}
    groups = weight_groups(hard.model, options.train_word_embeddings)
    outcome.phases["hard"] = run_phase(
        "hard", hard.model, cross_entropy_step, train, options, hard_steps, options.hard_lr, groups, cfg, out_dir,
        resume, progress, seed=options.seed + 1, extra=hard_extra,
    )  # fmt: skip
    maybe_eval(hard.model, eval_data, "hard", outcome, options.batch_size)
    hard.notes.append(
        f"LTP: soft {soft_steps} steps (lambda {options.lam}, T {options.temperature}), hard {hard_steps} steps"
    )
    outcome.loaded = hard
    if out_dir is not None:
        save_model_pt(hard, out_dir / "model.pt")
    write_summary(out_dir, outcome, "ltp", options, train.source)
    drop_checkpoints(out_dir, ("soft", "hard"))
    return outcome

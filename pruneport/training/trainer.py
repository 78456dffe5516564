"""One training phase on CPU: AdamW, linear warm-up and decay, gradient clipping, progress bar, resumable checkpoints.

A plain loop rather than ``transformers.Trainer``: the phases train pruneport's own modules (soft LTP masks, the
gather-based hard-pruning model), need an extra loss term and per-step threshold projection, and must checkpoint
the optimizer, step and RNG in a file that ``torch.load(weights_only=True)`` reads.

The checkpoint (``torch.save`` of a dict of tensors and plain values) holds the model and optimizer state, the step,
torch's RNG state, the settings and the loss history. Batches are a function of (seed, step) (see
:func:`pruneport.training.data.batch_indices`), so resuming reproduces the uninterrupted run's batches.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch

from pruneport.training.data import Batch, EncodedData, batch_indices, collate

log = logging.getLogger(__name__)

CHECKPOINT_FORMAT = "pruneport-train-state"


class ResumeError(ValueError):
    """A checkpoint that cannot be resumed with the options given."""


@dataclass(frozen=True)
class PhaseSettings:
    """What defines a phase's run; a resumed run must use the same values."""

    name: str
    steps: int
    batch_size: int
    lr: float
    warmup_ratio: float = 0.1
    weight_decay: float = 0.01
    max_grad_norm: float = 1.0
    seed: int = 0
    group_by_length: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.steps < 0:
            raise ValueError(f"{self.name}: steps must be >= 0, got {self.steps}")
        if self.batch_size < 1:
            raise ValueError(f"{self.name}: batch size must be >= 1, got {self.batch_size}")
        if self.lr < 0:
            raise ValueError(f"{self.name}: learning rate must be >= 0, got {self.lr}")


@dataclass
class ParamGroup:
    """Parameters trained at their own peak learning rate (None: the phase's) and weight decay (None: the phase's)."""

    params: list[torch.nn.Parameter]
    lr: float | None = None
    weight_decay: float | None = None


@dataclass
class PhaseResult:
    """Per-step training loss and the step reached (== settings.steps when complete)."""

    losses: list[float]
    step: int
    resumed_from: int = 0


StepFn = Callable[[torch.nn.Module, Batch], tuple[torch.Tensor, dict[str, float]]]


def steps_for(epochs: float, examples: int, batch_size: int) -> int:
    """Optimizer steps for ``epochs`` passes over ``examples`` (at least 1 when epochs > 0)."""
    if epochs <= 0:
        return 0
    return max(1, math.ceil(epochs * examples / batch_size))


def lr_factor(step: int, total: int, warmup_ratio: float) -> float:
    """Linear warm-up over ``warmup_ratio * total`` steps, then linear decay to 0."""
    warmup = int(warmup_ratio * total)
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    return max(0.0, (total - step) / max(1, total - warmup))


def _save(path: Path, payload: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    tmp.replace(path)


def read_checkpoint(path: Path) -> dict[str, Any]:
    """A phase checkpoint written by :func:`train_phase` (read with weights_only=True)."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any failure means the file is not usable
        raise ResumeError(f"cannot read training checkpoint {path}: {err}") from None
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise ResumeError(f"{path} is not a pruneport training checkpoint")
    return payload


def _check_settings(path: Path, stored: dict[str, Any], settings: PhaseSettings) -> None:
    now = asdict(settings)
    # a setting added after the checkpoint was written counts as its default (group_by_length: off)
    defaults = {f.name: f.default for f in fields(PhaseSettings) if f.default is not MISSING}
    stored = {**defaults, **stored}
    diff = [f"{k}: checkpoint {stored.get(k)!r}, now {now[k]!r}" for k in now if stored.get(k) != now[k]]
    if diff:
        raise ResumeError(
            f"{path} was written with other settings ({'; '.join(diff)}); resume with the same options or write to "
            "a new output folder"
        )


def train_phase(
    model: torch.nn.Module,
    step_fn: StepFn,
    data: EncodedData,
    settings: PhaseSettings,
    groups: list[ParamGroup],
    pad_token_id: int,
    with_types: bool,
    checkpoint: Path | None = None,
    checkpoint_every: int = 0,
    resume: bool = False,
    after_step: Callable[[torch.nn.Module], None] | None = None,
    progress: bool = True,
) -> PhaseResult:
    """Run ``settings.steps`` optimizer steps of ``step_fn`` (batch -> loss, shown stats) on ``data``.

    checkpoint: file written every ``checkpoint_every`` steps (0: only at the end) and when the phase completes.
    resume: continue from ``checkpoint`` when it exists (a completed phase returns at once, its weights loaded).
    """
    from tqdm.auto import tqdm

    optimizer = torch.optim.AdamW(
        [
            {
                "params": g.params,
                "lr": settings.lr if g.lr is None else g.lr,
                "weight_decay": settings.weight_decay if g.weight_decay is None else g.weight_decay,
            }
            for g in groups
        ],
        lr=settings.lr,
    )
    base_lrs = [settings.lr if g.lr is None else g.lr for g in groups]
    step, losses = 0, []
    if resume and checkpoint is not None and checkpoint.exists():
        state = read_checkpoint(checkpoint)
        if state.get("phase") != settings.name:
            raise ResumeError(f"{checkpoint} holds phase {state.get('phase')!r}, not {settings.name!r}")
        _check_settings(checkpoint, state["settings"], settings)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["torch_rng"])
        step, losses = int(state["step"]), [float(x) for x in state["losses"]]
        log.info("%s: resuming from step %d of %d (%s)", settings.name, step, settings.steps, checkpoint)
    resumed_from = step

    def save() -> None:
        if checkpoint is None:
            return
        _save(
            checkpoint,
            {
                "format": CHECKPOINT_FORMAT,
                "phase": settings.name,
                "settings": asdict(settings),
                "step": step,
                "losses": losses,
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "torch_rng": torch.get_rng_state(),
            },
        )

    if step >= settings.steps:
        return PhaseResult(losses, step, resumed_from)
    model.train()
    lengths = [len(ids) for ids in data.ids] if settings.group_by_length else None
    bar = tqdm(
        total=settings.steps, initial=step, desc=settings.name, unit="step", disable=not progress, dynamic_ncols=True
    )
    try:
        while step < settings.steps:
            factor = lr_factor(step, settings.steps, settings.warmup_ratio)
            for group, base in zip(optimizer.param_groups, base_lrs, strict=True):
                group["lr"] = base * factor
            indices = batch_indices(len(data), settings.batch_size, settings.seed, step, lengths)
            batch = collate(data, indices, pad_token_id, with_types)
            loss, stats = step_fn(model, batch)
            if not bool(torch.isfinite(loss.detach())):
                raise FloatingPointError(f"{settings.name}: loss became {float(loss)} at step {step}")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if settings.max_grad_norm > 0:
                torch.nn.utils.clip_grad_norm_([p for g in groups for p in g.params], settings.max_grad_norm)
            optimizer.step()
            if after_step is not None:
                after_step(model)
            step += 1
            losses.append(loss.item())
            bar.update(1)
            bar.set_postfix({"loss": f"{losses[-1]:.4f}", **{k: f"{v:.4g}" for k, v in stats.items()}}, refresh=False)
            if checkpoint_every and step % checkpoint_every == 0 and step < settings.steps:
                save()
    finally:
        bar.close()
    save()
    model.eval()
    return PhaseResult(losses, step, resumed_from)

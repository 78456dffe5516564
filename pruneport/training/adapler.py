"""AdapLeR training (Modarressi et al., ACL'22, section 3.3): saliencies, then adaptive-length re-training.

Phase 1 (fine-tuning) is ``pruneport train finetune``; this module runs the other two on its result.

- **Saliency extraction** (eq. 2): ``S_i = || d y_c / d h0_i * h0_i ||_2`` with ``h0`` the embedding output and
  ``c`` the gold label, normalised to sum 1 over each example's real tokens. The paper averages the saliencies of the
  three best checkpoints of fine-tuning; pruneport is handed one fine-tuned model (``--from``), whose intermediate
  checkpoints it does not have, so it uses that final model's saliencies.
- **Adaptive-length re-training**: contribution predictors (CPs) before every layer, trained jointly with the model.
  Tokens are not removed but faded out by the soft-removal function (eq. 4), accumulated as a non-positive additive
  attention mask ``M`` (its exponential weights the keys, the masked softmax of real removal in the limit); lambda
  grows geometrically from ``lambda_start`` to ``lambda_end`` over the run (the paper multiplies it by 10 after each
  of its 5 epochs, 10 -> 1e5; here the same range spread evenly over the steps, so short runs also end near hard
  removal). CPs learn against the saliencies with the layer-weighted inclusive KL of eq. 6, towards the targets of
  eq. 7 whose CLS share is amplified by theta. Objective 1 (model and CPs): ``CE + gamma * L_CP`` (eq. 5).
  Objective 2 (eta and theta only, "speedup tuning", eq. 8): ``CE + phi * L_LENGTH``, ``L_LENGTH`` the expected number
  of unmasked tokens summed over layers. Both are minimised with one backward pass: the length loss is computed on a
  copy of the mask recursion whose contribution scores are detached, so its gradient reaches eta and theta only;
  theta enters the model's path through the dummy variable of Appendix B (value 1, gradient divided by theta).
  eta is clipped to [0.01, 1] after every step (upstream), theta to >= 0.001.

Choices where the paper is silent: the KL compares the CP's softmax over the real tokens (not the softly removed
one) with the targets, so faded tokens still learn their saliency; the soft count ``n`` of ``delta = eta / n`` is the
sum of the key weights ``exp(M)`` (upstream: ``sum(acc_effective_mask) + 1``); eta starts at upstream's 0.25 and
theta at 1.

The saved model is the hard AdapLeR model of :mod:`pruneport.methods.adapler.model` with the learned eta and CLS scale 1
(theta shapes the targets only; at inference the dummy variable is 1, so the CPs' scores are used as they are).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from pruneport.methods.adapler.model import AdapLeRParams, AdapLeRPruner
from pruneport.methods.checkpoint import LoadedModel
from pruneport.methods.pruned_encoder import PrunedSequenceClassifier
from pruneport.training.data import Batch, EncodedData, collate, eval_batches
from pruneport.training.method_model import method_model
from pruneport.training.results import (
    TrainingOptions,
    TrainOutcome,
    checkpoint_path,
    finish,
    maybe_eval,
    phase_steps,
    run_phase,
    weight_groups,
)
from pruneport.training.trainer import ParamGroup

log = logging.getLogger(__name__)

PHASES = ("saliency", "adaptive")
MASK_FLOOR = -10000.0  # upstream clips the accumulated soft-removal mask here
ETA_RANGE = (0.01, 1.0)
THETA_MIN = 1e-3


@dataclass
class AdapLeROptions(TrainingOptions):
    """gamma: weight of the CP loss; phi: weight of the length loss (more removal when larger); paper Table 4
    (SST-2, IMDB): gamma 5e-3, phi 5e-4. beta: slope of the kept zone of eq. 4 (0 < beta < 0.1). lambda_start /
    lambda_end: the soft-removal sharpness at the first and last step. eta_lr: learning rate of eta and theta (their
    own optimizer group). cp_lr: learning rate of the contribution predictors (None: ``lr``, as in the paper, where
    one optimizer trains the model and the CPs). lr, epochs, weight decay and warm-up: paper Table 3 and Appendix D."""

    gamma: float = 5e-3
    phi: float = 5e-4
    beta: float = 0.05
    lambda_start: float = 10.0
    lambda_end: float = 1e5
    eta_init: float = 0.25
    theta_init: float = 1.0
    eta_lr: float = 1e-3
    cp_lr: float | None = None
    epochs: float = 5.0
    steps: int | None = None
    lr: float = 2e-5
    warmup_ratio: float = 0.06  # paper Appendix D (the base class's 0.1)
    weight_decay: float = 0.1  # paper Appendix D (the base class's 0.01)

    def __post_init__(self) -> None:
        if not 0.0 < self.beta < 0.1:
            raise ValueError(f"beta must be in (0, 0.1), got {self.beta}")
        if not 0.0 < self.lambda_start <= self.lambda_end:
            raise ValueError(f"need 0 < lambda_start <= lambda_end, got {self.lambda_start}, {self.lambda_end}")
        if not ETA_RANGE[0] <= self.eta_init <= ETA_RANGE[1]:
            raise ValueError(f"eta_init must be in {list(ETA_RANGE)}, got {self.eta_init}")
        if self.gamma < 0 or self.phi < 0:
            raise ValueError(f"gamma and phi must be >= 0, got {self.gamma}, {self.phi}")


# ----------------------------------------------------------------------------------------------------------------
# Phase 2: saliencies
# ----------------------------------------------------------------------------------------------------------------


def saliency_batch(model: PrunedSequenceClassifier, batch: Batch) -> torch.Tensor:
    """[B,S] gradient x input saliencies of the gold logits w.r.t. the embedding output, summing to 1 per row."""
    live = batch.attention_mask.bool()
    types = batch.token_type_ids
    hidden0 = model.embeddings(batch.input_ids, live, types).detach().requires_grad_(True)
    hidden = hidden0
    for layer in model.layer:
        attended, _ = layer.attention(hidden, live)
        hidden = layer.ffn(attended)
    logits = model.classifier(hidden[:, 0])
    gold = logits.gather(1, batch.labels.unsqueeze(1)).sum()
    (grad,) = torch.autograd.grad(gold, hidden0)
    scores = (grad * hidden0).norm(dim=-1).detach() * live
    return scores / scores.sum(1, keepdim=True).clamp_min(1e-12)


def extract_saliencies(
    model: PrunedSequenceClassifier, data: EncodedData, batch_size: int = 32, progress: bool = True
) -> list[np.ndarray]:
    """Per example (data order) its saliency over its real tokens (float32, sums to 1). Eval mode (no dropout)."""
    from tqdm.auto import tqdm

    model.eval()
    out: list[np.ndarray] = [np.zeros(0, np.float32)] * len(data)
    cfg = model.config
    batches = eval_batches(data, batch_size)
    for indices in tqdm(batches, desc="saliency", unit="batch", disable=not progress, dynamic_ncols=True):
        batch = collate(data, indices, cfg.pad_token_id, cfg.uses_token_type_ids)
        scores = saliency_batch(model, batch).numpy()
        for row, i in enumerate(indices):
            out[i] = scores[row, : len(data.ids[i])].astype(np.float32)
    return out


def _save_saliencies(path: Path, saliencies: list[np.ndarray], source: str) -> None:
    flat = torch.from_numpy(np.concatenate(saliencies)) if saliencies else torch.zeros(0)
    lengths = torch.tensor([len(s) for s in saliencies], dtype=torch.int64)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save({"format": "pruneport-saliency", "source": source, "flat": flat, "lengths": lengths}, tmp)
    tmp.replace(path)


def _load_saliencies(path: Path, data: EncodedData, source: str) -> list[np.ndarray] | None:
    """Saliencies saved by an interrupted run on the same data and model, else None."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - an unreadable file is recomputed
        return None
    lengths = payload.get("lengths") if isinstance(payload, dict) else None
    if lengths is None or payload.get("source") != source or lengths.tolist() != [len(i) for i in data.ids]:
        return None
    return [a.numpy() for a in torch.split(payload["flat"], lengths.tolist())]


# ----------------------------------------------------------------------------------------------------------------
# Phase 3: adaptive-length re-training
# ----------------------------------------------------------------------------------------------------------------


def soft_removal(scores: torch.Tensor, delta: torch.Tensor, lam: float, beta: float) -> torch.Tensor:
    """Eq. 4: the non-positive mask increment for contribution scores [B,S] against thresholds delta [B,1]."""
    below = (lam / delta) * (scores - delta) - beta / lam
    above = (scores - 1.0) * beta / ((1.0 - delta).clamp_min(1e-6) * lam)
    return torch.where(scores < delta, below, above)


@dataclass
class AdaptiveOutput:
    """logits; cp_log_probs per layer [B,S] (log-softmax over real tokens); key_weights per layer [B,S] (exp(M));
    length_weights per layer: exp(M) of the copy whose gradient reaches only eta and theta."""

    logits: torch.Tensor
    cp_log_probs: list[torch.Tensor]
    key_weights: list[torch.Tensor]
    length_weights: list[torch.Tensor]
    live: torch.Tensor


class AdaptiveLengthModel(nn.Module):
    """Soft-removal training around an AdapLeR :class:`PrunedSequenceClassifier`; ``eta`` and ``theta`` per layer."""

    def __init__(self, base: PrunedSequenceClassifier, options: AdapLeROptions, total_steps: int) -> None:
        super().__init__()
        if not isinstance(base.pruner, AdapLeRPruner):
            raise TypeError("AdaptiveLengthModel needs an AdapLeR model")
        layers = base.config.num_hidden_layers
        self.base = base
        self.eta = nn.Parameter(torch.full((layers,), float(options.eta_init)))
        self.theta = nn.Parameter(torch.full((layers,), float(options.theta_init)))
        self.beta = options.beta
        self.lambda_start, self.lambda_end = options.lambda_start, options.lambda_end
        self.total_steps = max(1, total_steps)
        self.register_buffer("step", torch.zeros((), dtype=torch.int64))  # saved in checkpoints: lambda resumes

    def current_lambda(self) -> float:
        """lambda_start * (lambda_end / lambda_start) ** (step / steps); lambda_end in eval mode (hard removal)."""
        if not self.training:
            return self.lambda_end
        frac = min(1.0, int(self.step) / self.total_steps)
        return self.lambda_start * (self.lambda_end / self.lambda_start) ** frac

    def clamp(self) -> None:
        """After each step: eta into [0.01, 1] (upstream's clip), theta >= 0.001."""
        with torch.no_grad():
            self.eta.clamp_(*ETA_RANGE)
            self.theta.clamp_(min=THETA_MIN)

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor | None = None
    ) -> AdaptiveOutput:
        """Every layer at full width under the accumulated soft-removal mask; advances the lambda schedule in
        training mode."""
        base = self.base
        lam = self.current_lambda()
        if self.training:
            self.step += 1
        live = attention_mask.bool()
        real = live.to(torch.float32)
        is_cls = torch.zeros_like(live)
        is_cls[:, 0] = True
        removable = live & ~is_cls
        hidden = base.embeddings(input_ids, live, token_type_ids)
        mask = torch.zeros_like(real)  # M: accumulated non-positive additive mask
        shadow = torch.zeros_like(real)  # the same recursion with detached scores (length loss -> eta, theta)
        very_low = torch.finfo(hidden.dtype).min
        out = AdaptiveOutput(None, [], [], [], live)
        for i, layer in enumerate(base.layer):
            logits = base.pruner.predictors[i](hidden)
            out.cp_log_probs.append(torch.log_softmax(logits.masked_fill(~live, very_low), dim=-1))
            scores = torch.softmax((logits + mask).masked_fill(~live, very_low), dim=-1)
            dummy = self.theta[i] / self.theta[i].detach()  # value 1; gradient / theta (Appendix B, eq. 14)
            new_mask, shadow = (
                self._removal(s, m, i, dummy, lam, live, removable)
                for s, m in ((scores, mask), (scores.detach(), shadow))
            )
            mask = new_mask
            out.key_weights.append(torch.exp(mask) * real)
            out.length_weights.append(torch.exp(shadow) * real)
            attended, _ = layer.attention(hidden, live, out.key_weights[-1], renormalize=True)
            hidden = layer.ffn(attended)
        out.logits = base.classifier(hidden[:, 0])
        return out

    def _removal(self, scores, mask, layer: int, dummy, lam: float, live, removable) -> torch.Tensor:
        """One layer of the mask recursion: M + m(S~, eta / n) on removable tokens, floored like upstream."""
        weighted = torch.where(removable | ~live, scores, scores * dummy)
        weighted = weighted / weighted.sum(-1, keepdim=True)
        count = (torch.exp(mask) * live).sum(-1, keepdim=True)
        delta = self.eta[layer] / count
        step = soft_removal(weighted, delta, lam, self.beta)
        return torch.clamp(mask + torch.where(removable, step, torch.zeros_like(step)), min=MASK_FLOOR)


def cp_targets(saliency: torch.Tensor, theta: torch.Tensor, live: torch.Tensor) -> torch.Tensor:
    """Eq. 7: saliencies [B,S] with the CLS share multiplied by theta (a constant here) and renormalised."""
    scaled = saliency.clone()
    scaled[:, 0] = scaled[:, 0] * theta
    scaled = scaled * live
    return scaled / scaled.sum(-1, keepdim=True).clamp_min(1e-12)


def cp_loss(out: AdaptiveOutput, saliency: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """Eq. 6: sum over layers of (L - l) * KL(S^ || S~) (inclusive KL), mean over the batch."""
    layers = len(out.cp_log_probs)
    total = torch.zeros((), dtype=saliency.dtype)
    for i, log_q in enumerate(out.cp_log_probs):
        target = cp_targets(saliency, theta[i].detach(), out.live)
        terms = torch.where(target > 0, target * (torch.log(target.clamp_min(1e-12)) - log_q), torch.zeros_like(target))
        total = total + (layers - i) * terms.sum(-1).mean()
    return total


def length_loss(out: AdaptiveOutput) -> torch.Tensor:
    """Eq. 8: the expected number of unmasked tokens summed over layers (mean over the batch)."""
    return torch.stack([w.sum(-1) for w in out.length_weights]).sum(0).mean()


def batch_saliency(saliencies: list[np.ndarray], batch: Batch) -> torch.Tensor:
    """The saliencies of a batch's examples, right-padded with zeros to its width."""
    width = batch.input_ids.shape[1]
    out = torch.zeros(len(batch.indices), width)
    for row, i in enumerate(batch.indices):
        values = saliencies[i]
        out[row, : len(values)] = torch.from_numpy(values)
    return out


def train_adapler(
    finetuned: LoadedModel,
    train: EncodedData,
    options: AdapLeROptions,
    out_dir: Path | None = None,
    eval_data: EncodedData | None = None,
    resume: bool = False,
    progress: bool = True,
) -> TrainOutcome:
    """AdapLeR phases 2 and 3 on a fine-tuned, unpruned classifier; writes ``out_dir/model.pt`` (method "adapler")."""
    layers = finetuned.model.config.num_hidden_layers
    outcome = TrainOutcome(finetuned)
    maybe_eval(finetuned.model, eval_data, "finetuned", outcome, options.batch_size)

    # Phase 2: saliencies of the fine-tuned model (kept in OUT until the run ends, so a resumed run reuses them).
    store = checkpoint_path(out_dir, "saliency") if out_dir else None
    saliencies = _load_saliencies(store, train, finetuned.source) if (resume and store and store.exists()) else None
    if saliencies is None:
        saliencies = extract_saliencies(finetuned.model, train, max(32, options.batch_size), progress)
        if store is not None:
            _save_saliencies(store, saliencies, finetuned.source)

    # Phase 3: adaptive-length re-training.
    start = AdapLeRParams(tuple(options.eta_init for _ in range(layers))).to_dict()
    loaded = method_model(finetuned, "adapler", start, options.seed)
    outcome.loaded = loaded
    maybe_eval(loaded.model, eval_data, "start", outcome, options.batch_size)
    torch.manual_seed(options.seed)
    steps = phase_steps(options, options.steps, options.epochs, len(train))
    model = AdaptiveLengthModel(loaded.model, options, steps)
    knobs = ("gamma", "phi", "beta", "lambda_start", "lambda_end", "eta_init", "theta_init", "eta_lr", "cp_lr")
    extra = {k: getattr(options, k) for k in knobs}

    def step(m: AdaptiveLengthModel, batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
        out = m(*batch.inputs)
        ce = nn.functional.cross_entropy(out.logits, batch.labels)
        cp = cp_loss(out, batch_saliency(saliencies, batch), m.theta)
        length = length_loss(out)
        real = batch.attention_mask.sum()
        kept = float(sum(w.detach().sum() for w in out.key_weights) / (real * layers))
        stats = {"ce": ce.item(), "cp": cp.item(), "kept": kept, "eta_mean": float(m.eta.detach().mean())}
        return ce + options.gamma * cp + options.phi * length, stats

    groups = weight_groups(model, options.train_word_embeddings, exclude=("eta", "theta", "base.pruner."))
    groups.append(ParamGroup(list(loaded.model.pruner.parameters()), lr=options.cp_lr))
    groups.append(ParamGroup([model.eta, model.theta], lr=options.eta_lr, weight_decay=0.0))
    config = loaded.model.config
    outcome.phases["adaptive"] = run_phase(
        "adaptive", model, step, train, options, steps, options.lr, groups, config, out_dir, resume, progress,
        extra=extra, after_step=lambda m: m.clamp(),
    )  # fmt: skip
    eta = [float(v) for v in model.eta.detach()]
    params = AdapLeRParams(tuple(eta))
    trained = method_model(loaded, "adapler", params.to_dict(), options.seed)
    trained.model.load_state_dict(loaded.model.state_dict())
    outcome.loaded = trained
    outcome.learned = {"eta": eta, "theta": [float(v) for v in model.theta.detach()]}
    log.info("learned eta: %s", ", ".join(f"{v:.4f}" for v in eta))
    maybe_eval(trained.model, eval_data, "adapler", outcome, options.batch_size)
    trained.notes.append(
        f"AdapLeR: saliencies of the final fine-tuned model, {steps} adaptive-length steps (gamma {options.gamma}, "
        f"phi {options.phi})"
    )
    return finish(outcome, out_dir, "adapler", options, train, PHASES)

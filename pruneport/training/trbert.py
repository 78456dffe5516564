"""TR-BERT training (Ye et al., NAACL'21, section 3.2 and Appendix): the token-selection policy learned by REINFORCE.

Step 1 (fine-tuning) is ``pruneport train finetune``; this module runs the other two on its result:

- **policy** (step 2): every weight but the policy networks is frozen; the policy is trained with REINFORCE. For
  each example ``samples`` action sequences (Select/Skip per token at each selection point, drawn from the policy's
  Bernoulli probabilities; CLS always selected, padding never) are run through the pruned model, which really
  removes the skipped tokens (the very gathers of inference). Reward (eq. 4): the log-likelihood of the gold label
  minus ``length_penalty`` times the share of candidate tokens selected, summed over the selection points; the
  baseline is the mean reward of the example's samples (Section 4.3: 8 samples). **Imitation warm-up**: during the
  first ``imitation_ratio`` of the policy steps (paper: 50% for classification) one of the samples is the heuristic
  action sequence of the Residual Strategy: the K tokens whose skipping the intact fine-tuned model's loss would feel
  most, ``I = dloss/dH_r . (H_l - H_r)`` (r = 3/4 of the depth, as r = 9 of 12 in the paper), K the number of tokens
  the current policy expects to select.
- **joint** (step 3): everything is trained: the backbone with knowledge distillation from the intact fine-tuned
  model (KL of the pruned samples' predictions from the teacher's) and the policy with the same REINFORCE objective.

Step 2 runs ``ceil((N + 1) / 2)`` epochs and step 3 N epochs (Appendix), N = ``joint_epochs``. One documented
difference: the paper's penalty counts selected tokens; here it is their share of the candidates, so one
``length_penalty`` means the same on SST-2 and on 512-token IMDB reviews (a count penalty grows with the length).

Inference is unchanged (keep iff p >= 0.5, :mod:`pruneport.methods.trbert.model`), on the policy and backbone trained
here.
Written by hand: no library implements TR-BERT's policy training.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from pruneport.methods.checkpoint import LoadedModel
from pruneport.methods.prune_ops import gather_rows
from pruneport.methods.pruned_encoder import PrunedSequenceClassifier, compact, keep_cls
from pruneport.methods.trbert.model import TRBertParams, TRBertPruner, default_selection_layers
from pruneport.training.data import Batch, EncodedData
from pruneport.training.method_model import method_model
from pruneport.training.results import (
    TrainingOptions,
    TrainOutcome,
    checkpoints_in,
    finish,
    maybe_eval,
    phase_steps,
    run_phase,
    weight_groups,
)
from pruneport.training.trainer import ParamGroup

log = logging.getLogger(__name__)

PHASES = ("policy", "joint")


@dataclass
class TRBertOptions(TrainingOptions):
    """length_penalty: lambda of eq. 4 (more skipping when larger); samples: action sequences per example (paper:
    8); imitation_ratio: share of the policy steps with the heuristic sequence among the samples (paper: 0.5 for
    text classification); joint_epochs: N of step 3 (step 2 runs ceil((N+1)/2) epochs unless ``policy_epochs``);
    policy_lr: learning rate of the policy networks (lr: of the backbone in step 3); kd_temperature: of the
    distillation softmax."""

    length_penalty: float = 0.5
    samples: int = 8
    imitation_ratio: float = 0.5
    joint_epochs: float = 2.0
    policy_epochs: float | None = None
    policy_steps: int | None = None
    joint_steps: int | None = None
    lr: float = 2e-5
    policy_lr: float = 1e-3
    kd_temperature: float = 1.0

    def __post_init__(self) -> None:
        if self.samples < 2:
            raise ValueError(f"REINFORCE with a mean-reward baseline needs >= 2 samples, got {self.samples}")
        if not 0.0 <= self.imitation_ratio <= 1.0:
            raise ValueError(f"imitation_ratio must be in [0, 1], got {self.imitation_ratio}")
        if self.length_penalty < 0 or self.kd_temperature <= 0:
            raise ValueError("length_penalty must be >= 0 and kd_temperature > 0")

    def policy_epochs_or_default(self) -> float:
        """Step 2's epochs: ``policy_epochs``, or ceil((N + 1) / 2) of the joint epochs N (paper Appendix)."""
        return self.policy_epochs if self.policy_epochs is not None else math.ceil((self.joint_epochs + 1) / 2)


@dataclass
class PolicyRollout:
    """One forward pass over ``samples`` copies of a batch (sample-major: row s * B + b).

    logits [K*B, labels]; log_prob [K*B]: log-probability of the actions taken; selected / candidates [K*B]: tokens
    selected and tokens that could be, summed over the selection points."""

    logits: torch.Tensor
    log_prob: torch.Tensor
    selected: torch.Tensor
    candidates: torch.Tensor


def residual_importance(
    teacher: PrunedSequenceClassifier, batch: Batch, layers: tuple[int, ...], reference_layer: int
) -> dict[int, torch.Tensor]:
    """The Residual Strategy: per selection layer l, [B,S] ``dloss/dH_r . (H_l - H_r)`` in the intact model.

    H_j is the hidden state entering layer j (H_L the output); the loss is the gold label's cross-entropy.
    """
    live = batch.attention_mask.bool()
    with torch.no_grad():
        hidden = teacher.embeddings(batch.input_ids, live, batch.token_type_ids)
        states = [hidden]
        for layer in teacher.layer[:reference_layer]:
            hidden = layer.ffn(layer.attention(hidden, live)[0])
            states.append(hidden)
    h_r = states[reference_layer].clone().requires_grad_(True)
    hidden = h_r
    for layer in teacher.layer[reference_layer:]:
        hidden = layer.ffn(layer.attention(hidden, live)[0])
    loss = nn.functional.cross_entropy(teacher.classifier(hidden[:, 0]), batch.labels, reduction="sum")
    (grad,) = torch.autograd.grad(loss, h_r)
    return {lay: (grad * (states[lay] - h_r.detach())).sum(-1) for lay in layers}


def top_k_actions(importance: torch.Tensor, candidates: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """[B,S] bool: each row's ``k`` most important candidates (ties to the lower position)."""
    score = importance.masked_fill(~candidates, -math.inf)
    order = torch.argsort(score, dim=-1, descending=True, stable=True)
    rank = torch.argsort(order, dim=-1)
    return candidates & (rank < k.unsqueeze(1))


class PolicyTrainingModel(nn.Module):
    """Sampled token selection around a TR-BERT :class:`PrunedSequenceClassifier` (whose modules it trains)."""

    def __init__(self, base: PrunedSequenceClassifier) -> None:
        super().__init__()
        if not isinstance(base.pruner, TRBertPruner):
            raise TypeError("PolicyTrainingModel needs a TR-BERT model")
        self.base = base
        self.backbone_frozen = False

    def train(self, mode: bool = True) -> PolicyTrainingModel:
        """With a frozen backbone its dropout stays off: rewards then measure the policy, not dropout noise."""
        super().train(mode)
        if mode and self.backbone_frozen:
            for name, module in self.base.named_children():
                if name != "pruner":
                    module.eval()
        return self

    def forward(self, batch: Batch, samples: int, heuristic: dict[int, torch.Tensor] | None = None) -> PolicyRollout:
        """``samples`` copies of ``batch`` through the really-pruned model, actions sampled at each selection point
        (sample 0 imitates ``heuristic`` when given: layer -> [B, S] importance in original positions)."""
        base, pruner = self.base, self.base.pruner
        layers = pruner.params.selection_layers
        live = batch.attention_mask.bool().repeat(samples, 1)
        hidden = base.embeddings(batch.input_ids, batch.attention_mask.bool(), batch.token_type_ids)
        hidden = hidden.repeat(samples, 1, 1)
        rows, width = live.shape
        origin = torch.arange(width).expand(rows, width)
        zeros = torch.zeros(rows)
        log_prob, selected, candidates = zeros, zeros, zeros
        first_sample = torch.arange(rows) < batch.input_ids.shape[0]
        for i, layer in enumerate(base.layer):
            if i in layers:
                logit = pruner.policy_logit(layers.index(i), hidden)
                cand = live.clone()
                cand[:, 0] = False
                action = torch.bernoulli(torch.sigmoid(logit.detach())).bool()
                if heuristic is not None:
                    expected = (torch.sigmoid(logit.detach()) * cand).sum(-1).round().long()
                    imitated = top_k_actions(torch.gather(heuristic[i].repeat(samples, 1), 1, origin), cand, expected)
                    action = torch.where(first_sample.unsqueeze(1), imitated, action)
                action = action & cand
                steps = torch.where(action, nn.functional.logsigmoid(logit), nn.functional.logsigmoid(-logit))
                log_prob = log_prob + (steps * cand).sum(-1)
                selected = selected + action.sum(-1)
                candidates = candidates + cand.sum(-1)
                packed = compact(keep_cls(live & action))
                hidden = gather_rows(hidden, packed.index)
                origin = torch.gather(origin, 1, packed.index)
                live = packed.live
            attended, _ = layer.attention(hidden, live)
            hidden = layer.ffn(attended)
        return PolicyRollout(base.classifier(hidden[:, 0]), log_prob, selected, candidates)


def reinforce_loss(rollout: PolicyRollout, labels: torch.Tensor, samples: int, length_penalty: float):
    """REINFORCE with the samples' mean reward as baseline; returns (loss, mean reward, selected share)."""
    gold = torch.log_softmax(rollout.logits.detach(), -1).gather(1, labels.repeat(samples).unsqueeze(1)).squeeze(1)
    share = rollout.selected / rollout.candidates.clamp(min=1.0)
    reward = (gold - length_penalty * share).view(samples, -1)
    advantage = (reward - reward.mean(0, keepdim=True)).reshape(-1)
    return -(advantage * rollout.log_prob).mean(), float(reward.mean()), float(share.mean())


def reference_layer(num_layers: int, selection_layers: tuple[int, ...]) -> int:
    """r of the Residual Strategy: 3/4 of the depth (9 of 12), after the last selection point."""
    return min(num_layers, max(math.ceil(0.75 * num_layers), max(selection_layers) + 1))


def train_trbert(
    finetuned: LoadedModel,
    train: EncodedData,
    options: TRBertOptions,
    out_dir: Path | None = None,
    eval_data: EncodedData | None = None,
    resume: bool = False,
    progress: bool = True,
) -> TrainOutcome:
    """TR-BERT steps 2 and 3 on a fine-tuned, unpruned classifier; writes ``out_dir/model.pt`` (method "trbert")."""
    cfg = finetuned.model.config
    params = TRBertParams(default_selection_layers(cfg.num_hidden_layers))
    loaded = method_model(finetuned, "trbert", params.to_dict(), options.seed)
    teacher = finetuned.model.eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    outcome = TrainOutcome(loaded)
    maybe_eval(teacher, eval_data, "finetuned", outcome, options.batch_size)
    maybe_eval(loaded.model, eval_data, "start", outcome, options.batch_size)
    torch.manual_seed(options.seed)
    model = PolicyTrainingModel(loaded.model)
    pruner = loaded.model.pruner
    ref = reference_layer(cfg.num_hidden_layers, params.selection_layers)
    k = options.samples

    policy_steps = phase_steps(options, options.policy_steps, options.policy_epochs_or_default(), len(train))
    imitation_steps = int(options.imitation_ratio * policy_steps)
    extra = {
        "length_penalty": options.length_penalty,
        "samples": k,
        "imitation_ratio": options.imitation_ratio,
        "policy_lr": options.policy_lr,
        "kd_temperature": options.kd_temperature,
    }
    counter = {"step": 0}

    def policy_step(m: PolicyTrainingModel, batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
        imitate = counter["step"] < imitation_steps
        counter["step"] += 1
        heuristic = residual_importance(teacher, batch, params.selection_layers, ref) if imitate else None
        rollout = m(batch, k, heuristic)
        loss, reward, share = reinforce_loss(rollout, batch.labels, k, options.length_penalty)
        return loss, {"reward": reward, "selected": share, "imitate": float(imitate)}

    # Step 2: the policy alone, the backbone frozen (and its dropout off).
    for name, p in loaded.model.named_parameters():
        p.requires_grad_(name.startswith("pruner."))
    model.backbone_frozen = True
    counter["step"] = _resumed_step(checkpoints_in(out_dir)("policy"), resume)
    outcome.phases["policy"] = run_phase(
        "policy", model, policy_step, train, options, policy_steps, options.policy_lr,
        [ParamGroup(list(pruner.parameters()))], cfg, out_dir, resume, progress, weight_decay=0.0, extra=extra,
    )  # fmt: skip
    maybe_eval(loaded.model, eval_data, "policy", outcome, options.batch_size)

    # Step 3: everything, the backbone distilled from the intact model, the policy still by REINFORCE.
    for p in loaded.model.parameters():
        p.requires_grad_(True)
    model.backbone_frozen = False
    temperature = options.kd_temperature

    def joint_step(m: PolicyTrainingModel, batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
        rollout = m(batch, k)
        rl, reward, share = reinforce_loss(rollout, batch.labels, k, options.length_penalty)
        with torch.no_grad():
            target = torch.softmax(teacher(*batch.inputs)[0] / temperature, -1).repeat(k, 1)
        log_student = torch.log_softmax(rollout.logits / temperature, -1)
        kd = nn.functional.kl_div(log_student, target, reduction="batchmean") * temperature**2
        return kd + rl, {"kd": kd.item(), "reward": reward, "selected": share}

    joint_steps = phase_steps(options, options.joint_steps, options.joint_epochs, len(train))
    groups = weight_groups(model, options.train_word_embeddings, exclude=("base.pruner.",))
    groups.append(ParamGroup(list(pruner.parameters()), lr=options.policy_lr, weight_decay=0.0))
    outcome.phases["joint"] = run_phase(
        "joint", model, joint_step, train, options, joint_steps, options.lr, groups, cfg, out_dir, resume, progress,
        seed=options.seed + 1, extra=extra,
    )  # fmt: skip
    maybe_eval(loaded.model, eval_data, "trbert", outcome, options.batch_size)
    loaded.notes.append(
        f"TR-BERT: policy {policy_steps} steps ({imitation_steps} with imitation), joint {joint_steps} steps, "
        f"length penalty {options.length_penalty}, {k} samples"
    )
    return finish(outcome, out_dir, "trbert", options, train, PHASES)


def _resumed_step(path: Path | None, resume: bool) -> int:
    """The step a resumed policy phase continues from (it decides whether imitation is still on)."""
    if not (resume and path is not None and path.exists()):
        return 0
    from pruneport.training.trainer import read_checkpoint

    return int(read_checkpoint(path)["step"])

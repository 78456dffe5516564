"""Transkimmer training (Guan et al., ACL'22, section 4.2): skim predictors learned end to end with the task.

During training nothing is removed. Before every layer the skim predictor's two logits give a hard decision
sampled with the Gumbel-Softmax reparameterization (``F.gumbel_softmax(hard=True)``, tau 0.1 as in the paper): the
forward pass uses the 0/1 sample, the backward pass the relaxed softmax. The decisions accumulate into a mask (a
skimmed token never comes back) that the layer's attention applies to its keys ("skim attention", eq. 4; here the
masked softmax, renormalised, which is what real removal computes); a skimmed token's state is carried forward
unchanged (eq. 3). The loss is ``task loss + harmony * skim loss`` (eq. 6-7), the skim loss being the mean over
layers of the share of tokens kept, over real tokens other than CLS (CLS is always kept, so it carries no signal;
padding is no token).

At evaluation the same module decides with the deterministic argmax (``logit1 > logit0``), which is exactly what the
exported :class:`~pruneport.methods.transkimmer.model.TranskimmerPruner` computes; the trained weights are the very
modules of the :class:`~pruneport.methods.pruned_encoder.PrunedSequenceClassifier` that is saved. The
predictors start as upstream's ``init_skim_predictor`` leaves them (every token kept;
:mod:`pruneport.training.method_model`).
Written by hand: no library implements skim attention.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch
from torch import nn

from pruneport.methods.checkpoint import LoadedModel
from pruneport.methods.pruned_encoder import PrunedSequenceClassifier
from pruneport.methods.transkimmer.model import TranskimmerParams
from pruneport.training.data import Batch, EncodedData
from pruneport.training.method_model import TRANSKIMMER_KEEP_BIAS, method_model, transkimmer_init
from pruneport.training.results import (
    TrainingOptions,
    TrainOutcome,
    finish,
    maybe_eval,
    phase_steps,
    run_phase,
    weight_groups,
)
from pruneport.training.trainer import ParamGroup

log = logging.getLogger(__name__)

# Paper Table 2: the harmony coefficient per dataset (0.5 where a dataset is not listed there).
HARMONY_BY_DATA = {"sst2": 0.3, "mrpc": 0.5, "imdb": 0.5}
PHASES = ("skim",)


@dataclass
class TranskimmerOptions(TrainingOptions):
    """harmony: weight lambda of the skim loss (more skimming when larger; paper Table 2: SST-2 0.3, IMDB 0.5);
    tau: Gumbel-Softmax temperature (paper: 0.1); predictor_lr: learning rate of the skim predictors (None: ``lr``,
    as in the paper, where one optimizer trains everything); init_keep_bias: the predictors' last bias starts at
    (-b, +b) so that every token is kept (upstream's ``init_skim_predictor``: 5). With tau 0.1 a logit gap of 2b
    saturates the relaxed softmax, so its gradient only comes from the rare Gumbel draws that close the gap: short
    runs (few tokens seen) learn to skim sooner from a smaller b."""

    harmony: float = 0.5
    tau: float = 0.1
    epochs: float = 3.0
    steps: int | None = None
    lr: float = 2e-5
    predictor_lr: float | None = None
    init_keep_bias: float = TRANSKIMMER_KEEP_BIAS

    def __post_init__(self) -> None:
        if self.harmony < 0:
            raise ValueError(f"harmony coefficient must be >= 0, got {self.harmony}")
        if self.tau <= 0:
            raise ValueError(f"Gumbel-Softmax temperature must be > 0, got {self.tau}")


@dataclass
class SkimOutput:
    """Logits [batch, labels]; masks: per layer, the cumulative keep mask [batch, seq] (1 kept; 0 skimmed, padding)."""

    logits: torch.Tensor
    masks: list[torch.Tensor]
    live: torch.Tensor


class SkimTrainingModel(nn.Module):
    """Skim attention around a Transkimmer :class:`PrunedSequenceClassifier` (whose modules it trains)."""

    def __init__(self, base: PrunedSequenceClassifier, tau: float) -> None:
        super().__init__()
        self.base = base
        self.tau = float(tau)

    def decisions(self, layer: int, hidden: torch.Tensor) -> torch.Tensor:
        """[B,S] keep decisions in {0, 1}: Gumbel-Softmax samples in training, the argmax rule in eval mode."""
        logits = self.base.pruner.skim_predictors[layer].predictor(hidden)
        if self.training:
            return nn.functional.gumbel_softmax(logits, tau=self.tau, hard=True)[..., 1]
        return ((logits[..., 1] - logits[..., 0]) > 0).to(hidden.dtype)

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor | None = None
    ) -> SkimOutput:
        """Every layer at full width, skimmed tokens masked as keys and carried forward; logits and the masks."""
        base = self.base
        live = attention_mask.bool()
        is_cls = torch.zeros_like(live)
        is_cls[:, 0] = True
        hidden = base.embeddings(input_ids, live, token_type_ids)
        mask = live.to(hidden.dtype)
        masks = []
        for i, layer in enumerate(base.layer):
            decision = self.decisions(i, hidden)
            mask = mask * torch.where(is_cls, torch.ones_like(decision), decision)
            masks.append(mask)
            attended, _ = layer.attention(hidden, live, mask, renormalize=True)
            kept = mask.unsqueeze(-1)
            hidden = kept * layer.ffn(attended) + (1.0 - kept) * hidden
        return SkimOutput(base.classifier(hidden[:, 0]), masks, live)


def skim_loss(out: SkimOutput) -> torch.Tensor:
    """Eq. 6: the mean over layers of the share of real non-CLS tokens kept (0 when there is no such token)."""
    candidates = out.live.clone()
    candidates[:, 0] = False
    weight = candidates.to(out.masks[0].dtype)
    count = weight.sum().clamp(min=1.0)
    return torch.stack([(m * weight).sum() / count for m in out.masks]).mean()


def train_transkimmer(
    finetuned: LoadedModel,
    train: EncodedData,
    options: TranskimmerOptions,
    out_dir: Path | None = None,
    eval_data: EncodedData | None = None,
    resume: bool = False,
    progress: bool = True,
) -> TrainOutcome:
    """Transkimmer on a fine-tuned, unpruned classifier; writes ``out_dir/model.pt`` (method "transkimmer")."""
    init = partial(transkimmer_init, keep_bias=options.init_keep_bias)
    loaded = method_model(finetuned, "transkimmer", TranskimmerParams().to_dict(), options.seed, init)
    outcome = TrainOutcome(loaded)
    maybe_eval(finetuned.model, eval_data, "finetuned", outcome, options.batch_size)
    maybe_eval(loaded.model, eval_data, "start", outcome, options.batch_size)
    torch.manual_seed(options.seed)
    model = SkimTrainingModel(loaded.model, options.tau)
    steps = phase_steps(options, options.steps, options.epochs, len(train))
    extra = {k: getattr(options, k) for k in ("harmony", "tau", "predictor_lr", "init_keep_bias")}

    def step(m: SkimTrainingModel, batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
        out = m(*batch.inputs)
        ce = nn.functional.cross_entropy(out.logits, batch.labels)
        skim = skim_loss(out)
        return ce + options.harmony * skim, {"ce": ce.item(), "kept": skim.item()}

    groups = weight_groups(model, options.train_word_embeddings, exclude=("base.pruner.",))
    groups.append(ParamGroup(list(loaded.model.pruner.parameters()), lr=options.predictor_lr))
    config = loaded.model.config
    outcome.phases["skim"] = run_phase(
        "skim", model, step, train, options, steps, options.lr, groups, config, out_dir, resume, progress, extra=extra
    )
    maybe_eval(loaded.model, eval_data, "transkimmer", outcome, options.batch_size)
    loaded.notes.append(f"Transkimmer: {steps} steps, harmony {options.harmony}, tau {options.tau}")
    return finish(outcome, out_dir, "transkimmer", options, train, PHASES)

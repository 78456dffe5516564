"""LTP soft pruning (paper section 3.3, eq. 9-12): a differentiable mask on each layer's output, learnable thresholds.

During soft training no token is removed. Layer l's output is multiplied, per token, by
``m_l = sigmoid((s_l - theta_l) / T)`` where ``s_l`` is the LTP score of :func:`pruneport.methods.ltp.model.ltp_scores`
(attention received from live queries / (H * N), N = ``score_norm_length`` fixed whatever the padded width) and
``theta_l`` a learnable threshold. The regulariser is ``lambda * mean over layers of the mean mask`` (eq. 12), taken
over real tokens other than CLS. Differences from upstream (kssteven418/LTP ``LTPLayer``), both deliberate:

- CLS's mask is fixed to 1, because pruneport's hard pruning always keeps CLS;
- the mask mean excludes padding: upstream pads every input to 128 and averages over the padded width, which
  scales its lambda by the real-length fraction; here lambda means the same for every input length.

The module reuses the backbone pieces of a :class:`~pruneport.methods.pruned_encoder.PrunedSequenceClassifier` (it
wraps one, whose pruner is not used), so after soft training the same weights go into the hard-pruning model.
Written by hand because no library implements LTP's soft mask; the hard semantics stay in ``methods/ltp/model.py``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from pruneport.methods.ltp.model import ltp_scores
from pruneport.methods.pruned_encoder import PrunedSequenceClassifier


def rising_thresholds(final_threshold: float, num_layers: int) -> list[float]:
    """The paper's initialisation (section 4.4): ``final_threshold * l / L`` for 0-based layer l."""
    return [final_threshold * i / num_layers for i in range(num_layers)]


@dataclass
class SoftOutput:
    """Logits [batch, labels]; masks: per layer [batch, seq] in [0, 1] (0 on padding, 1 on CLS)."""

    logits: torch.Tensor
    masks: list[torch.Tensor]
    live: torch.Tensor  # [batch, seq] bool, the real tokens


class SoftLTPModel(nn.Module):
    """A sequence classifier with LTP's soft masks; ``thresholds`` [layers] is a learnable parameter."""

    def __init__(
        self,
        base: PrunedSequenceClassifier,
        thresholds: list[float],
        temperature: float,
        score_norm_length: int,
    ) -> None:
        super().__init__()
        if len(thresholds) != base.config.num_hidden_layers:
            raise ValueError(f"need {base.config.num_hidden_layers} thresholds, got {len(thresholds)}")
        if temperature <= 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        if score_norm_length < 1:
            raise ValueError(f"score_norm_length must be positive, got {score_norm_length}")
        self.base = base
        self.thresholds = nn.Parameter(torch.tensor(thresholds, dtype=torch.float32))
        self.temperature = float(temperature)
        self.score_norm_length = int(score_norm_length)

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor | None = None
    ) -> SoftOutput:
        """input_ids, attention_mask (, token_type_ids): [batch, seq] right-padded."""
        base = self.base
        live = attention_mask.bool()
        not_cls = torch.ones_like(live)
        not_cls[:, 0] = False
        hidden = base.embeddings(input_ids, live, token_type_ids)
        masks = []
        for i, layer in enumerate(base.layer):
            attended, probs = layer.attention(hidden, live)
            out = layer.ffn(attended)
            scores = ltp_scores(probs, live, self.score_norm_length)
            soft = torch.sigmoid((scores - self.thresholds[i]) / self.temperature)
            mask = torch.where(not_cls, soft, torch.ones_like(soft)) * live.to(soft.dtype)
            hidden = out * mask.unsqueeze(-1)
            masks.append(mask)
        return SoftOutput(base.classifier(hidden[:, 0]), masks, live)

    def clamp_thresholds(self) -> None:
        """Keep thresholds >= 0 (a threshold of 0 means "no pruning" in the hard model)."""
        with torch.no_grad():
            self.thresholds.clamp_(min=0.0)

    def effective_thresholds(self) -> list[float]:
        """The thresholds as floats, negative ones as 0."""
        return [max(0.0, float(t)) for t in self.thresholds.detach()]


def mask_regularizer(out: SoftOutput) -> torch.Tensor:
    """Eq. 12: mean over layers of the mean soft mask over real non-CLS tokens (0 when no such token)."""
    candidates = out.live.clone()
    candidates[:, 0] = False
    count = candidates.sum().clamp(min=1).to(out.masks[0].dtype)
    per_layer = torch.stack([(m * candidates).sum() / count for m in out.masks])
    return per_layer.mean()


def soft_keep_fraction(out: SoftOutput) -> float:
    """Share of real non-CLS token slots whose soft mask is above 0.5, averaged over layers (for progress bars)."""
    candidates = out.live.clone()
    candidates[:, 0] = False
    count = max(1, int(candidates.sum()))
    return float(sum(int(((m > 0.5) & candidates).sum()) for m in out.masks) / (count * len(out.masks)))

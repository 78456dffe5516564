"""The pruned sequence classifier shared by every method: a backbone whose prune points really shorten the sequence.

A method plugs in as a :class:`TokenPruner` with two hooks, one before each layer (TR-BERT, Transkimmer, AdapLeR,
Pyramid-BERT) and one after each layer's attention, before its FFN (LTP). A hook returns a keep mask or ``None``
(no pruning at that point, decided when the model is built, so the exported graph has no op there).

Batches follow the common rules of ``shared/methods.md``: a row's live tokens are packed to the left in position
order, the tail is dead (``live`` False) and invisible to attention and to every score; rows of one batch keep
different numbers of tokens, and the tensor is as wide as the longest row. :func:`compact` is written with tensor
ops only (one TopK whose k is a graph value) and rows move with the custom op ``pruneport::gather_rows``
(:mod:`pruneport.methods.prune_ops`), so that the dynamo exporter emits a dynamic-length graph with no Python ints.

This one module is both the parity reference and the export source.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from pruneport.methods.backbone import BackboneConfig, ClassificationHead, Embeddings, EncoderLayer
from pruneport.methods.prune_ops import gather_rows


@dataclass
class PruneState:
    """What a pruner may look at: the original real length of each example ([batch] int64)."""

    initial_lengths: torch.Tensor
    scratch: dict[str, Any] = field(default_factory=dict)  # a pruner's own per-forward tensors (e.g. running masks)


class TokenPruner(nn.Module):
    """Base class of a method's pruning rule. Subclasses override one or both hooks.

    Every hook returns a keep mask [batch, seq] (bool) that must be a subset of ``live`` and must keep CLS, or
    ``None`` when the method does not prune at that point.
    """

    method: str = "none"

    def before_layer(
        self, layer: int, hidden: torch.Tensor, live: torch.Tensor, state: PruneState
    ) -> torch.Tensor | None:
        """keep [B,S] before layer ``layer`` (``hidden`` [B,S,D] is its input), or None; the default prunes nothing."""
        return None

    def after_attention(
        self, layer: int, probs: torch.Tensor, hidden: torch.Tensor, live: torch.Tensor, state: PruneState
    ) -> torch.Tensor | None:
        """keep [B,S] after layer ``layer``'s attention (probs [B,H,S,S], its output ``hidden`` [B,S,D]), before
        the FFN, or None; the default prunes nothing."""
        return None

    # Optional hooks for methods that mask instead of removing (Transkimmer ``master``); the defaults change nothing.

    def attention_key_weights(
        self, layer: int, hidden: torch.Tensor, live: torch.Tensor, state: PruneState
    ) -> torch.Tensor | None:
        """[batch, seq] weights multiplying layer ``layer``'s attention probabilities per key after the softmax."""
        return None

    def tokens_entering(self, layer: int, live: torch.Tensor, state: PruneState) -> torch.Tensor:
        """[batch] int64: the count reported in ``tokens_per_layer`` for this layer (default: live tokens)."""
        return live.sum(1)

    def final_hidden(self, hidden: torch.Tensor, live: torch.Tensor, state: PruneState) -> torch.Tensor:
        """The last layer's output as reported in ``last_hidden_state`` (before scattering to original positions)."""
        return hidden


def keep_cls(keep: torch.Tensor) -> torch.Tensor:
    """Force position 0 (CLS) kept in a [batch, seq] bool mask."""
    first = torch.arange(keep.shape[1], device=keep.device) == 0
    return keep | first.unsqueeze(0)


@dataclass
class Compacted:
    """Result of :func:`compact`: the packed slots' source indices and the new live mask."""

    index: torch.Tensor  # [batch, new_seq] int64, the old slot each new slot takes
    live: torch.Tensor  # [batch, new_seq] bool


def compact(keep: torch.Tensor, bucket: int = 0) -> Compacted:
    """Pack each row's kept slots to the left in position order; the new width is the largest kept count.

    keep: [batch, seq] bool. Dead slots of the new tensor point at kept-or-not old slots and are masked by ``live``.
    bucket: when > 0, the new width is rounded up to a multiple of ``bucket`` (capped at ``seq``); the extra slots
    are dead, so results are unchanged while a runtime sees fewer distinct shapes (OpenVINO compiles per shape).

    One ``TopK`` does the packing: the key of a kept slot is its position, of a dropped slot its position + seq, so
    the ``width`` smallest keys are each row's kept slots in position order followed by dropped ones, and a slot is
    live iff its key is below ``seq``. Keys are distinct, so the order does not depend on how ties are broken.
    """
    seq = keep.shape[1]
    positions = torch.arange(seq, device=keep.device)
    key = torch.where(keep, positions, positions + seq)
    counts = keep.sum(1)
    width = counts.max()
    if bucket > 0:
        width = torch.clamp((width + (bucket - 1)) // bucket * bucket, max=seq)
    k = width.item()  # an int in eager mode; exported as a graph value (an unbacked size), not a constant
    torch._check(k >= 1)
    torch._check(k <= seq)
    values, index = torch.topk(key, k, dim=1, largest=False, sorted=True)
    return Compacted(index=index, live=values < seq)


class PrunedSequenceClassifier(nn.Module):
    """A BERT-family sequence classifier with real token removal at the pruner's prune points.

    forward(input_ids, attention_mask[, token_type_ids]) -> (logits [B, labels], tokens_per_layer [B, L]) and, when
    built with ``output_hidden=True``, ``last_hidden_state`` [B, S, D] in the original positions, each pruned token
    carrying its state from the moment it was pruned.
    """

    def __init__(
        self,
        config: BackboneConfig,
        pruner: TokenPruner,
        output_hidden: bool = False,
        bucket: int = 0,
        cls_only_last_layer: bool = False,
    ) -> None:
        super().__init__()
        self.config = config
        self.bucket = bucket  # > 0: round each prune point's kept width up to a multiple (see compact)
        # True: the last layer computes its query, attention row, output projection and FFN for CLS alone (keys and
        # values still for every live token); logits and tokens_per_layer are unchanged. Off by default; it may be
        # switched on after building (``model.cls_only_last_layer = True``); not with ``output_hidden``.
        self.cls_only_last_layer = cls_only_last_layer
        self.embeddings = Embeddings(config)
        self.layer = nn.ModuleList(EncoderLayer(config) for _ in range(config.num_hidden_layers))
        self.classifier = ClassificationHead(config)
        self.pruner = pruner
        self.output_hidden = output_hidden

    @property
    def input_names(self) -> list[str]:
        """``input_ids``, ``attention_mask`` and, for backbones with token types, ``token_type_ids``."""
        names = ["input_ids", "attention_mask"]
        if self.config.uses_token_type_ids:
            names.append("token_type_ids")
        return names

    @property
    def output_names(self) -> list[str]:
        """``logits``, ``tokens_per_layer`` and, when built with ``output_hidden``, ``last_hidden_state``."""
        names = ["logits", "tokens_per_layer"]
        if self.output_hidden:
            names.append("last_hidden_state")
        return names

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, ...]:
        """input_ids, attention_mask[, token_type_ids] [B,S] -> (logits [B,labels], tokens_per_layer [B,L] int64[,
        last_hidden_state [B,S,D]])."""
        live = attention_mask.bool()
        state = PruneState(initial_lengths=live.sum(1))
        hidden = self.embeddings(input_ids, live, token_type_ids)
        tracker = _HiddenTracker(hidden, live) if self.output_hidden else None
        counts = []
        for i, layer in enumerate(self.layer):
            keep = self.pruner.before_layer(i, hidden, live, state)
            if keep is not None:
                hidden, live = self._prune(keep, hidden, tracker, self.bucket)
            counts.append(self.pruner.tokens_entering(i, live, state))
            if self.cls_only_last_layer and i == len(self.layer) - 1:
                hidden = self._cls_only_layer(layer, i, hidden, live, state)
                break
            attended, probs = layer.attention(hidden, live, self.pruner.attention_key_weights(i, hidden, live, state))
            keep = self.pruner.after_attention(i, probs, attended, live, state)
            if keep is not None:
                attended, live = self._prune(keep, attended, tracker, self.bucket)
            hidden = layer.ffn(attended)
        logits = self.classifier(hidden[:, 0])
        outputs = (logits, torch.stack(counts, dim=1))
        if tracker is not None:
            outputs += (tracker.finish(self.pruner.final_hidden(hidden, live, state)),)
        return outputs

    def _cls_only_layer(
        self, layer: EncoderLayer, i: int, hidden: torch.Tensor, live: torch.Tensor, state: PruneState
    ) -> torch.Tensor:
        """The last layer for CLS alone: [B,S,D] -> [B,1,D]. Its prune decision is skipped: nothing reads it."""
        if self.output_hidden:
            raise ValueError("cls_only_last_layer computes CLS alone; it cannot also output last_hidden_state")
        weights = self.pruner.attention_key_weights(i, hidden, live, state)
        attended, _ = layer.attention(hidden, live, weights, query_rows=1)
        return layer.ffn(attended)

    @staticmethod
    def _prune(
        keep: torch.Tensor, hidden: torch.Tensor, tracker: _HiddenTracker | None, bucket: int = 0
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if tracker is not None:
            tracker.record(hidden)
        packed = compact(keep, bucket)
        if tracker is not None:
            tracker.follow(packed)
        return gather_rows(hidden, packed.index), packed.live


class _HiddenTracker:
    """Scatters each token's state back to its original position whenever the sequence is compacted.

    Slots that are dead point at an extra position ``seq`` (one past the end) that is dropped at the end.
    """

    def __init__(self, hidden: torch.Tensor, live: torch.Tensor) -> None:
        seq = hidden.shape[1]
        self.seq = seq
        positions = torch.arange(seq, device=hidden.device).unsqueeze(0)
        self.origin = torch.where(live, positions, seq).expand(hidden.shape[0], -1)
        self.live = live
        self.final = torch.zeros(hidden.shape[0], seq + 1, hidden.shape[2], dtype=hidden.dtype, device=hidden.device)

    def record(self, hidden: torch.Tensor) -> None:
        index = self.origin.unsqueeze(-1).expand(-1, -1, hidden.shape[2])
        self.final = self.final.scatter(1, index, hidden)

    def follow(self, packed: Compacted) -> None:
        origin = torch.gather(self.origin, 1, packed.index)
        self.origin = torch.where(packed.live, origin, self.seq)

    def finish(self, hidden: torch.Tensor) -> torch.Tensor:
        self.record(hidden)
        return self.final[:, : self.seq]

"""Transkimmer (Guan et al., ACL'22): a skim predictor before every layer decides which tokens to drop.

Inference semantics (``shared/methods.md``, Transkimmer section):

- before every layer l (0 included) the predictor ``LayerNorm -> Linear(d,d) -> LayerNorm -> GELU -> Linear(d,2)``
  (both LayerNorms with torch's default eps 1e-5) scores every token; keep iff ``logit[1] > logit[0]`` (a tie
  skims), computed as ``logit[1] - logit[0] > margin_l`` with margin 0 (the same decision exactly: IEEE subtraction
  is 0 only for equal operands) so that ``pruneport calibrate`` has a per-layer constant to move
  (``pruning["margin"]``); CLS is always kept; a skimmed token never comes back;
- ``last_hidden_state``: a token skimmed before layer l carries its output of layer l-1 (the embedding output when
  skimmed before layer 0), scattered back to its original position.

Two attention semantics (``pruning["semantics"]``, CLI ``--transkimmer-semantics``):

- ``removal`` (default): skimmed tokens are gathered out, so later layers never compute them. This equals upstream
  branch ``feat_skim_eval`` (masked softmax) up to its 1e-6 epsilon.
- ``master``: upstream branch ``master``: nothing is removed; every layer still computes every token, but the
  attention probabilities are multiplied by the cumulative skim mask *after* the softmax (no renormalization), so
  skimmed tokens are invisible as keys while still counting in the softmax denominator. Checkpoints trained on
  ``master`` learned under this rule. ``tokens_per_layer`` reports the tokens still unskimmed entering each layer.

Differences from upstream, deliberate: upstream samples a hard Gumbel-softmax even at evaluation (stochastic);
pruneport uses the deterministic argmax. Upstream truncates physically only at batch size 1; pruneport removes at
any batch size and is batch invariant.

Upstream checkpoint: a ``save_pretrained`` folder, stock BERT/RoBERTa config plus ``skim_coefficient``, extra keys
``{bert,roberta}.encoder.skim_predictors.{i}.predictor.{0,1,2,4}.{weight,bias}``; those keys identify the method.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from pruneport.methods.pruned_encoder import PruneState, TokenPruner, keep_cls
from pruneport.methods.transkimmer.spec import SEMANTICS

PREDICTOR_EPS = 1e-5  # torch's nn.LayerNorm default, as upstream (not the config's layer_norm_eps)


@dataclass(frozen=True)
class TranskimmerParams:
    """Pruning parameters of a Transkimmer model.

    semantics: which attention semantics the graph reproduces. margin: per layer, keep a token iff
    ``logit1 - logit0 > margin`` (None = 0 everywhere = upstream's argmax; set by ``pruneport calibrate``).
    """

    semantics: str = "removal"
    margin: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        if self.semantics not in SEMANTICS:
            raise ValueError(f"Transkimmer semantics must be one of {list(SEMANTICS)}, got {self.semantics!r}")

    def margins(self, num_layers: int) -> tuple[float, ...]:
        """The margin per layer: zeros when unset; ValueError when there are not ``num_layers`` of them."""
        if self.margin is None:
            return (0.0,) * num_layers
        if len(self.margin) != num_layers:
            raise ValueError(f"Transkimmer needs {num_layers} margins (one per layer), got {len(self.margin)}")
        return self.margin

    def to_dict(self) -> dict[str, Any]:
        """The parameters as the manifest's pruning dict (``margin`` only when set)."""
        data: dict[str, Any] = {"semantics": self.semantics}
        if self.margin is not None:
            data["margin"] = list(self.margin)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TranskimmerParams:
        """Parameters from a pruning dict (semantics default ``removal``; an absent or empty margin means 0)."""
        margin = data.get("margin")
        return cls(str(data.get("semantics", "removal")), tuple(float(m) for m in margin) if margin else None)


class SkimPredictor(nn.Module):
    """Upstream's ``SkimPredictor``: ``predictor`` = LayerNorm, Linear(d,d), LayerNorm, GELU, Linear(d,2)."""

    def __init__(self, hidden_size: int) -> None:
        super().__init__()
        self.predictor = nn.Sequential(
            nn.LayerNorm(hidden_size, eps=PREDICTOR_EPS),
            nn.Linear(hidden_size, hidden_size),
            nn.LayerNorm(hidden_size, eps=PREDICTOR_EPS),
            nn.GELU(),
            nn.Linear(hidden_size, 2),
        )

    def forward(self, hidden: torch.Tensor, margin: float = 0.0) -> torch.Tensor:
        """hidden [B,S,D] -> keep [B,S] bool: ``logit1 - logit0 > margin`` (margin 0: exactly ``logit1 > logit0``)."""
        logits = self.predictor(hidden)
        return (logits[..., 1] - logits[..., 0]) > margin


class TranskimmerPruner(TokenPruner):
    """One :class:`SkimPredictor` per layer, applied before that layer."""

    method = "transkimmer"

    def __init__(self, hidden_size: int, num_layers: int, params: TranskimmerParams, track_hidden: bool) -> None:
        super().__init__()
        self.params = params
        self.margins = params.margins(num_layers)
        self.track_hidden = track_hidden  # master semantics: keep each token's state from when it was skimmed
        self.skim_predictors = nn.ModuleList(SkimPredictor(hidden_size) for _ in range(num_layers))

    @property
    def master(self) -> bool:
        """True under ``master`` semantics (skimmed keys are masked, not removed)."""
        return self.params.semantics == "master"

    def before_layer(
        self, layer: int, hidden: torch.Tensor, live: torch.Tensor, state: PruneState
    ) -> torch.Tensor | None:
        """removal: keep [B,S] from the layer's skim predictor, plus CLS. master: update the cumulative skim mask
        (and the skimmed tokens' forwarded states) in ``state.scratch`` and return None."""
        keep = keep_cls(live & self.skim_predictors[layer](hidden, self.margins[layer]))
        if not self.master:
            return keep
        previous = state.scratch.get("skim_mask", live)
        mask = previous & keep  # cumulative: a skimmed token never comes back
        if self.track_hidden:
            forwarded = state.scratch.get("forwarded", hidden)
            newly_skimmed = (previous & ~mask).unsqueeze(-1)
            state.scratch["forwarded"] = torch.where(newly_skimmed, hidden, forwarded)
        state.scratch["skim_mask"] = mask
        return None

    def attention_key_weights(
        self, layer: int, hidden: torch.Tensor, live: torch.Tensor, state: PruneState
    ) -> torch.Tensor | None:
        """master: the cumulative skim mask [B,S] as key weights; removal: None."""
        return state.scratch["skim_mask"].to(hidden.dtype) if self.master else None

    def tokens_entering(self, layer: int, live: torch.Tensor, state: PruneState) -> torch.Tensor:
        """[B] int64: tokens not yet skimmed (master) or live tokens (removal) entering the layer."""
        return state.scratch["skim_mask"].sum(1) if self.master else live.sum(1)

    def final_hidden(self, hidden: torch.Tensor, live: torch.Tensor, state: PruneState) -> torch.Tensor:
        """With master semantics and tracking: skimmed tokens carry their state from when they were skimmed; else
        ``hidden`` unchanged."""
        if not (self.master and self.track_hidden):
            return hidden
        return torch.where(state.scratch["skim_mask"].unsqueeze(-1), hidden, state.scratch["forwarded"])


def build(cfg, pruning: dict[str, Any], output_hidden: bool = False):
    """The Transkimmer :class:`PrunedSequenceClassifier`; skimmed states are tracked when ``output_hidden``."""
    from pruneport.methods.pruned_encoder import PrunedSequenceClassifier

    params = TranskimmerParams.from_dict(pruning)
    pruner = TranskimmerPruner(cfg.hidden_size, cfg.num_hidden_layers, params, track_hidden=output_hidden)
    return PrunedSequenceClassifier(cfg, pruner, output_hidden=output_hidden)


# ----------------------------------------------------------------------------------------------------------------
# Checkpoint loader
# ----------------------------------------------------------------------------------------------------------------

_PREDICTOR_PARTS = ("0.weight", "0.bias", "1.weight", "1.bias", "2.weight", "2.bias", "4.weight", "4.bias")


def predictor_key_map(prefix: str, num_layers: int) -> dict[str, str]:
    """Upstream key -> pruneport key: ``{prefix}encoder.skim_predictors.{i}.predictor.{p}`` -> ``pruner.skim_...``."""
    return {
        f"{prefix}encoder.skim_predictors.{i}.predictor.{p}": f"pruner.skim_predictors.{i}.predictor.{p}"
        for i in range(num_layers)
        for p in _PREDICTOR_PARTS
    }


def override(pruning: dict[str, Any], options: dict[str, Any], num_layers: int) -> tuple[dict[str, Any], list[str]]:
    """A model.pt's stored parameters with the user's ``transkimmer_semantics`` applied (margins kept), and a note."""
    semantics = options.get("transkimmer_semantics")
    stored = TranskimmerParams.from_dict(pruning)
    if semantics is None or semantics == stored.semantics:
        return pruning, []
    params = TranskimmerParams(str(semantics), stored.margin)
    note = f"semantics given on the command line replaces the checkpoint's: {stored.semantics!r} -> {semantics!r}"
    return {**pruning, **params.to_dict()}, [note]


def load_folder(folder, options: dict[str, Any]):
    """An upstream Transkimmer folder: BERT/RoBERTa plus ``{prefix}encoder.skim_predictors.{i}.predictor.*``."""
    from pruneport.methods import checkpoint as ck
    from pruneport.methods.backbone import BackboneConfig

    config = ck.read_json(folder / "config.json")
    cfg = BackboneConfig.from_hf_dict(config)
    state = ck.read_state_dict(folder, bool(options.get("trust_pickle")))
    params = TranskimmerParams(str(options.get("transkimmer_semantics") or "removal"))
    prefix = ck.backbone_prefix(state)
    names = predictor_key_map(prefix, cfg.num_hidden_layers)
    mapped, leftover = ck.map_hf_state(state, cfg)
    missing = [k for k in names if k not in state]
    if missing:
        what = "has no skim predictors" if len(missing) == len(names) else "lacks skim predictor weights"
        raise ck.CheckpointKeyError(
            f"{folder} {what} (is it a Transkimmer checkpoint?)", missing, [k for k in leftover if k not in names]
        )
    mapped.update({names[k]: state[k] for k in names})
    leftover = [k for k in leftover if k not in names]
    model = build(cfg, params.to_dict(), bool(options.get("output_hidden")))
    notes = ["Transkimmer decisions use the deterministic argmax (upstream samples Gumbel-softmax at evaluation)"]
    if "skim_coefficient" not in config:
        notes.append("config.json has no skim_coefficient (upstream writes one); loaded by the predictor keys")
    if params.semantics == "master":
        notes.append("master semantics: skimmed tokens are masked after the softmax and still computed (no speedup)")
    return ck.loaded_from_hf_folder(
        model, folder, config, "transkimmer", params.to_dict(), mapped, leftover, options, notes
    )

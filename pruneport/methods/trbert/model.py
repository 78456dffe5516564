"""TR-BERT (Ye et al., NAACL'21): a policy MLP that selects tokens before layer 1 and before layer L//2.

Inference semantics (``shared/methods.md``, TR-BERT section):

- selection points before 0-based layers 1 and L//2 (BERT-base: 1 and 6); with 2 or 3 layers both are layer 1, which
  is then the only selection point and uses the first policy (as upstream's 3-layer DistilBERT does);
- policy ``w`` (0 for the first point, 1 for the second): ``p = sigmoid(W2 gelu(W1 h + b1) + b2)``, W1: hidden -> 32,
  W2: 32 -> 1, on the hidden states entering the layer;
- keep a token iff ``p >= 0.5`` (``keep_probability``, per selection point); CLS is always kept, padding
  never; pruned tokens are gathered out.

Differences from upstream (``thunlp/TR-BERT``, ``modeling_autobert.py``), deliberate:

- upstream gathers the kept tokens in *descending probability* order; pruneport keeps *position* order. Positions
  are already in the embeddings, so classification is unchanged; ``last_hidden_state`` is in original positions.
- upstream makes every row of a batch keep the batch's *maximum* kept count (rows with fewer selected tokens also
  keep their next most probable tokens, unmasked), so its results depend on the batch; pruneport is batch invariant
  and equals upstream at batch size 1 (upstream's evaluation setting).
- DistilBERT checkpoints (``distilbert.transformer.linear_*``) are refused with a clear error: DistilBERT's backbone
  (``q_lin``/``sa_layer_norm``/``pre_classifier`` with ReLU, no token types, no pooler) is not among pruneport's
  backbones yet.

Upstream checkpoint: a transformers 2.5.1 ``save_pretrained`` folder, plain BERT config, extra keys
``bert.encoder.linear_1.{0,1}.{weight,bias}`` ([32, hidden]) and ``bert.encoder.linear_2.{0,1}.*`` ([1, 32]).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from pruneport.methods.pruned_encoder import PruneState, TokenPruner, keep_cls
from pruneport.methods.trbert.spec import KEEP_PROBABILITY, default_selection_layers

POLICY_SIZE = 32  # hard-coded upstream (``linear_size``)


@dataclass(frozen=True)
class TRBertParams:
    """Pruning parameters of a TR-BERT model.

    selection_layers: the 0-based layers before which a policy selects tokens.
    keep_probability: the probability a token needs to be kept, per selection point (upstream: 0.5; other values
    come from pruneport's threshold calibration, see :mod:`pruneport.calibration.thresholds`).
    """

    selection_layers: tuple[int, ...]
    keep_probability: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        if not self.keep_probability:
            object.__setattr__(self, "keep_probability", (KEEP_PROBABILITY,) * len(self.selection_layers))
        if len(self.keep_probability) != len(self.selection_layers):
            raise ValueError(
                f"TR-BERT needs one keep_probability per selection layer {list(self.selection_layers)}, "
                f"got {list(self.keep_probability)}"
            )

    def to_dict(self) -> dict[str, Any]:
        """The parameters as the manifest's pruning dict."""
        return {"selection_layers": list(self.selection_layers), "keep_probability": list(self.keep_probability)}

    @classmethod
    def from_dict(cls, data: dict[str, Any], num_layers: int) -> TRBertParams:
        """Parameters from a pruning dict (default: upstream's selection layers, keep probability 0.5); ValueError
        unless there are 1 or 2 increasing selection layers in 1..num_layers-1."""
        layers = data.get("selection_layers")
        params = cls(
            tuple(int(i) for i in layers) if layers is not None else default_selection_layers(num_layers),
            tuple(float(p) for p in data.get("keep_probability") or ()),
        )
        bad = [i for i in params.selection_layers if not 0 < i < num_layers]
        if (
            bad
            or len(params.selection_layers) not in (1, 2)
            or list(params.selection_layers) != sorted(set(params.selection_layers))
        ):
            raise ValueError(
                f"TR-BERT selection_layers must be 1 or 2 increasing layers in 1..{num_layers - 1}, "
                f"got {list(params.selection_layers)}"
            )
        return params


class TRBertPruner(TokenPruner):
    """Policy networks ``linear_1[w]`` (hidden -> 32) and ``linear_2[w]`` (32 -> 1), w = selection index."""

    method = "trbert"

    def __init__(self, hidden_size: int, params: TRBertParams) -> None:
        super().__init__()
        self.params = params
        # upstream always holds two policies, whatever the depth
        self.linear_1 = nn.ModuleList(nn.Linear(hidden_size, POLICY_SIZE) for _ in range(2))
        self.linear_2 = nn.ModuleList(nn.Linear(POLICY_SIZE, 1) for _ in range(2))

    def policy_logit(self, which: int, hidden: torch.Tensor) -> torch.Tensor:
        """hidden [B,S,D] -> the policy's pre-sigmoid output [B,S] (keep iff sigmoid >= keep_probability)."""
        return self.linear_2[which](nn.functional.gelu(self.linear_1[which](hidden))).squeeze(-1)

    def before_layer(
        self, layer: int, hidden: torch.Tensor, live: torch.Tensor, state: PruneState
    ) -> torch.Tensor | None:
        """keep [B,S] before a selection layer: live tokens whose policy probability is >= keep_probability, plus
        CLS; None elsewhere."""
        if layer not in self.params.selection_layers:
            return None
        which = self.params.selection_layers.index(layer)
        prob = torch.sigmoid(self.policy_logit(which, hidden))
        return keep_cls(live & (prob >= self.params.keep_probability[which]))


def build(cfg, pruning: dict[str, Any], output_hidden: bool = False):
    """The TR-BERT :class:`PrunedSequenceClassifier` for ``cfg`` and a pruning dict."""
    from pruneport.methods.pruned_encoder import PrunedSequenceClassifier

    params = TRBertParams.from_dict(pruning, cfg.num_hidden_layers)
    return PrunedSequenceClassifier(cfg, TRBertPruner(cfg.hidden_size, params), output_hidden=output_hidden)


# ----------------------------------------------------------------------------------------------------------------
# Checkpoint loader
# ----------------------------------------------------------------------------------------------------------------


def policy_key_map(prefix: str) -> dict[str, str]:
    """Upstream policy key -> pruneport key, e.g. ``bert.encoder.linear_1.0.weight`` -> ``pruner.linear_1.0.weight``."""
    return {
        f"{prefix}encoder.{lin}.{w}.{p}": f"pruner.{lin}.{w}.{p}"
        for lin in ("linear_1", "linear_2")
        for w in (0, 1)
        for p in ("weight", "bias")
    }


def _refuse_distilbert(folder, config: dict[str, Any], keys) -> None:
    from pruneport.methods.checkpoint import CheckpointError

    if config.get("model_type") == "distilbert" or any(k.startswith("distilbert.") for k in keys):
        raise CheckpointError(
            f"{folder} is a DistilBERT TR-BERT checkpoint (distilbert.transformer.linear_*): pruneport does not "
            "support DistilBERT's backbone layout yet (q_lin/k_lin/v_lin/out_lin, sa_layer_norm, pre_classifier "
            "with ReLU, no token types); use a BERT-layout TR-BERT checkpoint"
        )


def load_folder(folder, options: dict[str, Any]):
    """An upstream TR-BERT folder (BERT layout plus ``bert.encoder.linear_{1,2}.{0,1}.*``)."""
    from pruneport.methods import checkpoint as ck
    from pruneport.methods.backbone import BackboneConfig

    config = ck.read_json(folder / "config.json")
    if config.get("model_type") == "distilbert":
        _refuse_distilbert(folder, config, [])
    state = ck.read_state_dict(folder, bool(options.get("trust_pickle")))
    _refuse_distilbert(folder, config, state)
    cfg = BackboneConfig.from_hf_dict(config)
    params = TRBertParams(default_selection_layers(cfg.num_hidden_layers))
    prefix = ck.backbone_prefix(state)
    names = policy_key_map(prefix)
    mapped, leftover = ck.map_hf_state(state, cfg)
    missing = [k for k in names if k not in state]
    if missing:
        raise ck.CheckpointKeyError(
            f"{folder} (TR-BERT policy weights)", missing, [k for k in leftover if k not in names]
        )
    mapped.update({names[k]: state[k] for k in names})
    leftover = [k for k in leftover if k not in names]
    model = build(cfg, params.to_dict(), bool(options.get("output_hidden")))
    notes = [
        f"TR-BERT selects tokens before layers {list(params.selection_layers)} (0-based)",
        "pruneport keeps kept tokens in position order and is batch invariant (upstream: probability order, "
        "batch-maximum count); equal to upstream at batch size 1",
    ]
    return ck.loaded_from_hf_folder(model, folder, config, "trbert", params.to_dict(), mapped, leftover, options, notes)

"""LTP (Learned Token Pruning, Kim et al. KDD'22): a learned threshold on the attention each token receives.

Inference semantics (``shared/methods.md``, LTP section):

- score of key k at layer l: ``s[k] = sum_h sum_{q live} A[h, q, k] / (H * N)``, N = ``score_norm_length``
  (the padded training length, 128 for upstream checkpoints), fixed whatever the input length;
- keep k iff ``s[k] >= max(1e-5, thr_l)``; a layer whose effective threshold is exactly 0 does not prune;
- CLS is always kept (upstream can prune it: pruneport deliberately does not), so at least one token survives;
- pruned tokens are gathered out after layer l's attention, before its FFN.

Upstream's effective threshold of 0-based layer l is ``keep_threshold_l + final_token_threshold * l / L``; the
loaders in :mod:`pruneport.methods.ltp_checkpoints` do that sum, so :class:`LTPPruner` holds effective values.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from pruneport.methods.ltp.spec import MIN_THRESHOLD
from pruneport.methods.pruned_encoder import PruneState, TokenPruner, keep_cls

DEFAULT_SCORE_NORM_LENGTH = 128


@dataclass(frozen=True)
class LTPParams:
    """Pruning parameters of an LTP model: one effective threshold per layer and the score denominator N."""

    thresholds: tuple[float, ...]
    score_norm_length: int = DEFAULT_SCORE_NORM_LENGTH
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def rising(cls, final_threshold: float, num_layers: int, score_norm_length: int = DEFAULT_SCORE_NORM_LENGTH):
        """Upstream's schedule without learned deltas: ``final_threshold * l / L`` for l = 0..L-1."""
        return cls(tuple(final_threshold * i / num_layers for i in range(num_layers)), score_norm_length)

    def to_dict(self) -> dict[str, Any]:
        """The parameters as the manifest's pruning dict (``extra`` is not written)."""
        return {"thresholds": list(self.thresholds), "score_norm_length": self.score_norm_length}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LTPParams:
        """Parameters from a pruning dict; ``score_norm_length`` defaults to DEFAULT_SCORE_NORM_LENGTH."""
        norm = int(data.get("score_norm_length", DEFAULT_SCORE_NORM_LENGTH))
        return cls(tuple(float(t) for t in data["thresholds"]), norm)


def ltp_scores(probs: torch.Tensor, live: torch.Tensor, score_norm_length: int) -> torch.Tensor:
    """probs [B,H,S,S], live [B,S] -> scores [B,S]: attention received from live queries, over heads, / (H*N)."""
    heads = probs.shape[1]
    # live queries first (one vector-matrix product per head), then the H short rows: summing the [B,H,S,S]
    # probabilities over heads first costs a full pass over them (the slowest node of a prune point in ORT)
    received = torch.matmul(live.to(probs.dtype)[:, None, None, :], probs).sum(1).squeeze(1)
    return received * (1.0 / (heads * score_norm_length))


class LTPPruner(TokenPruner):
    """Hard LTP pruning after each layer's attention."""

    method = "ltp"

    def __init__(self, params: LTPParams) -> None:
        super().__init__()
        self.params = params
        self.register_buffer(
            "thresholds",
            torch.tensor([max(MIN_THRESHOLD, t) for t in params.thresholds], dtype=torch.float32),
            persistent=False,  # derived from params; never read from a state dict
        )

    def prunes_at(self, layer: int) -> bool:
        """Whether ``layer`` gets a prune op (its stored threshold is not exactly 0)."""
        return self.params.thresholds[layer] != 0.0

    def after_attention(
        self, layer: int, probs: torch.Tensor, hidden: torch.Tensor, live: torch.Tensor, state: PruneState
    ) -> torch.Tensor | None:
        """probs [B,H,S,S] -> keep [B,S]: live tokens whose :func:`ltp_scores` reach the layer's threshold (at
        least ``MIN_THRESHOLD``), plus CLS; None where the layer does not prune."""
        if not self.prunes_at(layer):
            return None
        scores = ltp_scores(probs, live, self.params.score_norm_length)
        return keep_cls(live & (scores >= self.thresholds[layer]))


# ----------------------------------------------------------------------------------------------------------------
# Checkpoint loaders
# ----------------------------------------------------------------------------------------------------------------

_UPSTREAM_THRESHOLD = "encoder.layer.{i}.attention.self.pruner.keep_threshold"


def _score_norm_length(options: dict[str, Any], default: int) -> int:
    """The ``score_norm_length`` option (>= 1), or ``default`` when not given."""
    from pruneport.validate import check_count

    value = options.get("score_norm_length")
    return default if value is None else check_count(value, "--score-norm-length")


def params_from_options(
    options: dict[str, Any], num_layers: int, default_norm: int = DEFAULT_SCORE_NORM_LENGTH
) -> LTPParams | None:
    """Thresholds given by the user: ``thresholds`` (one per layer) or ``final_threshold`` (rising schedule)."""
    norm = _score_norm_length(options, default_norm)
    if options.get("thresholds") is not None and options.get("final_threshold") is not None:
        raise ValueError("give --thresholds or --final-threshold, not both")
    if options.get("thresholds") is not None:
        values = tuple(float(t) for t in options["thresholds"])
        if len(values) != num_layers:
            raise ValueError(f"--thresholds needs {num_layers} values (one per layer), got {len(values)}")
        return LTPParams(values, norm)
    if options.get("final_threshold") is not None:
        return LTPParams.rising(float(options["final_threshold"]), num_layers, norm)
    return None


def override(pruning: dict[str, Any], options: dict[str, Any], num_layers: int) -> tuple[dict[str, Any], list[str]]:
    """A model.pt's stored parameters with the user's ``thresholds`` / ``final_threshold`` / ``score_norm_length``
    applied (the others kept); returns the new parameters and notes saying what was replaced."""
    stored = LTPParams.from_dict(pruning)
    given = params_from_options(options, num_layers, default_norm=stored.score_norm_length)
    params = given or LTPParams(stored.thresholds, _score_norm_length(options, stored.score_norm_length))
    notes = []
    if params.thresholds != stored.thresholds:
        notes.append(
            f"thresholds given on the command line replace the checkpoint's: {list(stored.thresholds)} -> "
            f"{list(params.thresholds)}"
        )
    if params.score_norm_length != stored.score_norm_length:
        notes.append(
            f"score_norm_length given on the command line replaces the checkpoint's: {stored.score_norm_length} -> "
            f"{params.score_norm_length}"
        )
    return {**pruning, **params.to_dict()}, notes


def upstream_thresholds(
    state: dict[str, torch.Tensor], prefix: str, config: dict[str, Any], num_layers: int
) -> tuple[tuple[float, ...], list[str]]:
    """Effective thresholds of an upstream LTP checkpoint (learned + final_token_threshold * l / L) and their keys."""
    final = float(config.get("final_token_threshold", 0.0) or 0.0)
    keys = [prefix + _UPSTREAM_THRESHOLD.format(i=i) for i in range(num_layers)]
    missing = [k for k in keys if k not in state]
    if missing:
        from pruneport.methods.checkpoint import CheckpointKeyError

        raise CheckpointKeyError("upstream LTP checkpoint", missing, [])
    values = tuple(float(state[k].reshape(())) + final * i / num_layers for i, k in enumerate(keys))
    return values, keys


def build(cfg, pruning: dict[str, Any], output_hidden: bool = False):
    """The LTP :class:`PrunedSequenceClassifier`; ValueError unless there is one threshold per layer."""
    from pruneport.methods.pruned_encoder import PrunedSequenceClassifier

    params = LTPParams.from_dict(pruning)
    if len(params.thresholds) != cfg.num_hidden_layers:
        raise ValueError(f"LTP needs {cfg.num_hidden_layers} thresholds, got {len(params.thresholds)}")
    return PrunedSequenceClassifier(cfg, LTPPruner(params), output_hidden=output_hidden)


def load_folder(folder, options: dict[str, Any]):
    """An upstream LTP folder (``model_type: ltp``) or a plain fine-tuned BERT/RoBERTa folder plus thresholds."""
    from pruneport.methods import checkpoint as ck
    from pruneport.methods.backbone import BackboneConfig

    config = ck.read_json(folder / "config.json")
    cfg = BackboneConfig.from_hf_dict(config)
    state = ck.read_state_dict(folder, bool(options.get("trust_pickle")))
    prefix = ck.backbone_prefix(state)
    notes: list[str] = []
    params = params_from_options(options, cfg.num_hidden_layers)
    pruner_keys: list[str] = []
    if config.get("model_type") == "ltp":
        mode = config.get("prune_mode", "absolute_threshold")
        if mode != "absolute_threshold":
            raise ck.CheckpointError(
                f"upstream LTP prune_mode {mode!r} is not supported; pruneport exports learned thresholds "
                "(prune_mode 'absolute_threshold')"
            )
        learned, pruner_keys = upstream_thresholds(state, prefix, config, cfg.num_hidden_layers)
        if params is None:
            params = LTPParams(learned, _score_norm_length(options, DEFAULT_SCORE_NORM_LENGTH))
        else:
            notes.append("thresholds given on the command line replace the checkpoint's learned ones")
        notes.append("upstream LTP can prune CLS; pruneport always keeps it")
    elif params is None:
        raise ValueError(
            f"{folder} is a plain fine-tuned model (model_type {config.get('model_type')!r}); give LTP thresholds "
            "with --thresholds T0,T1,... or --final-threshold F"
        )
    model = build(cfg, params.to_dict(), bool(options.get("output_hidden")))
    mapped, leftover = ck.map_hf_state(state, cfg, skip=pruner_keys)
    return ck.loaded_from_hf_folder(model, folder, config, "ltp", params.to_dict(), mapped, leftover, options, notes)

"""AdapLeR (Modarressi et al., ACL'22): a contribution predictor before every layer and the threshold ETA_l / n_l.

Inference semantics (``shared/methods.md`` and ``shared/research/upstream-methods.md``, AdapLeR sections; upstream
``modeling/modeling_tf_bert.py``, ``TFbertLRExpHead`` and ``TFBertEncoder.call`` with ``lr_mode=True``):

- before 0-based layer l (layer 0 included: on the embedding output), the predictor reads that layer's *input*
  hidden states: ``logit = Dense(32 -> 1)(act(Dense(hidden -> 32)(h)))``, act = ``config.hidden_act`` (gelu);
- contribution ``S = softmax(logit)`` over CLS plus the live tokens (upstream: softmax over the row, times the mask
  ``[1, live[1:]]``, renormalised; the same up to its 1e-15 guard). The CLS entry is then scaled by
  ``max(0.001, THETA_PR[l-1])`` (1 at l = 0) and the scores renormalised; upstream never changes THETA_PR from 1.0,
  so this step is normally a no-op and is only put in the graph when a stored value differs from 1;
- keep token i iff ``S_i >= delta_l = (1 / n_l) * ETA_l``, n_l = live tokens including CLS; CLS is never pruned,
  SEP may be, padding is never a candidate; kept tokens keep position order; pruned tokens are discarded;
- a layer whose ETA is exactly 0 keeps everything and gets no prune op.

Differences from upstream: upstream's batch mode (``lr_mode=False``) only masks, softly (lambda = 1e20 at
evaluation); pruneport removes tokens for real and is batch invariant, which is upstream's batch-1 ``lr_mode``.
Upstream compares ``1 - (1 - S_i) >= delta`` and adds 1e-15 guards to its sums; pruneport compares ``S_i >= delta``,
so a score within float32 rounding (~1e-7) of the threshold may be decided differently
(``tests/test_adapler.py`` checks the loaded model against upstream's ``lr_mode`` formula on HF's torch layers).

Measured (``benchmarks/bench_methods_adapler_pyramid.py``, all-MiniLM-L6-v2 with random predictors and ETA 0.875
in every layer, pruning 50% by the last layer, 0.68x FLOPs; batch 1, S = 128, ORT CPU 2 threads, shared noisy
2-core EPYC): pruned/unpruned wall-clock 0.74 (min-of-15, load ~6) and 0.84 (min-of-7, load ~15); one run under a
load of ~7-15 gave 1.37, so treat single runs as indicative. 6 prune points add 328 nodes to the 228 of the model.

Checkpoints (:func:`load_folder`): a folder with the upstream Keras ``.h5`` weights (``model.save_weights``), the
base model's ``config.json`` and its tokenizer files. The ``.h5`` is read with h5py, without TensorFlow. Every
dataset path is enumerated and matched by the *ending* of its path (Keras scope prefixes and auto-generated layer
names such as ``t_fbert_lr_exp_head_7`` vary between runs); ``:0`` suffixes are ignored. The mapping follows the
names HF's TF BERT gives its weights (``transformers`` ``modeling_tf_bert.py`` / ``convert_tf_weight_name_to_pt_
weight_name``): Dense ``kernel`` is [in, out] (transposed to torch's [out, in]), LayerNorm ``gamma``/``beta`` are
``weight``/``bias``, ``layer_._{i}`` is ``layer.{i}``:

============================================================  ===================================================
TF path ending                                                pruneport parameter
============================================================  ===================================================
embeddings/word_embeddings/weight                             embeddings.word_embeddings.weight
embeddings/position_embeddings/embeddings                     embeddings.position_embeddings.weight
embeddings/token_type_embeddings/embeddings                   embeddings.token_type_embeddings.weight
embeddings/LayerNorm/{gamma,beta}                             embeddings.LayerNorm.{weight,bias}
encoder/layer_._{i}/attention/self/{query,key,value}/kernel   layer.{i}.attention.self.{query,key,value}.weight (T)
encoder/layer_._{i}/attention/output/dense/{kernel,bias}      layer.{i}.attention.output.dense.* (kernel T)
encoder/layer_._{i}/attention/output/LayerNorm/{gamma,beta}   layer.{i}.attention.output.LayerNorm.*
encoder/layer_._{i}/intermediate/dense/{kernel,bias}          layer.{i}.intermediate.dense.* (kernel T)
encoder/layer_._{i}/output/dense/{kernel,bias}                layer.{i}.output.dense.* (kernel T)
encoder/layer_._{i}/output/LayerNorm/{gamma,beta}             layer.{i}.output.LayerNorm.*
pooler/dense/{kernel,bias} (BERT)                             classifier.dense.* (kernel T)
classifier/{kernel,bias} (BERT)                               classifier.out_proj.* (kernel T)
classifier/{dense,out_proj}/{kernel,bias} (RoBERTa)           classifier.{dense,out_proj}.* (kernel T)
exp_head_pre_{l+1}/{kernel,bias}                              pruner.predictors.{l}.pre.* (kernel T)
exp_head_{l+1}/{kernel,bias}                                  pruner.predictors.{l}.head.* (kernel T)
ETA [12] (first L used), THETA_PR [11] (optional)             pruning parameters ``eta``, ``cls_scale``
lr_lambda, ratio_count, THETA                                 training state, ignored
============================================================  ===================================================

A missing, ambiguous, unexpected or wrongly shaped weight raises :class:`CheckpointKeyError` /
:class:`CheckpointError` naming the TF path and the pruneport parameter.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from pruneport.methods.backbone import BackboneConfig
from pruneport.methods.pruned_encoder import PruneState, TokenPruner, keep_cls

log = logging.getLogger(__name__)

PREDICTOR_UNITS = 32
UPSTREAM_ETA_LENGTH = 12
# Variables of the upstream training loop that play no role at inference.
_IGNORED_UPSTREAM = ("lr_lambda", "ratio_count", "THETA")


def _activation(name: str) -> nn.Module:
    """The predictor's activation: upstream uses ``config.hidden_act`` (transformers' TF gelu is the erf form)."""
    if name == "gelu":
        return nn.GELU()
    if name in ("gelu_new", "gelu_pytorch_tanh"):
        return nn.GELU(approximate="tanh")
    if name == "relu":
        return nn.ReLU()
    raise ValueError(f"unsupported hidden_act {name!r} for the AdapLeR predictor")


@dataclass(frozen=True)
class AdapLeRParams:
    """Pruning parameters: ETA per layer and the CLS scale per layer (``max(0.001, THETA_PR[l-1])``, 1 at l = 0)."""

    eta: tuple[float, ...]
    cls_scale: tuple[float, ...] | None = None

    def scales(self) -> tuple[float, ...]:
        """The CLS scale per layer: ``cls_scale``, or 1.0 for every layer when it is None."""
        return self.cls_scale if self.cls_scale is not None else tuple(1.0 for _ in self.eta)

    def to_dict(self) -> dict[str, Any]:
        """The parameters as the manifest's pruning dict (``cls_scale`` always written, 1.0 where unset)."""
        return {"eta": list(self.eta), "cls_scale": list(self.scales())}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AdapLeRParams:
        """Parameters from a pruning dict; ValueError when ``eta`` is missing."""
        if data.get("eta") is None:
            raise ValueError("AdapLeR pruning parameters lack 'eta' (one value per layer)")
        eta = tuple(float(v) for v in data["eta"])
        scale = data.get("cls_scale")
        return cls(eta, tuple(float(v) for v in scale) if scale is not None else None)


class ContributionPredictor(nn.Module):
    """``Dense(hidden -> 32) -> act -> Dense(32 -> 1)``: upstream ``exp_head_pre_{k}`` and ``exp_head_{k}``."""

    def __init__(self, cfg: BackboneConfig) -> None:
        super().__init__()
        self.pre = nn.Linear(cfg.hidden_size, PREDICTOR_UNITS)
        self.head = nn.Linear(PREDICTOR_UNITS, 1)
        self.act = _activation(cfg.hidden_act)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        """[B,S,D] -> logits [B,S]."""
        return self.head(self.act(self.pre(hidden))).squeeze(-1)


def contribution_scores(logits: torch.Tensor, live: torch.Tensor, cls_scale: float = 1.0) -> torch.Tensor:
    """logits [B,S], live [B,S] bool (CLS live) -> scores [B,S]: softmax over the live tokens, 0 elsewhere."""
    masked = logits.masked_fill(~live, torch.finfo(logits.dtype).min)
    scores = torch.softmax(masked, dim=-1) * live.to(logits.dtype)
    if cls_scale != 1.0:
        first = (torch.arange(logits.shape[1], device=logits.device) == 0).unsqueeze(0)
        scores = torch.where(first, scores * cls_scale, scores)
        scores = scores / scores.sum(-1, keepdim=True)
    return scores


class AdapLeRPruner(TokenPruner):
    """Contribution predictors before every layer; keep iff score >= ETA_l / n_l."""

    method = "adapler"

    def __init__(self, cfg: BackboneConfig, params: AdapLeRParams) -> None:
        super().__init__()
        layers = cfg.num_hidden_layers
        if len(params.eta) != layers:
            raise ValueError(f"AdapLeR needs {layers} ETA values (one per layer), got {len(params.eta)}")
        if len(params.scales()) != layers:
            raise ValueError(f"AdapLeR needs {layers} CLS scales (one per layer), got {len(params.scales())}")
        self.params = params
        self.predictors = nn.ModuleList(ContributionPredictor(cfg) for _ in range(layers))

    def prunes_at(self, layer: int) -> bool:
        """Whether ``layer`` gets a prune op (its ETA is not 0)."""
        return self.params.eta[layer] != 0.0

    def before_layer(
        self, layer: int, hidden: torch.Tensor, live: torch.Tensor, state: PruneState
    ) -> torch.Tensor | None:
        """keep [B,S]: live tokens whose contribution score is >= ETA_l / n_l, plus CLS; None where ETA is 0."""
        if not self.prunes_at(layer):
            return None
        scores = contribution_scores(self.predictors[layer](hidden), live, self.params.scales()[layer])
        delta = (1.0 / live.sum(1, keepdim=True).to(scores.dtype)) * self.params.eta[layer]
        return keep_cls(live & (scores >= delta))


def build(cfg: BackboneConfig, pruning: dict[str, Any], output_hidden: bool = False):
    """The AdapLeR :class:`PrunedSequenceClassifier` for ``cfg`` and a pruning dict."""
    from pruneport.methods.pruned_encoder import PrunedSequenceClassifier

    return PrunedSequenceClassifier(cfg, AdapLeRPruner(cfg, AdapLeRParams.from_dict(pruning)), output_hidden)


# ----------------------------------------------------------------------------------------------------------------
# Upstream Keras .h5 reader (h5py only)
# ----------------------------------------------------------------------------------------------------------------


def read_h5_weights(path: Path) -> dict[str, np.ndarray]:
    """Every dataset of a Keras weights file: path (``:0`` removed from each component) -> array.

    Reads ``model_weights/`` when the file is a full ``model.save`` file and skips ``optimizer_weights/``.
    """
    import h5py

    from pruneport.methods.checkpoint import CheckpointError

    out: dict[str, np.ndarray] = {}
    try:
        with h5py.File(path, "r") as f:
            root = f["model_weights"] if "model_weights" in f else f

            def visit(name: str, obj: Any) -> None:
                if isinstance(obj, h5py.Dataset) and not name.startswith("optimizer_weights"):
                    clean = "/".join(part.split(":")[0] for part in name.split("/"))
                    out[clean] = np.asarray(obj[()])

            root.visititems(visit)
    except OSError as err:
        raise CheckpointError(f"cannot read {path} as an HDF5 (Keras .h5) file: {err}") from None
    if not out:
        raise CheckpointError(f"{path} holds no weights")
    return out


def _dense(tf: str, pt: str) -> list[tuple[str, str, bool]]:
    return [(f"{tf}/kernel", f"{pt}.weight", True), (f"{tf}/bias", f"{pt}.bias", False)]


def _norm(tf: str, pt: str) -> list[tuple[str, str, bool]]:
    return [(f"{tf}/gamma", f"{pt}.weight", False), (f"{tf}/beta", f"{pt}.bias", False)]


def tf_weight_map(cfg: BackboneConfig) -> list[tuple[str, str, bool]]:
    """(TF path ending, pruneport parameter, transpose) for the backbone, head and predictors (table above)."""
    rows = [
        ("embeddings/word_embeddings/weight", "embeddings.word_embeddings.weight", False),
        ("embeddings/position_embeddings/embeddings", "embeddings.position_embeddings.weight", False),
        ("embeddings/token_type_embeddings/embeddings", "embeddings.token_type_embeddings.weight", False),
        *_norm("embeddings/LayerNorm", "embeddings.LayerNorm"),
    ]
    for i in range(cfg.num_hidden_layers):
        tf, pt = f"encoder/layer_._{i}", f"layer.{i}"
        for name in ("query", "key", "value"):
            rows += _dense(f"{tf}/attention/self/{name}", f"{pt}.attention.self.{name}")
        rows += _dense(f"{tf}/attention/output/dense", f"{pt}.attention.output.dense")
        rows += _norm(f"{tf}/attention/output/LayerNorm", f"{pt}.attention.output.LayerNorm")
        rows += _dense(f"{tf}/intermediate/dense", f"{pt}.intermediate.dense")
        rows += _dense(f"{tf}/output/dense", f"{pt}.output.dense")
        rows += _norm(f"{tf}/output/LayerNorm", f"{pt}.output.LayerNorm")
        rows += _dense(f"exp_head_pre_{i + 1}", f"pruner.predictors.{i}.pre")
        rows += _dense(f"exp_head_{i + 1}", f"pruner.predictors.{i}.head")
    if cfg.model_type == "roberta":
        rows += _dense("classifier/dense", "classifier.dense") + _dense("classifier/out_proj", "classifier.out_proj")
    else:
        rows += _dense("pooler/dense", "classifier.dense") + _dense("classifier", "classifier.out_proj")
    return rows


def _ends_with(path: str, ending: str) -> bool:
    parts, tail = path.split("/"), ending.split("/")
    return len(parts) >= len(tail) and parts[-len(tail) :] == tail


def match_h5(weights: dict[str, np.ndarray], endings: list[str]) -> tuple[dict[str, str], list[str], list[str]]:
    """Match path endings to dataset paths: (ending -> path, missing endings, ambiguity messages)."""
    found: dict[str, str] = {}
    missing: list[str] = []
    ambiguous: list[str] = []
    for ending in endings:
        hits = [p for p in weights if _ends_with(p, ending)]
        if not hits:
            missing.append(ending)
        elif len(hits) > 1:
            ambiguous.append(f"{ending} matches {hits}")
        else:
            found[ending] = hits[0]
    return found, missing, ambiguous


def load_h5_state(
    weights: dict[str, np.ndarray], model: nn.Module, cfg: BackboneConfig, source: str
) -> tuple[dict[str, torch.Tensor], dict[str, np.ndarray]]:
    """Map a Keras AdapLeR weight dict onto ``model``'s parameters; returns (state dict, extra variables).

    Extra variables: ``ETA`` (required) and ``THETA_PR`` (optional). Raises naming every missing, ambiguous,
    unexpected or wrongly shaped weight.
    """
    from pruneport.methods.checkpoint import CheckpointError, CheckpointKeyError

    rows = tf_weight_map(cfg)
    found, missing, ambiguous = match_h5(weights, [tf for tf, _, _ in rows] + ["ETA"])
    extras_found, _, extra_ambiguous = match_h5(weights, ["THETA_PR", *_IGNORED_UPSTREAM])
    if ambiguous or extra_ambiguous:
        raise CheckpointError(f"{source}: ambiguous weights: {'; '.join(ambiguous + extra_ambiguous)}")
    pt_of = {tf: pt for tf, pt, _ in rows}
    used = set(found.values()) | set(extras_found.values())
    unexpected = sorted(p for p in weights if p not in used)
    if missing or unexpected:
        named = [f"{m} (for {pt_of[m]})" if m in pt_of else m for m in missing]
        raise CheckpointKeyError(f"{source} (AdapLeR .h5, paths matched by their ending)", named, unexpected)
    expected = model.state_dict()
    state: dict[str, torch.Tensor] = {}
    wrong: list[str] = []
    for tf, pt, transpose in rows:
        array = weights[found[tf]]
        value = torch.from_numpy(np.ascontiguousarray(array.T if transpose else array)).to(torch.float32)
        if tuple(value.shape) != tuple(expected[pt].shape):
            wrong.append(f"{found[tf]} {tuple(array.shape)} for {pt} (model wants {tuple(expected[pt].shape)})")
        state[pt] = value
    if wrong:
        raise CheckpointError(f"{source}: weights with the wrong shape: {'; '.join(wrong)}")
    extras = {"ETA": np.asarray(weights[found["ETA"]], dtype=np.float64).reshape(-1)}
    if "THETA_PR" in extras_found:
        extras["THETA_PR"] = np.asarray(weights[extras_found["THETA_PR"]], dtype=np.float64).reshape(-1)
    return state, extras


def params_from_upstream(extras: dict[str, np.ndarray], num_layers: int, source: str) -> AdapLeRParams:
    """ETA (first L of upstream's 12 entries) and the CLS scales from THETA_PR."""
    from pruneport.methods.checkpoint import CheckpointError

    eta = extras["ETA"]
    if eta.size < num_layers:
        raise CheckpointError(
            f"{source}: ETA has {eta.size} entries but the model has {num_layers} layers; give --eta with "
            f"{num_layers} values"
        )
    scales = [1.0]
    theta = extras.get("THETA_PR")
    for layer in range(1, num_layers):
        value = float(theta[layer - 1]) if theta is not None and theta.size >= layer else 1.0
        scales.append(max(0.001, value))
    return AdapLeRParams(tuple(float(v) for v in eta[:num_layers]), tuple(scales))


def find_h5(folder: Path) -> Path:
    """The AdapLeR ``.h5`` in ``folder``: the only ``.h5``, or the only ``*_lr.h5`` among several."""
    from pruneport.methods.checkpoint import CheckpointError

    files = sorted(folder.glob("*.h5"))
    if len(files) == 1:
        return files[0]
    lr = [f for f in files if f.name.endswith("_lr.h5")]
    if len(lr) == 1:
        return lr[0]
    if not files:
        raise CheckpointError(f"{folder} has no .h5 file; AdapLeR needs the upstream Keras weights (*_lr.h5)")
    raise CheckpointError(
        f"{folder} has several .h5 files ({', '.join(f.name for f in files)}); keep only the AdapLeR one (*_lr.h5)"
    )


def eta_from_options(options: dict[str, Any], num_layers: int) -> tuple[float, ...]:
    """The ``eta`` option: one value per layer."""
    eta = tuple(float(v) for v in options["eta"])
    if len(eta) != num_layers:
        raise ValueError(f"--eta needs {num_layers} values (one per layer), got {len(eta)}")
    return eta


def override(pruning: dict[str, Any], options: dict[str, Any], num_layers: int) -> tuple[dict[str, Any], list[str]]:
    """A model.pt's stored parameters with the user's ``eta`` applied (CLS scales kept), and a note."""
    if options.get("eta") is None:
        return pruning, []
    stored = AdapLeRParams.from_dict(pruning)
    params = AdapLeRParams(eta_from_options(options, num_layers), stored.cls_scale)
    note = f"ETA given on the command line replaces the checkpoint's: {list(stored.eta)} -> {list(params.eta)}"
    return {**pruning, **params.to_dict()}, [note]


def load_folder(folder, options: dict[str, Any]):
    """A folder with the upstream AdapLeR ``.h5``, the base model's ``config.json`` and tokenizer files.

    Option ``eta`` (one value per layer) replaces the file's ETA.
    """
    from pruneport.methods import checkpoint as ck

    folder = Path(folder)
    config = ck.read_json(folder / "config.json")
    cfg = BackboneConfig.from_hf_dict(config)
    h5 = find_h5(folder)
    weights = read_h5_weights(h5)
    probe = build(cfg, AdapLeRParams(tuple(0.0 for _ in range(cfg.num_hidden_layers))).to_dict())
    state, extras = load_h5_state(weights, probe, cfg, str(h5))
    params = params_from_upstream(extras, cfg.num_hidden_layers, str(h5))
    notes = [f"read {h5.name} with h5py; ETA from the file: {list(params.eta)}"]
    if options.get("eta") is not None:
        params = AdapLeRParams(eta_from_options(options, cfg.num_hidden_layers), params.cls_scale)
        notes.append("ETA given on the command line replaces the file's")
    model = build(cfg, params.to_dict(), bool(options.get("output_hidden")))
    ck.load_into(model, state, [], str(h5))
    return ck.LoadedModel(
        model=model.eval(),
        method="adapler",
        backbone=config,
        pruning=params.to_dict(),
        tokenizer_json=ck.tokenizer_json_from_folder(folder, vocab_size=config.get("vocab_size")),
        label_names=ck.label_names_from_config(config, cfg.num_labels),
        max_length=cfg.max_tokens,
        source=str(h5),
        notes=notes,
    )

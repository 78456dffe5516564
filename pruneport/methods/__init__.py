"""PyTorch reference models and checkpoint loaders, one module per method, and the registry that names them.

The registry is an explicit dict (no import-time decorators): ``get_method(name)`` gives how to build a model from
stored pruning parameters and how to read the method's upstream or HF folder.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MethodSpec:
    """How to build and load one pruning method.

    build: (BackboneConfig, pruning dict, output_hidden) -> PrunedSequenceClassifier
    load_folder: (folder, options) -> LoadedModel, for the method's upstream / HF checkpoint folders
    override: (stored pruning dict, options, num_layers) -> (pruning dict, notes): the user's options applied to
        a model.pt's stored parameters (None for methods without such options)
    """

    name: str
    summary: str
    build: Callable[..., Any]
    load_folder: Callable[[Path, dict[str, Any]], Any]
    override: Callable[[dict[str, Any], dict[str, Any], int], tuple[dict[str, Any], list[str]]] | None = None


# name -> (module, summary). Each module defines ``build(cfg, pruning, output_hidden)`` and
# ``load_folder(folder, options)``; modules are imported only when their method is used.
_MODULES: dict[str, tuple[str, str]] = {
    "ltp": ("pruneport.methods.ltp", "learned threshold on the attention each token receives"),
    "trbert": ("pruneport.methods.trbert", "policy MLP before layer 1 and layer L//2"),
    "transkimmer": ("pruneport.methods.transkimmer", "skim predictor before every layer"),
    "adapler": ("pruneport.methods.adapler", "contribution predictor, threshold eta/n"),
    "pyramid": ("pruneport.methods.pyramid", "greedy k-center selection on a length schedule"),
}


# Loader options that belong to one method (option name -> method). Given for a checkpoint of another method they
# are refused, never silently ignored; with a model.pt of their method they replace its stored parameters (recorded
# in the manifest: the pruning parameters and a note).
METHOD_OPTIONS: dict[str, str] = {
    "thresholds": "ltp",
    "final_threshold": "ltp",
    "score_norm_length": "ltp",
    "eta": "adapler",
    "keep_ratio": "pyramid",
    "prune_upto": "pyramid",
    "kcenter_m": "pyramid",
    "distance": "pyramid",
    "transkimmer_semantics": "transkimmer",
}


def check_method_options(method: str, options: dict[str, Any], source: str | Path) -> None:
    """ValueError when ``options`` hold method-specific options that another method's checkpoint cannot use."""
    foreign = [k for k, owner in METHOD_OPTIONS.items() if owner != method and options.get(k) is not None]
    if foreign:
        flags = ", ".join("--" + k.replace("_", "-") for k in foreign)
        owners = "/".join(sorted({METHOD_OPTIONS[k] for k in foreign}))
        raise ValueError(
            f"{flags} {'applies' if len(foreign) == 1 else 'apply'} to {owners} models, but {source} "
            f"holds a {method!r} model"
        )


def method_names() -> list[str]:
    return sorted(_MODULES)


def get_method(name: str) -> MethodSpec:
    """The spec of a method; an unknown name raises ValueError listing the known ones."""
    if name not in _MODULES:
        raise ValueError(f"unknown method {name!r}; known methods: {', '.join(method_names())}")
    import importlib

    module_name, summary = _MODULES[name]
    module = importlib.import_module(module_name)
    return MethodSpec(name, summary, module.build, module.load_folder, getattr(module, "override", None))


def load_checkpoint(path: str | Path, method: str | None = None, **options: Any):
    """Load a checkpoint as a reference model.

    path: a pruneport ``model.pt`` (method read from it; ``method``, when given, must agree) or a folder in the
    method's upstream / HF layout (``method`` required). ``options`` are method-specific (thresholds,
    final_threshold, score_norm_length, output_hidden, trust_pickle, allow_missing_head, ...). Options of another
    method (:data:`METHOD_OPTIONS`) are refused; with a model.pt, the method's own options replace the stored
    parameters (the returned ``pruning`` and ``notes`` say so, and the export's manifest records both).
    """
    from pruneport.methods import checkpoint as ck
    from pruneport.methods.backbone import BackboneConfig

    p = ck.require_path(path)
    if p.is_dir():
        if method is None:
            raise ValueError(f"{p} is a folder: say which method it holds (--method {{{','.join(method_names())}}})")
        spec = get_method(method)
        check_method_options(method, options, p)
        return spec.load_folder(p, options)
    payload = ck.read_model_pt(p, bool(options.get("trust_pickle")))
    stored = payload["method"]
    if method is not None and method != stored:
        raise ValueError(f"{p} holds a {stored!r} model, not {method!r}")
    spec = get_method(stored)
    check_method_options(stored, options, p)
    cfg = BackboneConfig.from_hf_dict(payload["backbone_config"])
    pruning, notes = dict(payload["pruning"]), []
    if spec.override is not None:
        pruning, notes = spec.override(pruning, options, cfg.num_hidden_layers)
    model = spec.build(cfg, pruning, bool(options.get("output_hidden")))
    state = payload["state_dict"]
    ck.load_into(model, state, [], str(p))
    # buffers derived from the pruning parameters (e.g. thresholds) are rebuilt, never taken from the file
    return ck.LoadedModel(
        model=model.eval(),
        method=stored,
        backbone=payload["backbone_config"],
        pruning=pruning,
        tokenizer_json=payload["tokenizer"],
        label_names=list(payload.get("label_names") or ck.label_names_from_config({}, cfg.num_labels)),
        max_length=int(payload.get("max_length") or cfg.max_tokens),
        source=str(p),
        notes=notes,
    )

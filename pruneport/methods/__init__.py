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
    """

    name: str
    summary: str
    build: Callable[..., Any]
    load_folder: Callable[[Path, dict[str, Any]], Any]


# name -> (module, summary). Each module defines ``build(cfg, pruning, output_hidden)`` and
# ``load_folder(folder, options)``; modules are imported only when their method is used.
_MODULES: dict[str, tuple[str, str]] = {
    "ltp": ("pruneport.methods.ltp", "learned threshold on the attention each token receives"),
    "trbert": ("pruneport.methods.trbert", "policy MLP before layer 1 and layer L//2"),
    "transkimmer": ("pruneport.methods.transkimmer", "skim predictor before every layer"),
    "adapler": ("pruneport.methods.adapler", "contribution predictor, threshold eta/n"),
    "pyramid": ("pruneport.methods.pyramid", "greedy k-center selection on a length schedule"),
}


def method_names() -> list[str]:
    return sorted(_MODULES)


def get_method(name: str) -> MethodSpec:
    """The spec of a method; an unknown name raises ValueError listing the known ones."""
    if name not in _MODULES:
        raise ValueError(f"unknown method {name!r}; known methods: {', '.join(method_names())}")
    import importlib

    module_name, summary = _MODULES[name]
    module = importlib.import_module(module_name)
    return MethodSpec(name, summary, module.build, module.load_folder)


def load_checkpoint(path: str | Path, method: str | None = None, **options: Any):
    """Load a checkpoint as a reference model.

    path: a pruneport ``model.pt`` (method read from it; ``method``, when given, must agree) or a folder in the
    method's upstream / HF layout (``method`` required). ``options`` are method-specific (thresholds,
    final_threshold, score_norm_length, output_hidden, trust_pickle, allow_missing_head, ...).
    """
    from pruneport.methods import checkpoint as ck
    from pruneport.methods.backbone import BackboneConfig

    p = ck.require_path(path)
    if p.is_dir():
        if method is None:
            raise ValueError(f"{p} is a folder: say which method it holds (--method {{{','.join(method_names())}}})")
        return get_method(method).load_folder(p, options)
    payload = ck.read_model_pt(p, bool(options.get("trust_pickle")))
    stored = payload["method"]
    if method is not None and method != stored:
        raise ValueError(f"{p} holds a {stored!r} model, not {method!r}")
    spec = get_method(stored)
    cfg = BackboneConfig.from_hf_dict(payload["backbone_config"])
    model = spec.build(cfg, payload["pruning"], bool(options.get("output_hidden")))
    state = payload["state_dict"]
    ck.load_into(model, state, [], str(p))
    # buffers derived from the pruning parameters (e.g. thresholds) are rebuilt, never taken from the file
    return ck.LoadedModel(
        model=model.eval(),
        method=stored,
        backbone=payload["backbone_config"],
        pruning=payload["pruning"],
        tokenizer_json=payload["tokenizer"],
        label_names=list(payload.get("label_names") or ck.label_names_from_config({}, cfg.num_labels)),
        max_length=int(payload.get("max_length") or cfg.max_tokens),
        source=str(p),
    )

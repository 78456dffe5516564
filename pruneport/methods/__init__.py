"""PyTorch reference models and checkpoint loaders, one package per method, and the registry that names them.

Each method is ``pruneport/methods/<name>/`` with a torch-free ``spec.py`` (its :class:`~pruneport.methods.spec.
MethodSpec`: CLI options, threshold spec, score source, keep rule, tiny test fixture, and where its model lives) and
``model.py`` (the PyTorch reference and its checkpoint loader). The registry is an explicit dict (no import-time
decorators): ``get_method(name)`` gives the spec; :func:`load_checkpoint` reads a model.pt or a method's folder.
Adding a method: its package, one line in ``_SPECS``, and its test file (``tests/test_method_specs.py`` checks that
the spec is complete and that the pipeline reads it).
"""

from __future__ import annotations

import importlib
import logging
from pathlib import Path
from typing import Any

from pruneport.methods.spec import MethodSpec

log = logging.getLogger(__name__)

# The registry: method name -> its spec module (torch-free; ``SPEC`` in it). One line per method.
_SPECS: dict[str, str] = {
    "ltp": "pruneport.methods.ltp.spec",
    "trbert": "pruneport.methods.trbert.spec",
    "transkimmer": "pruneport.methods.transkimmer.spec",
    "adapler": "pruneport.methods.adapler.spec",
    "pyramid": "pruneport.methods.pyramid.spec",
}

# Loader options every method takes (the rest are one method's, declared in its spec).
COMMON_OPTIONS = ("trust_pickle", "output_hidden", "allow_missing_head")


def method_names() -> list[str]:
    """The registered methods, sorted."""
    return sorted(_SPECS)


def get_method(name: str) -> MethodSpec:
    """The spec of a method; an unknown name raises ValueError listing the known ones."""
    if name not in _SPECS:
        raise ValueError(f"unknown method {name!r}; known methods: {', '.join(method_names())}")
    return importlib.import_module(_SPECS[name]).SPEC


def find_method(name: str | None) -> MethodSpec | None:
    """The spec of a registered method, None for anything else (e.g. the plain baselines' manifests)."""
    return get_method(name) if name in _SPECS else None


def all_methods() -> list[MethodSpec]:
    """Every registered method's spec, in name order."""
    return [get_method(name) for name in method_names()]


def option_owners() -> dict[str, str]:
    """Method-specific loader options: option name -> the method that owns it.

    Given for a checkpoint of another method they are refused, never silently ignored; with a model.pt of their
    method they replace its stored parameters (recorded in the manifest: the pruning parameters and a note).
    """
    return {option.name: spec.name for spec in all_methods() for option in spec.options}


def loader_option_names() -> set[str]:
    """Every option :func:`load_checkpoint` takes: the common ones and each method's."""
    return set(COMMON_OPTIONS) | set(option_owners())


def check_method_options(method: str, options: dict[str, Any], source: str | Path) -> None:
    """ValueError when ``options`` hold method-specific options that another method's checkpoint cannot use."""
    owners = option_owners()
    foreign = [k for k, owner in owners.items() if owner != method and options.get(k) is not None]
    if foreign:
        flags = ", ".join("--" + k.replace("_", "-") for k in foreign)
        names = "/".join(sorted({owners[k] for k in foreign}))
        raise ValueError(
            f"{flags} {'applies' if len(foreign) == 1 else 'apply'} to {names} models, but {source} "
            f"holds a {method!r} model"
        )


def load_checkpoint(path: str | Path, method: str | None = None, **options: Any):
    """Load a checkpoint as a reference model.

    path: a pruneport ``model.pt`` (method read from it; ``method``, when given, must agree) or a folder in the
    method's upstream / HF layout (``method`` required). ``options`` are method-specific (thresholds,
    final_threshold, score_norm_length, output_hidden, trust_pickle, allow_missing_head, ...). Options of another
    method (:func:`option_owners`) are refused; with a model.pt, the method's own options replace the stored
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
    pruning, notes = spec.override(dict(payload["pruning"]), options, cfg.num_hidden_layers)
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

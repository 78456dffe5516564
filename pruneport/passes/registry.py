"""The passes by name, and the default pipeline of each target backend.

Every pass module defines ``NAME``, ``SUMMARY`` and ``apply(model: onnx_ir.Model) -> int`` (rewrites the model in
place and returns how many rewrites it made); ``RUNS_ON`` lists the backends that run its output, when it emits
non-standard (contrib) ops. Modules are imported only when used.

The default pipelines keep a pass only where ``benchmarks/bench_passes.py`` measured a gain on that backend (numbers
in ``docs/passes.md``).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import ModuleType

# name -> module, in the order a pipeline applies them
_MODULES: dict[str, str] = {
    "cleanup": "pruneport.passes.cleanup",
    "score-reduction": "pruneport.passes.score_reduction",
    "attention23": "pruneport.passes.attention23",
    "attention24": "pruneport.passes.attention24",
    "host-shapes": "pruneport.passes.host_shapes",
    "ort-fusions": "pruneport.passes.ort_fusions",
    "token-prune": "pruneport.passes.token_prune",
    "expand-token-prune": "pruneport.passes.token_prune:expand_pass",  # module:object with NAME, SUMMARY, apply
}
# Passes that change the graph's precision (their module says which in PRECISION): named with --passes like the others,
# but they do not keep the outputs to FP32 tolerance, so they are not among pass_names() (the behaviour-preserving
# passes that tests run one by one and all together); optimize's parity gate reports their decision agreement.
_PRECISION_MODULES: dict[str, str] = {
    "fp16": "pruneport.passes.fp16",
}

TARGETS = ("onnxruntime", "openvino")

# Measured on MiniLM-L6 LTP (docs/passes.md, CPU-time ratios): on ORT score-reduction + ort-fusions 1.02-1.11;
# on OpenVINO neither gained (0.95-1.01), and attention23 gained on neither, so it runs only when named with --passes.
DEFAULT_PIPELINES: dict[str, tuple[str, ...]] = {
    "onnxruntime": ("cleanup", "score-reduction", "ort-fusions", "cleanup"),
    "openvino": ("cleanup",),
}


@dataclass(frozen=True)
class PassSpec:
    """A pass: its name, one-line summary, the module (or object) with ``apply``, and the backends that run its
    output."""

    name: str
    summary: str
    module: ModuleType
    runs_on: tuple[str, ...] | None  # the backends that run its output, or None for standard ONNX

    def apply(self, model) -> int:
        """Rewrite ``model`` (an ``onnx_ir.Model``) in place; returns the number of rewrites."""
        return int(self.module.apply(model))


def pass_names() -> list[str]:
    """The passes that keep the model's outputs (to the parity tolerance), in pipeline order."""
    return list(_MODULES)


def precision_pass_names() -> list[str]:
    """The passes that lower the graph's precision (see ``_PRECISION_MODULES``)."""
    return list(_PRECISION_MODULES)


def get_pass(name: str) -> PassSpec:
    """The pass called ``name``; an unknown name raises ValueError listing the known ones."""
    modules = {**_MODULES, **_PRECISION_MODULES}
    if name not in modules:
        raise ValueError(f"unknown pass {name!r}; known passes: {', '.join(modules)}")
    module_name, _, attr = modules[name].partition(":")
    module = importlib.import_module(module_name)
    if attr:
        module = getattr(module, attr)
    return PassSpec(name, module.SUMMARY, module, getattr(module, "RUNS_ON", None))


def resolve_pipeline(target: str, names: list[str] | None = None) -> list[PassSpec]:
    """The passes to run: ``names`` in the given order, or the target's default pipeline.

    Raises ValueError for an unknown target or pass, or a pass whose output the target cannot run.
    """
    if target not in TARGETS:
        raise ValueError(f"unknown target backend {target!r}; known: {', '.join(TARGETS)}")
    specs = [get_pass(n) for n in (names if names is not None else DEFAULT_PIPELINES[target])]
    for spec in specs:
        if spec.runs_on is not None and target not in spec.runs_on:
            raise ValueError(f"pass {spec.name!r} emits ops only {', '.join(spec.runs_on)} run; not {target}")
    return specs

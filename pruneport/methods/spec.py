"""What the pipeline needs to know about a pruning method, in one torch-free object per method.

Each method is a package ``pruneport/methods/<name>/`` with ``spec.py`` (a :class:`MethodSpec` named ``SPEC``;
imports no torch, so the CLI, calibration, passes and quantization can read it) and ``model.py`` (the PyTorch
reference: ``build``, ``load_folder`` and optionally ``override``, imported only when a model is built or read).
The registry in :mod:`pruneport.methods` has one line per method; ``tests/test_method_specs.py`` fails when a
registered method lacks any part. Who reads what:

- ``options``: ``pruneport export``'s method flags (:func:`pruneport.cli.add_model_options`) and the refusal of
  another method's options (:func:`pruneport.methods.check_method_options`);
- ``thresholds``: threshold naming, calibration and the INT8 no-prune twin (:mod:`pruneport.calibration.thresholds`);
- ``score_source``: what INT8 quantization keeps in FP32 (:func:`pruneport.calibration.quantize.score_path`);
- ``keep_rule``: the ``rule`` attribute the token-prune pass records on each ``ai.pruneport::TokenPrune``;
- ``tiny``: the pruning parameters of the tiny test model every method-parametrized test builds.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pruneport.graph.roles import GraphIndex
from pruneport.graph.threshold_slots import Slot, comparison_constants

# The keep rules the token-prune pass tells apart (pruneport.passes.token_prune._rule reads them off the ops).
KEEP_RULES = ("threshold", "margin", "eta-n", "argmax", "top-k", "k-center", "mask")
# What decides pruning, so INT8 keeps it in FP32: the attention probabilities of the pruning layers (with their Q/K
# projections), predictor MLPs (their MatMuls are found by role), or hidden states compared with each other.
SCORE_SOURCES = ("attention", "predictor", "hidden-states")


class ThresholdError(ValueError):
    """A model whose thresholds cannot be found or changed."""


def with_layer_values(
    pruning: dict[str, Any], key: str, new: dict[int, float], method: str, label: str
) -> dict[str, Any]:
    """``pruning`` with ``pruning[key]`` (one value per layer, 0 = the layer does not prune) changed at the layers of
    ``new``; float32-equal values stay as stored (the graph holds float32). ``method`` and ``label`` name the method
    and the value in the ThresholdError for a layer that does not prune."""
    values = [float(v) for v in pruning[key]]
    for layer, value in new.items():
        if values[layer] == 0.0:
            raise ThresholdError(f"{method} layer {layer} does not prune ({label} 0); it has no threshold to change")
        if np.float32(value) != np.float32(values[layer]):
            values[layer] = float(value)
    return {**pruning, key: values}


def _multiply(value: float, scale: float) -> float:
    return value * scale


@dataclass(frozen=True)
class ThresholdSpec:
    """How a method's thresholds look in the manifest and in the graph.

    layers: (pruning dict, num_layers) -> the layers that compare with a threshold, in graph order.
    values: (pruning dict, num_layers) -> the constants the graph holds, one per layer of ``layers``.
    update: (pruning dict, num_layers, {layer: new graph value}) -> the new pruning dict.
    locate: graph -> the candidate threshold slots in graph order (more than ``layers`` is fine; values decide).
    scale: (value, s) -> the value under threshold scale ``s`` (1 = unchanged; 0 = keep every token).
    before_layer: True when layer l's threshold prunes tokens entering layer l (``tokens_per_layer[:, l]``);
        False when it prunes after layer l's attention (LTP: visible in column l + 1).
    keep_all: a graph value that keeps every token (the no-prune twin of histogram calibration).
    """

    method: str
    layers: Callable[[dict[str, Any], int], list[int]]
    values: Callable[[dict[str, Any], int], list[float]]
    update: Callable[[dict[str, Any], int, dict[int, float]], dict[str, Any]]
    locate: Callable[[GraphIndex], list[Slot]] = comparison_constants
    scale: Callable[[float, float], float] = _multiply
    before_layer: bool = True
    keep_all: float = -1.0

    def scaled(self, values: dict[int, float], scale: float) -> dict[int, float]:
        """Every value under threshold scale ``scale``."""
        return {layer: self.scale(value, scale) for layer, value in values.items()}

    def column(self, layer: int) -> int:
        """The ``tokens_per_layer`` column that layer ``layer``'s threshold changes first."""
        return layer if self.before_layer else layer + 1


@dataclass(frozen=True)
class MethodOption:
    """A loader option of one method: ``--<name with dashes>`` on ``pruneport export``, ``name`` in the options.

    Given with a model.pt of the method it replaces the stored parameter (the manifest records the new value and a
    note); given with another method's checkpoint it is refused.
    """

    name: str
    help: str
    parse: Callable[[str], Any] | None = None
    choices: Sequence[str] | None = None

    @property
    def flag(self) -> str:
        """The command-line flag."""
        return "--" + self.name.replace("_", "-")


@dataclass(frozen=True)
class TinyFixture:
    """The tiny test model of a method: pruning parameters that prune on a ``layers``-layer tiny backbone."""

    pruning: dict[str, Any]
    layers: int = 3


@dataclass(frozen=True)
class MethodSpec:
    """One pruning method's facts (see the module docstring for who reads which field)."""

    name: str
    title: str
    summary: str
    model_module: str
    keep_rule: str
    score_source: str
    tiny: TinyFixture
    options: tuple[MethodOption, ...] = ()
    thresholds: ThresholdSpec | None = None

    def model(self) -> Any:
        """The method's PyTorch module (imports torch)."""
        return importlib.import_module(self.model_module)

    def build(self, cfg: Any, pruning: dict[str, Any], output_hidden: bool = False) -> Any:
        """A ``PrunedSequenceClassifier`` of this method from a ``BackboneConfig`` and stored pruning parameters."""
        return self.model().build(cfg, pruning, output_hidden)

    def load_folder(self, folder: Path, options: dict[str, Any]) -> Any:
        """A ``LoadedModel`` from the method's upstream / HF checkpoint folder."""
        return self.model().load_folder(folder, options)

    def override(
        self, pruning: dict[str, Any], options: dict[str, Any], num_layers: int
    ) -> tuple[dict[str, Any], list[str]]:
        """The user's options applied to a model.pt's stored parameters: (pruning dict, notes saying what changed)."""
        apply = getattr(self.model(), "override", None)
        return apply(pruning, options, num_layers) if apply is not None else (pruning, [])

    def option_names(self) -> list[str]:
        """The names of this method's loader options."""
        return [o.name for o in self.options]


def spec_problems(spec: MethodSpec, registered_name: str) -> list[str]:
    """Why ``spec`` is incomplete or inconsistent (empty when it is complete); checked by the test suite."""
    problems = []
    if spec.name != registered_name:
        problems.append(f"registered as {registered_name!r} but named {spec.name!r}")
    for attribute in ("title", "summary", "model_module"):
        if not getattr(spec, attribute):
            problems.append(f"{spec.name}: empty {attribute}")
    if spec.keep_rule not in KEEP_RULES:
        problems.append(f"{spec.name}: keep_rule {spec.keep_rule!r} is not one of {KEEP_RULES}")
    if spec.score_source not in SCORE_SOURCES:
        problems.append(f"{spec.name}: score_source {spec.score_source!r} is not one of {SCORE_SOURCES}")
    if spec.thresholds is not None and spec.thresholds.method != spec.name:
        problems.append(f"{spec.name}: its threshold spec is {spec.thresholds.method!r}'s")
    if not isinstance(spec.tiny, TinyFixture) or spec.tiny.layers < 2:
        problems.append(f"{spec.name}: tiny fixture needs at least 2 layers")
    for option in spec.options:
        if not option.help or option.parse is None and option.choices is None:
            problems.append(f"{spec.name}: option {option.name!r} needs help and a parser or choices")
    return problems

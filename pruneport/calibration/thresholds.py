"""Threshold tensors of exported graphs: where they are, how to name them, how to change them.

A method with a threshold declares a :class:`ThresholdSpec`: which layers compare a score with a constant, the
constants as they appear in the graph, and how new values are written back into the manifest's ``pruning`` dict.
A method module may provide its own by defining ``threshold_spec()``; otherwise :data:`SPECS` is used
(LTP fully; TR-BERT's ``p >= 0.5`` best-effort). Transkimmer (``logit1 > logit0``: no constant in the graph) and
Pyramid-BERT (a length schedule) have no threshold tensor; AdapLeR's ``ETA / n`` will need its module to declare
where ETA lives.

In a dynamo export the thresholds are constant-folded into scalar initializers with generic names (LTP's buffer
``pruner.thresholds[l]`` becomes ``select``, ``select_1``, ...; equal values may even share one initializer).
:func:`name_thresholds` finds each prune point's comparison (``GreaterOrEqual``/``Greater``/``Less``/``LessOrEqual``
with one scalar float constant input), checks its value against the manifest, and gives it its own initializer named
``pruneport.threshold.<layer>`` (:func:`threshold_name`). The pass is idempotent and changes no numbers; quantized
graphs keep the names, and the OpenVINO frontend keeps them as Constant friendly names. Written by hand because the
values must be matched to the manifest's layers, which no graph library knows.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper

from pruneport.calibration.graph import GraphIndex

log = logging.getLogger(__name__)

THRESHOLD_PREFIX = "pruneport.threshold."
LTP_MIN_THRESHOLD = 1e-5  # pruneport.methods.ltp.MIN_THRESHOLD (not imported: that module imports torch)
COMPARE_OPS = ("GreaterOrEqual", "Greater", "LessOrEqual", "Less")


def threshold_name(layer: int) -> str:
    """The documented initializer name of layer ``layer``'s threshold in pruneport graphs."""
    return f"{THRESHOLD_PREFIX}{layer}"


class ThresholdError(ValueError):
    """A model whose thresholds cannot be found or changed."""


@dataclass(frozen=True)
class ThresholdSpec:
    """How a method's thresholds look in the manifest and in the graph.

    layers: (pruning dict, num_layers) -> the layers that compare with a threshold, in graph order.
    values: (pruning dict, num_layers) -> the constants the graph holds, one per layer of ``layers``.
    update: (pruning dict, num_layers, {layer: new graph value}) -> the new pruning dict.
    """

    method: str
    layers: Callable[[dict[str, Any], int], list[int]]
    values: Callable[[dict[str, Any], int], list[float]]
    update: Callable[[dict[str, Any], int, dict[int, float]], dict[str, Any]]


def _ltp_layers(pruning: dict[str, Any], num_layers: int) -> list[int]:
    return [i for i, t in enumerate(pruning["thresholds"]) if float(t) != 0.0]


def _ltp_values(pruning: dict[str, Any], num_layers: int) -> list[float]:
    return [max(LTP_MIN_THRESHOLD, float(pruning["thresholds"][i])) for i in _ltp_layers(pruning, num_layers)]


def _ltp_update(pruning: dict[str, Any], num_layers: int, new: dict[int, float]) -> dict[str, Any]:
    thresholds = [float(t) for t in pruning["thresholds"]]
    for layer, value in new.items():
        if thresholds[layer] == 0.0:
            raise ThresholdError(f"LTP layer {layer} does not prune (threshold 0); it has no threshold to change")
        if np.float32(value) != np.float32(thresholds[layer]):  # the graph holds float32: keep unchanged values
            thresholds[layer] = float(value)
    return {**pruning, "thresholds": thresholds}


def _trbert_layers(pruning: dict[str, Any], num_layers: int) -> list[int]:
    layers = pruning.get("selection_layers") or sorted({1, num_layers // 2})
    return [int(i) for i in layers]


def _trbert_values(pruning: dict[str, Any], num_layers: int) -> list[float]:
    layers = _trbert_layers(pruning, num_layers)
    stored = pruning.get("keep_probability")
    return [float(stored[i]) if stored else 0.5 for i in range(len(layers))]


def _trbert_update(pruning: dict[str, Any], num_layers: int, new: dict[int, float]) -> dict[str, Any]:
    layers = _trbert_layers(pruning, num_layers)
    values = _trbert_values(pruning, num_layers)
    for layer, value in new.items():
        values[layers.index(layer)] = float(value)
    # graph-only calibration: the PyTorch reference keeps 0.5; the export folder's graph holds these values
    return {**pruning, "keep_probability": values}


SPECS: dict[str, ThresholdSpec] = {
    "ltp": ThresholdSpec("ltp", _ltp_layers, _ltp_values, _ltp_update),
    "trbert": ThresholdSpec("trbert", _trbert_layers, _trbert_values, _trbert_update),
}


def threshold_spec(method: str) -> ThresholdSpec:
    """The threshold spec of a method: :data:`SPECS`, else the method module's ``threshold_spec()``."""
    if method in SPECS:
        return SPECS[method]
    try:
        from pruneport.methods import _MODULES

        module = importlib.import_module(_MODULES[method][0]) if method in _MODULES else None
    except ImportError:
        module = None
    if module is not None and hasattr(module, "threshold_spec"):
        return module.threshold_spec()
    raise ThresholdError(
        f"method {method!r} has no threshold tensor pruneport can calibrate (methods with thresholds: "
        f"{', '.join(sorted(SPECS))})"
    )


@dataclass
class ThresholdSlot:
    """One prune point's threshold in a graph: its layer, initializer name and current value."""

    layer: int
    name: str
    value: float


def _compare_constant(index: GraphIndex, node: onnx.NodeProto) -> tuple[int, float] | None:
    """(input position, value) of a comparison's scalar float constant input, or None."""
    for pos, name in enumerate(node.input):
        value = index.constant(name)
        if value is not None and value.size == 1 and value.dtype.kind == "f":
            return pos, float(value.reshape(()))
    return None


def find_thresholds(
    model: onnx.ModelProto, method: str, pruning: dict[str, Any], num_layers: int
) -> list[ThresholdSlot]:
    """The threshold slots of a graph; names them first when needed (see :func:`name_thresholds`)."""
    spec = threshold_spec(method)
    layers = spec.layers(pruning, num_layers)
    named = {i.name: i for i in model.graph.initializer if i.name.startswith(THRESHOLD_PREFIX)}
    if named:
        slots = []
        for layer in layers:
            init = named.get(threshold_name(layer))
            if init is None:
                raise ThresholdError(f"graph has named thresholds but none for layer {layer}")
            slots.append(ThresholdSlot(layer, init.name, float(numpy_helper.to_array(init).reshape(()))))
        return slots
    raise ThresholdError("graph thresholds are not named yet; call name_thresholds first")


def name_thresholds(
    model: onnx.ModelProto, method: str, pruning: dict[str, Any], num_layers: int
) -> list[ThresholdSlot]:
    """Give each prune point's threshold its own initializer ``pruneport.threshold.<layer>`` (in place).

    The comparisons are matched to the spec's layers in graph (topological) order and their values checked
    against the manifest (float32 tolerance); a mismatch raises ThresholdError rather than guessing.
    """
    if any(i.name.startswith(THRESHOLD_PREFIX) for i in model.graph.initializer):
        return find_thresholds(model, method, pruning, num_layers)
    spec = threshold_spec(method)
    layers = spec.layers(pruning, num_layers)
    expected = spec.values(pruning, num_layers)
    index = GraphIndex(model)
    found = []
    for node in model.graph.node:
        if node.op_type in COMPARE_OPS:
            hit = _compare_constant(index, node)
            if hit is not None:
                found.append((node, *hit))
    # keep the comparisons whose constants match the expected values in order (other comparisons may exist)
    slots: list[ThresholdSlot] = []
    cursor = 0
    for node, pos, value in found:
        if cursor < len(layers) and np.isclose(value, expected[cursor], rtol=1e-5, atol=1e-9):
            layer = layers[cursor]
            name = threshold_name(layer)
            tensor = numpy_helper.from_array(np.asarray(value, dtype=np.float32), name)
            model.graph.initializer.append(tensor)
            node.input[pos] = name
            slots.append(ThresholdSlot(layer, name, value))
            cursor += 1
    if cursor != len(layers):
        raise ThresholdError(
            f"found {cursor} of {len(layers)} {method} threshold comparisons (expected values {expected}, "
            f"scalar comparisons in the graph: {[round(v, 6) for _, _, v in found]}); is this graph exported from "
            "this manifest?"
        )
    _drop_unused_initializers(model)
    return slots


def _drop_unused_initializers(model: onnx.ModelProto) -> None:
    used = {i for n in model.graph.node for i in n.input} | {o.name for o in model.graph.output}
    keep = [i for i in model.graph.initializer if i.name in used]
    if len(keep) != len(model.graph.initializer):
        del model.graph.initializer[:]
        model.graph.initializer.extend(keep)


def set_thresholds(model: onnx.ModelProto, values: dict[int, float]) -> None:
    """Write new values into named threshold initializers (in place); ``values`` maps layer -> graph value."""
    inits = {i.name: i for i in model.graph.initializer}
    for layer, value in values.items():
        init = inits.get(threshold_name(layer))
        if init is None:
            raise ThresholdError(f"graph has no initializer {threshold_name(layer)}; run name_thresholds first")
        init.CopyFrom(numpy_helper.from_array(np.asarray(value, dtype=np.float32), init.name))

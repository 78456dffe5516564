"""Threshold tensors of exported graphs: how to name them, find them and change them.

Each method with a threshold declares a :class:`~pruneport.methods.spec.ThresholdSpec` in its spec module (which
layers compare a score with a constant, the constants as they appear in the graph, how to find them, how a threshold
*scale* moves them, and how new values are written back into the manifest's ``pruning`` dict); Pyramid-BERT (a
length schedule) has none. :func:`threshold_spec` gives a method's.

In a dynamo export the thresholds are constant-folded into scalar initializers with generic names (LTP's buffer
``pruner.thresholds[l]`` becomes ``select``, ``select_1``, ...; equal values may even share one initializer).
:func:`name_thresholds` finds each prune point's constant with the spec's locator, checks its value against the
manifest, and gives it its own initializer named ``pruneport.threshold.<layer>`` (:func:`threshold_name`). The pass is
idempotent and changes no numbers; quantized graphs keep the names, and the OpenVINO frontend keeps them as Constant
friendly names. Written by hand because the values must be matched to the manifest's layers, which no graph library
knows.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper

from pruneport.graph.roles import GraphIndex
from pruneport.methods import find_method, method_names
from pruneport.methods.spec import ThresholdError, ThresholdSpec

log = logging.getLogger(__name__)

THRESHOLD_PREFIX = "pruneport.threshold."


def threshold_name(layer: int) -> str:
    """The documented initializer name of layer ``layer``'s threshold in pruneport graphs."""
    return f"{THRESHOLD_PREFIX}{layer}"


def has_thresholds(method: str) -> bool:
    """Whether ``method`` is a registered method with a threshold tensor (the plain baselines are not)."""
    spec = find_method(method)
    return spec is not None and spec.thresholds is not None


def threshold_spec(method: str) -> ThresholdSpec:
    """The threshold spec of a method; ThresholdError for a method without one."""
    spec = find_method(method)
    if spec is None or spec.thresholds is None:
        with_thresholds = [m for m in method_names() if has_thresholds(m)]
        raise ThresholdError(
            f"method {method!r} has no threshold tensor pruneport can calibrate (methods with thresholds: "
            f"{', '.join(with_thresholds)})"
        )
    return spec.thresholds


@dataclass
class ThresholdSlot:
    """One prune point's threshold in a graph: its layer, initializer name and current value."""

    layer: int
    name: str
    value: float


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
    found = spec.locate(GraphIndex(model))
    # keep the slots whose constants match the expected values in order (other comparisons may exist)
    slots: list[ThresholdSlot] = []
    cursor = 0
    for slot in found:
        if cursor < len(layers) and np.isclose(slot.value, expected[cursor], rtol=1e-5, atol=1e-9):
            layer = layers[cursor]
            name = threshold_name(layer)
            model.graph.initializer.append(numpy_helper.from_array(np.asarray(slot.value, dtype=np.float32), name))
            slot.bind(name)
            slots.append(ThresholdSlot(layer, name, slot.value))
            cursor += 1
    if cursor != len(layers):
        raise ThresholdError(
            f"found {cursor} of {len(layers)} {method} threshold comparisons (expected values {expected}, "
            f"candidate constants in the graph: {[round(f.value, 6) for f in found]}); is this graph exported from "
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

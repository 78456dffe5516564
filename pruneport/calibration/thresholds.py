"""Threshold tensors of exported graphs: where they are, how to name them, how to change them.

A method with a threshold declares a :class:`ThresholdSpec`: which layers compare a score with a constant, the
constants as they appear in the graph, how to find them, how a threshold *scale* moves them, and how new values are
written back into the manifest's ``pruning`` dict. :data:`SPECS` covers every method with a threshold:

- LTP: ``score >= max(1e-5, thr_l)`` after each pruning layer's attention (the comparison's constant);
- TR-BERT: ``p >= keep_probability`` (0.5 upstream) before each selection layer (the comparison's constant);
- AdapLeR: ``S >= (1 / n) * ETA_l`` before each layer with ETA != 0: the constant is the ``Mul`` operand that makes
  ``delta``; the exporter folds ``* 1.0`` away, so for ETA = 1 a ``Mul`` by a named 1.0 is put back (exact);
- Transkimmer: ``logit1 - logit0 > margin_l`` before every layer (margin 0 = upstream's argmax); a margin is a log-odds
  offset, so a scale ``s`` moves it to ``margin + ln(s)`` (``s = 0`` keeps every token, as for the others).

Pyramid-BERT (a length schedule) has no threshold tensor. A method module may still provide its own spec by defining
``threshold_spec()``.

In a dynamo export the thresholds are constant-folded into scalar initializers with generic names (LTP's buffer
``pruner.thresholds[l]`` becomes ``select``, ``select_1``, ...; equal values may even share one initializer).
:func:`name_thresholds` finds each prune point's constant with the spec's locator, checks its value against the
manifest, and gives it its own initializer named ``pruneport.threshold.<layer>`` (:func:`threshold_name`). The pass is
idempotent and changes no numbers; quantized graphs keep the names, and the OpenVINO frontend keeps them as Constant
friendly names. Written by hand because the values must be matched to the manifest's layers, which no graph library
knows.
"""

from __future__ import annotations

import importlib
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper

from pruneport.graph.roles import GraphIndex

log = logging.getLogger(__name__)

THRESHOLD_PREFIX = "pruneport.threshold."
LTP_MIN_THRESHOLD = 1e-5  # pruneport.methods.ltp.MIN_THRESHOLD (not imported: that module imports torch)
COMPARE_OPS = ("GreaterOrEqual", "Greater", "LessOrEqual", "Less")


def threshold_name(layer: int) -> str:
    """The documented initializer name of layer ``layer``'s threshold in pruneport graphs."""
    return f"{THRESHOLD_PREFIX}{layer}"


class ThresholdError(ValueError):
    """A model whose thresholds cannot be found or changed."""


@dataclass
class Slot:
    """A threshold found in a graph: its value, and how to make the graph read it from a named initializer."""

    value: float
    bind: Callable[[str], None]


def _multiply(value: float, scale: float) -> float:
    return value * scale


def _shift_log_odds(margin: float, scale: float) -> float:
    return margin + math.log(scale) if scale > 0 else float("-inf")


# -- locators: where each method's threshold constants sit in a dynamo export ------------------------------------


def _rebind(node: onnx.NodeProto, position: int) -> Callable[[str], None]:
    def bind(name: str) -> None:
        node.input[position] = name

    return bind


def _scalar(index: GraphIndex, name: str) -> float | None:
    value = index.constant(name)
    if value is not None and value.size == 1 and value.dtype.kind == "f":
        return float(value.reshape(()))
    return None


def comparison_constants(index: GraphIndex) -> list[Slot]:
    """Comparisons with one scalar float constant input, in graph order (LTP, TR-BERT)."""
    slots = []
    for node in index.graph.node:
        if node.op_type in COMPARE_OPS:
            for position, name in enumerate(node.input):
                value = _scalar(index, name)
                if value is not None:
                    slots.append(Slot(value, _rebind(node, position)))
                    break
    return slots


def margin_constants(index: GraphIndex) -> list[Slot]:
    """Transkimmer: ``Greater(logit1 - logit0, margin)``: comparisons of a ``Sub`` output with a scalar constant."""
    slots = []
    for node in index.graph.node:
        if node.op_type != "Greater" or len(node.input) != 2:
            continue
        value = _scalar(index, node.input[1])
        source = index.producer.get(node.input[0])
        if value is not None and source is not None and source.op_type == "Sub":
            slots.append(Slot(value, _rebind(node, 1)))
    return slots


def _insert_eta(index: GraphIndex, compare: onnx.NodeProto) -> Callable[[str], None]:
    """Put back ``delta = Reciprocal(n) * ETA`` where the exporter folded ``* 1.0`` away (multiplying by 1 is exact)."""

    def bind(name: str) -> None:
        delta = f"{name}.delta"
        mul = onnx.helper.make_node("Mul", [compare.input[1], name], [delta], name=f"{name}.mul")
        compare.input[1] = delta
        position = next(i for i, n in enumerate(index.graph.node) if n is compare)
        index.graph.node.insert(position, mul)

    return bind


def eta_constants(index: GraphIndex) -> list[Slot]:
    """AdapLeR: ``GreaterOrEqual(S, Reciprocal(n) * ETA)``; the ETA operand of that ``Mul`` (1.0 where folded)."""
    slots = []
    for node in index.graph.node:
        if node.op_type != "GreaterOrEqual" or len(node.input) != 2:
            continue
        delta = index.producer.get(node.input[1])
        if delta is None:
            continue
        if delta.op_type == "Reciprocal":
            slots.append(Slot(1.0, _insert_eta(index, node)))
        elif delta.op_type == "Mul":
            for position, name in enumerate(delta.input):
                other = index.producer.get(delta.input[1 - position])
                value = _scalar(index, name)
                if value is not None and other is not None and other.op_type == "Reciprocal":
                    slots.append(Slot(value, _rebind(delta, position)))
                    break
    return slots


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
    # the PyTorch reference reads them too (TRBERTParams.keep_probability)
    return {**pruning, "keep_probability": values}


def _adapler_layers(pruning: dict[str, Any], num_layers: int) -> list[int]:
    return [i for i, eta in enumerate(pruning["eta"]) if float(eta) != 0.0]


def _adapler_values(pruning: dict[str, Any], num_layers: int) -> list[float]:
    return [float(pruning["eta"][i]) for i in _adapler_layers(pruning, num_layers)]


def _adapler_update(pruning: dict[str, Any], num_layers: int, new: dict[int, float]) -> dict[str, Any]:
    eta = [float(v) for v in pruning["eta"]]
    for layer, value in new.items():
        if eta[layer] == 0.0:
            raise ThresholdError(f"AdapLeR layer {layer} does not prune (ETA 0); it has no threshold to change")
        if np.float32(value) != np.float32(eta[layer]):
            eta[layer] = float(value)
    return {**pruning, "eta": eta}


def _transkimmer_layers(pruning: dict[str, Any], num_layers: int) -> list[int]:
    return list(range(num_layers))


def _transkimmer_values(pruning: dict[str, Any], num_layers: int) -> list[float]:
    margin = pruning.get("margin")
    return [float(m) for m in margin] if margin else [0.0] * num_layers


def _transkimmer_update(pruning: dict[str, Any], num_layers: int, new: dict[int, float]) -> dict[str, Any]:
    margin = _transkimmer_values(pruning, num_layers)
    for layer, value in new.items():
        margin[layer] = float(value)
    return {**pruning, "margin": margin}


SPECS: dict[str, ThresholdSpec] = {
    "ltp": ThresholdSpec("ltp", _ltp_layers, _ltp_values, _ltp_update, before_layer=False),
    "trbert": ThresholdSpec("trbert", _trbert_layers, _trbert_values, _trbert_update),
    "adapler": ThresholdSpec("adapler", _adapler_layers, _adapler_values, _adapler_update, eta_constants),
    "transkimmer": ThresholdSpec(
        "transkimmer",
        _transkimmer_layers,
        _transkimmer_values,
        _transkimmer_update,
        margin_constants,
        _shift_log_odds,
        keep_all=float("-inf"),
    ),
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

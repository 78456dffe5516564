"""AdapLeR's facts for the pipeline (torch-free; the model is :mod:`pruneport.methods.adapler.model`).

Keep rule: before each layer with ETA != 0 a contribution predictor scores the live tokens (softmax over them, ``S``)
and a token stays iff ``S >= (1 / n) * ETA_l`` (``n`` live tokens). The graph's constant is the ``Mul`` operand that
makes ``delta``; the exporter folds ``* 1.0`` away, so for ETA = 1 a ``Mul`` by a named 1.0 is put back (exact). The
predictors are the score source INT8 keeps in FP32.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import onnx

from pruneport.graph.roles import GraphIndex
from pruneport.graph.threshold_slots import Slot, rebind, scalar_constant
from pruneport.methods.spec import MethodOption, MethodSpec, ThresholdSpec, TinyFixture, with_layer_values
from pruneport.validate import non_negative_floats


def eta_layers(pruning: dict[str, Any], num_layers: int) -> list[int]:
    """The layers with ETA != 0 (those that prune)."""
    return [i for i, eta in enumerate(pruning["eta"]) if float(eta) != 0.0]


def etas(pruning: dict[str, Any], num_layers: int) -> list[float]:
    """ETA of each pruning layer."""
    return [float(pruning["eta"][i]) for i in eta_layers(pruning, num_layers)]


def with_etas(pruning: dict[str, Any], num_layers: int, new: dict[int, float]) -> dict[str, Any]:
    """``pruning`` with new ETA for some pruning layers (float32-equal values stay as stored)."""
    return with_layer_values(pruning, "eta", new, "AdapLeR", "ETA")


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
    """``GreaterOrEqual(S, Reciprocal(n) * ETA)``: the ETA operand of that ``Mul`` (1.0 where folded)."""
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
                value = scalar_constant(index, name)
                if value is not None and other is not None and other.op_type == "Reciprocal":
                    slots.append(Slot(value, rebind(delta, position)))
                    break
    return slots


SPEC = MethodSpec(
    name="adapler",
    title="AdapLeR",
    summary="contribution predictor, threshold eta/n",
    model_module="pruneport.methods.adapler.model",
    keep_rule="eta-n",
    score_source="predictor",
    tiny=TinyFixture({"eta": [0.5, 0.8, 1.0]}),
    options=(MethodOption("eta", "ETA per layer (overrides the checkpoint's)", non_negative_floats),),
    thresholds=ThresholdSpec("adapler", eta_layers, etas, with_etas, eta_constants),
)

"""Where a threshold constant sits in a dynamo-exported graph, and how to make the graph read it from a name.

A :class:`Slot` is one candidate threshold: its value and a ``bind(name)`` that rewires the reading node to a named
initializer. :func:`comparison_constants` finds the generic case (a comparison with one scalar float constant: LTP,
TR-BERT); a method whose threshold sits elsewhere writes its own locator in its spec module with the helpers here
(:func:`scalar_constant`, :func:`rebind`). Read by :mod:`pruneport.calibration.thresholds`. Written by hand: the
values must be matched to a manifest's layers, which no graph library knows. Torch-free.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import onnx

from pruneport.graph.roles import GraphIndex

COMPARE_OPS = ("GreaterOrEqual", "Greater", "LessOrEqual", "Less")


@dataclass
class Slot:
    """A threshold found in a graph: its value, and how to make the graph read it from a named initializer."""

    value: float
    bind: Callable[[str], None]


def rebind(node: onnx.NodeProto, position: int) -> Callable[[str], None]:
    """A ``bind`` that makes ``node`` read input ``position`` from the given name."""

    def bind(name: str) -> None:
        node.input[position] = name

    return bind


def scalar_constant(index: GraphIndex, name: str) -> float | None:
    """The value of ``name`` when it is a constant float scalar (any rank with one element), else None."""
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
                value = scalar_constant(index, name)
                if value is not None:
                    slots.append(Slot(value, rebind(node, position)))
                    break
    return slots

"""Transkimmer's facts for the pipeline (torch-free; the model is :mod:`pruneport.methods.transkimmer.model`).

Keep rule: before every layer a skim predictor gives two logits per token; a token stays iff
``logit1 - logit0 > margin_l`` (margin 0 = upstream's argmax). A margin is a log-odds offset, so a threshold scale
``s`` moves it to ``margin + ln(s)`` (``s = 0`` keeps every token, as for the other methods). The predictors are the
score source INT8 keeps in FP32.
"""

from __future__ import annotations

import math
from typing import Any

from pruneport.graph.roles import GraphIndex
from pruneport.graph.threshold_slots import Slot, rebind, scalar_constant
from pruneport.methods.spec import MethodOption, MethodSpec, ThresholdSpec, TinyFixture

SEMANTICS = ("removal", "master")


def skim_layers(pruning: dict[str, Any], num_layers: int) -> list[int]:
    """Every layer skims."""
    return list(range(num_layers))


def margins(pruning: dict[str, Any], num_layers: int) -> list[float]:
    """The margin of each layer (0 everywhere unless calibrated)."""
    margin = pruning.get("margin")
    return [float(m) for m in margin] if margin else [0.0] * num_layers


def with_margins(pruning: dict[str, Any], num_layers: int, new: dict[int, float]) -> dict[str, Any]:
    """``pruning`` with new margins for some layers."""
    margin = margins(pruning, num_layers)
    for layer, value in new.items():
        margin[layer] = float(value)
    return {**pruning, "margin": margin}


def shift_log_odds(margin: float, scale: float) -> float:
    """The margin under threshold scale ``scale`` (0 keeps every token)."""
    return margin + math.log(scale) if scale > 0 else float("-inf")


def margin_constants(index: GraphIndex) -> list[Slot]:
    """``Greater(logit1 - logit0, margin)``: comparisons of a ``Sub`` output with a scalar constant."""
    slots = []
    for node in index.graph.node:
        if node.op_type != "Greater" or len(node.input) != 2:
            continue
        value = scalar_constant(index, node.input[1])
        source = index.producer.get(node.input[0])
        if value is not None and source is not None and source.op_type == "Sub":
            slots.append(Slot(value, rebind(node, 1)))
    return slots


SPEC = MethodSpec(
    name="transkimmer",
    title="Transkimmer",
    summary="skim predictor before every layer",
    model_module="pruneport.methods.transkimmer.model",
    keep_rule="margin",
    score_source="predictor",
    tiny=TinyFixture({}),
    options=(
        MethodOption(
            "transkimmer_semantics",
            "real removal (default) or upstream master's post-softmax masking",
            choices=SEMANTICS,
        ),
    ),
    thresholds=ThresholdSpec(
        "transkimmer", skim_layers, margins, with_margins, margin_constants, shift_log_odds, keep_all=float("-inf")
    ),
)

"""LTP's facts for the pipeline (torch-free; the model is :mod:`pruneport.methods.ltp.model`).

Keep rule: ``score >= max(1e-5, thr_l)`` after each pruning layer's attention, the score being the attention a token
receives from live queries (so INT8 keeps those layers' attention in FP32); the threshold is the comparison's
constant, and a threshold of 0 means the layer does not prune.
"""

from __future__ import annotations

from typing import Any

from pruneport.methods.spec import MethodOption, MethodSpec, ThresholdSpec, TinyFixture, with_layer_values
from pruneport.validate import non_negative_float, non_negative_floats, positive_int

MIN_THRESHOLD = 1e-5  # a threshold below this still prunes at it (upstream clamps the same way)


def pruning_layers(pruning: dict[str, Any], num_layers: int) -> list[int]:
    """The layers with a nonzero threshold."""
    return [i for i, t in enumerate(pruning["thresholds"]) if float(t) != 0.0]


def graph_thresholds(pruning: dict[str, Any], num_layers: int) -> list[float]:
    """The constants the graph compares with, one per pruning layer."""
    return [max(MIN_THRESHOLD, float(pruning["thresholds"][i])) for i in pruning_layers(pruning, num_layers)]


def with_thresholds(pruning: dict[str, Any], num_layers: int, new: dict[int, float]) -> dict[str, Any]:
    """``pruning`` with new graph thresholds for some pruning layers (float32-equal values stay as stored)."""
    return with_layer_values(pruning, "thresholds", new, "LTP", "threshold")


SPEC = MethodSpec(
    name="ltp",
    title="LTP",
    summary="learned threshold on the attention each token receives",
    model_module="pruneport.methods.ltp.model",
    keep_rule="threshold",
    score_source="attention",
    tiny=TinyFixture({"thresholds": [0.0, 0.02, 0.03], "score_norm_length": 32}),
    options=(
        MethodOption(
            "thresholds",
            "one effective threshold per layer, comma-separated (replaces a model.pt's)",
            non_negative_floats,
        ),
        MethodOption(
            "final_threshold",
            "rising schedule final_threshold * l / L (replaces a model.pt's thresholds)",
            non_negative_float,
        ),
        MethodOption(
            "score_norm_length", "score denominator N, >= 1 (default: the model.pt's, else 128)", positive_int
        ),
    ),
    thresholds=ThresholdSpec("ltp", pruning_layers, graph_thresholds, with_thresholds, before_layer=False),
)

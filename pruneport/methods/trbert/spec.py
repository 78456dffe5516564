"""TR-BERT's facts for the pipeline (torch-free; the model is :mod:`pruneport.methods.trbert.model`).

Keep rule: before each selection layer (0-based 1 and L//2 upstream) a policy MLP gives each token a keep
probability ``p``; a token stays iff ``p >= keep_probability`` (0.5 upstream, the comparison's constant). The policy
MLP is the score source INT8 keeps in FP32.
"""

from __future__ import annotations

from typing import Any

from pruneport.methods.spec import MethodSpec, ThresholdSpec, TinyFixture

KEEP_PROBABILITY = 0.5


def default_selection_layers(num_layers: int) -> tuple[int, ...]:
    """Upstream's selection points: 0-based layers 1 and L//2 (one point when they coincide)."""
    if num_layers < 2:
        raise ValueError(
            f"TR-BERT selects tokens before layers 1 and L//2 and needs at least 2 layers, got {num_layers}"
        )
    return tuple(sorted({1, num_layers // 2}))


def selection_layers(pruning: dict[str, Any], num_layers: int) -> list[int]:
    """The layers before which the policy selects tokens."""
    layers = pruning.get("selection_layers") or default_selection_layers(num_layers)
    return [int(i) for i in layers]


def keep_probabilities(pruning: dict[str, Any], num_layers: int) -> list[float]:
    """The keep-probability threshold of each selection layer."""
    layers = selection_layers(pruning, num_layers)
    stored = pruning.get("keep_probability")
    return [float(stored[i]) if stored else KEEP_PROBABILITY for i in range(len(layers))]


def with_keep_probabilities(pruning: dict[str, Any], num_layers: int, new: dict[int, float]) -> dict[str, Any]:
    """``pruning`` with new keep-probability thresholds for some selection layers (the reference reads them too)."""
    layers = selection_layers(pruning, num_layers)
    values = keep_probabilities(pruning, num_layers)
    for layer, value in new.items():
        values[layers.index(layer)] = float(value)
    return {**pruning, "keep_probability": values}


SPEC = MethodSpec(
    name="trbert",
    title="TR-BERT",
    summary="policy MLP before layer 1 and layer L//2",
    model_module="pruneport.methods.trbert.model",
    keep_rule="threshold",
    score_source="predictor",
    tiny=TinyFixture({}, layers=4),
    thresholds=ThresholdSpec("trbert", selection_layers, keep_probabilities, with_keep_probabilities),
)

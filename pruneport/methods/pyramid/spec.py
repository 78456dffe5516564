"""Pyramid-BERT's facts for the pipeline (torch-free; the model is :mod:`pruneport.methods.pyramid.model`).

Keep rule: before each layer up to ``prune_upto`` a greedy k-center selection on the hidden states keeps a fixed
number of tokens (the length schedule reaching ``keep_ratio``). No threshold tensor: the schedule is the parameter
(``pruneport export --keep-ratio``); the decision reads hidden states, not a score MatMul.
"""

from __future__ import annotations

from pruneport.methods.spec import MethodOption, MethodSpec, TinyFixture
from pruneport.validate import positive_float, positive_int

DISTANCES = ("euclidean", "cosine")

SPEC = MethodSpec(
    name="pyramid",
    title="Pyramid-BERT",
    summary="greedy k-center selection on a length schedule",
    model_module="pruneport.methods.pyramid.model",
    keep_rule="k-center",
    score_source="hidden-states",
    tiny=TinyFixture({"keep_ratio": 0.5, "prune_upto": 2, "m": 1, "distance": "euclidean"}),
    options=(
        MethodOption("keep_ratio", "target keep ratio p in (0, 1]", positive_float),
        MethodOption("prune_upto", "layer by which the ratio is reached", positive_int),
        MethodOption("kcenter_m", "tokens added per greedy round: an integer or 'k-1'", str),
        MethodOption("distance", "k-center distance", choices=DISTANCES),
    ),
)

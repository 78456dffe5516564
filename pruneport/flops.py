"""FLOPs per example from ``tokens_per_layer`` (never from the padded length), following ``shared/methods.md``:
a layer's Q/K/V/output projections and attention at its entering count, its FFN at the next layer's entering count
(LTP prunes before the FFN; other methods between layers), the last layer's FFN at its own entering count (or 1 when
the CLS-only last layer is on). Embedding lookups and the classification head are left out (both are tiny).
Torch-free.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np


def layer_macs(hidden: int, intermediate: int, attn_tokens: np.ndarray, ffn_tokens: np.ndarray) -> np.ndarray:
    """MACs of one layer for arrays of token counts: 4 n d^2 (projections) + 2 n^2 d (scores, context) + 2 m d d_ff."""
    n = attn_tokens.astype(np.float64)
    m = ffn_tokens.astype(np.float64)
    return 4 * n * hidden**2 + 2 * n**2 * hidden + 2 * m * hidden * intermediate


def macs_per_example(
    backbone: Mapping[str, Any], tokens_per_layer: np.ndarray, cls_only_last: bool = False
) -> np.ndarray:
    """MACs of each example ([n]) given tokens_per_layer [n, layers]."""
    tokens = np.asarray(tokens_per_layer)
    hidden, inter = int(backbone["hidden_size"]), int(backbone["intermediate_size"])
    layers = tokens.shape[1]
    total = np.zeros(tokens.shape[0], dtype=np.float64)
    for i in range(layers):
        if i + 1 < layers:
            ffn = tokens[:, i + 1]
        else:
            ffn = np.ones_like(tokens[:, i]) if cls_only_last else tokens[:, i]
        total += layer_macs(hidden, inter, tokens[:, i], ffn)
    return total


def relative_flops(
    backbone: Mapping[str, Any], tokens_per_layer: np.ndarray, lengths: np.ndarray | None = None
) -> float:
    """Total FLOPs of the pruned run divided by the same examples unpruned (every layer at the real length).

    lengths: real input lengths [n]; defaults to tokens_per_layer[:, 0] (the first layer sees every real token
    for methods that do not prune before layer 0).
    """
    tokens = np.asarray(tokens_per_layer)
    lengths = tokens[:, 0] if lengths is None else np.asarray(lengths)
    full = np.repeat(lengths[:, None], tokens.shape[1], axis=1)
    return float(macs_per_example(backbone, tokens).sum() / macs_per_example(backbone, full).sum())

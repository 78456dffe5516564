"""ONNX translations of pruneport's custom torch ops (``custom_translation_table`` of the dynamo exporter).

Written with onnxscript's opset-18 ops, which every supported opset (18..25) keeps unchanged.
"""

from __future__ import annotations

import torch
from onnxscript import opset18 as op

import pruneport.methods.prune_ops  # noqa: F401  (registers torch.ops.pruneport.gather_rows)


def gather_rows_onnx(x, index):
    """``pruneport::gather_rows``: one ``GatherND`` over the batch (``batch_dims=1``) with index [B, W, 1]."""
    return op.GatherND(x, op.Unsqueeze(index, [-1]), batch_dims=1)


TRANSLATIONS = {torch.ops.pruneport.gather_rows.default: gather_rows_onnx}

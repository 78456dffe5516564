"""ONNX translations of pruneport's custom torch ops (``custom_translation_table`` of the dynamo exporter).

Written with onnxscript's opset-18 ops, which every supported opset (18..25) keeps unchanged.
"""

from __future__ import annotations

from onnxscript import opset18 as op

from pruneport.methods.prune_ops import gather_rows


def gather_rows_onnx(x, index):
    """``pruneport::gather_rows``: one ``GatherND`` over the batch (``batch_dims=1``) with index [B, W, 1]."""
    return op.GatherND(x, op.Unsqueeze(index, [-1]), batch_dims=1)


TRANSLATIONS = {gather_rows._opoverload: gather_rows_onnx}

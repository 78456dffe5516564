"""Fused attention for the layers whose probabilities nothing reads: ONNX ``Attention`` (opset 24) with
``nonpad_kv_seqlen``, the form ONNX Runtime's CUDA EP runs with its flash / memory-efficient kernels.

Before (as in :mod:`pruneport.passes.attention23`; ``live4`` [B,1,1,S] bool)::

    probs = Softmax(Where(live4, Mul(MatMul(q, Transpose(k, perm=[0,2,3,1])), scale), min_float), axis=-1)
    ctx   = MatMul(probs, v)

After, for blocks whose ``probs`` have no other reader::

    n   = Reshape(ReduceSum(Cast(live4, int64), axes=[-1], keepdims=0), [-1])        live tokens per row, [B]
    ctx = Attention(q, Transpose(k, perm=[0,2,1,3]), v, nonpad_kv_seqlen=n, scale=scale)

Why exact: in every pruneport graph a row's live tokens are a prefix (inputs are right-padded, the runtime's
contract, and every prune point packs the kept tokens to the left: :func:`pruneport.methods.pruned_encoder.compact`),
so "the first n keys" is the live mask; masked keys get probability 0 either way (``exp`` underflows). A graph fed
left-padded inputs would differ: the runtime never does that. Blocks whose probabilities feed a pruning score (LTP's
pruning layers) are left as they are; their received-attention sum needs the probabilities, which no fused kernel
returns (ONNX ``Attention``'s ``qk_matmul_output`` is the unfused path: :mod:`pruneport.passes.attention23`).

The mask form matters on the GPU: ORT's CUDA ``Attention`` (opset 24) takes ``nonpad_kv_seqlen`` to its flash /
memory-efficient kernels and turns a boolean ``attn_mask`` into an additive bias (microsoft/onnxruntime#27486,
#27542); which kernel it picks on a given GPU, and whether that beats the unfused blocks, is for
``benchmarks/bench_gpu.py`` to show (not yet measured: no GPU machine so far). On CPU the pass is parity-tested on
every method (ONNX Runtime 1.32). For ONNX Runtime only (``RUNS_ON``). The matching
reuses :mod:`pruneport.passes.attention23`'s onnxscript patterns.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
from onnxscript.rewriter import pattern

from pruneport.passes import attention23

NAME = "attention24"
SUMMARY = "attention blocks whose probabilities nothing reads -> ONNX Attention (opset 24) with nonpad_kv_seqlen"
OPSET = 24
RUNS_ON = ("onnxruntime",)


def _live_counts(op, live):
    """live [B,1,1,S] bool -> [B] int64: live keys per row (a prefix of the keys in pruneport graphs)."""
    axes = op.Constant(value=ir.tensor(np.array([-1], dtype=np.int64)))
    flat = op.Constant(value=ir.tensor(np.array([-1], dtype=np.int64)))
    counts = op.ReduceSum(op.Cast(live, to=ir.DataType.INT64), axes, keepdims=0)
    return op.Reshape(counts, flat)


def _fused(op, q, k, v, live, scale):
    key = op.Transpose(k, perm=[0, 2, 1, 3])
    return op.Attention(q, key, v, None, None, None, _live_counts(op, live), scale=attention23._scalar(scale))


def _replacement_not_live(op, q, k, v, not_live, neg, scale):
    producer = not_live.producer()
    if producer is not None and producer.op_type == "Not" and producer.domain == "":
        live = producer.inputs[0]
    else:
        live = op.Not(not_live)
    return _fused(op, q, k, v, live, scale)


def _replacement_live(op, q, k, v, live, neg, scale):
    return _fused(op, q, k, v, live, scale)


not_live_rule = pattern.RewriteRule(
    attention23._plain_pattern, _replacement_not_live, attention23._check, name="Attention24NonpadKV"
)
live_rule = pattern.RewriteRule(
    attention23._plain_live_pattern, _replacement_live, attention23._check_live, name="Attention24NonpadKVLiveMask"
)


def apply(model: ir.Model) -> int:
    """Fuse every attention block whose probabilities have no other reader, in place; returns the number fused."""
    count = pattern.RewriteRuleSet([not_live_rule, live_rule]).apply_to_model(model)
    if count:
        model.opset_imports[""] = max(model.opset_imports.get("", OPSET), OPSET)
    return count

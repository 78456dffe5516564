"""Attention fusion that keeps the probabilities: exported attention blocks -> standard ONNX ``Attention`` (opset 23).

Before (pruneport's backbone as the dynamo exporter writes it, per layer; 4-D [B,H,S,d] heads)::

    scores = Mul(MatMul(q, Transpose(k, perm=[0,2,3,1])), scale)
    probs  = Softmax(Where(live4, scores, min_float), axis=-1)             live4: [B,1,1,S] bool
    (exports before December 2026: Where(Not(live4), min_float, scores); both are matched)
    ctx    = MatMul(probs, v)

After::

    ctx[, probs] = Attention(q, Transpose(k, perm=[0,2,1,3]), v, Expand(live4, [1,1,Sq,1]), scale=scale
                             [, qk_matmul_output_mode=3])

Layers whose probabilities feed a pruning score keep them as the ``qk_matmul_output`` output with
``qk_matmul_output_mode=3`` (after softmax); the other layers get a plain one-output ``Attention``. A boolean mask
with True = attend gives the same probabilities as the exporter's ``min_float`` fill (``exp`` underflows to 0 in both;
CLS is always live, so no row is fully masked). Neither ONNX Runtime's optimizer nor onnxscript's ``optimize_for_ort``
fuse a block whose probabilities leave it (``shared/research/deployment-notes.md`` section 2), hence this pass.

The default-domain opset is raised to 23 (ONNX Runtime 1.31 and OpenVINO 2026.4 run it on CPU; parity-tested on
both). Measured on MiniLM LTP: no gain on ONNX Runtime (CPU-time ratio 0.98-1.03, the noise), 0.94-0.99 on OpenVINO,
so it is in no default pipeline (``docs/passes.md``); use it for a portable fused graph that keeps the probabilities.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
from onnxscript.rewriter import pattern

NAME = "attention23"
SUMMARY = "attention blocks -> ONNX Attention (opset 23), probabilities kept (qk_matmul_output_mode=3) where used"
OPSET = 23


def _block(op, q, k, v, not_live, neg, scale):
    key_t = op.Transpose(k, perm=[0, 2, 3, 1])
    scores = op.Mul(op.MatMul(q, key_t), scale)
    probs = op.Softmax(op.Where(not_live, neg, scores), axis=-1)
    return op.MatMul(probs, v), probs


def _block_live(op, q, k, v, live, neg, scale):
    """Exports since December 2026: ``Where(live4, scores, min_float)`` (no Not)."""
    key_t = op.Transpose(k, perm=[0, 2, 3, 1])
    scores = op.Mul(op.MatMul(q, key_t), scale)
    probs = op.Softmax(op.Where(live, scores, neg), axis=-1)
    return op.MatMul(probs, v), probs


def _plain_pattern(op, q, k, v, not_live, neg, scale):
    return _block(op, q, k, v, not_live, neg, scale)[0]


def _probs_pattern(op, q, k, v, not_live, neg, scale):
    return _block(op, q, k, v, not_live, neg, scale)


def _plain_live_pattern(op, q, k, v, live, neg, scale):
    return _block_live(op, q, k, v, live, neg, scale)[0]


def _probs_live_pattern(op, q, k, v, live, neg, scale):
    return _block_live(op, q, k, v, live, neg, scale)


def _scalar(value: ir.Value) -> float | None:
    if value.const_value is None:
        return None
    array = np.asarray(value.const_value.numpy())
    return float(array.reshape(())) if array.size == 1 else None


def _check_live(context, q, k, v, live, neg, scale, **_) -> pattern.MatchResult:
    return _check(context, q, k, v, live, neg, scale)


def _check(context, q, k, v, not_live, neg, scale, **_) -> pattern.MatchResult:
    result = pattern.MatchResult()
    if _scalar(scale) is None:
        return result.fail("scale is not a constant scalar")
    fill = _scalar(neg)
    if fill is None or fill > -1e30:
        return result.fail("masked scores are not filled with a huge negative constant")
    for value in (q, k, v):
        if value.shape is None or value.shape.rank() != 4:
            return result.fail("q/k/v are not known to be rank 4")
    if not_live.shape is None or not_live.shape.rank() != 4 or not_live.dtype != ir.DataType.BOOL:
        return result.fail("mask is not a rank-4 boolean")
    return result


def _attention(op, q, k, v, not_live, scale, with_probs: bool, live=None):
    if live is None:
        producer = not_live.producer()
        if producer is not None and producer.op_type == "Not" and producer.domain == "":
            live = producer.inputs[0]
        else:
            live = op.Not(not_live)
    # ONNX Runtime 1.31 wants the mask's query axis spelled out ([B,1,Sq,S]); it does not broadcast it
    ones = op.Constant(value=ir.tensor(np.array([1, 1], dtype=np.int64)))
    one = op.Constant(value=ir.tensor(np.array([1], dtype=np.int64)))
    live = op.Expand(live, op.Concat(ones, op.Shape(q, start=2, end=3), one, axis=0))
    key = op.Transpose(k, perm=[0, 2, 1, 3])
    if not with_probs:
        return op.Attention(q, key, v, live, scale=_scalar(scale))
    y, _, _, probs = op.Attention(q, key, v, live, scale=_scalar(scale), qk_matmul_output_mode=3, _outputs=4)
    return y, probs


def _plain_replacement(op, q, k, v, not_live, neg, scale):
    return _attention(op, q, k, v, not_live, scale, with_probs=False)


def _probs_replacement(op, q, k, v, not_live, neg, scale):
    return _attention(op, q, k, v, not_live, scale, with_probs=True)


def _plain_live_replacement(op, q, k, v, live, neg, scale):
    return _attention(op, q, k, v, None, scale, with_probs=False, live=live)


def _probs_live_replacement(op, q, k, v, live, neg, scale):
    return _attention(op, q, k, v, None, scale, with_probs=True, live=live)


plain_rule = pattern.RewriteRule(_plain_pattern, _plain_replacement, _check, name="Attention23")
probs_rule = pattern.RewriteRule(_probs_pattern, _probs_replacement, _check, name="Attention23KeepProbs")
plain_live_rule = pattern.RewriteRule(
    _plain_live_pattern, _plain_live_replacement, _check_live, name="Attention23LiveMask"
)
probs_live_rule = pattern.RewriteRule(
    _probs_live_pattern, _probs_live_replacement, _check_live, name="Attention23LiveMaskKeepProbs"
)


def apply(model: ir.Model) -> int:
    """Fuse every matching attention block in place (plain blocks first); returns the number fused."""
    count = pattern.RewriteRuleSet([plain_rule, plain_live_rule]).apply_to_model(model)
    count += pattern.RewriteRuleSet([probs_rule, probs_live_rule]).apply_to_model(model)
    if count:
        model.opset_imports[""] = max(model.opset_imports.get("", OPSET), OPSET)
    return count

"""Score reduction: reduce the attention probabilities [B,H,S,S] in the order ONNX Runtime reduces fast.

pruneport's LTP score is exported as (``pruneport.methods.ltp.model.ltp_scores``)::

    MatMul(live [B,1,S], ReduceSum(probs [B,H,S,S], axes=[1], keepdims=0))            -> [B,1,S]

ORT CPU sums over the head axis of a [B,H,S,S] tensor slowly (a strided reduction over a non-trailing axis). The
rule below first weights the query rows by ``live`` with one batched vector-matrix product per head, then sums the
H small rows::

    ReduceSum(MatMul(Unsqueeze(live, [1]) [B,1,1,S], probs) [B,H,1,S], axes=[1], keepdims=0)  -> [B,1,S]

Both read the H*S*S probabilities once; the sums are the same up to float reordering (about 1e-7 relative).

A second rule covers the textbook LTP score ``ReduceMean(probs, axes=[1,2])`` (what upstream LTP and the research
notes describe): ``ReduceMean(ReduceMean(probs, axes=[2]), axes=[1])``, equal because every head has the same
number of query rows, and it needs no shape arithmetic for the dynamic S.

Measured (``benchmarks/bench_passes.py --micro``: the score subgraph alone, H=12, B=1, 2-thread ORT 1.31 / OV
2026.4 f32 on the 2-vCPU AMD EPYC dev machine, interleaved min of 30; a second run on the then heavily loaded machine
gave ORT 2.1x at S=128 and 3.0x at S=384, OV unusable):

==========  ==================================  ============================
S           ORT: ReduceSum(h)+MatMul -> rule    OV f32: before -> rule
==========  ==================================  ============================
128         0.235 ms -> 0.080 ms (2.9x)         0.332 ms -> 0.307 ms (1.1x)
384         1.118 ms -> 0.453 ms (2.5x)         1.853 ms -> 1.612 ms (1.1x)
==========  ==================================  ============================

ReduceMean(axes=[1,2]) at S=384: ORT 2.565 ms, ReduceSum(axis 2) then ReduceSum(axis 1) 0.460 ms (5.6x); OV about
equal. On the whole MiniLM LTP model this is 2-4% less CPU time on ORT and nothing measurable on OpenVINO, so the
pass is in the ONNX Runtime default pipeline only (``docs/passes.md``).
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
from onnxscript.rewriter import pattern

NAME = "score-reduction"
SUMMARY = "LTP score: weight query rows with MatMul before summing heads (ORT reduces the head axis slowly)"


def _const_ints(value: ir.Value | None) -> list[int] | None:
    if value is None or value.const_value is None:
        return None
    return [int(v) for v in np.asarray(value.const_value.numpy()).reshape(-1)]


def _head_sum_pattern(op, live, probs, axes):
    summed = op.ReduceSum(probs, axes, keepdims=0, _allow_other_attributes=True)
    return op.MatMul(live, summed)


def _head_sum_check(context, live, probs, axes, **_) -> pattern.MatchResult:
    result = pattern.MatchResult()
    if _const_ints(axes) != [1]:
        return result.fail("ReduceSum is not over axis 1")
    if probs.shape is None or probs.shape.rank() != 4:
        return result.fail("probabilities are not known to be rank 4")
    if live.shape is None or live.shape.rank() != 3:
        return result.fail("query weights are not known to be rank 3 [B,1,S]")
    return result


def _head_sum_replacement(op, live, probs, axes):
    weights = op.Unsqueeze(live, op.Constant(value=ir.tensor(np.array([1], dtype=np.int64))))
    per_head = op.MatMul(weights, probs)
    return op.ReduceSum(per_head, axes, keepdims=0)


def _mean_pattern(op, probs, axes):
    return op.ReduceMean(probs, axes, keepdims=0, _allow_other_attributes=True)


def _mean_check(context, probs, axes, **_) -> pattern.MatchResult:
    result = pattern.MatchResult()
    if _const_ints(axes) != [1, 2]:
        return result.fail("ReduceMean is not over axes [1, 2]")
    if probs.shape is None or probs.shape.rank() != 4:
        return result.fail("input is not known to be rank 4")
    return result


def _mean_replacement(op, probs, axes):
    rows = op.ReduceMean(probs, op.Constant(value=ir.tensor(np.array([2], dtype=np.int64))), keepdims=0)
    return op.ReduceMean(rows, op.Constant(value=ir.tensor(np.array([1], dtype=np.int64))), keepdims=0)


head_sum_rule = pattern.RewriteRule(_head_sum_pattern, _head_sum_replacement, _head_sum_check, name="LtpHeadSum")
mean_rule = pattern.RewriteRule(_mean_pattern, _mean_replacement, _mean_check, name="ScoreReduceMean")
RULES = pattern.RewriteRuleSet([head_sum_rule, mean_rule])


def apply(model: ir.Model) -> int:
    """Rewrite every matching score reduction in ``model`` in place; returns the number of rewrites."""
    return RULES.apply_to_model(model)

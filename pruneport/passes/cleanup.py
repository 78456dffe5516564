"""Clean-up: constant folding, common subexpression elimination, dead code removal and shape inference.

Uses onnxscript's optimizer (``optimize_ir``: constant folding with ONNX shape inference, folding of
Shape/Size arithmetic on known dims, inlining) and onnx-ir's passes (CSE, unused node and initializer removal,
topological sort). Run it first (it gives the rewriters clean patterns) and last (it removes what fusions left).
Its count is the number of nodes it removed.
"""

from __future__ import annotations

import onnx_ir as ir
import onnx_ir.passes.common as common
import onnxscript.optimizer

NAME = "cleanup"
SUMMARY = "constant folding, CSE, dead node/initializer removal, shape inference"


def apply(model: ir.Model) -> int:
    """Clean ``model`` in place; returns how many nodes fewer it has."""
    before = sum(1 for _ in model.graph.all_nodes())
    onnxscript.optimizer.optimize_ir(model, num_iterations=2)
    common.CommonSubexpressionEliminationPass()(model)
    common.RemoveUnusedNodesPass()(model)
    common.RemoveUnusedFunctionsPass()(model)
    common.RemoveUnusedOpsetsPass()(model)
    common.DeduplicateInitializersPass()(model)
    common.TopologicalSortPass()(model)
    common.ShapeInferencePass()(model)
    return before - sum(1 for _ in model.graph.all_nodes())

"""Clean-up: constant folding, common subexpression elimination, dead code removal and shape inference.

Uses onnxscript's optimizer (``optimize_ir``: constant folding with ONNX shape inference, folding of
Shape/Size arithmetic on known dims, inlining) and onnx-ir's passes (CSE, unused node and initializer removal,
topological sort). Run it first (it gives the rewriters clean patterns) and last (it removes what fusions left).
Its count is the number of nodes it removed.

The optimizer inlines model-local functions by default, which would undo ``token-prune`` (each fused prune point is
an ``ai.pruneport`` function): when the model holds such functions, inlining is off, so
``--passes ...,token-prune,cleanup`` keeps the fusion.
"""

from __future__ import annotations

import onnx_ir as ir
import onnx_ir.passes.common as common
import onnxscript.optimizer

NAME = "cleanup"
PRUNEPORT_DOMAIN = "ai.pruneport"  # passes.token_prune.DOMAIN (not imported: token_prune imports the rewriter)
SUMMARY = "constant folding, CSE, dead node/initializer removal, shape inference"


def apply(model: ir.Model) -> int:
    """Clean ``model`` in place; returns how many nodes fewer it has."""
    before = sum(1 for _ in model.graph.all_nodes())
    keep_functions = any(domain == PRUNEPORT_DOMAIN for domain, _name, _overload in model.functions)
    onnxscript.optimizer.optimize_ir(model, num_iterations=2, inline=not keep_functions)
    common.CommonSubexpressionEliminationPass()(model)
    common.RemoveUnusedNodesPass()(model)
    common.RemoveUnusedFunctionsPass()(model)
    common.RemoveUnusedOpsetsPass()(model)
    common.DeduplicateInitializersPass()(model)
    common.TopologicalSortPass()(model)
    common.ShapeInferencePass()(model)
    return before - sum(1 for _ in model.graph.all_nodes())

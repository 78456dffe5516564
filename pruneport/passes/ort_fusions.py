"""ONNX Runtime contrib fusions from onnxscript: SkipLayerNormalization, BiasGelu, Gelu, (Multi-Head) Attention.

Wraps ``onnxscript.rewriter.ort_fusions.optimize_for_ort``. ONNX Runtime's own ``transformers.optimizer`` targets
TorchScript-style graphs and crashes ("Graph is not a DAG") when attention probabilities feed a pruning score
(``shared/research/deployment-notes.md`` section 2), so it is not used. Attention blocks whose probabilities leave
the block (every pruning layer) are not fused by onnxscript either; the non-pruning layers' attention does not match
onnxscript's SDPA patterns in pruneport's exports (its key mask is a ``Where`` on a boolean live mask), so on these
graphs the fusions that fire are SkipLayerNormalization, BiasGelu and Gelu.

The result holds ``com.microsoft`` ops, which ONNX Runtime runs and OpenVINO's ONNX frontend reads (checked with
OpenVINO 2026.4: SkipLayerNormalization, BiasGelu); other runtimes may not. The count is the number of fused ops.
ONNX Runtime's session optimizer already fuses SkipLayerNormalization when it loads the unfused graph, and on MiniLM
LTP the pass measured within noise on both backends, so it is in no default pipeline (``docs/passes.md``).
"""

from __future__ import annotations

import onnx_ir as ir

NAME = "ort-fusions"
SUMMARY = "onnxscript optimize_for_ort: SkipLayerNorm/BiasGelu/Gelu (ONNX Runtime contrib ops)"
RUNS_ON = ("onnxruntime", "openvino")  # backends that run the com.microsoft ops it emits


def apply(model: ir.Model) -> int:
    """Fuse in place; returns the number of fusions that fired."""
    from onnxscript.rewriter.ort_fusions import optimize_for_ort

    fused, stats = optimize_for_ort(model)
    if fused is not model:
        raise RuntimeError("onnxscript optimize_for_ort no longer works in place; update pruneport.passes.ort_fusions")
    return int(sum(stats.values()))

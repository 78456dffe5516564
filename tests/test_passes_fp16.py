"""The ``fp16`` pass: FP16 weights and activations, the score path in FP32, and (nearly) the decisions of FP32.

Run on ONNX Runtime's CPU EP (CI has no GPU): ``optimize``'s parity gate counts the random rows (batch 1 and a mixed
batch) whose tokens_per_layer equal FP32's and requires logits within the tolerance on those rows.
"""

from __future__ import annotations

import onnx
import pytest

from pruneport.export.manifest import Manifest
from pruneport.graph.roles import module_path
from pruneport.methods import get_method, method_names
from pruneport.passes.fp16 import score_path_nodes
from pruneport.passes.pipeline import optimize_folder
from tests.test_passes import LTP_PRUNING, export_tiny

ATOL = 0.05  # FP16 logits of the tiny peaky models against FP32


def _fp16_share(path) -> float:
    inits = onnx.load(str(path)).graph.initializer
    big = [t for t in inits if len(t.dims) >= 2]
    return sum(t.data_type == onnx.TensorProto.FLOAT16 for t in big) / len(big)


@pytest.mark.parametrize("method", method_names())
def test_fp16_keeps_every_pruning_decision_of_fp32(method, tmp_path):
    folder = export_tiny(method, get_method(method).tiny.pruning, tmp_path / "fp32")
    out, runs = optimize_folder(folder, tmp_path / "fp16", passes=["fp16"], atol=ATOL)
    manifest = Manifest.read(out)
    assert manifest.precision == "fp16" and runs[0].count > 0
    parity = manifest.history[-1]["parity"]
    assert parity["max_abs_diff"] <= ATOL
    # the score path in FP32 keeps nearly every decision (the hidden states entering it are FP16-derived)
    assert parity["tokens_per_layer_rows_equal"] >= 0.75 * parity["inputs"], parity
    assert _fp16_share(out / manifest.model_file) > 0.5  # most weight matrices are FP16 now
    model = onnx.load(str(out / manifest.model_file))
    outputs = {o.name: o.type.tensor_type.elem_type for o in model.graph.output}
    assert outputs["logits"] == onnx.TensorProto.FLOAT and outputs["tokens_per_layer"] == onnx.TensorProto.INT64


def test_ltp_keeps_the_scoring_attention_and_the_prune_points_in_fp32(tmp_path):
    folder = export_tiny("ltp", LTP_PRUNING, tmp_path / "fp32")
    proto = onnx.load(str(folder / "model.onnx"))
    kept = score_path_nodes(proto)
    by_name = {n.name: n for n in proto.graph.node}
    softmax_layers = {module_path(by_name[n]).split(".")[1] for n in kept if by_name[n].op_type == "Softmax"}
    pruning_layers = {str(i) for i, t in enumerate(LTP_PRUNING["thresholds"]) if t > 0}
    assert softmax_layers == pruning_layers  # the attention whose probabilities decide, and only that
    assert any(by_name[n].op_type == "TopK" for n in kept)  # compaction
    assert not any(".value" in module_path(by_name[n]) for n in kept)

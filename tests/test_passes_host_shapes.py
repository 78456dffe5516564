"""The host-shapes pass and the CUDA placement emulation it relies on: after the pass, ONNX Runtime's CUDA EP would
copy each prune point's kept width to the host once (TopK's K), outputs and kept tokens unchanged."""

from __future__ import annotations

import onnx
import pytest
from onnx import TensorProto, helper

from pruneport.graph.cuda_placement import predict_cuda_placement
from pruneport.methods import get_method, method_names
from pruneport.passes.pipeline import optimize_file
from pruneport.passes.registry import get_pass
from tests.test_passes import _parity, export_tiny


def _graph(nodes, inputs, outputs, inits=()) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "g", inputs, outputs, list(inits))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


def test_the_emulation_keeps_shape_arithmetic_on_the_host_and_copies_device_counts_to_it():
    """Shape -> Gather -> Concat -> Reshape stays on the host; a count reduced on the device and read as TopK's K
    is one copy to the host; a host value added to device data is one copy from it."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", "s"])
    keep = helper.make_tensor_value_info("keep", TensorProto.INT64, ["b", "s"])
    outs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in ("r", "v", "y")]
    consts = [
        helper.make_tensor("zero", TensorProto.INT64, [1], [0]),
        helper.make_tensor("minus1", TensorProto.INT64, [1], [-1]),
        helper.make_tensor("axes", TensorProto.INT64, [1], [1]),
    ]
    nodes = [
        helper.make_node("Shape", ["x"], ["shape"], name="shape"),
        helper.make_node("Gather", ["shape", "zero"], ["batch"], name="gather"),
        helper.make_node("Concat", ["batch", "minus1"], ["new_shape"], name="concat", axis=0),
        helper.make_node("Reshape", ["x", "new_shape"], ["r"], name="reshape"),
        helper.make_node("ReduceSum", ["keep", "axes"], ["counts"], name="counts", keepdims=0),
        helper.make_node("ReduceMax", ["counts"], ["k"], name="width", keepdims=1),
        helper.make_node("TopK", ["x", "k"], ["v", "i"], name="topk"),
        helper.make_node("Cast", ["batch"], ["batch_f"], name="cast", to=TensorProto.FLOAT),
        helper.make_node(
            "Relu", ["x"], ["hidden"], name="relu"
        ),  # device data (a graph input itself may go to the host)
        helper.make_node("Add", ["hidden", "batch_f"], ["y"], name="add"),
    ]
    placement = predict_cuda_placement(_graph(nodes, [x, keep], outs, consts))
    assert placement.host_nodes == ["gather", "concat", "cast"]
    assert [t for t, _ in placement.to_host] == ["k"]
    assert [t for t, _ in placement.from_host] == ["batch_f"]
    assert {"batch", "new_shape", "batch_f"} <= placement.host_tensors and "counts" not in placement.host_tensors


@pytest.mark.parametrize("method", method_names())
def test_one_copy_to_the_host_per_prune_point_and_outputs_unchanged(method, tmp_path):
    folder = export_tiny(method, get_method(method).tiny.pruning, tmp_path / "export")
    source = onnx.load(str(folder / "model.onnx"))
    before = predict_cuda_placement(source)
    out = tmp_path / "host.onnx"
    runs = optimize_file(folder / "model.onnx", out, [get_pass("host-shapes")])
    after = predict_cuda_placement(onnx.load(str(out)))
    widths = [n.name for n in source.graph.node if n.op_type == "TopK"]  # one compaction per prune point
    loops = [n.name for n in source.graph.node if n.op_type == "Loop"]  # Pyramid's k-center rounds
    assert runs[0].count > 0
    assert sorted(reader for _, reader in after.to_host) == sorted([*widths, *loops])
    assert len(after.to_host) < len(before.to_host) and len(after.from_host) <= len(before.from_host)
    _parity(folder, out, n_inputs=16)
    added = {n.op_type for n in onnx.load(str(out)).graph.node if n.name.startswith("pruneport.width")}
    assert added == {"Shape", "Squeeze"}, "the pass adds only host shape reads"


def test_bucketed_exports_keep_one_copy_per_prune_point(tmp_path):
    """With --bucket the kept width is rounded up (Clip of arithmetic on the count): the value read after TopK is
    the rounded one, and the rewrite follows only the tensors equal to it."""
    from pruneport.export.onnx_export import write_export_folder
    from pruneport.methods.backbone import BackboneConfig
    from pruneport.methods.checkpoint import LoadedModel
    from tests.tiny import peaky_init, tiny_hf_config, tiny_tokenizer_json

    spec = get_method("ltp")
    hf = tiny_hf_config("bert", layers=spec.tiny.layers)
    cfg = BackboneConfig.from_hf_dict(hf)
    model = peaky_init(spec.build(cfg, spec.tiny.pruning), seed=3).eval()
    loaded = LoadedModel(model, "ltp", hf, spec.tiny.pruning, tiny_tokenizer_json(), ["a", "b"], cfg.max_tokens)
    folder = write_export_folder(loaded, tmp_path / "export", bucket=8)
    out = tmp_path / "host.onnx"
    optimize_file(folder / "model.onnx", out, [get_pass("host-shapes")])
    after = predict_cuda_placement(onnx.load(str(out)))
    widths = [n.name for n in onnx.load(str(out)).graph.node if n.op_type == "TopK"]
    assert sorted(reader for _, reader in after.to_host) == sorted(widths)
    _parity(folder, out, n_inputs=16)

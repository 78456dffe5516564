"""Graph passes: each pass alone and every default pipeline keep the outputs (parity within 1e-5, identical
tokens_per_layer) on tiny exported models of every method that exists; ``optimize_folder`` and the CLI contract."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnx_ir as ir
import pytest
from onnx import TensorProto, helper

from pruneport.export.manifest import Manifest, NotAnExportError
from pruneport.export.onnx_export import write_export_folder
from pruneport.methods import get_method, method_names
from pruneport.methods.backbone import BackboneConfig
from pruneport.methods.checkpoint import LoadedModel
from pruneport.passes.parity import ParityError, check_parity
from pruneport.passes.pipeline import optimize_file, optimize_folder
from pruneport.passes.registry import DEFAULT_PIPELINES, get_pass, pass_names, resolve_pipeline
from tests.tiny import peaky_init, tiny_hf_config, tiny_tokenizer_json

ATOL = 1e-5
LTP_PRUNING = get_method("ltp").tiny.pruning  # prunes at layers 1 and 2
OTHER_METHODS = [m for m in method_names() if m != "ltp"]


def export_tiny(method: str, pruning: dict, folder: Path, layout: str = "bert") -> Path:
    """``method``'s tiny model (its spec's layer count) with ``pruning``, exported to ``folder``."""
    spec = get_method(method)
    hf = tiny_hf_config(layout, layers=spec.tiny.layers)
    cfg = BackboneConfig.from_hf_dict(hf)
    model = peaky_init(spec.build(cfg, pruning), seed=3).eval()
    loaded = LoadedModel(model, method, hf, pruning, tiny_tokenizer_json(), ["class_0", "class_1"], cfg.max_tokens)
    return write_export_folder(loaded, folder)


def _build_other(method: str, folder: Path) -> Path:
    return export_tiny(method, get_method(method).tiny.pruning, folder)


@pytest.fixture(scope="module")
def ltp_folder(tmp_path_factory) -> Path:
    return export_tiny("ltp", LTP_PRUNING, tmp_path_factory.mktemp("ltp") / "export")


def _parity(folder: Path, optimized: Path, n_inputs: int = 16, engine: str = "onnxruntime") -> None:
    m = Manifest.read(folder)
    vocab = int(m.backbone["vocab_size"])
    check_parity(folder / m.model_file, optimized, vocab, m.pad_token_id, m.max_length, n_inputs, 8, ATOL, 0, engine)


def test_attention23_keeps_outputs_on_openvino(ltp_folder, tmp_path):
    out = tmp_path / "m.onnx"
    optimize_file(ltp_folder / "model.onnx", out, [get_pass("attention23")])
    _parity(ltp_folder, out, n_inputs=8, engine="openvino")


def _ops(path: Path) -> list[str]:
    return [n.op_type for n in onnx.load(str(path)).graph.node]


@pytest.mark.parametrize("name", pass_names())
def test_each_pass_keeps_outputs(name, ltp_folder, tmp_path):
    out = tmp_path / "m.onnx"
    runs = optimize_file(ltp_folder / "model.onnx", out, [get_pass(name)])
    _parity(ltp_folder, out)
    if name == "score-reduction":
        assert runs[0].count == 0, "the export already weights the query rows before summing heads"
    if name == "ort-fusions":
        assert runs[0].count > 0
        assert "SkipLayerNormalization" in _ops(out)
    if name == "attention23":
        assert runs[0].count == 3, "every layer's attention block is fused"
        proto = onnx.load(str(out))
        modes = [a.i for n in proto.graph.node if n.op_type == "Attention" for a in n.attribute
                 if a.name == "qk_matmul_output_mode"]  # fmt: skip
        assert modes == [3, 3], "the two pruning layers keep their probabilities"
        assert "Softmax" not in _ops(out)
        assert max(o.version for o in proto.opset_import if o.domain == "") == 23
    if name == "attention24":
        assert runs[0].count == 1, "only layer 0's probabilities feed no pruning score"
        assert _ops(out).count("Softmax") == 2 and _ops(out).count("Attention") == 1


def test_exported_ltp_score_sums_no_heads_of_the_probabilities(ltp_folder):
    model = ir.load(str(ltp_folder / "model.onnx"))
    softmax_outputs = {n.outputs[0] for n in model.graph if n.op_type == "Softmax"}
    reduced = [n for n in model.graph if n.op_type == "ReduceSum" and n.inputs[0] in softmax_outputs]
    assert reduced == [], "the score MatMul reads the probabilities; ReduceSum only sums the H short rows"


def test_score_reduction_rewrites_a_head_sum_of_probabilities():
    """Exports made before the exporter weighted query rows first: MatMul(live, ReduceSum(P, heads))."""
    axes1 = helper.make_tensor("axes1", TensorProto.INT64, [1], [1])
    old = _tiny_graph([helper.make_node("ReduceSum", ["P", "axes1"], ["s"], keepdims=0),
                       helper.make_node("MatMul", ["L", "s"], ["Y"])],
                      [_probs_input(), helper.make_tensor_value_info("L", TensorProto.FLOAT, ["B", 1, "S"])],
                      [axes1])  # fmt: skip
    rng = np.random.default_rng(0)
    feeds = {"P": rng.random((2, 4, 7, 7), dtype=np.float32), "L": rng.random((2, 1, 7), dtype=np.float32)}
    model = ir.from_proto(old)
    assert get_pass("score-reduction").apply(model) == 1
    after = ir.to_proto(model)
    np.testing.assert_allclose(_run(after, feeds), _run(old, feeds), atol=ATOL, rtol=0)
    assert not [n for n in after.graph.node if n.op_type == "ReduceSum" and n.input[0] == "P"]


def _tiny_graph(nodes, inputs, inits) -> onnx.ModelProto:
    y = helper.make_tensor_value_info("Y", TensorProto.FLOAT, None)
    graph = helper.make_graph(nodes, "g", inputs, [y], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=10)


def _run(model: onnx.ModelProto, feeds):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"]).run(
        None, feeds
    )[0]


def _probs_input():
    return helper.make_tensor_value_info("P", TensorProto.FLOAT, ["B", 4, "S", "S"])


def test_score_reduction_rewrites_reduce_mean_and_skips_other_axes():
    axes12 = helper.make_tensor("axes12", TensorProto.INT64, [2], [1, 2])
    axes2 = helper.make_tensor("axes2", TensorProto.INT64, [1], [2])
    mean = _tiny_graph([helper.make_node("ReduceMean", ["P", "axes12"], ["Y"], keepdims=0)], [_probs_input()], [axes12])
    other = _tiny_graph([helper.make_node("ReduceSum", ["P", "axes2"], ["s"], keepdims=0),
                         helper.make_node("MatMul", ["L", "s"], ["Y"])],
                        [_probs_input(), helper.make_tensor_value_info("L", TensorProto.FLOAT, ["B", 1, 4])],
                        [axes2])  # fmt: skip
    rng = np.random.default_rng(0)
    p = rng.random((2, 4, 7, 7), dtype=np.float32)
    feeds = {"P": p, "L": rng.random((2, 1, 4), dtype=np.float32)}
    spec = get_pass("score-reduction")
    for proto, expected in ((mean, 1), (other, 0)):
        model = ir.from_proto(proto)
        assert spec.apply(model) == expected
        after = ir.to_proto(model)
        use = {k: v for k, v in feeds.items() if k in {i.name for i in proto.graph.input}}
        np.testing.assert_allclose(_run(after, use), _run(proto, use), atol=ATOL, rtol=0)
        if expected:
            means = [n for n in after.graph.node if n.op_type == "ReduceMean"]
            assert len(means) == 2, "ReduceMean over [1, 2] became two single-axis ReduceMeans"


@pytest.mark.parametrize("method", method_names())
def test_default_pipelines_keep_outputs(method, ltp_folder, tmp_path_factory):
    folder = ltp_folder if method == "ltp" else _build_other(method, tmp_path_factory.mktemp(method) / "export")
    pipelines = [(target, resolve_pipeline(target)) for target in DEFAULT_PIPELINES]
    pipelines.append(("onnxruntime", resolve_pipeline("onnxruntime", [*pass_names(), "cleanup"])))  # every pass
    for i, (engine, specs) in enumerate(pipelines):
        out = tmp_path_factory.mktemp(f"{method}-{i}") / "m.onnx"
        optimize_file(folder / "model.onnx", out, specs)
        _parity(folder, out, n_inputs=16, engine=engine)


def test_optimize_folder_writes_a_complete_export(ltp_folder, tmp_path):
    out, runs = optimize_folder(ltp_folder, tmp_path / "opt", target="onnxruntime")
    manifest = Manifest.read(out)
    assert (out / manifest.model_file).is_file()
    assert (out / "tokenizer.json").read_text() == (ltp_folder / "tokenizer.json").read_text()
    step = manifest.history[-1]
    assert step["step"] == "optimize" and step["target"] == "onnxruntime"
    assert [name for name, _ in step["passes"]] == list(DEFAULT_PIPELINES["onnxruntime"])
    assert step["parity"]["max_abs_diff"] <= ATOL
    assert manifest.inputs == Manifest.read(ltp_folder).inputs
    from pruneport.runtime import load

    predictions = load(out).predict(["a great movie", "the plot was boring and long"])
    reference = load(ltp_folder).predict(["a great movie", "the plot was boring and long"])
    np.testing.assert_allclose(predictions.logits, reference.logits, atol=ATOL, rtol=0)
    np.testing.assert_array_equal(predictions.tokens_per_layer, reference.tokens_per_layer)


def test_optimize_folder_leaves_nothing_when_parity_fails(ltp_folder, tmp_path):
    with pytest.raises(ParityError):
        optimize_folder(ltp_folder, tmp_path / "opt", target="openvino", atol=-1.0)  # no difference is <= -1
    assert list(tmp_path.iterdir()) == []


def test_optimize_rejects_bad_input(ltp_folder, tmp_path):
    (tmp_path / "plain").mkdir()
    (tmp_path / "plain" / "model.onnx").write_bytes(b"")
    with pytest.raises(NotAnExportError, match="not a pruneport export"):
        optimize_folder(tmp_path / "plain", tmp_path / "opt")
    with pytest.raises(ValueError, match="unknown pass 'fuse-everything'"):
        optimize_folder(ltp_folder, tmp_path / "opt", passes=["fuse-everything"])
    with pytest.raises(ValueError, match="unknown target"):
        optimize_folder(ltp_folder, tmp_path / "opt", target="tensorrt")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    with pytest.raises(FileExistsError):
        optimize_folder(ltp_folder, tmp_path / "full")


def test_cli_optimize(ltp_folder, tmp_path, capsys):
    from pruneport.cli import main

    (tmp_path / "plain").mkdir()
    assert main(["optimize", str(tmp_path / "plain"), "-o", str(tmp_path / "o1")]) == 2
    assert "not a pruneport export" in capsys.readouterr().err
    assert not (tmp_path / "o1").exists()
    code = main(["optimize", str(ltp_folder), "-o", str(tmp_path / "o2"), "--passes", "cleanup,score-reduction"])
    assert code == 0
    history = json.loads((tmp_path / "o2" / "pruneport.json").read_text())["history"]
    assert history[-1]["passes"] == [["cleanup", history[-1]["passes"][0][1]], ["score-reduction", 0]]


def test_optimize_folder_drops_artefacts_of_the_source_graph(ltp_folder, tmp_path):
    import shutil

    source = tmp_path / "src"
    shutil.copytree(ltp_folder, source)
    manifest = Manifest.read(source)
    (source / "split").mkdir()
    shutil.copy(source / "model.onnx", source / "split" / "stage_0.onnx")  # stands in for a stage graph
    stage = {"file": "split/stage_0.onnx", "start": -1, "end": None, "layers": [0, 1, 2], "inputs": manifest.inputs}
    manifest.extra["split"] = {"stages": [stage]}
    manifest.write(source)
    out, _ = optimize_folder(source, tmp_path / "opt", passes=["cleanup"], verify=False)
    written = Manifest.read(out)
    assert "split" not in written.extra and not (out / "split").exists()
    assert written.history[-1]["dropped"] == ["split"]
    assert "parity" not in written.history[-1]


@pytest.mark.parametrize("method", [m for m in method_names() if get_method(m).score_source != "attention"])
def test_attention24_fuses_every_layer_of_methods_whose_scores_read_no_probabilities(method, tmp_path):
    folder = _build_other(method, tmp_path / "export")
    out = tmp_path / "m.onnx"
    runs = optimize_file(folder / "model.onnx", out, [get_pass("attention24")])
    layers = get_method(method).tiny.layers
    assert runs[0].count == layers and _ops(out).count("Attention") == layers  # AdapLeR keeps its own Softmax
    _parity(folder, out, n_inputs=16)

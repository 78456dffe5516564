"""INT8 quantization: tiny quantized models load and run on ONNX Runtime and OpenVINO; the score path matters."""

# ruff: noqa: F811  (session fixtures are imported from tests.quant_fixtures and requested by name)
from __future__ import annotations

import numpy as np
import onnx
import pytest

from pruneport.calibration.calibrate import kept_agreement
from pruneport.calibration.quantize import QuantizeOptions, quantize_folder
from pruneport.calibration.runner import FolderRunner
from pruneport.calibration.thresholds import threshold_name
from pruneport.export.manifest import Manifest
from pruneport.report.bops import bits_summary, folder_bits
from tests.quant_fixtures import calib_data, eval_data, int8_all, int8_score, random_texts, tiny_folder  # noqa: F401


def test_ort_static_int8_runs_in_the_runtime(tiny_folder, int8_score):
    from pruneport.runtime import load

    manifest = Manifest.read(int8_score)
    assert manifest.precision == "int8" and manifest.extra["backend"] == "onnxruntime"
    assert manifest.history[-1]["step"] == "quantize"
    model = onnx.load(str(int8_score / "model.onnx"))
    ops = {n.op_type for n in model.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear", "GatherND"} <= ops
    inits = {i.name for i in model.graph.initializer}
    assert {threshold_name(i) for i in range(3)} <= inits
    assert bits_summary(folder_bits(int8_score)).get("8x8", 0) >= 10

    texts = random_texts(12, seed=5).texts
    got = load(int8_score).predict(texts)
    ref = load(tiny_folder).predict(texts)
    assert got.probabilities.shape == (12, 2) and np.isfinite(got.logits).all()
    assert (got.tokens_per_layer <= ref.tokens_per_layer[:, :1]).all()  # never more tokens than the input
    assert (got.tokens_per_layer[:, 0] == ref.tokens_per_layer[:, 0]).all()  # nothing pruned before layer 0


@pytest.mark.parametrize(
    "options", [QuantizeOptions(mode="dynamic"), QuantizeOptions(mode="static", calibration="percentile")]
)
def test_ort_dynamic_and_histogram_twin_run(tiny_folder, calib_data, eval_data, tmp_path, options):
    out = quantize_folder(tiny_folder, calib_data, tmp_path / "q", options)
    result = FolderRunner(out).evaluate(eval_data)
    ref = FolderRunner(tiny_folder).evaluate(eval_data)
    assert np.isfinite(result.logits).all()
    agreement = kept_agreement(ref.tokens_per_layer, result.tokens_per_layer)
    assert agreement.per_layer_identical[0] == 1.0
    assert agreement.mean_relative_difference < 0.3
    if options.mode == "dynamic":
        model = onnx.load(str(out / "model.onnx"))
        assert any(n.op_type == "MatMulInteger" for n in model.graph.node)


def test_openvino_int8_ir_runs_with_openvino(tiny_folder, calib_data, eval_data, tmp_path):
    import openvino as ov

    out = quantize_folder(tiny_folder, calib_data, tmp_path / "ov", QuantizeOptions(backend="openvino"))
    manifest = Manifest.read(out)
    assert manifest.model_file == "model.xml" and manifest.extra["backend"] == "openvino"
    assert (out / "model.bin").exists() and (out / "tokenizer.json").exists()
    core = ov.Core()
    model = core.read_model(str(out / "model.xml"))
    assert any(op.get_type_name() == "FakeQuantize" for op in model.get_ops())
    compiled = core.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    batch = eval_data.batches[0]
    result = compiled({n: batch.feeds[n] for n in manifest.inputs})
    logits, tokens = (np.asarray(result[o]) for o in compiled.outputs)
    assert logits.shape == (batch.size, 2) and np.isfinite(logits).all()
    assert (tokens[:, 0] == batch.feeds["attention_mask"].sum(1)).all()
    assert (np.diff(tokens, axis=1) <= 0).all()  # kept counts never grow with depth


def test_score_path_option_keeps_pruning_closer_to_fp32(tiny_folder, eval_data, int8_all, int8_score):
    ref = FolderRunner(tiny_folder).evaluate(eval_data).tokens_per_layer
    quantized_all = kept_agreement(ref, FolderRunner(int8_all).evaluate(eval_data).tokens_per_layer)
    score_fp32 = kept_agreement(ref, FolderRunner(int8_score).evaluate(eval_data).tokens_per_layer)
    # layer 0's decision reads only float tensors with the option on: it matches FP32 exactly
    assert score_fp32.per_layer_identical[1] == 1.0
    assert quantized_all.per_layer_identical[1] < 1.0, "the tiny model must be sensitive to quantization"
    assert score_fp32.identical > quantized_all.identical
    assert score_fp32.mean_relative_difference < quantized_all.mean_relative_difference
    fp32_matmuls = Manifest.read(int8_score).extra["quantization"]["fp32_matmuls"]
    roles = {m["name"]: m["role"] for m in Manifest.read(int8_score).extra["matmuls"]}
    assert {roles[n] for n in fp32_matmuls} == {"query", "key", "qk", "score"}


def test_quantize_refuses_bad_input(tiny_folder, calib_data, int8_score, tmp_path):
    with pytest.raises(ValueError, match="already int8"):
        quantize_folder(int8_score, calib_data, tmp_path / "again")
    with pytest.raises(ValueError, match="unknown backend"):
        quantize_folder(tiny_folder, calib_data, tmp_path / "x", QuantizeOptions(backend="tensorrt"))
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "file").write_text("x")
    with pytest.raises(FileExistsError):
        quantize_folder(tiny_folder, calib_data, tmp_path / "busy")
    assert not any(p.name.startswith(".x") for p in tmp_path.iterdir())  # nothing half-written


def test_default_is_ort_dynamic_with_the_score_path_quantized_too():
    """The benchmark-chosen default (benchmarks/README.md, "Long text"); FP32 score path stays the default elsewhere."""
    default = QuantizeOptions()
    assert (default.backend, default.mode, default.score_path_fp32) == ("onnxruntime", "dynamic", False)
    assert QuantizeOptions(mode="static").score_path_fp32 is True
    assert QuantizeOptions(backend="openvino").score_path_fp32 is True
    assert QuantizeOptions(keep_score_path=True).score_path_fp32 is True


def test_cli_quantize_defaults_to_dynamic(tiny_folder, tmp_path, capsys):
    from pruneport import cli

    data = tmp_path / "d.tsv"
    data.write_text("sentence\tlabel\n" + "".join(f"{t}\t{i % 2}\n" for i, t in enumerate(random_texts(8, 3).texts)))
    assert cli.main(["quantize", str(tiny_folder), "--data", str(data), "-o", str(tmp_path / "q")]) == 0
    assert "onnxruntime dynamic, score path INT8" in capsys.readouterr().out
    step = Manifest.read(tmp_path / "q").history[-1]
    assert step["scheme"] == "dynamic-s8" and step["score_path_fp32"] is False
    argv = ["quantize", str(tiny_folder), "--data", str(data), "-o", str(tmp_path / "q2"), "--fp32-score-path"]
    assert cli.main(argv) == 0
    assert Manifest.read(tmp_path / "q2").history[-1]["score_path_fp32"] is True

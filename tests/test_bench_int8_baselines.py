"""``pruneport bench``'s INT8 baselines: the unpruned model quantized the way users quantize it, matched to every
INT8 folder's quantizer, and the ratio that isolates what pruning adds on top of INT8."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pruneport import cli
from pruneport.report.bench import BenchConfig
from pruneport.report.bench_baselines import INT8_BASELINES, int8_baseline_for_scheme
from pruneport.report.bench_rows import compute_ratios
from tests.test_bench import tiny_data, tiny_model_pt  # noqa: F401 - fixtures


@pytest.fixture(scope="module")
def tiny_int8_dynamic(tiny_ltp_export, tiny_data, tmp_path_factory):  # noqa: F811
    from pruneport.calibration.batches import tokenized_batches
    from pruneport.calibration.quantize import QuantizeOptions, quantize_folder

    out = tmp_path_factory.mktemp("int8") / "tiny_int8"
    data = tokenized_batches(tiny_ltp_export, str(tiny_data), batch_size=4)
    return quantize_folder(tiny_ltp_export, data, out, QuantizeOptions(mode="dynamic"))


def _bench(folder, model_pt, data, tmp_path, *extra: str) -> dict:
    """``pruneport bench FOLDER@onnxruntime`` against the ORT baselines (one quick pass, batch 2); the JSON result."""
    out = tmp_path / "r.json"
    argv = ["bench", f"{folder}@onnxruntime", "--data", str(data), "--baseline-from", str(model_pt)]
    argv += ["--baselines", "onnxruntime", "--calibration-n", "8", *extra]
    argv += ["--batch-sizes", "2", "--repeats", "1", "--warmup", "0", "--threads", "1", "--memory", "off"]
    argv += ["--work", str(tmp_path / "work"), "--json", str(out)]
    assert cli.main(argv) == 0
    return json.loads(out.read_text())


def test_every_pruneport_scheme_has_its_baseline():
    assert int8_baseline_for_scheme("dynamic-s8") == "ort-dynamic"
    assert int8_baseline_for_scheme("qdq-u8s8-minmax") == "ort-static"
    assert int8_baseline_for_scheme("qdq-u8s8-entropy") == "ort-static-entropy"
    assert int8_baseline_for_scheme("nncf-transformer-accuracy-control") == "openvino-nncf"
    assert int8_baseline_for_scheme(None) is None
    for scheme in ("dynamic-s8", "qdq-u8s8-percentile", "qdq-u8s8-distribution", "nncf-transformer"):
        assert int8_baseline_for_scheme(scheme) in INT8_BASELINES


def test_auto_picks_the_folders_quantizers_plus_the_one_liner(tiny_ltp_export, tiny_int8_dynamic, tiny_data):  # noqa: F811
    assert BenchConfig(folders=[tiny_ltp_export], data=str(tiny_data)).int8_baselines() == []
    cfg = BenchConfig(folders=[tiny_ltp_export, tiny_int8_dynamic], data=str(tiny_data))
    assert cfg.int8_baselines() == ["ort-dynamic"]
    assert BenchConfig(folders=[tiny_int8_dynamic], data="d", baseline_int8=()).int8_baselines() == []


def test_same_quantizer_ratio_uses_the_matching_int8_baseline():
    def row(model, method, throughput, precision="fp32", quantization=None):
        r = dict(model=model, method=method, backend="onnxruntime", throughput=throughput, relative_flops=1.0)
        r.update(accuracy=0.9, precision=precision, dataset="d", batch_size=1, quantization=quantization)
        r["key"] = f"{model}|{precision}"
        return r

    rows = [
        row("unpruned", "plain-onnx", 100.0),
        row("unpruned-int8-ort-dynamic", "plain-onnx", 200.0, "int8", "dynamic-s8"),
        row("unpruned-int8-ort-static", "plain-onnx", 250.0, "int8", "qdq-u8s8-minmax"),
        row("pruned", "ltp", 150.0),
        row("pruned-dyn", "ltp", 500.0, "int8", "dynamic-s8"),
        row("pruned-ov", "ltp", 500.0, "int8", "nncf-transformer"),
    ]
    rows[3]["relative_flops"] = rows[4]["relative_flops"] = 0.4
    ratios = compute_ratios(rows)
    same = ratios["speedup_vs_unpruned_same_quantizer"]
    assert same["pruned|fp32"] == pytest.approx(1.5)  # FP32 rows: the plain FP32 export
    assert same["pruned-dyn|int8"] == pytest.approx(2.5)  # against the dynamic baseline, not the static one
    assert "pruned-ov|int8" not in same  # no OpenVINO INT8 baseline in these rows
    assert ratios["speedup_vs_unpruned_same_backend"]["pruned-dyn|int8"] == pytest.approx(5.0)


def test_bench_runs_the_int8_baseline_of_an_int8_folder(tiny_int8_dynamic, tiny_model_pt, tiny_data, tmp_path):  # noqa: F811
    result = _bench(tiny_int8_dynamic, tiny_model_pt, tiny_data, tmp_path, "--calibration-data", str(tiny_data))
    rows = {r["model"]: r for r in result["rows"]}
    assert set(rows) == {"tiny_int8", "unpruned", "unpruned-int8-ort-dynamic"}
    baseline = rows["unpruned-int8-ort-dynamic"]
    assert baseline["precision"] == "int8" and baseline["quantization"] == "dynamic-s8"
    assert baseline["relative_flops"] == pytest.approx(1.0) and 0 <= baseline["accuracy"] <= 1
    pruned = rows["tiny_int8"]
    ratio = result["ratios"]["speedup_vs_unpruned_same_quantizer"][pruned["key"]]
    assert ratio == pytest.approx(pruned["throughput"] / baseline["throughput"])
    assert result["settings"]["baseline_int8"] == ["ort-dynamic"]


def test_int8_baselines_that_cannot_calibrate_are_skipped_with_the_reason(
    tiny_int8_dynamic,
    tiny_model_pt,  # noqa: F811
    tiny_data,  # noqa: F811
    tmp_path,
):
    extra = ["--baseline-int8", "ort-static", "--calibration-data", str(tmp_path / "no")]
    result = _bench(tiny_int8_dynamic, tiny_model_pt, tiny_data, tmp_path, *extra)
    assert {r["model"] for r in result["rows"]} == {"tiny_int8", "unpruned"}
    (skip,) = result["skipped"]
    assert skip["model"] == "unpruned-int8-ort-static" and str(tmp_path / "no") in skip["reason"]


def test_unknown_int8_baseline_is_refused(tiny_ltp_export, tiny_data, capsys):  # noqa: F811
    argv = ["bench", str(tiny_ltp_export), "--data", str(tiny_data), "--baseline-int8", "tensorrt-int8"]
    assert cli.main(argv + ["--memory", "off"]) == 2
    assert "unknown INT8 baselines" in capsys.readouterr().err


def test_histogram_calibrated_baseline_of_a_plain_graph(tiny_model_pt, tiny_data, tmp_path):  # noqa: F811
    """A plain graph has no thresholds: its histogram calibration runs on itself, padded to one width."""
    from pruneport.export.manifest import Manifest
    from pruneport.report.bench_baselines import CalibrationSpec, build_baselines, build_int8_baselines
    from pruneport.report.bench_systems import folder_system

    base = build_baselines(tiny_model_pt, tmp_path, 32)
    spec = CalibrationSpec(str(tiny_data), n=8)
    (folder,) = build_int8_baselines(base.plain_onnx, tmp_path, ["ort-static-entropy"], spec).values()
    assert Manifest.read(folder).extra["quantization"]["scheme"] == "qdq-u8s8-entropy"
    system = folder_system(folder, "onnxruntime", 1)
    feeds = {n: np.ones((1, 5), dtype=np.int64) for n in system.input_names}
    assert np.isfinite(system.run(feeds)["logits"]).all()

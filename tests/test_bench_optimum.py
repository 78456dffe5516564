"""``pruneport bench``'s optimum-intel baselines: built in optimum-intel's own environment, timed as OpenVINO rows
named by their exporter, counted among the FP32 baselines; skipped with the reason where that environment is absent."""

from __future__ import annotations

import json

import pytest

from pruneport import cli
from pruneport.report.bench_optimum import OptimumUnavailable, find_optimum_python
from pruneport.report.bench_rows import compute_ratios
from tests.test_bench import tiny_data, tiny_model_pt  # noqa: F401 - fixtures


def _optimum_python():
    try:
        return find_optimum_python()
    except OptimumUnavailable:
        return None


def test_missing_environment_says_how_to_make_one(tmp_path, monkeypatch):
    with pytest.raises(OptimumUnavailable, match="scripts/setup-optimum"):
        find_optimum_python(str(tmp_path / "nope"))  # an explicit python must exist
    monkeypatch.setenv("PRUNEPORT_OPTIMUM_PYTHON", str(tmp_path / "nope"))
    monkeypatch.setattr("pruneport.report.bench_optimum.REPO_VENV_PYTHON", tmp_path / "also-nope")
    with pytest.raises(OptimumUnavailable, match="scripts/setup-optimum"):
        find_optimum_python()


def test_bench_without_optimum_skips_its_rows_with_the_reason(tiny_ltp_export, tiny_model_pt, tiny_data, tmp_path):  # noqa: F811
    out = tmp_path / "r.json"
    argv = ["bench", f"{tiny_ltp_export}@openvino", "--data", str(tiny_data), "--baseline-from", str(tiny_model_pt)]
    argv += ["--baselines", "openvino", "--optimum", str(tmp_path / "no-python")]
    argv += ["--batch-sizes", "2", "--repeats", "1", "--warmup", "0", "--memory", "off"]
    argv += ["--work", str(tmp_path / "work"), "--json", str(out)]
    assert cli.main(argv) == 0
    result = json.loads(out.read_text())
    skipped = {s["model"]: s["reason"] for s in result["skipped"]}
    if "tiny_ltp" in skipped:
        pytest.skip(f"OpenVINO cannot run here: {skipped['tiny_ltp']}")
    assert "optimum-intel-fp32" in skipped and "setup-optimum" in skipped["optimum-intel-fp32"]
    assert {r["model"] for r in result["rows"]} == {"tiny_ltp", "unpruned"}


def test_optimum_rows_are_fp32_baselines_not_the_same_backend_reference():
    def row(model, method, backend, throughput):
        r = dict(model=model, method=method, backend=backend, throughput=throughput, relative_flops=1.0)
        r.update(accuracy=0.9, precision="fp32", dataset="d", batch_size=1)
        r["key"] = model
        return r

    rows = [
        row("unpruned", "plain-onnx", "openvino", 100.0),
        row("optimum-intel-fp32", "optimum-intel", "openvino", 125.0),
        row("pruned", "ltp", "openvino", 250.0),
    ]
    rows[2]["relative_flops"] = 0.4
    ratios = compute_ratios(rows)
    assert ratios["speedup_vs_unpruned_same_backend"]["pruned"] == pytest.approx(2.5)  # pruneport's plain export
    assert ratios["speedup_vs_best_plain_baseline"]["pruned"] == pytest.approx(2.0)  # Optimum's is the fastest
    assert ratios["best_plain_baseline"]["pruned"] == "optimum-intel-fp32"
    assert "optimum-intel-fp32" not in ratios["flops_ratio"]


@pytest.mark.skipif(_optimum_python() is None, reason="no optimum-intel environment (scripts/setup-optimum)")
def test_optimum_export_runs_the_same_weights(tiny_model_pt, tiny_data, tmp_path):  # noqa: F811
    out = tmp_path / "r.json"
    argv = ["bench", "--data", str(tiny_data), "--baseline-from", str(tiny_model_pt), "--baselines", "openvino"]
    argv += ["--baseline-int8", "openvino-nncf", "--calibration-data", str(tiny_data), "--calibration-n", "8"]
    argv += ["--batch-sizes", "2", "--repeats", "1", "--warmup", "0", "--memory", "off"]
    argv += ["--work", str(tmp_path / "work"), "--json", str(out)]
    assert cli.main(argv) == 0
    result = json.loads(out.read_text())
    rows = {r["model"]: r for r in result["rows"]}
    assert {"unpruned", "optimum-intel-fp32", "optimum-intel-int8", "unpruned-int8-openvino-nncf"} <= set(rows)
    optimum = rows["optimum-intel-fp32"]
    assert optimum["method"] == "optimum-intel" and optimum["backend"] == "openvino"
    assert optimum["baseline_exporter"].startswith("optimum-intel 2.2.0 OVModelForSequenceClassification")
    assert optimum["accuracy"] == rows["unpruned"]["accuracy"]  # same weights, same FP32 runtime
    assert rows["optimum-intel-int8"]["precision"] == "int8"
    assert "OVQuantizer" in rows["optimum-intel-int8"]["baseline_exporter"]

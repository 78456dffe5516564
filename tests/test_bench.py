"""``pruneport bench`` on a tiny model and tiny data: valid JSON with every field, baselines equal to the reference,
ratios computed from the rows, unloadable systems skipped with a reason, bad settings rejected."""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest
import torch

from pruneport import cli
from pruneport.report.bench import BenchConfig, BenchError, run_bench
from pruneport.report.bench_rows import ROW_FIELDS, compute_ratios
from tests.tiny import WORDS


def quick_config(folders, data, work, **settings) -> BenchConfig:
    """One batch size, one repeat, no warm-up, one thread, no memory probe: the settings of the quick runs below."""
    quick = dict(batch_sizes=(2,), backends=("onnxruntime",), repeats=1, warmup=0, threads=1, memory="off")
    return BenchConfig(folders=folders, data=str(data), work=work, **{**quick, **settings})


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    """A labeled TSV of 14 short sentences over the tiny vocabulary."""
    rng = np.random.default_rng(0)
    path = tmp_path_factory.mktemp("data") / "tiny.tsv"
    lines = ["sentence\tlabel"]
    for i in range(14):
        words = rng.choice(WORDS, size=int(rng.integers(3, 20)))
        lines.append(f"{' '.join(words)}\t{i % 2}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def tiny_model_pt(tiny_ltp_loaded, tmp_path_factory):
    from pruneport.methods.checkpoint import save_model_pt

    return save_model_pt(tiny_ltp_loaded, tmp_path_factory.mktemp("pt") / "model.pt")


@pytest.fixture(scope="module")
def bench_run(tiny_ltp_export, tiny_model_pt, tiny_data, tmp_path_factory):
    """The whole command once: pruned folder on both backends plus the three baselines, batch 1 and 4."""
    work = tmp_path_factory.mktemp("bench")
    out = work / "results.json"
    argv = ["bench", str(tiny_ltp_export), "--data", str(tiny_data), "--baseline-from", str(tiny_model_pt)]
    argv += ["--batch-sizes", "1,4", "--repeats", "2", "--warmup", "1", "--threads", "1", "--optimum", "off"]
    argv += ["--work", str(work / "work"), "--json", str(out)]
    assert cli.main(argv) == 0
    return json.loads(out.read_text()), work / "work"


def test_json_has_every_field(bench_run):
    result, _ = bench_run
    assert {"machine", "rows", "ratios", "settings", "skipped"} <= set(result)
    machine = result["machine"]
    assert machine["intra_op_threads"] == 1 and machine["ort_allow_spinning"] is False
    assert machine["cpu"] and machine["logical_cpus"] >= 1 and "onnxruntime" in machine["versions"]
    systems = {(r["method"], r["backend"]) for r in result["rows"]}
    expected = {("ltp", "onnxruntime"), ("plain-onnx", "onnxruntime"), ("pytorch-eager", "pytorch")}
    assert expected <= systems
    skipped = {(s["model"], s["backend"]) for s in result["skipped"]}
    for backend in ("openvino",):  # present when OpenVINO loads, else skipped with a reason
        assert (("ltp", backend) in systems) or (("tiny_ltp", backend) in skipped)
    assert len(result["rows"]) == 2 * len(systems)
    for row in result["rows"]:
        assert set(ROW_FIELDS) <= set(row), row
        assert row["n"] == 14 and row["dataset"] == "tiny" and row["batch_size"] in (1, 4)
        assert row["throughput"] > 0 and row["throughput_best"] >= row["throughput"] * 0.999
        assert 0.0 <= row["accuracy"] <= 1.0
        assert row["peak_rss_mb"] is not None and row["peak_rss_mb"] > 10
        assert row["precision"] == "fp32"
        if row["batch_size"] == 1:
            assert 0 < row["latency_p50_ms"] <= row["latency_p90_ms"]
        else:
            assert row["latency_p50_ms"] is None and row["batch_latency_p50_ms"] > 0
        if row["method"] == "ltp":
            assert 0 < row["relative_flops"] < 1.0  # the tiny model prunes (thresholds 0.02, 0.03)
        else:
            assert row["relative_flops"] == pytest.approx(1.0)
            if row["method"] == "plain-onnx":
                assert "torch.onnx.export(dynamo=True" in row["baseline_exporter"]


def test_same_model_same_predictions(bench_run):
    """Plain ONNX on ORT and PyTorch eager run the same weights: same accuracy; pruned ORT and OV agree too."""
    result, _ = bench_run
    acc = {(r["method"], r["backend"], r["batch_size"]): r["accuracy"] for r in result["rows"]}
    for b in (1, 4):
        assert acc[("plain-onnx", "onnxruntime", b)] == acc[("pytorch-eager", "pytorch", b)]
        if ("ltp", "openvino", b) in acc:  # f32 on both; a score within ~1e-6 of a threshold may flip one example
            assert abs(acc[("ltp", "openvino", b)] - acc[("ltp", "onnxruntime", b)]) <= 1 / 14 + 1e-9
        assert acc[("ltp", "onnxruntime", b)] == acc[("ltp", "onnxruntime", 1)]


def test_ratios_follow_rows(bench_run):
    result, _ = bench_run
    ratios = result["ratios"]
    rows = {r["key"]: r for r in result["rows"]}
    pruned = [r for r in result["rows"] if r["method"] == "ltp"]
    assert pruned
    for row in pruned:
        key = row["key"]
        plain = next(
            r
            for r in rows.values()
            if (r["method"], r["backend"], r["batch_size"]) == ("plain-onnx", row["backend"], row["batch_size"])
        )
        speedup = row["throughput"] / plain["throughput"]
        assert ratios["speedup_vs_unpruned_same_backend"][key] == pytest.approx(speedup)
        assert ratios["flops_ratio"][key] == pytest.approx(1 / row["relative_flops"])
        assert ratios["speedup_over_flops_ratio"][key] == pytest.approx(speedup * row["relative_flops"])
        best = max(
            (r for r in rows.values() if r["method"] != "ltp" and r["batch_size"] == row["batch_size"]),
            key=lambda r: r["throughput"],
        )
        assert ratios["speedup_vs_best_plain_baseline"][key] == pytest.approx(row["throughput"] / best["throughput"])


def test_baseline_is_the_unpruned_reference(bench_run, tiny_ltp_loaded):
    """The HF baseline folder holds the reference weights: its logits equal pruneport's model with pruning off."""
    from pruneport.methods.ltp.model import build
    from pruneport.report.bench_baselines import EagerSession
    from tests.tiny import random_batch

    _, work = bench_run
    ref = tiny_ltp_loaded.model
    unpruned = build(ref.config, {"thresholds": [0.0] * 3, "score_norm_length": 32}).eval()
    unpruned.load_state_dict(ref.state_dict(), strict=False)
    feeds = random_batch(np.random.default_rng(1), [12, 5, 9], ref.config.vocab_size, 0, True)
    with torch.no_grad():
        expected = unpruned(*[torch.from_numpy(feeds[n]) for n in unpruned.input_names])[0].numpy()
    got = EagerSession(work / "baseline_hf", threads=1).run(feeds)["logits"]
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_to_hf_state_dict_inverts_map_hf_state(tiny_ltp_loaded):
    from pruneport.methods.checkpoint import map_hf_state, to_hf_state_dict

    model = tiny_ltp_loaded.model
    hf = to_hf_state_dict(model)
    assert "bert.pooler.dense.weight" in hf and "classifier.weight" in hf
    mapped, leftover = map_hf_state(hf, model.config)
    assert not leftover
    own = {k: v for k, v in model.state_dict().items() if not k.startswith("pruner.")}
    assert set(mapped) == set(own)
    assert all(torch.equal(mapped[k], own[k]) for k in own)


def test_unloadable_folder_is_skipped_with_reason(tiny_ltp_export, tiny_data, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(tiny_ltp_export, broken)
    (broken / "model.onnx").write_bytes(b"not an onnx file")
    cfg = quick_config([tiny_ltp_export, broken], tiny_data, tmp_path / "work")
    result = run_bench(cfg)
    assert [r["model"] for r in result["rows"]] == ["tiny_ltp"]
    assert result["rows"][0]["peak_rss_mb"] is None
    assert result["skipped"][0]["model"] == "broken" and "onnx" in result["skipped"][0]["reason"].lower()
    assert result["ratios"]["speedup_vs_unpruned_same_backend"] == {}  # no baseline asked for


def test_compute_ratios_exact():
    def row(method, backend, throughput, rel, acc, precision="fp32"):
        r = dict(method=method, backend=backend, throughput=throughput, relative_flops=rel, accuracy=acc)
        r.update(model=method, precision=precision, dataset="d", batch_size=1)
        r["key"] = f"{method}|{backend}|{precision}"
        return r

    rows = [
        row("plain-onnx", "onnxruntime", 100.0, 1.0, 0.9),
        row("plain-onnx", "openvino", 120.0, 1.0, 0.9),
        row("pytorch-eager", "pytorch", 50.0, 1.0, 0.9),
        row("ltp", "onnxruntime", 180.0, 0.5, 0.89),
        row("ltp", "openvino", 480.0, 0.5, 0.88, "int8"),
    ]
    ratios = compute_ratios(rows)
    assert ratios["speedup_vs_unpruned_same_backend"]["ltp|onnxruntime|fp32"] == pytest.approx(1.8)
    assert ratios["speedup_vs_unpruned_same_backend"]["ltp|openvino|int8"] == pytest.approx(4.0)
    assert ratios["speedup_vs_best_plain_baseline"]["ltp|onnxruntime|fp32"] == pytest.approx(1.5)
    assert ratios["flops_ratio"]["ltp|onnxruntime|fp32"] == pytest.approx(2.0)
    assert ratios["speedup_over_flops_ratio"]["ltp|onnxruntime|fp32"] == pytest.approx(0.9)
    assert ratios["accuracy_drop_vs_unpruned"]["ltp|openvino|int8"] == pytest.approx(0.02)
    assert "plain-onnx|onnxruntime|fp32" not in ratios["flops_ratio"]
    assert all(math.isfinite(v) for v in ratios["flops_ratio"].values())


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--batch-sizes", "0"], "--batch-sizes: each value must be a positive integer"),  # argparse refuses it
        (["--backends", "tensorrt"], "unknown backends"),
        (["--repeats", "0"], "--repeats: must be a positive integer"),
    ],
)
def test_bad_settings_are_user_errors(tiny_ltp_export, tiny_data, extra, message, capsys):
    argv = ["bench", str(tiny_ltp_export), "--data", str(tiny_data), "--memory", "off", *extra]
    assert cli.main(argv) == 2
    assert message in capsys.readouterr().err


def test_not_an_export_folder(tmp_path, tiny_data):
    with pytest.raises(ValueError, match="not a pruneport export"):
        BenchConfig(folders=[tmp_path], data=str(tiny_data)).check()
    with pytest.raises(BenchError, match="nothing to benchmark"):
        BenchConfig(folders=[], data=str(tiny_data)).check()


def test_a_failed_bench_leaves_no_empty_output_folders(tiny_data, tmp_path, capsys):
    from pruneport.cli import main

    broken = tmp_path / "broken.pt"
    broken.write_bytes(b"not a checkpoint")
    work, results = tmp_path / "w" / "work", tmp_path / "j" / "results.json"
    argv = ["bench", "--data", str(tiny_data), "--baseline-from", str(broken), "--memory", "off"]
    assert main([*argv, "--work", str(work), "--json", str(results)]) == 2
    assert capsys.readouterr().err.startswith("error:")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken.pt"]


def test_gpu_device_without_cuda_skips_every_system_with_the_reason(tiny_ltp_export, tiny_data, tmp_path, monkeypatch):
    import onnxruntime as ort

    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CPUExecutionProvider"])
    cfg = quick_config([tiny_ltp_export], tiny_data, tmp_path / "work", device="gpu")
    with pytest.raises(BenchError, match="onnxruntime-gpu"):  # nothing opens on a GPU here, and it says why
        run_bench(cfg)
    with pytest.raises(BenchError, match="device"):
        BenchConfig(folders=[tiny_ltp_export], data=str(tiny_data), device="tpu").check()


def test_a_bench_row_reads_back_from_its_json():
    from pruneport.report.bench_rows import BenchRow

    row = BenchRow("m", "ltp", "onnxruntime", "int8", 1, "sst2", 250.0, 0.5, n=8, notes={"quantization": "dynamic-s8"})
    data = json.loads(json.dumps(row.to_dict()))
    assert list(data)[: len(ROW_FIELDS)] == list(ROW_FIELDS)
    assert data["quantization"] == "dynamic-s8" and data["key"] == "m|ltp|onnxruntime|int8|sst2|b1"
    assert BenchRow.from_dict(data) == row


def test_fp16_baselines_are_built_opened_or_skipped_with_the_reason(
    tiny_ltp_export, tiny_model_pt, tiny_data, tmp_path
):
    """The GPU run's FP16 baselines, asked for on CPU: pruneport's FP16 twin and ORT's optimizer FP16 run on the CPU
    EP with the plain baseline's labels; PyTorch FP16 SDPA needs CUDA and is skipped saying so."""
    cfg = quick_config(
        [tiny_ltp_export], tiny_data, tmp_path / "work", baseline_from=tiny_model_pt,
        baseline_backends=("onnxruntime",), baseline_int8=(), optimum="off", fp16_baselines=True,
    )  # fmt: skip
    result = run_bench(cfg)
    rows = {r["model"]: r for r in result["rows"]}
    assert rows["unpruned-fp16"]["precision"] == "fp16" and rows["unpruned-fp16"]["method"] == "plain-onnx"
    optimizer = rows["unpruned-ort-optimizer-fp16"]
    assert optimizer["method"] == "ort-optimizer" and optimizer["baseline_exporter"].startswith("onnxruntime")
    for name in ("unpruned-fp16", "unpruned-ort-optimizer-fp16"):
        assert abs(rows[name]["accuracy"] - rows["unpruned"]["accuracy"]) <= 1 / 7  # FP16 moves one of 14 at most
    if not torch.cuda.is_available():
        assert any(s["model"] == "unpruned-sdpa-fp16" and "CUDA" in s["reason"] for s in result["skipped"])
    key = next(r["key"] for r in result["rows"] if r["method"] == "ltp")
    fastest = max(rows["unpruned-fp16"]["throughput"], optimizer["throughput"])
    assert result["ratios"]["speedup_vs_best_fp16_baseline"][key] == pytest.approx(
        rows[key.split("|")[0]]["throughput"] / fastest
    )

"""BOPs of a small known graph against a hand count, and the accuracy-vs-BOPs report files."""

# ruff: noqa: F811  (session fixtures are imported from tests.quant_fixtures and requested by name)
from __future__ import annotations

import json

import numpy as np
import pytest

from pruneport.flops import macs_per_example
from pruneport.report.bops import baseline_bops, bops_per_example, folder_bits
from tests.quant_fixtures import calib_data, int8_all, random_texts, tiny_folder  # noqa: F401

D, F, LABELS = 32, 64, 2  # the tiny backbone: hidden 32, intermediate 64, 3 layers, all three prune


def hand_count(tokens: list[int]) -> tuple[int, int, int]:
    """(backbone MACs, score MACs, head MACs) of one example, counted by hand from the module structure."""
    backbone = score = 0
    for i, n in enumerate(tokens):
        m = tokens[i + 1] if i + 1 < len(tokens) else n  # LTP prunes before the FFN
        backbone += 4 * n * D * D  # query, key, value, attention output
        backbone += 2 * n * n * D  # Q.K^T and P.V over all heads
        backbone += m * D * F + m * F * D  # FFN in and out
        score += n * n  # LTP's score: live-query row vector times the head-summed probabilities
    return backbone, score, D * D + D * LABELS


def test_bops_equal_a_hand_count(tiny_folder, int8_all):
    tokens = [20, 10, 5]
    backbone, score, head = hand_count(tokens)
    fp32 = folder_bits(tiny_folder)
    assert sorted(e.info.role for e in fp32).count("score") == 3
    macs, bops = bops_per_example(fp32, np.array([tokens]), D)
    assert macs[0] == backbone + score + head
    assert bops[0] == (backbone + score + head) * 32 * 32
    assert macs_per_example({"hidden_size": D, "intermediate_size": F}, np.array([tokens]))[0] == backbone

    int8 = folder_bits(int8_all)
    assert {(e.a_bits, e.w_bits) for e in int8 if e.info.role == "head"} == {(32, 32)}  # Gemm is not quantized
    _, bops8 = bops_per_example(int8, np.array([tokens]), D)
    assert bops8[0] == (backbone + score) * 8 * 8 + head * 32 * 32

    full_backbone, _, _ = hand_count([20, 20, 20])
    assert baseline_bops(fp32, np.array([20]), D, 3)[0] == (full_backbone + head) * 16 * 16


def test_report_cli_writes_every_file(tiny_folder, int8_all, tmp_path):
    import matplotlib.image

    from pruneport.cli import main

    texts = random_texts(40, seed=7)
    data = tmp_path / "dev.tsv"
    data.write_text(
        "sentence\tlabel\n" + "".join(f"{t}\t{y}\n" for t, y in zip(texts.texts, texts.labels, strict=True))
    )
    out = tmp_path / "report"
    argv = ["report", str(int8_all), str(tiny_folder), "--data", str(data), "--scales", "0,1", "-o", str(out)]
    assert main(argv) == 0
    for name in ("report.json", "report.csv", "report.md", "report.png"):
        assert (out / name).stat().st_size > 0
    assert (out / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    image = matplotlib.image.imread(str(out / "report.png"))
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100

    report = json.loads((out / "report.json").read_text())
    points = report["points"]
    assert [(p["variant"], p["scale"]) for p in points][:2] == [("fp32", 0.0), ("fp32", 1.0)]  # FP32 first
    assert len(points) == 4 and len((out / "report.csv").read_text().splitlines()) == 5
    fp32_unpruned, fp32_pruned, int8_unpruned = points[0], points[1], points[2]
    assert fp32_unpruned["relative_flops"] == pytest.approx(1.0, abs=0.02)  # score MatMuls are ~1% extra
    assert fp32_unpruned["relative_bops"] == pytest.approx(4.0 * fp32_unpruned["relative_flops"], rel=0.01)
    assert fp32_pruned["relative_flops"] < 0.9
    assert int8_unpruned["relative_bops"] < 0.3 and int8_unpruned["identical_to_fp32"] == 1.0
    assert report["baseline"]["accuracy"] == fp32_unpruned["accuracy"]
    assert "| fp32 | 1 |" in (out / "report.md").read_text()

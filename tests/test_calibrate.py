"""Threshold tensors and post-training threshold calibration (relative-FLOPs target, refit after INT8)."""

# ruff: noqa: F811  (session fixtures are imported from tests.quant_fixtures and requested by name)
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from pruneport.calibration.calibrate import kept_agreement, refit_to_reference, search_flops_scale, write_thresholds
from pruneport.calibration.runner import FolderRunner
from pruneport.calibration.thresholds import ThresholdError, name_thresholds, set_thresholds, threshold_name
from pruneport.export.manifest import Manifest
from pruneport.flops import relative_flops
from tests.quant_fixtures import THRESHOLDS, calib_data, int8_all, tiny_folder  # noqa: F401


def test_thresholds_get_their_own_named_initializers(tiny_folder):
    manifest = Manifest.read(tiny_folder)
    model = onnx.load(str(tiny_folder / "model.onnx"))
    slots = name_thresholds(model, "ltp", manifest.pruning, 3)
    assert [s.layer for s in slots] == [0, 1, 2]
    assert np.allclose([s.value for s in slots], THRESHOLDS)
    assert [s.layer for s in name_thresholds(model, "ltp", manifest.pruning, 3)] == [0, 1, 2]  # idempotent

    # equal thresholds may share one constant in an export: naming splits it, so layers change independently
    fresh = onnx.load(str(tiny_folder / "model.onnx"))
    compares = [n for n in fresh.graph.node if n.op_type == "GreaterOrEqual"]
    fresh.graph.initializer.append(numpy_helper.from_array(np.asarray(0.03, dtype=np.float32), "shared"))
    for node in compares[:2]:
        node.input[1] = "shared"
    pruning = {**manifest.pruning, "thresholds": [0.03, 0.03, 0.04]}
    name_thresholds(fresh, "ltp", pruning, 3)
    set_thresholds(fresh, {0: 0.5})
    inits = {i.name: float(numpy_helper.to_array(i)) for i in fresh.graph.initializer if i.name.startswith("pruneport")}
    assert inits[threshold_name(0)] == 0.5 and inits[threshold_name(1)] == pytest.approx(0.03)

    wrong = onnx.load(str(tiny_folder / "model.onnx"))
    with pytest.raises(ThresholdError, match="threshold comparisons"):
        name_thresholds(wrong, "ltp", {**manifest.pruning, "thresholds": [0.01, 0.02, 0.05]}, 3)


def test_flops_target_is_reached_and_written(tiny_folder, calib_data, tmp_path):
    runner = FolderRunner(tiny_folder)
    base = relative_flops(runner.manifest.backbone, runner.evaluate(calib_data).tokens_per_layer)
    target = round(base + 0.15, 2)  # prune less than trained: the search must lower the thresholds
    result = search_flops_scale(runner, calib_data, target, tolerance=0.01)
    assert result.scale < 1.0
    assert abs(result.relative_flops - target) < 0.03

    out = write_thresholds(tiny_folder, tmp_path / "calibrated", result.values, {"step": "calibrate"})
    manifest = Manifest.read(out)
    assert manifest.pruning["thresholds"] == pytest.approx([t * result.scale for t in THRESHOLDS], rel=1e-5)
    tokens = FolderRunner(out).evaluate(calib_data).tokens_per_layer
    assert relative_flops(manifest.backbone, tokens) == pytest.approx(result.relative_flops)
    with pytest.raises(ValueError, match="target-flops"):
        search_flops_scale(runner, calib_data, 1.5)


def test_refit_after_int8_does_not_lose_agreement(tiny_folder, calib_data, int8_all, tmp_path):
    reference = FolderRunner(tiny_folder).evaluate(calib_data).tokens_per_layer
    result = refit_to_reference(FolderRunner(int8_all), calib_data, reference)
    assert set(result.values) == {0, 1, 2}
    assert result.values[2] == pytest.approx(THRESHOLDS[2])  # last layer's pruning is invisible: unchanged
    assert result.after.mean_relative_difference <= result.before.mean_relative_difference
    out = write_thresholds(int8_all, tmp_path / "refit", result.values, {"step": "calibrate", "refit_to": "fp32"})
    assert Manifest.read(out).precision == "int8"
    written = kept_agreement(reference, FolderRunner(out).evaluate(calib_data).tokens_per_layer)
    assert written == result.after  # the written folder keeps exactly the refitted tokens


def test_calibrate_cli(tiny_folder, tmp_path):
    from pruneport.cli import main

    data = tmp_path / "cal.tsv"
    from tests.quant_fixtures import random_texts

    texts = random_texts(48, seed=3)
    data.write_text(
        "sentence\tlabel\n" + "".join(f"{t}\t{y}\n" for t, y in zip(texts.texts, texts.labels, strict=True))
    )
    out = tmp_path / "cli_out"
    assert main(["calibrate", str(tiny_folder), "--data", str(data), "--target-flops", "0.7", "-o", str(out)]) == 0
    assert Manifest.read(out).history[-1]["target_flops"] == 0.7
    assert main(["calibrate", str(tiny_folder), "--data", str(data), "-o", str(tmp_path / "none")]) == 2


def test_an_unreachable_target_warns_with_the_comparison_the_right_way_round(tiny_folder, calib_data, caplog):
    import logging

    with caplog.at_level(logging.WARNING, logger="pruneport.calibration.calibrate"):
        search_flops_scale(FolderRunner(tiny_folder), calib_data, 0.01)
    (message,) = [r.getMessage() for r in caplog.records if "too many tokens" in r.getMessage()]
    reached = float(message.split("relative FLOPs ")[1].split()[0])
    assert reached > 0.01 and f"relative FLOPs {reached:.3f} > target 0.010" in message


def test_calibrate_writes_a_copy_and_edits_in_place_only_when_asked(tiny_folder, tmp_path):
    import shutil

    from pruneport.cli import main
    from tests.quant_fixtures import random_texts

    folder = shutil.copytree(tiny_folder, tmp_path / "fp32")
    texts = random_texts(32, seed=4)
    data = tmp_path / "cal.tsv"
    rows = "".join(f"{t}\t{y}\n" for t, y in zip(texts.texts, texts.labels, strict=True))
    data.write_text("sentence\tlabel\n" + rows)
    argv = ["calibrate", str(folder), "--data", str(data), "--target-flops", "0.7"]
    before = (folder / "model.onnx").read_bytes()
    assert main(argv) == 2  # neither -o nor --in-place: a usage error
    assert main([*argv, "--in-place", "-o", str(tmp_path / "copy")]) == 2
    assert main([*argv, "-o", str(folder)]) == 2  # -o FOLDER is not --in-place
    assert (folder / "model.onnx").read_bytes() == before
    assert main([*argv, "--in-place"]) == 0
    assert Manifest.read(folder).history[-1]["target_flops"] == 0.7
    assert (folder / "model.onnx").read_bytes() != before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cal.tsv", "fp32"]  # no staging left beside it

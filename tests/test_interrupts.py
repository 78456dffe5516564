"""Killed and failed runs leave nothing behind that is accepted or that stays (issue 12, item 5).

``export`` and ``quantize`` run in a subprocess whose model writer stalls half-way (after writing part of its
output, and for quantize after filling its work folder and making a temporary folder as ONNX Runtime's quantizer
does); the test then sends SIGTERM or SIGKILL. SIGTERM cleans up like Ctrl-C; after SIGKILL the staging folder
remains beside the output (temporary files inside it, none in the system temp folder) and the next run sweeps it.
"""

# ruff: noqa: F811  (session fixtures are imported from tests.quant_fixtures and requested by name)
from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from pruneport import cli
from pruneport.export.folders import STAGING_TAG, staged_folder, sweep_stale_staging
from pruneport.export.manifest import Manifest, NotAnExportError
from pruneport.methods.checkpoint import save_model_pt
from pruneport.runtime import load
from tests.quant_fixtures import random_texts, tiny_folder  # noqa: F401

REPO = Path(__file__).resolve().parents[1]

STALLING_RUN = r"""
import sys, tempfile, time
from pathlib import Path

def stall():
    print("STALLED", flush=True)
    time.sleep(300)

if sys.argv[1] == "export":
    import pruneport.export.onnx_export as exporter

    def export_onnx_model(model, path, opset=18):
        Path(path).write_bytes(b"half-written")
        stall()

    exporter.export_onnx_model = export_onnx_model
else:
    import pruneport.calibration.quantize as quantizer

    def half_written(work):
        (Path(work) / "fp32.onnx").write_bytes(b"0" * 4096)
        tempfile.mkdtemp(prefix="ort.quant.")
        stall()

    quantizer._quantize_ort_static = lambda model, manifest, data, opts, exclude, work: half_written(work)
    quantizer._quantize_ort_dynamic = lambda model, opts, exclude, work: half_written(work)  # the default mode
from pruneport.cli import main

sys.exit(main(sys.argv[1:]))
"""


def stalled_run(argv: list[str], system_temp: Path) -> subprocess.Popen:
    """Start ``pruneport ARGV`` with a stalling writer; returns once it stalls half-way."""
    env = {**os.environ, "TMPDIR": str(system_temp), "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, "-c", STALLING_RUN, *map(str, argv)],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    ready, _, _ = select.select([proc.stdout], [], [], 240)
    line = proc.stdout.readline() if ready else ""
    if line.strip() != "STALLED":
        proc.kill()
        raise AssertionError(f"the run did not reach its writer: {line!r} {proc.communicate()[1][-2000:]}")
    return proc


def leftovers(out: Path) -> list[str]:
    """Hidden staging folders of ``out`` beside it."""
    return sorted(p.name for p in out.parent.iterdir() if p.name.startswith(f".{out.name}."))


@pytest.fixture
def system_temp(tmp_path) -> Path:
    path = tmp_path / "system_temp"
    path.mkdir()
    return path


@pytest.fixture
def model_pt(tmp_path, tiny_ltp_loaded) -> Path:
    return save_model_pt(tiny_ltp_loaded, tmp_path / "in" / "model.pt")


@pytest.fixture
def data_file(tmp_path) -> Path:
    texts = random_texts(24, seed=7)
    path = tmp_path / "in" / "cal.tsv"
    path.parent.mkdir(exist_ok=True)
    rows = "".join(f"{t}\t{y}\n" for t, y in zip(texts.texts, texts.labels, strict=True))
    path.write_text("sentence\tlabel\n" + rows, encoding="utf-8")
    return path


def kill(proc: subprocess.Popen, sig: signal.Signals) -> tuple[int, str]:
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    return proc.returncode, err


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_killed_export_leaves_no_accepted_output_and_the_next_run_nothing_stale(tmp_path, model_pt, system_temp, sig):
    out = tmp_path / "out"
    code, err = kill(stalled_run(["export", model_pt, "-o", out], system_temp), sig)
    assert code == (128 + signal.SIGTERM if sig == signal.SIGTERM else -signal.SIGKILL)
    assert not out.exists()
    with pytest.raises(NotAnExportError):
        load(out)
    if sig == signal.SIGTERM:
        assert leftovers(out) == [] and "Traceback" not in err
    else:
        assert len(leftovers(out)) == 1  # the staging folder of the killed run
    assert cli.main(["export", str(model_pt), "-o", str(out)]) == 0
    assert leftovers(out) == [] and list(system_temp.iterdir()) == []
    assert load(out).predict("a good movie").tokens_per_layer.shape == (1, 3)


def test_killed_overwrite_keeps_the_previous_output(tmp_path, model_pt, system_temp):
    out = tmp_path / "out"
    assert cli.main(["export", str(model_pt), "-o", str(out)]) == 0
    before = (out / "pruneport.json").read_text(encoding="utf-8")
    kill(stalled_run(["export", model_pt, "-o", out, "--overwrite"], system_temp), signal.SIGKILL)
    assert (out / "pruneport.json").read_text(encoding="utf-8") == before
    assert Manifest.read(out).model_file == "model.onnx" and (out / "model.onnx").stat().st_size > 1000


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_killed_quantize_leaves_no_temporary_files_and_the_next_run_nothing_stale(
    tmp_path, tiny_folder, data_file, system_temp, sig
):
    out = tmp_path / "int8"
    argv = ["quantize", tiny_folder, "--data", data_file, "-o", out]
    code, err = kill(stalled_run(argv, system_temp), sig)
    assert code == (128 + signal.SIGTERM if sig == signal.SIGTERM else -signal.SIGKILL)
    assert not out.exists()
    assert list(system_temp.iterdir()) == []  # work files and the quantizer's temporary folder: in the staging
    if sig == signal.SIGTERM:
        assert leftovers(out) == [] and "Traceback" not in err
    else:
        (staging,) = leftovers(out)
        assert any((tmp_path / staging).rglob("ort.quant.*")) and any((tmp_path / staging).rglob("fp32.onnx"))
    assert cli.main([str(a) for a in argv]) == 0
    assert leftovers(out) == []
    assert Manifest.read(out).precision == "int8"


def test_stale_staging_folders_of_the_same_output_are_swept(tmp_path):
    out = tmp_path / "out"
    dead = tmp_path / f".out{STAGING_TAG}99999999-abc"  # no such process
    legacy = tmp_path / ".out.k3j4h5g6"  # pruneport before the pid was recorded
    alive = tmp_path / f".out{STAGING_TAG}{os.getpid()}-def"  # a run still going
    other = tmp_path / f".other{STAGING_TAG}99999999-abc"  # another output's
    for folder in (dead, legacy, alive, other):
        (folder / "out").mkdir(parents=True)
    with staged_folder(out) as staged:
        (staged / "f").write_text("x", encoding="utf-8")
    assert not dead.exists() and not legacy.exists()
    assert alive.exists() and other.exists()
    assert sweep_stale_staging(out) == []


def test_failed_writers_leave_no_staging_and_no_empty_parents(tmp_path):
    out = tmp_path / "a" / "b" / "out"
    with pytest.raises(RuntimeError), staged_folder(out) as staged:
        (staged / "half").write_text("x", encoding="utf-8")
        raise RuntimeError("failed half-way")
    assert list(tmp_path.iterdir()) == []

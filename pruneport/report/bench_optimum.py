"""The Optimum baselines of ``pruneport bench``: the unpruned model as optimum-intel exports (and quantizes) it.

optimum-intel cannot be installed beside pruneport (it requires ``transformers<5.6``; pruneport's tested set has
5.25), so it gets its own locked environment (``scripts/setup-optimum`` -> ``.venv-optimum``,
``constraints-optimum.txt``), and bench drives it: :mod:`pruneport.report.optimum_intel_export` runs there as a script
on the HF baseline folder and writes OpenVINO IR; this module wraps each IR as a baseline folder (a manifest copied
from the plain baseline, ``method`` :data:`OPTIMUM_METHOD`, the exporter named) that bench times with the same
OpenVINO runtime as every other row. Timing in pruneport's process, not through ``OVModelForSequenceClassification``,
keeps one OpenVINO build and one padding rule for every row; Optimum's class compiles the same IR for CPU.

Where no optimum environment is found, the rows are skipped with the reason (``PRUNEPORT_OPTIMUM_PYTHON`` names
another python).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from pruneport.export.manifest import Manifest
from pruneport.report.bench_baselines import OPTIMUM_METHOD, SOURCE_FILE, is_cached

log = logging.getLogger(__name__)

OPTIMUM_PYTHON_ENV = "PRUNEPORT_OPTIMUM_PYTHON"
OPTIMUM_SCHEME = "optimum-ovquantizer-int8"
SCRIPT = Path(__file__).with_name("optimum_intel_export.py")
REPO_VENV_PYTHON = Path(__file__).resolve().parents[2] / ".venv-optimum" / "bin" / "python"  # scripts/setup-optimum


class OptimumUnavailable(RuntimeError):
    """No optimum-intel environment to run the export in (the message says how to make one)."""


def find_optimum_python(explicit: str | None = None) -> Path:
    """The python of optimum-intel's environment: ``explicit``, ``$PRUNEPORT_OPTIMUM_PYTHON``, or the repository's
    ``.venv-optimum``."""
    if explicit:
        if not Path(explicit).exists():
            raise OptimumUnavailable(f"--optimum {explicit}: no such python; run scripts/setup-optimum")
        return Path(explicit)
    repo_venv = REPO_VENV_PYTHON
    for candidate in (os.environ.get(OPTIMUM_PYTHON_ENV), str(repo_venv)):
        if candidate and Path(candidate).exists():
            return Path(candidate)
    raise OptimumUnavailable(
        f"no optimum-intel environment (looked at {OPTIMUM_PYTHON_ENV} and {repo_venv}); run scripts/setup-optimum"
    )


def _calibration_feeds(data, input_names: list[str]) -> list[dict[str, Any]]:
    """Batch-1 token-id feeds (Optimum calibrates on single examples) from pruneport's calibration batches."""
    feeds = []
    for batch in data.batches:
        for row in range(batch.size):
            mask = batch.feeds["attention_mask"][row]
            width = int(mask.sum())
            feeds.append({n: batch.feeds[n][row : row + 1, :width].tolist() for n in input_names})
    return feeds


def build_optimum_baselines(
    hf_folder: Path,
    plain_folder: Path,
    work: Path,
    python: Path,
    calibration=None,
) -> dict[str, Path]:
    """Export the HF baseline with optimum-intel (FP32, and INT8 when ``calibration`` batches are given) under
    ``work``; folders built from the same plain baseline and calibration are reused. Returns precision -> folder."""
    plain = Manifest.read(plain_folder)
    source_stamp = json.loads((plain_folder / SOURCE_FILE).read_text(encoding="utf-8"))
    kinds = ["fp32"] + (["int8"] if calibration is not None else [])
    folders: dict[str, Path] = {}
    for kind in kinds:
        out = work / f"baseline_optimum_{kind}"
        stamp = {**source_stamp, "optimum": kind, "python": str(python)}
        if kind == "int8":
            stamp["calibration"] = {"source": calibration.source, "examples": calibration.n}
        if is_cached(out, stamp):
            folders[kind] = out
            continue
        if out.exists():
            shutil.rmtree(out)
        tmp = Path(tempfile.mkdtemp(prefix=f".baseline_optimum_{kind}.", dir=work))
        try:
            command = [str(python), str(SCRIPT), "--hf", str(hf_folder), "--out", str(tmp)]
            if kind == "int8":
                feeds_file = work / ".optimum_calibration.json"
                feeds_file.write_text(json.dumps(_calibration_feeds(calibration, plain.inputs)), encoding="utf-8")
                command += ["--int8", str(feeds_file)]
            log.info("optimum-intel export (%s): %s", kind, " ".join(command))
            done = subprocess.run(command, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                tail = (done.stderr or done.stdout).strip().splitlines()[-5:]
                raise RuntimeError(f"optimum-intel export ({kind}) failed: " + " | ".join(tail))
            info = json.loads((tmp / "optimum_export.json").read_text(encoding="utf-8"))
            _write_manifest(tmp, plain, plain_folder, info, kind)
            (tmp / SOURCE_FILE).write_text(json.dumps(stamp), encoding="utf-8")
            tmp.rename(out)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        folders[kind] = out
    return folders


def _write_manifest(folder: Path, plain: Manifest, plain_folder: Path, info: dict[str, Any], kind: str) -> None:
    shutil.copy2(plain_folder / plain.tokenizer_file, folder / plain.tokenizer_file)
    extra: dict[str, Any] = {"baseline_exporter": info["exporter"], "optimum": info}
    if kind == "int8":
        extra["quantization"] = {"scheme": OPTIMUM_SCHEME, "backend": "openvino"}
    manifest = Manifest(
        method=OPTIMUM_METHOD,
        backbone=dict(plain.backbone),
        pruning={},
        label_names=list(plain.label_names),
        inputs=list(plain.inputs),
        outputs=list(plain.outputs),
        max_length=plain.max_length,
        pad_token_id=plain.pad_token_id,
        model_file=info["model_file"],
        precision=kind,
        pruneport_version=plain.pruneport_version,
        history=list(plain.history),
        extra=extra,
    )
    manifest.record("optimum-intel-export", exporter=info["exporter"], python=sys.version)
    manifest.write(folder)

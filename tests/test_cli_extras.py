"""What a command line in this ecosystem is expected to offer (issue 12, "also expected of a CLI"):

``--version``; help text for every option and its default shown; ``predict`` with sentence pairs, ``--batch-size``
and ``--json``; ``--backend`` listing its choices; an OpenVINO-only folder explained instead of a protobuf error;
``-v`` showing pruneport's progress but no other library's INFO lines; one truncation warning; export progress.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys

import pytest

import pruneport
from pruneport import cli
from pruneport.methods.checkpoint import save_model_pt


def run(capsys, *argv):
    code = cli.main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_version(capsys):
    assert cli.main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"pruneport {pruneport.__version__}"


def test_every_option_has_help_and_shows_its_default():
    parser = cli.build_parser()
    missing, no_default = [], []
    for each in cli._parsers(parser):
        formatter = each._get_formatter()
        for action in each._actions:
            if isinstance(action, argparse._HelpAction | argparse._VersionAction | argparse._SubParsersAction):
                continue
            name = f"{each.prog} {'/'.join(action.option_strings) or action.dest}"
            if not (action.help or "").strip():
                missing.append(name)
            shown = action.default is not None and action.default is not False and action.option_strings
            if shown and "default" not in formatter._get_help_string(action):
                no_default.append(name)
    assert missing == [] and no_default == []
    help_text = _help("calibrate")
    assert "--batch-size BATCH_SIZE" in help_text and "(default 16)" in help_text


def _help(*command: str) -> str:
    parser = cli.build_parser()
    for each in cli._parsers(parser):
        if each.prog == " ".join(["pruneport", *command]):
            return each.format_help()
    raise AssertionError(command)


def test_backend_lists_its_choices(capsys):
    assert "{onnxruntime,openvino}" in _help("predict")
    assert cli.main(["predict", "F", "text", "--backend", "onnx"]) == 2
    assert "choose from 'onnxruntime', 'openvino'" in capsys.readouterr().err


def test_predict_pairs_batch_size_and_json(capsys, tiny_ltp_export):
    from pruneport.runtime import load

    texts = ["the plot was good", "the movie was great", "a dull film", "a bad ending"]
    code, out, err = run(capsys, "predict", tiny_ltp_export, "--pair", "--batch-size", "1", "--json", *texts)
    assert code == 0, err
    records = json.loads(out)
    expected = load(tiny_ltp_export).predict([(texts[0], texts[1]), (texts[2], texts[3])])
    assert [r["text"] for r in records] == [texts[0:2], texts[2:4]]
    assert [r["label"] for r in records] == expected.labels
    assert [r["tokens_per_layer"] for r in records] == expected.tokens_per_layer.tolist()
    assert set(records[0]["probabilities"]) == {"class_0", "class_1"}
    assert records[0]["probability"] == pytest.approx(float(expected.probabilities[0].max()), abs=1e-6)

    code, out, _ = run(capsys, "predict", tiny_ltp_export, "--pair", *texts[:2])
    label, _prob, _tokens, first, second = out.rstrip("\n").split("\t")
    assert (label, first, second) == (expected.labels[0], texts[0], texts[1])

    code, _, err = run(capsys, "predict", tiny_ltp_export, "--pair", *texts[:3])
    assert code == 2 and err.startswith("error: --pair reads texts two at a time") and "odd number (3)" in err


def test_openvino_only_folder_says_which_backend_to_use(capsys, tmp_path, tiny_ltp_export):
    """A folder whose model is an OpenVINO IR only (what ``quantize --backend openvino`` writes)."""
    ov = pytest.importorskip("openvino")
    from pruneport.export.manifest import Manifest

    folder = shutil.copytree(tiny_ltp_export, tmp_path / "ov_only")
    ov.save_model(ov.convert_model(str(folder / "model.onnx")), str(folder / "model.xml"))
    (folder / "model.onnx").unlink()
    manifest = Manifest.read(folder)
    manifest.model_file = "model.xml"
    manifest.write(folder)

    code, out, err = run(capsys, "predict", folder, "a great movie")
    assert code == 2 and out == ""
    assert err.startswith("error: ") and "--backend openvino" in err and "protobuf" not in err.lower()
    assert len(err.strip().splitlines()) == 1
    code, out, err = run(capsys, "predict", folder, "a great movie", "--backend", "openvino")
    assert code == 0 and out.startswith("class_")


def test_export_shows_its_stages(capsys, tmp_path, tiny_ltp_loaded):
    from pruneport.export.onnx_export import write_export_folder

    write_export_folder(tiny_ltp_loaded, tmp_path / "out", progress=True)
    err = capsys.readouterr().err
    assert "export" in err and "tracing the ltp model (3 layers) to ONNX" in err and "writing tokenizer.json" in err


def _pruneport(*argv: object, timeout: int = 600) -> subprocess.CompletedProcess:
    """Run the CLI in a fresh process, as a user would (logging and warnings set up by ``main``)."""
    env = {**os.environ, "PYTHONUTF8": "1"}
    command = [sys.executable, "-m", "pruneport.cli", *(str(a) for a in argv)]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env)


def test_verbose_shows_pruneport_progress_and_no_other_library_info(tmp_path, tiny_ltp_loaded):
    model_pt = save_model_pt(tiny_ltp_loaded, tmp_path / "model.pt")
    done = _pruneport("-v", "export", model_pt, "-o", tmp_path / "out")
    assert done.returncode == 0, done.stderr
    info = [line for line in done.stderr.splitlines() if line.startswith("INFO ")]
    assert any("export: tracing the ltp model" in line for line in info), done.stderr
    assert [line for line in info if not line.startswith("INFO pruneport")] == []  # no onnxscript, onnx_ir, ...
    quiet = _pruneport("export", model_pt, "-o", tmp_path / "out2")
    assert quiet.returncode == 0 and not [line for line in quiet.stderr.splitlines() if line.startswith("INFO")]


def test_one_truncation_warning(tiny_ltp_export):
    long_text = " ".join(["the movie was great fun"] * 20)  # well over the tiny model's 32 tokens
    done = _pruneport("predict", tiny_ltp_export, long_text, "short text")
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stderr.splitlines() if "truncated" in line]
    assert lines == ["warning: 1 text(s) longer than the model's maximum of 32 tokens were truncated (first: text 0)"]

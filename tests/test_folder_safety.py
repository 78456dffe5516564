"""An export folder cannot escape itself, no command destroys its input, every bad folder is one clear line.

Issue 12, items 1, 2, 4 (manifest and tokenizer files), 6 and the manifest checks of item 3: file names in
pruneport.json are plain relative names inside the folder (refused on read by the runtime and every command, and on
write); outputs that are, contain or sit inside an input are refused, and ``--overwrite`` never deletes files
pruneport did not write; corrupt manifests and tokenizers give ``error: ...`` and exit 2; output folders get the
umask's permissions.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
from pathlib import Path

import pytest

from pruneport import cli
from pruneport.errors import USER_ERRORS
from pruneport.export.folders import OutputError, check_output, staged_folder
from pruneport.export.manifest import EXPORT_FORMAT_VERSION, Manifest, NotAnExportError, UnsafePathError, safe_file
from pruneport.methods.checkpoint import save_model_pt
from pruneport.runtime import load
from tests.quant_fixtures import random_texts


def run(capsys, *argv) -> tuple[int, str, str]:
    code = cli.main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    return lines[0]


def edit_manifest(folder: Path, **changes) -> None:
    """Rewrite pruneport.json with ``changes`` (no validation: this is what a hostile user can do)."""
    path = folder / "pruneport.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    data.update(changes)
    path.write_text(json.dumps(data), encoding="utf-8")


@pytest.fixture
def layout(tmp_path, tiny_ltp_export):
    """``tmp/victim`` (a copy of the export) and ``tmp/outside`` (another valid export the victim must not reach)."""
    victim = shutil.copytree(tiny_ltp_export, tmp_path / "victim")
    outside = shutil.copytree(tiny_ltp_export, tmp_path / "outside")
    return victim, outside


@pytest.fixture
def data_file(tmp_path) -> Path:
    texts = random_texts(24, seed=5)
    path = tmp_path / "cal.tsv"
    rows = "".join(f"{t}\t{y}\n" for t, y in zip(texts.texts, texts.labels, strict=True))
    path.write_text("sentence\tlabel\n" + rows, encoding="utf-8")
    return path


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# -- 1. path traversal ---------------------------------------------------------------------------------------------
def hostile_names(victim: Path, outside: Path) -> dict[str, str]:
    """Names that reach ``outside``: absolute, '..', and through symbolic links made inside ``victim``."""
    (victim / "link.onnx").symlink_to(outside / "model.onnx")
    (victim / "linked_dir").symlink_to(outside, target_is_directory=True)
    return {
        "absolute": str(outside / "model.onnx"),
        "dotdot": "../outside/model.onnx",
        "inner dotdot": "sub/../../outside/model.onnx",
        "file symlink": "link.onnx",
        "folder symlink": "linked_dir/model.onnx",
        "backslashes": "..\\outside\\model.onnx",
        "drive": "C:/outside/model.onnx",
    }


@pytest.mark.parametrize(
    "kind", ["absolute", "dotdot", "inner dotdot", "file symlink", "folder symlink", "backslashes", "drive"]
)
def test_runtime_refuses_model_file_outside_the_folder(layout, kind):
    victim, outside = layout
    edit_manifest(victim, model_file=hostile_names(victim, outside)[kind])
    with pytest.raises(UnsafePathError) as caught:
        load(victim)
    assert "\n" not in str(caught.value)


def test_runtime_refuses_every_named_file_outside_the_folder(layout):
    victim, outside = layout
    names = hostile_names(victim, outside)
    tokenizer = str(outside / "tokenizer.json")
    stage = {"file": names["dotdot"], "start": -1, "end": None, "layers": [0, 1, 2], "inputs": ["input_ids"]}
    cases = {
        "tokenizer_file": {"tokenizer_file": tokenizer},
        "split stage": {"extra": {"split": {"stages": [stage]}}},
        "openvino IR": {"extra": {"openvino": {"model_file": names["absolute"].replace(".onnx", ".xml")}}},
    }
    for what, change in cases.items():
        edit_manifest(victim, **change)
        with pytest.raises(UnsafePathError):
            load(victim, backend="openvino" if what == "openvino IR" else "onnxruntime")
        edit_manifest(victim, tokenizer_file="tokenizer.json", extra={})


def test_openvino_weights_beside_the_ir_may_not_escape(tmp_path, layout):
    victim, outside = layout
    (victim / "model.xml").write_text("<net/>", encoding="utf-8")
    (victim / "model.bin").symlink_to(outside / "model.onnx")
    edit_manifest(victim, extra={"openvino": {"model_file": "model.xml"}})
    with pytest.raises(UnsafePathError, match="model.bin"):
        Manifest.read(victim)


def test_files_in_sub_folders_and_links_inside_the_folder_are_fine(layout):
    victim, _ = layout
    (victim / "graphs").mkdir()
    shutil.move(victim / "model.onnx", victim / "graphs" / "model.onnx")
    (victim / "current.onnx").symlink_to(victim / "graphs" / "model.onnx")
    edit_manifest(victim, model_file="current.onnx")
    assert load(victim).predict("a good movie").tokens_per_layer.shape == (1, 3)
    assert safe_file(victim, "graphs/model.onnx") == victim / "graphs" / "model.onnx"


def test_cli_commands_refuse_a_folder_naming_files_outside(capsys, tmp_path, layout, data_file):
    victim, outside = layout
    edit_manifest(victim, model_file=str(outside / "model.onnx"))
    before = snapshot(tmp_path / "outside")
    commands = {
        "predict": ["predict", victim, "a text"],
        "calibrate": ["calibrate", victim, "--data", data_file, "--target-flops", "0.7", "-o", tmp_path / "cal"],
        "convert": ["convert", victim, "-o", tmp_path / "ir"],
        "quantize": ["quantize", victim, "--data", data_file, "-o", tmp_path / "q"],
        "optimize": ["optimize", victim, "-o", tmp_path / "opt"],
    }
    for name, argv in commands.items():
        code, _, err = run(capsys, *argv)
        assert code == 2, name
        assert "outside" in one_error_line(err) or "absolute" in err, name
    assert snapshot(tmp_path / "outside") == before  # nothing rewritten or added beside the outside model
    assert not any((tmp_path / n).exists() for n in ("cal", "ir", "q", "opt"))


def test_writers_refuse_to_write_a_manifest_naming_files_outside(tmp_path, tiny_ltp_export):
    manifest = Manifest.read(tiny_ltp_export)
    folder = shutil.copytree(tiny_ltp_export, tmp_path / "f")
    for name in ("../f/model.onnx", str(folder / "model.onnx")):
        manifest.tokenizer_file = name
        with pytest.raises(UnsafePathError):
            manifest.write(folder)
    manifest.tokenizer_file = "absent.json"
    with pytest.raises(NotAnExportError, match="absent.json"):  # a written manifest names only files that exist
        manifest.write(folder)
    assert Manifest.read(folder).tokenizer_file == "tokenizer.json"


# -- 2. data loss with --overwrite -------------------------------------------------------------------------------------
def test_export_refuses_an_output_holding_its_input(capsys, tmp_path, tiny_ltp_loaded):
    sandbox = tmp_path / "sb2"
    sandbox.mkdir()
    model_pt = save_model_pt(tiny_ltp_loaded, sandbox / "model.pt")
    (sandbox / "notes.txt").write_text("mine", encoding="utf-8")
    for out in (sandbox, tmp_path):
        code, _, err = run(capsys, "export", model_pt, "-o", out, "--overwrite")
        assert code == 2 and "input" in one_error_line(err)
    assert model_pt.exists() and (sandbox / "notes.txt").read_text(encoding="utf-8") == "mine"


def test_folder_writers_refuse_outputs_overlapping_the_input(capsys, tmp_path, tiny_ltp_export, data_file):
    sandbox = tmp_path / "sb"
    folder = shutil.copytree(tiny_ltp_export, sandbox / "exp")
    before = snapshot(sandbox)
    for out in (sandbox, folder, folder / "nested"):
        for argv in (
            ["optimize", folder, "-o", out],
            ["convert", folder, "-o", out],
            ["quantize", folder, "--data", data_file, "-o", out],
            ["calibrate", folder, "--data", data_file, "--target-flops", "0.7", "-o", out],
        ):
            code, _, err = run(capsys, *argv, "--overwrite")
            assert code == 2, argv
            assert "input" in one_error_line(err), argv
    assert snapshot(sandbox) == before


def test_overwrite_never_deletes_files_pruneport_did_not_write(capsys, tmp_path, tiny_ltp_export):
    out = tmp_path / "out"
    out.mkdir()
    (out / "thesis.tex").write_text("years of work", encoding="utf-8")
    code, _, err = run(capsys, "optimize", tiny_ltp_export, "-o", out, "--overwrite")
    assert code == 2 and "thesis.tex" in one_error_line(err)
    assert (out / "thesis.tex").read_text(encoding="utf-8") == "years of work"
    (out / "thesis.tex").unlink()
    assert run(capsys, "optimize", tiny_ltp_export, "-o", out)[0] == 0
    assert run(capsys, "optimize", tiny_ltp_export, "-o", out, "--overwrite")[0] == 0  # its own output: replaced


def test_check_output_rules(tmp_path):
    inp = tmp_path / "in"
    inp.mkdir()
    with pytest.raises(OutputError, match="is the input"):
        check_output(inp, [inp], overwrite=True)
    with pytest.raises(OutputError, match="contains the input"):
        check_output(tmp_path, [inp], overwrite=True)
    with pytest.raises(OutputError, match="is inside the input"):
        check_output(inp / "x", [inp], overwrite=True)
    check_output(inp, [inp], in_place=True)  # calibrate --in-place
    check_output(tmp_path / "other", [inp])


def test_report_does_not_overwrite_results_without_overwrite(capsys, tmp_path, tiny_ltp_export, data_file):
    out = tmp_path / "report"
    out.mkdir()
    (out / "report.json").write_text("{}", encoding="utf-8")
    code, _, err = run(capsys, "report", tiny_ltp_export, "--data", data_file, "-o", out)
    assert code == 2 and "--overwrite" in one_error_line(err)
    (out / "mine.txt").write_text("x", encoding="utf-8")
    code, _, err = run(capsys, "report", tiny_ltp_export, "--data", data_file, "-o", out, "--overwrite")
    assert code == 2 and "mine.txt" in one_error_line(err)
    assert (out / "report.json").read_text(encoding="utf-8") == "{}"


# -- 3 (manifest checks). max_length, format_version ------------------------------------------------------------------
def test_manifest_max_length_beyond_the_positions_is_refused(tmp_path, tiny_ltp_export):
    folder = shutil.copytree(tiny_ltp_export, tmp_path / "f")
    positions = Manifest.read(folder).backbone["max_position_embeddings"]
    edit_manifest(folder, max_length=positions + 1)
    with pytest.raises(NotAnExportError, match=f"beyond the backbone's {positions} positions"):
        load(folder)


def test_a_newer_format_version_is_refused(capsys, tmp_path, tiny_ltp_export):
    folder = shutil.copytree(tiny_ltp_export, tmp_path / "f")
    edit_manifest(folder, format_version=EXPORT_FORMAT_VERSION + 98)
    with pytest.raises(NotAnExportError, match="newer than this pruneport"):
        load(folder)
    code, _, err = run(capsys, "optimize", folder, "-o", tmp_path / "o")
    assert code == 2 and "upgrade pruneport" in one_error_line(err)
    assert not (tmp_path / "o").exists()


# -- 4. corrupt manifests and tokenizers: one line, exit 2 -------------------------------------------------------------
def _break(folder: Path, how: str) -> None:
    manifest, tokenizer = folder / "pruneport.json", folder / "tokenizer.json"
    if how == "manifest is a list":
        manifest.write_text("[1, 2]", encoding="utf-8")
    elif how == "manifest is null":
        manifest.write_text("null", encoding="utf-8")
    elif how == "manifest is corrupt":
        manifest.write_text('{"format": "pruneport-export", ', encoding="utf-8")
    elif how == "manifest is not UTF-8":
        manifest.write_bytes(b'{"format": "\xff\xfe"}')
    elif how == "manifest is a folder":
        manifest.unlink()
        manifest.mkdir()
    elif how == "wrong value types":
        edit_manifest(folder, max_length="long", label_names="neg,pos")
    elif how == "backbone is a list":
        edit_manifest(folder, backbone=[3, 32])
    elif how == "huge layer count":
        data = json.loads(manifest.read_text(encoding="utf-8"))
        data["backbone"]["num_hidden_layers"] = 10**18
        manifest.write_text(json.dumps(data), encoding="utf-8")
    elif how == "deeply nested":
        manifest.write_text("[" * 100000 + "]" * 100000, encoding="utf-8")
    elif how == "tokenizer is a folder":
        tokenizer.unlink()
        tokenizer.mkdir()
    elif how == "tokenizer is corrupt":
        tokenizer.write_text("{not json", encoding="utf-8")
    elif how == "tokenizer is not a tokenizer":
        tokenizer.write_text('{"model": 3}', encoding="utf-8")
    else:
        raise AssertionError(how)


BROKEN = [
    "manifest is a list",
    "manifest is null",
    "manifest is corrupt",
    "manifest is not UTF-8",
    "manifest is a folder",
    "wrong value types",
    "backbone is a list",
    "huge layer count",
    "deeply nested",
    "tokenizer is a folder",
    "tokenizer is corrupt",
    "tokenizer is not a tokenizer",
]


@pytest.mark.parametrize("how", BROKEN)
def test_broken_folders_give_one_error_line(capsys, tmp_path, tiny_ltp_export, how):
    folder = shutil.copytree(tiny_ltp_export, tmp_path / "f")
    _break(folder, how)
    with pytest.raises(USER_ERRORS) as caught:
        load(folder)
    assert "\n" not in str(caught.value)
    code, stdout, err = run(capsys, "predict", folder, "a good movie")
    assert code == 2 and stdout == ""
    one_error_line(err)


@pytest.mark.parametrize("how", ["manifest is a list", "wrong value types", "tokenizer is a folder"])
def test_broken_folders_give_one_error_line_in_every_command(capsys, tmp_path, tiny_ltp_export, data_file, how):
    folder = shutil.copytree(tiny_ltp_export, tmp_path / "f")
    _break(folder, how)
    commands = [
        ["calibrate", folder, "--data", data_file, "--target-flops", "0.7", "-o", tmp_path / "cal"],
        ["quantize", folder, "--data", data_file, "-o", tmp_path / "q"],
    ]
    if how.startswith("manifest") or how.startswith("wrong"):
        commands += [["optimize", folder, "-o", tmp_path / "opt"], ["convert", folder, "-o", tmp_path / "ir"]]
    for argv in commands:
        code, _, err = run(capsys, *argv)
        assert code == 2, argv
        one_error_line(err)
    assert not any((tmp_path / n).exists() for n in ("cal", "q", "opt", "ir"))


# -- 6. permissions ------------------------------------------------------------------------------------------------
def test_output_folders_follow_the_umask(capsys, tmp_path, tiny_ltp_export):
    old = os.umask(0o022)
    try:
        with staged_folder(tmp_path / "staged") as staged:
            (staged / "f").write_text("x", encoding="utf-8")
        assert stat.S_IMODE((tmp_path / "staged").stat().st_mode) == 0o755
        assert run(capsys, "optimize", tiny_ltp_export, "-o", tmp_path / "opt")[0] == 0
        assert stat.S_IMODE((tmp_path / "opt").stat().st_mode) == 0o755
        assert stat.S_IMODE((tmp_path / "opt" / "model.onnx").stat().st_mode) == 0o644
    finally:
        os.umask(old)


def test_a_manifest_that_is_a_link_leading_out_is_refused(layout):
    victim, outside = layout
    (victim / "pruneport.json").unlink()
    (victim / "pruneport.json").symlink_to(outside / "pruneport.json")
    with pytest.raises(UnsafePathError, match="pruneport.json"):
        load(victim)

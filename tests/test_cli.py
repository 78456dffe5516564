"""`pruneport export` and `predict` from the command line: success writes a complete folder; every bad input gives
one clear error line, exit status 2, and leaves no half-written output behind."""

from __future__ import annotations

import json

import pytest

from pruneport import cli
from pruneport.methods.checkpoint import save_model_pt
from tests.tiny import hf_state_dict, write_hf_folder


def run(capsys, *argv):
    code = cli.main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
def model_pt(tmp_path, tiny_ltp_loaded):
    return save_model_pt(tiny_ltp_loaded, tmp_path / "model.pt")


def test_export_then_predict(capsys, tmp_path, model_pt):
    out = tmp_path / "out"
    code, stdout, _ = run(capsys, "export", "--method", "ltp", model_pt, "-o", out)
    assert code == 0 and "exported ltp" in stdout
    assert sorted(p.name for p in out.iterdir()) == ["model.onnx", "pruneport.json", "tokenizer.json"]
    manifest = json.loads((out / "pruneport.json").read_text())
    assert manifest["method"] == "ltp" and manifest["pruning"]["score_norm_length"] == 32
    assert manifest["outputs"] == ["logits", "tokens_per_layer"]
    assert manifest["backbone"]["num_hidden_layers"] == 3
    code, stdout, _ = run(capsys, "predict", out, "the movie was great")
    assert code == 0 and stdout.split("\t")[0] in ("class_0", "class_1")
    code, _, err = run(capsys, "export", model_pt, "-o", out)
    assert code == 2 and "--overwrite" in err


def test_unknown_method(capsys, tmp_path, model_pt):
    code, _, err = run(capsys, "export", "--method", "magic", model_pt, "-o", tmp_path / "out")
    assert code == 2 and "unknown method 'magic'" in err and "ltp" in err
    assert not (tmp_path / "out").exists()


def test_missing_file(capsys, tmp_path):
    code, _, err = run(capsys, "export", "--method", "ltp", tmp_path / "absent.pt", "-o", tmp_path / "out")
    assert code == 2 and err.startswith("error:") and "not found" in err
    assert not (tmp_path / "out").exists()


def test_wrong_keys(capsys, tmp_path, tiny_ltp_loaded):
    state = hf_state_dict(tiny_ltp_loaded.model, "bert")
    del state["bert.encoder.layer.2.output.dense.weight"]
    folder = write_hf_folder(tmp_path / "hf", dict(tiny_ltp_loaded.backbone), state)
    code, _, err = run(capsys, "export", "--method", "ltp", folder, "--final-threshold", "0.01", "-o", tmp_path / "o")
    assert code == 2 and "Missing keys: layer.2.output.dense.weight" in err
    assert not (tmp_path / "o").exists()


def test_failed_export_leaves_nothing_behind(capsys, tmp_path, model_pt, monkeypatch):
    from pruneport.export import onnx_export

    def broken(*_args, **_kwargs):
        raise ValueError("exporter failed half-way")

    monkeypatch.setattr(onnx_export, "export_onnx_model", broken)
    code, _, err = run(capsys, "export", model_pt, "-o", tmp_path / "out")
    assert code == 2 and "half-way" in err
    assert list(tmp_path.iterdir()) == [model_pt]  # no OUT, no temporary folder


def test_corrupt_onnx_file(capsys, tmp_path, tiny_ltp_export):
    import shutil

    broken = shutil.copytree(tiny_ltp_export, tmp_path / "broken")
    (broken / "model.onnx").write_bytes(b"corrupt")
    code, _, err = run(capsys, "predict", broken, "some text")
    assert code == 2 and "cannot load" in err


def test_empty_text(capsys, tiny_ltp_export):
    code, _, err = run(capsys, "predict", tiny_ltp_export, " ")
    assert code == 2 and "empty" in err

"""Bad values and bad inputs fail at once, in one line, and write nothing (issue 12, items 3 and 4).

- every count option is checked in one place (``pruneport.validate``): > 0 (or >= 0 where 0 has a documented
  meaning), on the command line and in ``pruneport.runtime.load``;
- method options given with a model.pt replace its stored values (and the manifest says so); options of another
  method are refused; nothing is silently ignored;
- ``--opset`` is one the exporter really produces, and the manifest records the graph's own opset;
- data specs that are neither a known set, an existing path nor ``hub:NAME`` fail without asking the network; data
  files that are empty, not UTF-8, binary or unparsable fail in one line;
- undecodable command-line text, a lone surrogate, a truncated safetensors file, an unwritable output location and
  an output that is a folder where a file belongs (``bench --json``) give one ``error:`` line, exit status 2.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pruneport import cli
from pruneport.methods.checkpoint import save_model_pt
from pruneport.validate import OptionError, non_negative_int, positive_int, positive_ints


def run(capsys, *argv):
    code = cli.main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def parse_error(capsys, *argv) -> str:
    """argparse's refusal: exit status 2 and its usage message."""
    assert cli.main([str(a) for a in argv]) == 2
    return capsys.readouterr().err


def one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    return lines[0]


@pytest.fixture
def model_pt(tmp_path, tiny_ltp_loaded):
    return save_model_pt(tiny_ltp_loaded, tmp_path / "model.pt")


# ---------------------------------------------------------------------------------------------------------------
# counts: one check for the CLI and the API
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("batch_size", [-1, 0, 2.5, True])
def test_load_refuses_a_batch_size_below_one(tiny_ltp_export, batch_size):
    from pruneport.runtime import load

    with pytest.raises(OptionError, match="batch_size must be a positive integer"):
        load(tiny_ltp_export, batch_size=batch_size)


def test_load_refuses_negative_threads_and_bucket_and_predict_a_zero_batch(tiny_ltp_export):
    from pruneport.runtime import load

    with pytest.raises(OptionError, match="threads must be an integer >= 0"):
        load(tiny_ltp_export, threads=-2)
    with pytest.raises(OptionError, match="bucket must be an integer >= 0"):
        load(tiny_ltp_export, bucket=-8)
    classifier = load(tiny_ltp_export, batch_size=2)
    with pytest.raises(OptionError, match="batch_size"):
        classifier.predict(["a great movie"], batch_size=0)
    assert len(classifier.predict(["a great movie", "a dull plot", "the end"])) == 3


def test_tokenized_batches_refuses_a_negative_batch_size(tiny_ltp_export):
    from pruneport.calibration.batches import tokenized_batches
    from pruneport.calibration.data import LabeledTexts

    texts = LabeledTexts(["a great movie"], [1], "test")
    with pytest.raises(OptionError, match="batch_size"):
        tokenized_batches(tiny_ltp_export, texts, batch_size=-1)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["calibrate", "F", "-o", "O", "--data", "sst2", "--target-flops", "0.5", "--batch-size", "-1"], "positive"),
        (["calibrate", "F", "-o", "O", "--data", "sst2", "--target-flops", "0.5", "--batch-size", "0"], "positive"),
        (["calibrate", "F", "-o", "O", "--data", "sst2", "--target-flops", "-0.5"], "> 0"),
        (["report", "F", "-o", "O", "--data", "sst2", "--batch-size", "-1"], "positive"),
        (["report", "F", "-o", "O", "--data", "sst2", "--limit", "0"], "positive"),
        (["quantize", "F", "-o", "O", "--data", "sst2", "--limit", "0"], "positive"),
        (["bench", "F", "--data", "sst2", "--repeats", "0"], "positive"),
        (["bench", "F", "--data", "sst2", "--n", "-3"], "positive"),
        (["bench", "F", "--data", "sst2", "--batch-sizes", "1,0"], "positive"),
        (["bench", "F", "--data", "sst2", "--warmup", "-1"], ">= 0"),
        (["bench", "F", "--data", "sst2", "--threads", "-1"], ">= 0"),
        (["predict", "F", "text", "--batch-size", "0"], "positive"),
        (["export", "M", "-o", "O", "--score-norm-length", "0"], "positive"),
        (["export", "M", "-o", "O", "--bucket", "-4"], ">= 0"),
        (["export", "M", "-o", "O", "--max-length", "0"], "positive"),
        (["export", "M", "-o", "O", "--prune-upto", "0"], "positive"),
        (["train", "finetune", "--data", "sst2", "-o", "O", "--steps", "0"], "positive"),
        (["train", "finetune", "--data", "sst2", "-o", "O", "--batch-size", "-32"], "positive"),
        (["train", "ltp", "--from", "M", "--data", "sst2", "-o", "O", "--threads", "0"], "positive"),
        (["train", "ltp", "--from", "M", "--data", "sst2", "-o", "O", "--hard-steps", "-1"], ">= 0"),
        (["demo", "--train-size", "0"], "positive"),
    ],
)
def test_count_options_are_refused_before_anything_runs(capsys, argv, message):
    err = parse_error(capsys, *argv)
    assert message in err.splitlines()[-1] and "Traceback" not in err


def test_every_integer_option_is_validated():
    """No count option takes a bare ``int`` (which lets -1 and 0 through): only seeds and the opset (checked by the
    exporter's own range) do."""
    bare = []
    for parser in cli._parsers(cli.build_parser()):
        for action in parser._actions:
            if action.type in (int, float) and action.dest not in ("seed", "opset"):
                bare.append(f"{parser.prog} {'/'.join(action.option_strings)}")
    assert bare == []


def test_argparse_types():
    assert positive_int("3") == 3 and non_negative_int("0") == 0 and positive_ints("1, 32") == [1, 32]
    for parse, text in [(positive_int, "0"), (positive_int, "x"), (non_negative_int, "-1"), (positive_ints, "")]:
        with pytest.raises(argparse.ArgumentTypeError):
            parse(text)


# ---------------------------------------------------------------------------------------------------------------
# method options with a model.pt: applied (and recorded), or refused; never ignored
# ---------------------------------------------------------------------------------------------------------------


def test_threshold_options_replace_the_model_pt_values(model_pt):
    from pruneport.methods import load_checkpoint

    loaded = load_checkpoint(model_pt, thresholds=[0.0, 0.5, 0.5])
    assert loaded.pruning == {"thresholds": [0.0, 0.5, 0.5], "score_norm_length": 32}
    assert loaded.model.pruner.params.thresholds == (0.0, 0.5, 0.5)
    assert any("replace the checkpoint's" in n for n in loaded.notes)

    rising = load_checkpoint(model_pt, final_threshold=0.09, score_norm_length=16)
    assert rising.pruning["thresholds"] == pytest.approx([0.0, 0.03, 0.06])
    assert rising.pruning["score_norm_length"] == 16 and len(rising.notes) == 2

    norm_only = load_checkpoint(model_pt, score_norm_length=64)
    assert norm_only.pruning == {"thresholds": [0.0, 0.02, 0.03], "score_norm_length": 64}

    assert load_checkpoint(model_pt).notes == []  # nothing given, nothing replaced


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"score_norm_length": 0}, "--score-norm-length must be a positive integer"),
        ({"thresholds": [0.1]}, "--thresholds needs 3 values"),
        ({"thresholds": [0.0, 0.1, 0.1], "final_threshold": 0.1}, "not both"),
        ({"eta": [1.0, 1.0, 1.0]}, "--eta applies to adapler models"),
        ({"keep_ratio": 0.5}, "--keep-ratio applies to pyramid models"),
        ({"transkimmer_semantics": "master"}, "--transkimmer-semantics applies to transkimmer models"),
        ({"kcenter_m": "2", "distance": "cosine"}, "--kcenter-m, --distance apply to pyramid models"),
    ],
)
def test_options_that_cannot_apply_are_refused(model_pt, options, message):
    from pruneport.methods import load_checkpoint

    with pytest.raises(ValueError, match=message):
        load_checkpoint(model_pt, **options)


def test_options_of_another_method_are_refused_for_folders_too(tmp_path, tiny_ltp_loaded):
    from pruneport.methods import load_checkpoint
    from tests.tiny import hf_state_dict, write_hf_folder

    folder = write_hf_folder(
        tmp_path / "hf", dict(tiny_ltp_loaded.backbone), hf_state_dict(tiny_ltp_loaded.model, "bert")
    )
    with pytest.raises(ValueError, match="--eta applies to adapler models"):
        load_checkpoint(folder, "ltp", final_threshold=0.01, eta=[1.0, 1.0, 1.0])


def test_other_methods_apply_their_options_to_stored_parameters():
    from pruneport.methods.adapler import model as adapler
    from pruneport.methods.pyramid import model as pyramid
    from pruneport.methods.transkimmer import model as transkimmer

    stored = {"keep_ratio": 0.5, "prune_upto": 2, "m": 1, "distance": "euclidean"}
    new, notes = pyramid.override(stored, {"keep_ratio": 0.3, "kcenter_m": "k-1"}, 3)
    assert new == {"keep_ratio": 0.3, "prune_upto": 2, "m": "k-1", "distance": "euclidean"} and len(notes) == 2
    with pytest.raises(ValueError, match="keep_ratio"):
        pyramid.override(stored, {"keep_ratio": 1.5}, 3)

    new, notes = adapler.override({"eta": [0.5, 0.8, 1.0], "cls_scale": [1.0, 0.5, 0.5]}, {"eta": [1, 2, 3]}, 3)
    assert new == {"eta": [1.0, 2.0, 3.0], "cls_scale": [1.0, 0.5, 0.5]} and len(notes) == 1
    with pytest.raises(ValueError, match="--eta needs 3 values"):
        adapler.override({"eta": [0.5, 0.8, 1.0]}, {"eta": [1.0]}, 3)

    new, notes = transkimmer.override(
        {"semantics": "removal", "margin": [0.0, 0.1, 0.2]}, {"transkimmer_semantics": "master"}, 3
    )
    assert new == {"semantics": "master", "margin": [0.0, 0.1, 0.2]} and len(notes) == 1


def test_export_applies_thresholds_and_opset_and_records_both(capsys, tmp_path, model_pt):
    """One export: the options given with model.pt reach the graph (thresholds 0.9 keep CLS alone after layer 1),
    the manifest records them with a note, and its opset is the graph's."""
    import onnx

    from pruneport.runtime import load

    out = tmp_path / "out"
    argv = ["export", model_pt, "-o", out, "--thresholds", "0,0.9,0.9", "--score-norm-length", "16", "--opset", "20"]
    code, stdout, err = run(capsys, *argv)
    assert code == 0, err
    manifest = json.loads((out / "pruneport.json").read_text())
    assert manifest["pruning"] == {"thresholds": [0.0, 0.9, 0.9], "score_norm_length": 16}
    assert any("replace the checkpoint's" in n for n in manifest["extra"]["notes"])
    graph = onnx.load(str(out / "model.onnx"))
    opsets = {o.domain: o.version for o in graph.opset_import}
    assert manifest["opset"] == opsets.get("", opsets.get("ai.onnx")) == 20
    tokens = load(out).predict(["the movie was great fun"]).tokens_per_layer[0].tolist()
    assert tokens[1] > 1 and tokens[2] == 1  # pruned to CLS alone by layer 1's threshold 0.9


@pytest.mark.parametrize("opset", ["5", "17", "26", "99"])
def test_unsupported_opsets_are_refused_before_the_export(capsys, tmp_path, model_pt, opset):
    code, _, err = run(capsys, "export", model_pt, "-o", tmp_path / "out", "--opset", opset)
    line = one_error_line(err)
    assert code == 2 and f"--opset {opset} is not supported" in line and "18..25" in line
    assert not (tmp_path / "out").exists()


def test_score_norm_length_zero_is_refused_on_the_command_line(capsys, tmp_path, model_pt):
    err = parse_error(capsys, "export", model_pt, "-o", tmp_path / "out", "--score-norm-length", "0")
    assert "--score-norm-length: must be a positive integer" in err
    code, _, err = run(capsys, "export", model_pt, "-o", tmp_path / "out", "--eta", "1,1,1")
    assert code == 2 and "--eta applies to adapler models" in one_error_line(err)
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------------------------------------------------------
# data specs and data files
# ---------------------------------------------------------------------------------------------------------------


@pytest.fixture
def no_hub(monkeypatch):
    """Fail the test if anything asks ``datasets`` for a hub data set (local csv/json readers are allowed)."""
    import datasets

    real = datasets.load_dataset

    def guarded(path, *args, **kwargs):
        if path not in ("csv", "json"):
            raise AssertionError(f"network data set requested: {path!r}")
        return real(path, *args, **kwargs)

    monkeypatch.setattr(datasets, "load_dataset", guarded)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("sst", "unknown data 'sst' (did you mean 'sst2'?)"),
        ("glue/sst2", "data file or folder not found: glue/sst2"),
        ("hub:", "write a hub data set as hub:NAME"),
    ],
)
def test_unknown_data_specs_fail_at_once_without_network(no_hub, spec, message):
    from pruneport.calibration.data import DataError, load_texts

    with pytest.raises(DataError, match="hub:NAME") as exc:
        load_texts(spec, "train")
    assert message in str(exc.value)


def test_a_missing_data_folder_is_not_found(no_hub, tmp_path):
    from pruneport.calibration.data import load_texts

    with pytest.raises(FileNotFoundError, match="not found"):
        load_texts(str(tmp_path / "missing") + "/", "train")


def test_hub_specs_are_read_from_the_hub_and_their_failures_are_one_line(monkeypatch):
    import datasets

    from pruneport.calibration.data import DataError, load_texts

    calls = []

    def offline(name, config=None, split=None):
        calls.append((name, config, split))
        raise ConnectionError("Couldn't reach 'glue' on the Hub (LocalEntryNotFoundError)\nsecond line")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(DataError) as exc:
        load_texts("hub:glue/sst2", "dev")
    assert calls == [("glue", "sst2", "validation")]
    assert "\n" not in str(exc.value) and "ConnectionError: Couldn't reach" in str(exc.value)


BAD_FILES = {
    "empty.tsv": (b"", "is empty"),
    "blank.json": (b"  \n\n", "is empty"),
    "latin1.tsv": ("sentence\tlabel\ncaf\u00e9 cr\u00e8me\t1\n".encode("latin-1"), "is not UTF-8 text (byte 0xe9"),
    "random.tsv": (bytes(range(128, 256)) * 20, "is not UTF-8 text"),
    "random.json": (bytes(range(255, 127, -1)) * 20, "is not UTF-8 text"),
    "nul.csv": (b"sentence,label\na\x00b,1\n", "NUL bytes"),
    "header.tsv": (b"sentence\tlabel\n", "holds no examples"),
    "broken.json": (b'[{"sentence": "a", "label": 1', "cannot read"),
    "quote.csv": (b'sentence,label\n"a great movie,1\n', "cannot read"),
}


@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_unreadable_data_files_are_one_line_errors(no_hub, tmp_path, name):
    from pruneport.calibration.data import DataError, load_texts

    content, message = BAD_FILES[name]
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(DataError) as exc:
        load_texts(str(path), "train")
    assert message in str(exc.value) and str(path) in str(exc.value) and "\n" not in str(exc.value)


@pytest.mark.parametrize("name", ["random.tsv", "header.tsv", "broken.json"])
def test_calibrate_with_bad_data_writes_nothing(no_hub, capsys, tmp_path, tiny_ltp_export, name):
    content, message = BAD_FILES[name]
    path = tmp_path / name
    path.write_bytes(content)
    out = tmp_path / "out"
    code, _, err = run(capsys, "calibrate", tiny_ltp_export, "-o", out, "--data", path, "--target-flops", "0.5")
    assert code == 2 and message in one_error_line(err)
    assert not out.exists()


def test_data_typo_on_the_command_line(no_hub, capsys, tmp_path, tiny_ltp_export):
    out = tmp_path / "out"
    code, _, err = run(capsys, "calibrate", tiny_ltp_export, "-o", out, "--data", "sst", "--target-flops", "0.5")
    assert code == 2 and "unknown data 'sst'" in one_error_line(err)
    assert not out.exists()


def test_good_local_data_still_reads(no_hub, tmp_path):
    from pruneport.calibration.data import load_texts

    path = tmp_path / "train.tsv"
    path.write_text('sentence\tlabel\na "great" movie\t1\na dull plot\t0\n', encoding="utf-8")
    data = load_texts(str(tmp_path), "train")
    assert data.texts == ['a "great" movie', "a dull plot"] and data.labels == [1, 0]


# ---------------------------------------------------------------------------------------------------------------
# text that is not valid Unicode
# ---------------------------------------------------------------------------------------------------------------


def test_a_lone_surrogate_is_a_clear_value_error(tiny_ltp_export):
    from pruneport.runtime import InvalidTextError, load

    classifier = load(tiny_ltp_export)
    with pytest.raises(InvalidTextError, match="text 1 is not valid Unicode: lone surrogate"):
        classifier.predict(["fine", "broken \ud800 text"])
    with pytest.raises(ValueError, match="text pair 0 is not valid Unicode"):
        classifier.predict([("premise", "hypo\udcffthesis")])


def test_undecodable_command_line_bytes(capsys, tiny_ltp_export):
    code, out, err = run(capsys, "predict", tiny_ltp_export, "a movie", "\udcff\udcfe bad")
    assert code == 2 and out == ""
    line = one_error_line(err)
    assert "text argument 2 is not valid Unicode" in line and "byte 0xff" in line


def test_undecodable_command_line_bytes_in_a_real_process(tiny_ltp_export):
    """The bytes reach Python as surrogateescape'd argv, as from a shell with non-UTF-8 input."""
    argv = [sys.executable, "-m", "pruneport.cli", "predict", os.fsencode(tiny_ltp_export), b"\xff\xfe bad"]
    done = subprocess.run(argv, capture_output=True, timeout=300, env={**os.environ, "PYTHONUTF8": "1"})
    assert done.returncode == 2, done.stderr
    assert done.stderr.decode().startswith("error: text argument 1 is not valid Unicode")
    assert b"Traceback" not in done.stderr and done.stdout == b""


# ---------------------------------------------------------------------------------------------------------------
# files that cannot be read or written
# ---------------------------------------------------------------------------------------------------------------


def test_truncated_safetensors(capsys, tmp_path, tiny_ltp_loaded):
    from safetensors.torch import save_file

    from tests.tiny import hf_state_dict, write_hf_folder

    state = hf_state_dict(tiny_ltp_loaded.model, "bert")
    folder = write_hf_folder(tmp_path / "hf", dict(tiny_ltp_loaded.backbone), state)
    (folder / "pytorch_model.bin").unlink()
    save_file({k: v.contiguous() for k, v in state.items()}, str(folder / "model.safetensors"))
    data = (folder / "model.safetensors").read_bytes()
    (folder / "model.safetensors").write_bytes(data[: len(data) // 2])
    out = tmp_path / "out"
    code, _, err = run(capsys, "export", "--method", "ltp", folder, "--final-threshold", "0.01", "-o", out)
    line = one_error_line(err)
    assert code == 2 and "model.safetensors" in line and "truncated or corrupt" in line
    assert not out.exists()


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="needs a user whose permissions are enforced")
def test_read_only_output_location(capsys, tmp_path, model_pt):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        code, _, err = run(capsys, "export", model_pt, "-o", locked / "out")
        assert code == 2 and "ermission denied" in one_error_line(err)
        assert list(locked.iterdir()) == []
    finally:
        locked.chmod(0o700)


def test_unwritable_output_location_is_refused_before_the_export(capsys, tmp_path, model_pt, monkeypatch):
    """As root every folder is writable, so the permission check is simulated."""
    import pruneport.validate

    monkeypatch.setattr(pruneport.validate.os, "access", lambda path, mode: Path(path) != tmp_path)
    code, _, err = run(capsys, "export", model_pt, "-o", tmp_path / "out")
    assert code == 2 and f"cannot write there (permission denied): {tmp_path}" in one_error_line(err)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt"]


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (OSError(errno.EROFS, "Read-only file system", "/mnt/ro/.out.pruneport-1-abc"), "cannot write in /mnt/ro"),
        (PermissionError(errno.EACCES, "Permission denied", "/srv/models/out"), "Permission denied: /srv/models/out"),
        (OSError(errno.ENOSPC, "No space left on device", "/tmp/x/model.onnx"), "No space left on device"),
    ],
)
def test_environment_os_errors_are_one_line(capsys, monkeypatch, error, expected):
    def fail(_args):
        raise error

    monkeypatch.setitem(cli.COMMANDS, "predict", fail)
    code, _, err = run(capsys, "predict", "folder", "text")
    assert code == 2 and expected in one_error_line(err)


def test_bench_json_folder_fails_before_the_benchmark(capsys, tmp_path, tiny_ltp_export, monkeypatch):
    from pruneport.report import bench

    def never(*_args, **_kwargs):
        raise AssertionError("the benchmark ran")

    monkeypatch.setattr(bench, "run_bench", never)
    code, _, err = run(capsys, "bench", tiny_ltp_export, "--data", "sst2", "--json", tmp_path)
    assert code == 2 and "--json" in one_error_line(err) and "is a folder" in err
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code, _, err = run(capsys, "bench", tiny_ltp_export, "--data", "sst2", "--json", blocker / "r.json")
    assert code == 2 and "is a file, not a folder" in one_error_line(err)
    code, _, err = run(capsys, "bench", tiny_ltp_export, "--data", "sst2", "--work", blocker)
    assert code == 2 and "--work" in one_error_line(err)


@pytest.mark.parametrize("value", ["-0.01,0.02,0.03", "nan", "0.1,inf", ","])
@pytest.mark.parametrize("flag", ["--thresholds", "--eta"])
def test_negative_or_non_finite_thresholds_are_refused(capsys, tmp_path, flag, value):
    out = tmp_path / "out"
    code, _, err = run(capsys, "export", "--method", "ltp", tmp_path / "model.pt", f"{flag}={value}", "-o", out)
    assert code == 2 and f"argument {flag}" in err and ">= 0" in err
    assert not out.exists()

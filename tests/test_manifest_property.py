"""Property: whatever pruneport.json holds (wrong types, missing keys, hostile paths, big numbers), loading the folder
either works or raises pruneport's own error in one line, and never reads a file outside the folder (issue 12).

Hostile names point at ``decoy/``, a valid export beside the folder: following one would *succeed*, so a load that
works on a manifest naming the decoy, or any file opened there, fails the test.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pruneport.errors import USER_ERRORS
from pruneport.runtime import load

FILE_KEYS = ("model_file", "tokenizer_file")
INT_KEYS = ("max_length", "pad_token_id", "opset", "format_version")
BACKBONE_INT_KEYS = ("num_hidden_layers", "hidden_size", "max_position_embeddings", "vocab_size", "pad_token_id")

_OPENED: list[str] = []
_RECORDING = [False]


def _audit(event: str, args: tuple) -> None:
    if _RECORDING[0] and event == "open" and isinstance(args[0], (str, bytes, os.PathLike)):
        _OPENED.append(os.fsdecode(args[0]))


sys.addaudithook(_audit)  # audit hooks cannot be removed; it records only while a test example runs


@pytest.fixture(scope="module")
def sandbox(tiny_ltp_export, tmp_path_factory) -> dict[str, Path]:
    """``root/export`` (the folder whose manifest is rewritten), ``root/decoy`` (a valid export outside it), and
    symbolic links from the folder to the decoy."""
    root = tmp_path_factory.mktemp("property")
    folder = shutil.copytree(tiny_ltp_export, root / "export")
    decoy = shutil.copytree(tiny_ltp_export, root / "decoy")
    (folder / "sub").mkdir()
    shutil.copy(folder / "model.onnx", folder / "sub" / "model.onnx")
    (folder / "escape.onnx").symlink_to(decoy / "model.onnx")
    (folder / "escape.json").symlink_to(decoy / "tokenizer.json")
    (folder / "escape_dir").symlink_to(decoy, target_is_directory=True)
    (folder / "loop.onnx").symlink_to(folder / "loop.onnx")
    load(folder).predict("warm up")  # engines imported before the audit hook records opens
    return {"folder": folder, "decoy": decoy, "valid": json.loads((folder / "pruneport.json").read_text())}


def hostile(decoy: Path) -> list[str]:
    return [
        str(decoy / "model.onnx"),
        str(decoy / "tokenizer.json"),
        "../decoy/model.onnx",
        "../decoy/tokenizer.json",
        "sub/../../decoy/model.onnx",
        "escape.onnx",
        "escape.json",
        "escape_dir/model.onnx",
        "escape_dir/tokenizer.json",
        "..\\decoy\\model.onnx",
        "C:/decoy/model.onnx",
        "/etc/hostname",
        "..",
        ".",
        "",
        "loop.onnx",
        "sub/..",
    ]


BENIGN = ["model.onnx", "tokenizer.json", "sub/model.onnx", "missing.onnx", "pruneport.json", "sub", "split/s.onnx"]
JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)
BIG = st.sampled_from([0, -1, 1, 2, 3, 31, 32, 33, 64, 2**31, 2**63, 10**30]) | st.integers()


def file_names(data: object) -> list[object]:
    """What the generated manifest puts where a file name goes (model, tokenizer, split stages, IR)."""
    if not isinstance(data, dict):
        return []
    names = [data.get(key) for key in FILE_KEYS]
    extra = data.get("extra") if isinstance(data.get("extra"), dict) else {}
    split = extra.get("split") if isinstance(extra.get("split"), dict) else {}
    stages = split.get("stages") if isinstance(split.get("stages"), list) else []
    names += [stage.get("file") for stage in stages if isinstance(stage, dict)]
    ir = extra.get("openvino") if isinstance(extra.get("openvino"), dict) else {}
    return [*names, ir.get("model_file")]


@st.composite
def manifests(draw, decoy: Path, valid: dict) -> object:
    """The valid manifest with one to four random mutations, or (sometimes) any JSON value."""
    if draw(st.integers(0, 19)) == 0:
        return draw(JSON)  # not an object at all
    data = json.loads(json.dumps(valid))
    names = st.sampled_from(hostile(decoy) + BENIGN)
    for _ in range(draw(st.integers(1, 4))):
        action = draw(st.sampled_from(["file", "int", "backbone", "delete", "any", "split", "openvino", "bucket"]))
        extra = data.get("extra") if isinstance(data.get("extra"), dict) else None
        if action == "file":
            data[draw(st.sampled_from(FILE_KEYS))] = draw(names)
        elif action == "int":
            data[draw(st.sampled_from(INT_KEYS))] = draw(BIG | JSON)
        elif action == "backbone" and isinstance(data.get("backbone"), dict):
            data["backbone"][draw(st.sampled_from(BACKBONE_INT_KEYS))] = draw(BIG | JSON)
        elif action == "delete" and data:
            data.pop(draw(st.sampled_from(sorted(data))), None)
        elif action == "any":
            data[draw(st.sampled_from(sorted(valid)))] = draw(JSON)
        elif action == "split" and extra is not None:
            layers = draw(st.lists(BIG, max_size=3))
            stage = {"file": draw(names), "start": -1, "end": draw(st.none() | BIG), "layers": layers}
            extra["split"] = {"stages": [{**stage, "inputs": ["input_ids", "attention_mask", "token_type_ids"]}]}
        elif action == "openvino" and extra is not None:
            extra["openvino"] = {"model_file": draw(names)}
        elif action == "bucket" and extra is not None:
            extra["bucket"] = draw(BIG | JSON)
    return data


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(st.data())
def test_any_manifest_loads_or_fails_in_one_line_without_reading_outside(sandbox, data):
    folder, decoy = sandbox["folder"], sandbox["decoy"]
    manifest = data.draw(manifests(decoy, sandbox["valid"]))
    injected = any(name in hostile(decoy) for name in file_names(manifest) if isinstance(name, str))
    backend = data.draw(st.sampled_from(["onnxruntime", "openvino"]))
    (folder / "pruneport.json").write_text(json.dumps(manifest), encoding="utf-8")
    _OPENED.clear()
    _RECORDING[0] = True
    try:
        classifier = load(folder, backend=backend)
    except USER_ERRORS as err:
        message = str(err)
        assert message.strip() and "\n" not in message, repr(message)
    else:
        assert not injected, f"loaded a manifest naming a file outside the folder: {manifest}"
        assert classifier.manifest.model_file  # a working load gives a usable classifier
    finally:
        _RECORDING[0] = False
    real_decoy = os.path.realpath(decoy)
    outside = [p for p in _OPENED if os.path.realpath(p).startswith(real_decoy + os.sep)]
    assert not outside, f"read outside the folder: {outside}"

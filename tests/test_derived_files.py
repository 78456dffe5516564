"""One rule for every writer (issue 12, item 3): files derived from the model file (split stages, OpenVINO IR) are
either regenerated or dropped together with their manifest entries.

Every (writer x folder kind) pair either refuses with pruneport's own error or writes a folder whose manifest names
only files that exist and whose backends (ONNX Runtime, OpenVINO, single graph and split stages) give the same
labels and kept tokens.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from pruneport.errors import USER_ERRORS
from pruneport.export.manifest import Manifest
from pruneport.runtime import load
from tests.quant_fixtures import random_texts

pytest.importorskip("openvino")

TEXTS = [" ".join(t.split()[:20]) for t in random_texts(12, seed=11, min_words=6).texts]
KINDS = ["plain", "split", "converted", "int8_ort", "int8_ov", "optimized"]
WRITERS = ["calibrate", "convert", "quantize", "optimize"]
# pairs that must be written (the others may refuse: e.g. an INT8 folder cannot be quantized again)
MUST_WRITE = {
    ("calibrate", "plain"),
    ("calibrate", "split"),
    ("calibrate", "converted"),
    ("calibrate", "int8_ort"),
    ("calibrate", "int8_ov"),
    ("convert", "split"),
    ("convert", "converted"),
    ("quantize", "split"),
    ("quantize", "converted"),
    ("optimize", "converted"),
}


@pytest.fixture(scope="module")
def calib(kinds):
    from pruneport.calibration.batches import tokenized_batches

    return tokenized_batches(kinds["plain"], random_texts(32, seed=0), batch_size=16)


@pytest.fixture(scope="module")
def kinds(tiny_ltp_loaded, tmp_path_factory) -> dict[str, Path]:
    """One folder of every kind the writers meet."""
    from pruneport.calibration.batches import tokenized_batches
    from pruneport.calibration.quantize import QuantizeOptions, quantize_folder
    from pruneport.export.onnx_export import write_export_folder
    from pruneport.export.openvino import convert_to_openvino
    from pruneport.passes.pipeline import optimize_folder

    root = tmp_path_factory.mktemp("kinds")
    plain = write_export_folder(tiny_ltp_loaded, root / "plain")
    split = write_export_folder(tiny_ltp_loaded, root / "split", split=True)
    data = tokenized_batches(plain, random_texts(32, seed=0), batch_size=16)
    converted = convert_to_openvino(split, root / "converted")
    return {
        "plain": plain,
        "split": split,
        "converted": converted,
        "int8_ort": quantize_folder(plain, data, root / "int8_ort"),
        "int8_ov": quantize_folder(plain, data, root / "int8_ov", QuantizeOptions(backend="openvino")),
        "optimized": optimize_folder(converted, root / "optimized")[0],
    }


def writer(name: str, calib) -> Callable[[Path, Path], Path]:
    from pruneport.calibration.calibrate import write_thresholds
    from pruneport.calibration.quantize import quantize_folder
    from pruneport.calibration.runner import FolderRunner
    from pruneport.export.openvino import convert_to_openvino
    from pruneport.passes.pipeline import optimize_folder

    def calibrate(src: Path, out: Path) -> Path:
        runner = FolderRunner(src)
        values = runner.scaled_thresholds(3.0, dict(runner.threshold_defaults))  # prunes more: tokens change
        return write_thresholds(src, out, values, {"step": "calibrate"})

    return {
        "calibrate": calibrate,
        "convert": convert_to_openvino,
        "quantize": lambda src, out: quantize_folder(src, calib, out),
        "optimize": lambda src, out: optimize_folder(src, out)[0],
    }[name]


def runs(folder: Path) -> dict[str, tuple[list[str], np.ndarray]]:
    """Labels and kept tokens of every way the runtime can run ``folder``."""
    manifest = Manifest.read(folder)
    backends = [manifest.extra["backend"]] if manifest.precision == "int8" else ["onnxruntime", "openvino"]
    backends = [b for b in backends if b != "onnxruntime" or manifest.model_file.endswith(".onnx")]
    results = {}
    for backend in backends:
        for split in [False, True] if manifest.extra.get("split") else [False]:
            got = load(folder, backend=backend, split=split).predict(TEXTS)
            results[f"{backend}{' split' if split else ''}"] = (got.labels, got.tokens_per_layer)
    return results


def named_files(manifest: Manifest) -> list[str]:
    """Every file the manifest names: model, tokenizer, split stages, OpenVINO IR (and its weights)."""
    names = [manifest.model_file, manifest.tokenizer_file]
    names += [stage["file"] for stage in (manifest.extra.get("split") or {}).get("stages", [])]
    ir = manifest.extra.get("openvino") or {}
    names += [ir["model_file"], *ir.get("stages", [])] if ir else []
    return names + [name[: -len(".xml")] + ".bin" for name in names if name.endswith(".xml")]


def assert_consistent(folder: Path) -> dict[str, tuple[list[str], np.ndarray]]:
    manifest = Manifest.read(folder)
    missing = [name for name in named_files(manifest) if not (folder / name).is_file()]
    assert not missing, f"{folder.name}: the manifest names missing files {missing}"
    for backend in ("onnxruntime", "openvino"):  # the typed view every engine reads names the same files
        single, stages = manifest.model_file_for(backend)
        assert {single, *stages} <= set(named_files(manifest))
    assert [s.file for s in manifest.split_stages] == [
        s["file"] for s in manifest.extra.get("split", {}).get("stages", [])
    ]
    assert all(h.get("step") and h.get("pruneport") for h in manifest.history), "a writer did not record its step"
    results = runs(folder)
    (first, (labels, tokens)), *others = results.items()
    for name, (other_labels, other_tokens) in others:
        assert other_labels == labels, f"{folder.name}: {name} labels differ from {first}"
        np.testing.assert_array_equal(other_tokens, tokens, err_msg=f"{folder.name}: {name} vs {first}")
    return results


@pytest.mark.parametrize("kind", KINDS)
def test_every_folder_kind_is_consistent(kinds, kind):
    assert_consistent(kinds[kind])


@pytest.mark.parametrize("name", WRITERS)
def test_every_writer_on_every_folder_kind_keeps_the_folder_consistent(kinds, calib, tmp_path, name):
    write = writer(name, calib)
    for kind in KINDS:
        out = tmp_path / f"{name}-{kind}"
        try:
            write(kinds[kind], out)
        except USER_ERRORS as err:
            assert (name, kind) not in MUST_WRITE, f"{name} refused {kind}: {err}"
            assert "\n" not in str(err) and not out.exists()
            continue
        assert_consistent(out)
        manifest, source = Manifest.read(out), Manifest.read(kinds[kind])
        assert manifest.history[:-1] == source.history and manifest.history[-1]["step"] == name
        if name != "convert":  # split stages hold the old graph: dropped with their entry, never left stale
            assert "split" not in manifest.extra and not (out / "split").exists()
        if name == "calibrate" and source.extra.get("openvino"):
            assert manifest.extra["openvino"]["model_file"] == "model.xml"  # regenerated, not dropped
            before = runs(kinds[kind])["openvino"][1]
            assert not np.array_equal(runs(out)["openvino"][1], before)  # the IR carries the new thresholds

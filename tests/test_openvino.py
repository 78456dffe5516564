"""OpenVINO f32 against ONNX Runtime: single graph with bucketing off and on, and the loop-split export.

Every method is checked: logits within 1e-4, identical tokens_per_layer, at batch 1 and in mixed-length batches.
Each method's exports (single, bucketed and split ONNX plus two OpenVINO conversions) cost about 60-100 s of CPU, so
each method's checks are one test item: pytest-xdist then makes each method's exports once, on one worker.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pruneport.export.manifest import Manifest
from pruneport.methods import get_method, method_names
from pruneport.methods.backbone import BackboneConfig
from pruneport.methods.checkpoint import LoadedModel
from tests.parity import _stack
from tests.tiny import peaky_init, random_batch, tiny_hf_config, tiny_tokenizer_json

ov = pytest.importorskip("openvino")

ATOL = 1e-4
BUCKET = 8

METHODS = method_names()  # each method's tiny model from its spec (LTP's prunes 20-70% of tokens)


def _loaded(method: str) -> LoadedModel:
    spec = get_method(method)
    pruning, layers = spec.tiny.pruning, spec.tiny.layers
    hf = tiny_hf_config("bert", layers=layers)
    cfg = BackboneConfig.from_hf_dict(hf)
    model = peaky_init(spec.build(cfg, pruning), seed=layers).eval()
    return LoadedModel(model, method, hf, pruning, tiny_tokenizer_json(), ["class_0", "class_1"], cfg.max_tokens)


def export_folders(method: str, root: Path) -> dict[str, Path]:
    """ONNX exports (single graph + split, and single graph bucketed) and their OpenVINO conversions."""
    from pruneport.export.onnx_export import write_export_folder
    from pruneport.export.openvino import convert_to_openvino
    from pruneport.export.split import add_split_export

    loaded = _loaded(method)
    plain = write_export_folder(loaded, root / "plain")
    add_split_export(loaded.model, plain)
    loaded.model.bucket = BUCKET
    bucketed = write_export_folder(loaded, root / "bucketed", extra={"bucket": BUCKET})
    loaded.model.bucket = 0
    return {
        "plain": plain,
        "bucketed": bucketed,
        "plain_ov": convert_to_openvino(plain, root / "plain_ov"),
        "bucketed_ov": convert_to_openvino(bucketed, root / "bucketed_ov"),
    }


_EXPORTS: dict[str, dict[str, Path]] = {}


def cached_exports(method: str, tmp_path_factory) -> dict[str, Path]:
    if method not in _EXPORTS:
        _EXPORTS[method] = export_folders(method, tmp_path_factory.mktemp(method))
    return _EXPORTS[method]


def inputs(cfg: dict, seed: int = 0, n: int = 24, batch: int = 6) -> list[dict[str, np.ndarray]]:
    """Batch-1 inputs of lengths 1..max and mixed-length batches of them."""
    bc = BackboneConfig.from_hf_dict(cfg)
    rng = np.random.default_rng(seed)
    lengths = [1, 2, bc.max_tokens, *rng.integers(1, bc.max_tokens + 1, n - 3).tolist()]
    singles = [random_batch(rng, [k], bc.vocab_size, bc.pad_token_id, bc.uses_token_type_ids) for k in lengths]
    batches = [_stack(singles[i : i + batch], max(lengths[i : i + batch]), bc.pad_token_id) for i in range(0, n, batch)]
    return singles + batches


def assert_parity(ref: dict[str, np.ndarray], got: dict[str, np.ndarray], what: str) -> None:
    np.testing.assert_array_equal(got["tokens_per_layer"], ref["tokens_per_layer"], err_msg=what)
    np.testing.assert_allclose(got["logits"], ref["logits"], atol=ATOL, rtol=0, err_msg=what)


def _session(folder: Path, backend: str, split: bool, bucket: int = 0, **options):
    from pruneport.runtime.split import open_export

    session, _ = open_export(folder, Manifest.read(folder), backend, "cpu", split=split, bucket=bucket, **options)
    return session


VARIANTS = {
    # name: (folder, backend, split, host bucket)
    "ov-single": ("plain_ov", "openvino", False, 0),
    "ov-single-bucketed": ("bucketed_ov", "openvino", False, 0),
    "ort-single-bucketed": ("bucketed", "onnxruntime", False, 0),
    "ort-split": ("plain", "onnxruntime", True, 0),
    "ort-split-bucketed": ("plain", "onnxruntime", True, BUCKET),
    "ov-split": ("plain_ov", "openvino", True, 0),
    "ov-split-bucketed": ("plain_ov", "openvino", True, BUCKET),
    "ov-onnx-single": ("plain", "openvino", False, 0),  # OpenVINO reading the ONNX file directly
}


@pytest.mark.parametrize("method", list(METHODS))
def test_openvino_bucketed_and_split_exports_match_onnxruntime(method, tmp_path_factory):
    """Every runtime variant gives ORT's single-graph results input by input; padding inputs up to a bucket changes
    nothing; the manifest records the conversion and the split."""
    folders = cached_exports(method, tmp_path_factory)
    check_variants_match_onnxruntime_single_graph(folders)
    check_input_length_bucketing_keeps_results(folders)
    check_manifest_records_openvino_and_split(folders)


def check_variants_match_onnxruntime_single_graph(folders: dict[str, Path]) -> None:
    """Every runtime variant gives ORT's single-graph logits and kept tokens, input by input."""
    manifest = Manifest.read(folders["plain"])
    reference = _session(folders["plain"], "onnxruntime", split=False)
    sessions = {name: _session(folders[f], b, s, k) for name, (f, b, s, k) in VARIANTS.items()}
    pruned = 0
    for feeds in inputs(manifest.backbone):
        ref = reference.run(feeds)
        pruned += int((ref["tokens_per_layer"][:, -1] < feeds["attention_mask"].sum(1)).sum())
        for name, session in sessions.items():
            assert_parity(ref, session.run(feeds), f"{name}, input widths {feeds['input_ids'].shape}")
    assert pruned > 0, f"the {manifest.method} model pruned nothing: the comparison would be trivial"


def test_static_shape_split_stages(ltp_folders):
    """OpenVINO split stages compiled per (bucketed) shape give the same results and reuse compiled shapes."""
    manifest = Manifest.read(ltp_folders["plain"])
    reference = _session(ltp_folders["plain"], "onnxruntime", split=False)
    session = _session(ltp_folders["plain_ov"], "openvino", True, BUCKET, static_shapes=True)
    feeds_list = inputs(manifest.backbone, seed=2, n=12, batch=4)
    for feeds in feeds_list:
        assert_parity(reference.run(feeds), session.run(feeds), f"static split, widths {feeds['input_ids'].shape}")
    compiled = sum(len(s._static) for s in session.sessions)
    assert 0 < compiled < len(feeds_list) * len(session.sessions)


def check_input_length_bucketing_keeps_results(folders: dict[str, Path]) -> None:
    """Padding inputs up to a bucket (what the runtime does) changes neither logits nor kept tokens."""
    from pruneport.runtime.text import pad_batch

    manifest = Manifest.read(folders["plain"])
    session = _session(folders["bucketed_ov"], "openvino", split=False)
    for feeds in inputs(manifest.backbone, seed=1, n=12, batch=4):
        ids = [row[m.astype(bool)].tolist() for row, m in zip(feeds["input_ids"], feeds["attention_mask"], strict=True)]
        padded = pad_batch(ids, [[0] * len(r) for r in ids], manifest.pad_token_id, "token_type_ids" in feeds, 16)
        assert padded["input_ids"].shape[1] % 16 == 0 or padded["input_ids"].shape[1] == manifest.max_length
        assert_parity(session.run(feeds), session.run(padded), f"bucketed input widths {feeds['input_ids'].shape}")


def check_manifest_records_openvino_and_split(folders: dict[str, Path]) -> None:
    manifest = Manifest.read(folders["plain_ov"])
    assert manifest.extra["openvino"]["weights"] == "f32"
    assert (folders["plain_ov"] / manifest.extra["openvino"]["model_file"]).exists()
    assert len(manifest.extra["openvino"]["stages"]) == len(manifest.extra["split"]["stages"])
    assert [h["step"] for h in manifest.history][-1] == "convert"
    assert Manifest.read(folders["bucketed"]).extra["bucket"] == BUCKET


@pytest.fixture(scope="module")
def ltp_folders(tmp_path_factory) -> dict[str, Path]:
    return cached_exports("ltp", tmp_path_factory)


TEXTS = ["a great movie", "the plot was boring and the acting awful", "fun", "some dark music but a good ending"] * 3


@pytest.mark.parametrize("split", [False, True])
@pytest.mark.parametrize("mode", ["latency", "throughput"])
def test_load_openvino_predicts_like_onnxruntime(ltp_folders, split, mode):
    from pruneport.runtime import load

    ref = load(ltp_folders["plain"], backend="onnxruntime", split=False, bucket=0, batch_size=4).predict(TEXTS)
    clf = load(ltp_folders["plain_ov"], backend="openvino", split=split, mode=mode, batch_size=4)
    got = clf.predict(TEXTS)
    assert got.labels == ref.labels
    np.testing.assert_array_equal(got.tokens_per_layer, ref.tokens_per_layer)
    np.testing.assert_allclose(got.logits, ref.logits, atol=ATOL, rtol=0)


def test_openvino_throughput_pool_recovers_from_a_bad_batch(ltp_folders):
    """A batch that OpenVINO rejects raises, and the session's request pool still serves the next call."""
    manifest = Manifest.read(ltp_folders["plain"])
    session = _session(ltp_folders["plain_ov"], "openvino", split=False, mode="throughput", jobs=2)
    good = inputs(manifest.backbone, seed=3, n=6, batch=3)
    bad = {name: value[0] for name, value in good[0].items()}  # rank 1 where the graph wants [batch, length]
    with pytest.raises(Exception):  # noqa: B017 (OpenVINO raises its own RuntimeError subclasses)
        session.run_many([good[0], bad, good[1]])
    expected = [session.run(feeds) for feeds in good]
    for feeds, got, ref in zip(good, session.run_many(good), expected, strict=True):
        assert_parity(ref, got, f"pool after an error, widths {feeds['input_ids'].shape}")


def test_onnxruntime_throughput_mode_matches_latency(ltp_folders):
    from pruneport.runtime import load

    ref = load(ltp_folders["plain"], batch_size=2).predict(TEXTS)
    got = load(ltp_folders["plain"], batch_size=2, mode="throughput").predict(TEXTS)
    np.testing.assert_array_equal(got.tokens_per_layer, ref.tokens_per_layer)
    np.testing.assert_allclose(got.logits, ref.logits, atol=ATOL, rtol=0)


def test_bf16_is_opt_in(ltp_folders):
    from pruneport.runtime import load

    assert load(ltp_folders["plain_ov"], backend="openvino", split=False).session.precision == "f32"
    clf = load(ltp_folders["plain_ov"], backend="openvino", split=False, precision="bf16")
    assert clf.session.precision == "bf16"
    assert clf.session._compiled.get_property("INFERENCE_PRECISION_HINT") in (ov.Type.bf16, ov.Type.f32)


def test_bad_options_raise_clear_errors(ltp_folders):
    from pruneport.runtime import ModelLoadError, load

    with pytest.raises(ValueError, match="precision"):
        load(ltp_folders["plain"], backend="onnxruntime", precision="bf16")
    with pytest.raises(ValueError, match="mode"):
        load(ltp_folders["plain_ov"], backend="openvino", mode="fast")
    with pytest.raises(ValueError, match="split"):
        load(ltp_folders["bucketed"], backend="onnxruntime", split=True)
    with pytest.raises(ValueError, match="unknown backend"):
        load(ltp_folders["plain"], backend="tensorrt")
    if "GPU" not in ov.Core().available_devices:
        with pytest.raises(ModelLoadError, match="GPU"):
            load(ltp_folders["plain_ov"], backend="openvino", device="gpu")


def test_convert_cli(ltp_folders, tmp_path):
    from pruneport.cli import main

    out = tmp_path / "ov16"
    assert main(["convert", str(ltp_folders["plain"]), "-o", str(out), "--fp16"]) == 0
    manifest = Manifest.read(out)
    assert manifest.extra["openvino"]["weights"] == "f16"
    assert (out / "model.xml").exists() and (out / "model.bin").exists()
    assert main(["convert", str(ltp_folders["plain"]), "-o", str(out)]) == 2  # exists, no --overwrite
    assert main(["convert", str(tmp_path / "missing"), "-o", str(tmp_path / "x")]) == 2
    assert not (tmp_path / "x").exists()


@pytest.mark.skipif("GPU" not in ov.Core().available_devices, reason="no OpenVINO GPU device on this machine")
def test_openvino_gpu_matches_cpu(ltp_folders):
    from pruneport.runtime import load

    ref = load(ltp_folders["plain_ov"], backend="openvino").predict(TEXTS)
    got = load(ltp_folders["plain_ov"], backend="openvino", device="gpu").predict(TEXTS)
    np.testing.assert_array_equal(got.tokens_per_layer, ref.tokens_per_layer)
    np.testing.assert_allclose(got.logits, ref.logits, atol=1e-3, rtol=0)


def test_onnxruntime_gpu_matches_cpu(ltp_folders):
    ort = pytest.importorskip("onnxruntime")
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        pytest.skip("onnxruntime-gpu with CUDA is not available here")
    from pruneport.runtime import load

    ref = load(ltp_folders["plain"]).predict(TEXTS)
    got = load(ltp_folders["plain"], device="gpu").predict(TEXTS)
    np.testing.assert_array_equal(got.tokens_per_layer, ref.tokens_per_layer)
    np.testing.assert_allclose(got.logits, ref.logits, atol=1e-3, rtol=0)

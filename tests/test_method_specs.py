"""Every registered method is complete: a torch-free spec with every part, read by the CLI, the token-prune pass,
threshold calibration and INT8 quantization, a trainer and a test file. A method missing any part fails here
(never a skip)."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import onnx
import pytest

from pruneport.calibration.batches import tokenized_batches
from pruneport.calibration.quantize import QuantizeOptions, quantize_folder, score_path
from pruneport.calibration.thresholds import ThresholdError, name_thresholds, threshold_spec
from pruneport.cli import build_parser, model_options
from pruneport.export.manifest import Manifest
from pruneport.graph.roles import matmul_table
from pruneport.methods import get_method, method_names, option_owners
from pruneport.methods.spec import MethodSpec, spec_problems
from pruneport.passes.pipeline import optimize_file
from pruneport.passes.registry import get_pass
from tests.quant_fixtures import random_texts
from tests.test_passes import export_tiny

TESTS = Path(__file__).resolve().parent


@pytest.fixture(scope="module", params=method_names())
def exported(request, tmp_path_factory) -> tuple[MethodSpec, Path]:
    spec = get_method(request.param)
    return spec, export_tiny(spec.name, spec.tiny.pruning, tmp_path_factory.mktemp(spec.name) / "export")


@pytest.mark.parametrize("method", method_names())
def test_every_spec_is_complete(method):
    assert spec_problems(get_method(method), method) == []


def test_specs_import_without_torch():
    code = (
        "import sys\nfrom pruneport.methods import all_methods\nall_methods()\n"
        "assert 'torch' not in sys.modules, 'a spec module imports torch'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=TESTS.parent)


def _subparser(parser: argparse.ArgumentParser, *path: str) -> argparse.ArgumentParser:
    for name in path:
        action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        parser = action.choices[name]
    return parser


@pytest.mark.parametrize("method", method_names())
def test_export_takes_the_spec_options_and_passes_them_to_the_loader(method):
    parser = build_parser()
    export = _subparser(parser, "export")
    flags = {flag for action in export._actions for flag in action.option_strings}
    for option in get_method(method).options:
        assert option.flag in flags
        value = option.choices[0] if option.choices else "1"
        args = parser.parse_args(["export", "m.pt", "-o", "out", option.flag, value])
        assert option.name in model_options(args)
        assert option_owners()[option.name] == method


@pytest.mark.parametrize("method", method_names())
def test_every_method_has_a_trainer_and_a_test_file(method):
    train = _subparser(build_parser(), "train")
    trainers = next(a for a in train._actions if isinstance(a, argparse._SubParsersAction))
    assert method in trainers.choices, f"no 'pruneport train {method}'"
    assert any(TESTS.glob(f"test_{method}*.py")), f"tests/test_{method}*.py is missing"


def test_the_token_prune_pass_records_the_spec_keep_rule(exported, tmp_path):
    spec, folder = exported
    out = tmp_path / "fused.onnx"
    optimize_file(folder / "model.onnx", out, [get_pass("token-prune")])
    rules = {
        a.s.decode()
        for n in onnx.load(str(out)).graph.node
        if n.op_type == "TokenPrune"
        for a in n.attribute
        if a.name == "rule"
    }
    assert rules == {spec.keep_rule}


def test_the_threshold_spec_finds_every_threshold_of_the_export(exported):
    spec, folder = exported
    manifest = Manifest.read(folder)
    model = onnx.load(str(folder / manifest.model_file))
    if spec.thresholds is None:  # Pyramid-BERT: a length schedule; calibration refuses it with a clear error
        with pytest.raises(ThresholdError, match="no threshold tensor"):
            threshold_spec(spec.name)
        return
    assert threshold_spec(spec.name) is spec.thresholds
    slots = name_thresholds(model, spec.name, manifest.pruning, manifest.num_layers)
    assert [s.layer for s in slots] == spec.thresholds.layers(manifest.pruning, manifest.num_layers)
    assert slots, "the tiny fixture should prune somewhere"


def test_int8_keeps_the_spec_score_source_in_float(exported, tmp_path):
    """The score path follows the spec's score source, and static INT8 with it kept FP32 runs for every method."""
    spec, folder = exported
    manifest = Manifest.read(folder)
    model = onnx.load(str(folder / manifest.model_file))
    table = matmul_table(model)
    kept = score_path(model, table, manifest)
    roles = {m.role for m in table if m.name in kept.matmuls}
    expected = {"attention": {"query", "key", "qk", "score"}, "predictor": {"predictor"}}
    if spec.score_source in expected:
        assert roles == expected[spec.score_source]
    else:  # hidden states: the MatMuls that compare tokens (k-center distances), when the method has any
        assert roles <= {"selection"}
    assert bool(kept.softmaxes) == (spec.score_source == "attention")

    data = tokenized_batches(folder, random_texts(32, seed=2), batch_size=8)
    out = quantize_folder(folder, data, tmp_path / "int8", QuantizeOptions(mode="static", keep_score_path=True))
    quantized = onnx.load(str(out / "model.onnx"))
    float_matmuls = {n.name for n in quantized.graph.node if n.op_type == "MatMul"}
    assert set(kept.matmuls) <= float_matmuls, "a score-path MatMul was quantized"
    assert any(n.op_type == "DequantizeLinear" for n in quantized.graph.node)


@pytest.mark.parametrize("method, key", [("ltp", "thresholds"), ("adapler", "eta")])
def test_a_layer_that_does_not_prune_has_no_threshold_to_change(method, key):
    spec = get_method(method).thresholds
    pruning = {**get_method(method).tiny.pruning, key: [0.0, 0.5, 0.25]}
    with pytest.raises(ThresholdError, match=f"{get_method(method).title} layer 0 does not prune"):
        spec.update(pruning, 3, {0: 0.1})
    assert spec.update(pruning, 3, {1: 0.7})[key] == [0.0, 0.7, 0.25]
    assert spec.update(pruning, 3, {1: 0.5 + 1e-12})[key][1] == 0.5  # float32-equal: the stored value stays

"""TokenPrune fusion (``pruneport.passes.token_prune``): one ``ai.pruneport::TokenPrune`` call per prune point, carried
as a model-local function; the same outputs on ONNX Runtime; expansion gives back a standard graph that ONNX Runtime
and OpenVINO (f32) run with the same outputs; the CLI flags."""

from __future__ import annotations

import json
from pathlib import Path

import onnx
import onnx_ir as ir
import pytest

from pruneport.export.manifest import Manifest
from pruneport.methods import get_method
from pruneport.methods.ltp.model import MIN_THRESHOLD
from pruneport.passes import token_prune
from pruneport.passes.pipeline import optimize_file
from pruneport.passes.registry import get_pass, resolve_pipeline
from tests.test_passes import _parity, export_tiny

DOMAIN = token_prune.DOMAIN


@pytest.fixture(scope="module")
def ltp_folder(tiny_ltp_export) -> Path:
    """The session's tiny LTP export (conftest; thresholds (0, 0.02, 0.03): prune points at layers 1 and 2)."""
    return tiny_ltp_export


@pytest.fixture(scope="module")
def fused(ltp_folder, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("tp-fused") / "model.onnx"
    optimize_file(ltp_folder / "model.onnx", out, [get_pass("token-prune")])
    return out


def _calls(proto: onnx.ModelProto) -> list[onnx.NodeProto]:
    return [n for n in proto.graph.node if n.domain == DOMAIN]


def _attrs(node: onnx.NodeProto) -> dict:
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _count(proto: onnx.ModelProto, op_type: str) -> int:
    return sum(n.op_type == op_type for n in proto.graph.node)


def test_one_token_prune_per_prune_point(ltp_folder, fused):
    thresholds = Manifest.read(ltp_folder).pruning["thresholds"]
    points = [t for t in thresholds if t != 0.0]  # an LTP layer with threshold 0 has no prune op
    proto = onnx.load(str(fused))
    calls = _calls(proto)
    assert [n.op_type for n in calls] == ["TokenPrune"] * len(points)
    assert _count(proto, "GatherND") == 0, "every GatherND (one per compaction) moved into a TokenPrune function"
    assert {(f.domain, f.name) for f in proto.functions} == {(DOMAIN, "TokenPrune")}
    assert all(f.node and not any(n.domain == DOMAIN for n in f.node) for f in proto.functions), "standard-op bodies"
    assert {f.overload for f in proto.functions} == {n.overload for n in calls}
    assert any(o.domain == DOMAIN for o in proto.opset_import)
    for point, (node, threshold) in enumerate(zip(calls, points, strict=True)):
        attrs = _attrs(node)
        assert attrs["rule"] == b"threshold" and attrs["point"] == point
        assert attrs["threshold"] == pytest.approx(max(MIN_THRESHOLD, threshold), rel=1e-6)
    onnx.checker.check_model(proto, full_check=True)


def test_fused_graph_keeps_outputs_on_onnxruntime(ltp_folder, fused):
    _parity(ltp_folder, fused, n_inputs=16)


def test_expand_gives_back_a_standard_graph(ltp_folder, fused, tmp_path):
    out = tmp_path / "expanded.onnx"
    runs = optimize_file(fused, out, [get_pass("expand-token-prune")])
    assert runs[0].count == len(_calls(onnx.load(str(fused))))
    proto = onnx.load(str(out))
    source = onnx.load(str(ltp_folder / "model.onnx"))
    assert _calls(proto) == [] and list(proto.functions) == []
    assert all(o.domain != DOMAIN for o in proto.opset_import)
    assert _count(proto, "GatherND") == _count(source, "GatherND")
    _parity(ltp_folder, out, n_inputs=8)
    _parity(ltp_folder, out, n_inputs=8, engine="openvino")  # OpenVINO 2026.4 reads no model-local function


def test_passes_leave_graphs_without_prune_points_alone(ltp_folder):
    model = ir.load(str(ltp_folder / "model.onnx"))
    assert get_pass("expand-token-prune").apply(model) == 0, "nothing to expand in an unfused graph"
    unpruned = onnx.load(str(ltp_folder / "model.onnx"))
    for node in unpruned.graph.node:
        del node.metadata_props[:]  # no exporter tags: no prune point is recognised
    assert token_prune.fuse(unpruned) == 0
    assert not unpruned.functions


def test_openvino_target_refuses_fused_graphs():
    with pytest.raises(ValueError, match="onnxruntime"):
        resolve_pipeline("openvino", ["token-prune"])


def test_cli_fuse_then_expand(ltp_folder, tmp_path):
    from pruneport.cli import main

    assert main(["optimize", str(ltp_folder), "-o", str(tmp_path / "fused"), "--passes", "token-prune"]) == 0
    history = json.loads((tmp_path / "fused" / "pruneport.json").read_text())["history"]
    assert history[-1]["passes"] == [["token-prune", 2]]
    assert len(_calls(onnx.load(str(tmp_path / "fused" / "model.onnx")))) == 2
    code = main(["optimize", str(tmp_path / "fused"), "-o", str(tmp_path / "exp"), "--passes", "score-reduction",
                 "--expand-token-prune"])  # fmt: skip
    assert code == 0
    history = json.loads((tmp_path / "exp" / "pruneport.json").read_text())["history"]
    assert [name for name, _ in history[-1]["passes"]] == ["score-reduction", "expand-token-prune"]
    assert history[-1]["passes"][1][1] == 2
    assert _calls(onnx.load(str(tmp_path / "exp" / "model.onnx"))) == []


# Two of the four other methods keep the suite's CPU time down (an export is ~10 s): AdapLeR (predictor MLPs before
# every layer, eta/n rule) and Pyramid-BERT (k-center selection in a Loop); TR-BERT (threshold) and Transkimmer
# (logit margin) pass the same checks (docs/passes.md; tests/test_method_specs.py checks every method's keep rule).
@pytest.mark.parametrize("method", ["adapler", "pyramid"])
def test_other_methods_fuse_with_their_keep_rule(method, tmp_path):
    spec = get_method(method)
    folder = export_tiny(method, spec.tiny.pruning, tmp_path / "export")
    source = onnx.load(str(folder / "model.onnx"))
    out = tmp_path / "fused.onnx"
    runs = optimize_file(folder / "model.onnx", out, [get_pass("token-prune")])
    proto = onnx.load(str(out))
    assert runs[0].count == _count(source, "GatherND") == len(_calls(proto)), "one TokenPrune per compaction"
    assert _count(proto, "GatherND") == 0
    assert {_attrs(n)["rule"].decode() for n in _calls(proto)} == {spec.keep_rule}
    _parity(folder, out, n_inputs=8)


def test_quantize_needs_the_expanded_graph(ltp_folder, tmp_path):
    """``pruneport quantize`` finds threshold comparisons in the main graph: a fused folder is refused with a clear
    error, its expansion quantizes and runs."""
    from pruneport.calibration.batches import tokenized_batches
    from pruneport.calibration.quantize import QuantizeOptions, quantize_folder
    from pruneport.calibration.thresholds import ThresholdError
    from pruneport.passes.pipeline import optimize_folder
    from pruneport.runtime import load
    from tests.quant_fixtures import random_texts

    fused_folder, _ = optimize_folder(ltp_folder, tmp_path / "fused", passes=["token-prune"], verify=False)
    data = tokenized_batches(fused_folder, random_texts(32, seed=0), batch_size=16)
    with pytest.raises(ThresholdError, match="threshold comparisons"):
        quantize_folder(fused_folder, data, tmp_path / "q-fused", QuantizeOptions())
    assert not (tmp_path / "q-fused").exists()
    expanded, _ = optimize_folder(fused_folder, tmp_path / "expanded", passes=["expand-token-prune"])
    out = quantize_folder(expanded, data, tmp_path / "q", QuantizeOptions())
    assert load(out).predict(["a great movie"]).tokens_per_layer.shape == (1, 3)


def test_cleanup_after_fusion_keeps_every_token_prune(ltp_folder, fused, tmp_path):
    """``--passes token-prune,cleanup`` must not undo the fusion (the optimizer would inline model-local functions)."""
    out = tmp_path / "cleaned.onnx"
    optimize_file(fused, out, [get_pass("cleanup")])
    before, after = onnx.load(str(fused)), onnx.load(str(out))
    assert [n.op_type for n in _calls(after)] == [n.op_type for n in _calls(before)]
    assert {(f.domain, f.name) for f in after.functions} == {(DOMAIN, "TokenPrune")}
    _parity(ltp_folder, out)

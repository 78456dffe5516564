"""Threshold calibration beyond LTP: TR-BERT's keep probability, AdapLeR's ETA and Transkimmer's log-odds margins.

Each prune point's constant must be found in the exported graph, and moving it there must do exactly what the
PyTorch reference does with the same value written into its pruning parameters: identical tokens_per_layer and
logits within 1e-4, for every threshold scale, after ``calibrate`` and after the INT8 refit.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from pruneport.calibration.batches import TokenizedData, tokenized_batches
from pruneport.calibration.calibrate import kept_agreement, refit_to_reference, search_flops_scale, write_thresholds
from pruneport.calibration.runner import FolderRunner
from pruneport.calibration.thresholds import name_thresholds, threshold_spec
from pruneport.export.manifest import Manifest
from pruneport.export.onnx_export import write_export_folder
from pruneport.flops import relative_flops
from pruneport.methods import get_method
from pruneport.methods.backbone import BackboneConfig
from pruneport.methods.checkpoint import LoadedModel
from tests.parity import LOGITS_ATOL, reference
from tests.quant_fixtures import random_texts
from tests.tiny import peaky_init, tiny_hf_config, tiny_tokenizer_json

LAYERS = 3
# AdapLeR: ETA 1.0 on the last layer, whose "* 1.0" the exporter folds away (the locator must put it back)
PRUNING = {"trbert": {}, "adapler": {"eta": [0.5, 0.8, 1.0]}, "transkimmer": {}}
# layer -> the constant the graph holds there (TR-BERT with 3 layers selects once, before layer 1)
GRAPH_VALUES = {"trbert": {1: 0.5}, "adapler": {0: 0.5, 1: 0.8, 2: 1.0}, "transkimmer": {0: 0.0, 1: 0.0, 2: 0.0}}
PARAMETER = {"trbert": "keep_probability", "adapler": "eta", "transkimmer": "margin"}


@dataclass
class Exported:
    method: str
    hf: dict
    state: dict[str, torch.Tensor]
    folder: Path
    data: TokenizedData

    def reference_model(self, pruning: dict) -> torch.nn.Module:
        """The PyTorch reference with these pruning parameters and the exported weights."""
        model = get_method(self.method).build(BackboneConfig.from_hf_dict(self.hf), pruning).eval()
        model.load_state_dict(self.state)
        return model


@pytest.fixture(scope="module", params=list(PRUNING))
def exported(request, tmp_path_factory) -> Exported:
    method = request.param
    hf = tiny_hf_config("bert", layers=LAYERS, max_positions=64)
    model = peaky_init(get_method(method).build(BackboneConfig.from_hf_dict(hf), PRUNING[method]), seed=5).eval()
    loaded = LoadedModel(model, method, hf, PRUNING[method], tiny_tokenizer_json(), ["neg", "pos"], 64, "tiny")
    folder = write_export_folder(loaded, tmp_path_factory.mktemp(method) / "fp32")
    data = tokenized_batches(folder, random_texts(48, seed=7), batch_size=16)
    return Exported(method, hf, {k: v.clone() for k, v in model.state_dict().items()}, folder, data)


def reference_run(model: torch.nn.Module, data: TokenizedData) -> tuple[np.ndarray, np.ndarray]:
    logits = np.zeros((data.n, 2), dtype=np.float32)
    tokens = np.zeros((data.n, LAYERS), dtype=np.int64)
    for batch in data.batches:
        batch_logits, batch_tokens = reference(model, batch.feeds)
        logits[batch.rows], tokens[batch.rows] = batch_logits, batch_tokens
    return logits, tokens


def assert_matches_reference(exported: Exported, runner: FolderRunner, pruning: dict, what: str) -> np.ndarray:
    got = runner.evaluate(exported.data)
    logits, tokens = reference_run(exported.reference_model(pruning), exported.data)
    np.testing.assert_array_equal(got.tokens_per_layer, tokens, err_msg=what)
    np.testing.assert_allclose(got.logits, logits, atol=LOGITS_ATOL, rtol=0, err_msg=what)
    return tokens


def test_every_prune_point_gets_a_named_threshold(exported):
    manifest = Manifest.read(exported.folder)
    model = onnx.load(str(exported.folder / manifest.model_file))
    expected = GRAPH_VALUES[exported.method]
    slots = name_thresholds(model, exported.method, manifest.pruning, LAYERS)
    assert [s.layer for s in slots] == list(expected)
    assert [s.value for s in slots] == pytest.approx(list(expected.values()))
    onnx.checker.check_model(model)
    assert [s.layer for s in name_thresholds(model, exported.method, manifest.pruning, LAYERS)] == list(expected)


def test_moving_graph_thresholds_equals_the_reference_with_those_parameters(exported):
    runner = FolderRunner(exported.folder)
    spec = threshold_spec(exported.method)
    lengths = np.asarray(exported.data.lengths)
    kept = {}
    for scale in (0.0, 0.5, 1.0, 2.0):
        values = runner.scaled_thresholds(scale)
        runner.set_thresholds(values)
        pruning = spec.update(PRUNING[exported.method], LAYERS, values)
        kept[scale] = assert_matches_reference(exported, runner, pruning, f"{exported.method} at scale {scale}")
    assert (kept[0.0] == lengths[:, None]).all(), "scale 0 must keep every token"
    assert kept[0.5].sum() > kept[1.0].sum() > kept[2.0].sum(), "a larger scale must prune more"


def test_calibrate_to_a_flops_target_writes_the_method_parameter(exported, tmp_path):
    runner = FolderRunner(exported.folder)
    trained = relative_flops(runner.manifest.backbone, runner.evaluate(exported.data).tokens_per_layer)
    target = round(min(0.95, trained + 0.15), 2)  # prune less than the trained model
    result = search_flops_scale(runner, exported.data, target, tolerance=0.01)
    assert result.scale < 1.0
    assert abs(result.relative_flops - target) < 0.05

    out = write_thresholds(exported.folder, tmp_path / "calibrated", result.values, {"step": "calibrate"})
    manifest = Manifest.read(out)
    written = manifest.pruning[PARAMETER[exported.method]]
    assert written == pytest.approx([result.values[layer] for layer in GRAPH_VALUES[exported.method]], rel=1e-6)
    assert_matches_reference(exported, FolderRunner(out), manifest.pruning, "calibrated folder")


def test_int8_refit_keeps_at_least_the_fp32_agreement(exported, tmp_path):
    from pruneport.calibration.quantize import QuantizeOptions, quantize_folder

    fp32 = FolderRunner(exported.folder).evaluate(exported.data).tokens_per_layer
    int8 = quantize_folder(exported.folder, exported.data, tmp_path / "int8", QuantizeOptions(keep_score_path=False))
    result = refit_to_reference(FolderRunner(int8), exported.data, fp32)
    assert set(result.values) == set(GRAPH_VALUES[exported.method])  # before-layer pruners: all visible
    assert result.after.mean_relative_difference <= result.before.mean_relative_difference
    out = write_thresholds(int8, tmp_path / "refit", result.values, {"step": "calibrate", "refit_to": "fp32"})
    written = kept_agreement(fp32, FolderRunner(out).evaluate(exported.data).tokens_per_layer)
    assert written == result.after  # the written folder keeps exactly the refitted tokens

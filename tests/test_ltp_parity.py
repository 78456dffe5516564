"""LTP: the exported graph gives the reference's logits and kept-token counts, at batch 1 and in mixed batches."""

from __future__ import annotations

import pytest

from pruneport.methods.backbone import BackboneConfig
from pruneport.methods.ltp.model import LTPParams, build
from tests.parity import check_export_parity
from tests.tiny import peaky_init, tiny_hf_config

CASES = {
    # layout, layers, per-layer thresholds (N = 32): pruning 20-70% of tokens by the last layer
    "bert-3": ("bert", 3, (0.0, 0.02, 0.03)),
    "roberta-4": ("roberta", 4, (0.01, 0.0, 0.015, 0.02)),
    "bert-2": ("bert", 2, (0.025, 0.025)),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_onnx_matches_reference_with_real_pruning(case, tmp_path):
    layout, layers, thresholds = CASES[case]
    cfg = BackboneConfig.from_hf_dict(tiny_hf_config(layout, layers=layers))
    model = peaky_init(build(cfg, LTPParams(thresholds, score_norm_length=32).to_dict()), seed=layers)
    stats = check_export_parity(model, tmp_path, n_inputs=56, batch=8)
    long_inputs = stats.tokens_first >= 8
    pruned_share = 1 - stats.tokens_last[long_inputs].sum() / stats.tokens_first[long_inputs].sum()
    assert 0.2 <= pruned_share <= 0.7, f"thresholds prune {pruned_share:.0%} of tokens; the test needs 20-70%"

"""CLS-only last layer (``PrunedSequenceClassifier.cls_only_last_layer``): same logits and tokens_per_layer as the
full last layer, in PyTorch for every method that exists and in the exported ONNX graph (LTP)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pruneport.export.onnx_export import export_onnx_model
from pruneport.methods import get_method, method_names
from pruneport.methods.backbone import BackboneConfig
from tests.parity import ort_session, run_onnx
from tests.tiny import peaky_init, random_batch, tiny_hf_config, torch_feeds

ATOL = 1e-5


def _build(method: str, layout: str = "bert"):
    spec = get_method(method)
    cfg = BackboneConfig.from_hf_dict(tiny_hf_config(layout, layers=spec.tiny.layers))
    return peaky_init(spec.build(cfg, spec.tiny.pruning), seed=3).eval()


def _batches(cfg, seed: int = 0):
    rng = np.random.default_rng(seed)
    yield random_batch(rng, [1], cfg.vocab_size, cfg.pad_token_id, cfg.uses_token_type_ids)
    yield random_batch(rng, [cfg.max_tokens], cfg.vocab_size, cfg.pad_token_id, cfg.uses_token_type_ids)
    for _ in range(4):
        lengths = rng.integers(1, cfg.max_tokens + 1, 6).tolist()
        yield random_batch(rng, lengths, cfg.vocab_size, cfg.pad_token_id, cfg.uses_token_type_ids)


@pytest.mark.parametrize("method", method_names())
def test_cls_only_last_layer_matches_full_layer_in_torch(method):
    model = _build(method, "roberta" if method == "ltp" else "bert")
    for feeds in _batches(model.config):
        with torch.no_grad():
            model.cls_only_last_layer = False
            full = model(*torch_feeds(feeds))
            model.cls_only_last_layer = True
            cls_only = model(*torch_feeds(feeds))
        torch.testing.assert_close(cls_only[0], full[0], atol=ATOL, rtol=0)
        torch.testing.assert_close(cls_only[1], full[1], atol=0, rtol=0)


def test_cls_only_last_layer_export_matches_full_reference(tmp_path):
    model = _build("ltp")
    model.cls_only_last_layer = True
    export_onnx_model(model, tmp_path / "m.onnx")
    session = ort_session(tmp_path / "m.onnx")
    model.cls_only_last_layer = False
    for feeds in _batches(model.config, seed=1):
        with torch.no_grad():
            reference = [t.numpy() for t in model(*torch_feeds(feeds))]
        logits, tokens = run_onnx(session, feeds)
        np.testing.assert_allclose(logits, reference[0], atol=ATOL, rtol=0)
        np.testing.assert_array_equal(tokens, reference[1])


def test_cls_only_last_layer_refuses_hidden_output():
    model = _build("ltp")
    model.output_hidden = True
    model.cls_only_last_layer = True
    feeds = random_batch(np.random.default_rng(0), [5], model.config.vocab_size, 0, True)
    with pytest.raises(ValueError, match="last_hidden_state"):
        model(*torch_feeds(feeds))

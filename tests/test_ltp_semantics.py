"""LTP reference semantics: real removal equals upstream's mask-only computation; threshold extremes behave."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from pruneport.methods.backbone import BackboneConfig
from pruneport.methods.ltp.model import MIN_THRESHOLD, LTPParams, build
from tests.tiny import peaky_init, random_batch, tiny_hf_config, torch_feeds

N = 32  # score_norm_length = the padded training length


def upstream_masked_forward(model, input_ids, attention_mask, token_type_ids, thresholds):
    """kssteven418/LTP's AbsoluteThresholdTokenPruner, written plainly: inputs padded to N, no removal, an additive
    -10000 mask on pruned keys, query rows of masked tokens zeroed before the score, score = mean over the
    [H * N] probability rows. CLS is *not* protected. Returns logits and whether CLS survived every layer."""
    batch, length = input_ids.shape
    pad = model.config.pad_token_id
    ids = torch.full((batch, N), pad, dtype=torch.long)
    ids[:, :length] = input_ids
    keep = torch.zeros(batch, N)
    keep[:, :length] = attention_mask.float()
    types = None
    if token_type_ids is not None:
        types = torch.zeros(batch, N, dtype=torch.long)
        types[:, :length] = token_type_ids
    x = model.embeddings(ids, keep.bool(), types)
    for i, layer in enumerate(model.layer):
        sa = layer.attention.self
        q, k, v = sa._heads(sa.query(x)), sa._heads(sa.key(x)), sa._heads(sa.value(x))
        scores = q @ k.transpose(-1, -2) / math.sqrt(sa.head_dim) + ((1 - keep) * -10000.0)[:, None, None, :]
        probs = torch.softmax(scores, dim=-1) * keep[:, None, :, None]  # zero rows of masked queries
        context = (probs @ v).transpose(1, 2).flatten(2)
        attended = layer.attention.output(context, x)
        if thresholds[i] != 0:
            score = probs.reshape(batch, -1, N).mean(dim=1)
            keep = keep * (score >= max(MIN_THRESHOLD, thresholds[i])).float()
        x = layer.ffn(attended)
    return model.classifier(x[:, 0]), keep[:, 0] > 0


@pytest.mark.parametrize("layout", ["bert", "roberta"])
def test_real_removal_matches_upstream_masking_whenever_cls_survives(layout):
    thresholds = (0.008, 0.015, 0.025)
    cfg = BackboneConfig.from_hf_dict(tiny_hf_config(layout, layers=3, max_positions=N))
    model = peaky_init(build(cfg, LTPParams(thresholds, score_norm_length=N).to_dict()), seed=3).eval()
    with torch.no_grad():  # a CLS embedding that draws attention, as in trained models, so CLS usually survives
        model.embeddings.word_embeddings.weight[2] *= 6
    rng = np.random.default_rng(1)
    compared = pruned = 0
    with torch.no_grad():
        for n in rng.integers(2, N + 1, 100):
            feeds = random_batch(rng, [int(n)], cfg.vocab_size, cfg.pad_token_id, cfg.uses_token_type_ids)
            args = torch_feeds(feeds)
            ours, tokens = model(*args)
            theirs, cls_alive = upstream_masked_forward(model, *args, *(() if len(args) == 3 else (None,)), thresholds)
            if bool(cls_alive[0]):
                compared += 1
                torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=0)
            pruned += int(tokens[0, -1] < n)
    assert compared >= 30, (
        f"CLS survived upstream's rule in only {compared} of 100 inputs; the test compares too little"
    )
    assert pruned >= 50, f"only {pruned} of 100 inputs lost tokens; the thresholds are too low to test anything"


def _ltp(thresholds, layout="bert"):
    cfg = BackboneConfig.from_hf_dict(tiny_hf_config(layout, layers=len(thresholds), max_positions=N))
    return peaky_init(build(cfg, LTPParams(tuple(thresholds), score_norm_length=N).to_dict()), seed=5).eval(), cfg


def test_threshold_zero_prunes_nothing():
    model, cfg = _ltp([0.0, 0.0, 0.0])
    feeds = random_batch(np.random.default_rng(0), [N, 17, 3], cfg.vocab_size, cfg.pad_token_id, True)
    with torch.no_grad():
        _, tokens = model(*torch_feeds(feeds))
    assert tokens.tolist() == [[N] * 3, [17] * 3, [3] * 3]


def test_huge_threshold_leaves_only_cls():
    model, cfg = _ltp([1e3, 1e3, 1e3])
    feeds = random_batch(np.random.default_rng(0), [N, 17, 1], cfg.vocab_size, cfg.pad_token_id, True)
    with torch.no_grad():
        _, tokens = model(*torch_feeds(feeds))
    assert tokens.tolist() == [[N, 1, 1], [17, 1, 1], [1, 1, 1]]


def test_cls_alone_gives_the_same_logits_whatever_was_pruned_with_it():
    """Once only CLS is left, later layers see a length-1 sequence: the padding of a batch changes nothing."""
    model, cfg = _ltp([1e3, 0.0, 0.0])
    feeds = random_batch(np.random.default_rng(2), [20, 5], cfg.vocab_size, cfg.pad_token_id, True)
    with torch.no_grad():
        batch_logits, _ = model(*torch_feeds(feeds))
        one_logits, _ = model(*torch_feeds({k: v[1:, :5] for k, v in feeds.items()}))
    torch.testing.assert_close(batch_logits[1:], one_logits, atol=1e-6, rtol=0)


def test_rising_schedule_is_final_threshold_times_depth():
    params = LTPParams.rising(0.01, 4)
    assert params.thresholds == pytest.approx((0.0, 0.0025, 0.005, 0.0075))

"""Shape bucketing: kept lengths and input lengths rounded up to a bucket with dead slots leave results unchanged."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pruneport.methods.backbone import BackboneConfig
from pruneport.methods.ltp.model import LTPParams, build
from pruneport.methods.pruned_encoder import compact
from pruneport.runtime.split import bucket_width, compact_host
from pruneport.runtime.text import pad_batch
from tests.parity import _stack
from tests.tiny import peaky_init, random_batch, tiny_hf_config, torch_feeds


def random_keep(rng: np.random.Generator, batch: int, seq: int) -> np.ndarray:
    keep = rng.random((batch, seq)) < rng.uniform(0.1, 0.9)
    keep[:, 0] = True
    return keep


@pytest.mark.parametrize("bucket", [0, 1, 4, 8, 64])
def test_compact_rounds_width_up_with_dead_slots(bucket):
    rng = np.random.default_rng(bucket)
    for _ in range(20):
        batch, seq = int(rng.integers(1, 5)), int(rng.integers(1, 40))
        keep = random_keep(rng, batch, seq)
        plain, packed = compact(torch.from_numpy(keep)), compact(torch.from_numpy(keep), bucket)
        most = int(keep.sum(1).max())
        expected = most if bucket == 0 else min(-(-most // bucket) * bucket, seq)
        assert packed.live.shape == (batch, expected)
        assert packed.live[:, :most].equal(plain.live)  # the extra slots are dead
        assert not packed.live[:, most:].any()
        assert packed.index[:, :most].equal(plain.index)


@pytest.mark.parametrize("bucket", [0, 3, 8])
def test_host_compaction_equals_graph_compaction(bucket):
    rng = np.random.default_rng(7)
    for _ in range(20):
        keep = random_keep(rng, int(rng.integers(1, 5)), int(rng.integers(1, 30)))
        index, live = compact_host(keep, bucket)
        packed = compact(torch.from_numpy(keep), bucket)
        np.testing.assert_array_equal(live, packed.live.numpy())
        np.testing.assert_array_equal(index[live], packed.index.numpy()[live])


def test_bucket_width():
    assert bucket_width(5, 0, 100) == 5
    assert bucket_width(5, 8, 100) == 8
    assert bucket_width(16, 8, 100) == 16
    assert bucket_width(17, 16, 20) == 20


def test_bucketed_model_gives_the_same_results():
    """An LTP model with bucket=8 (dead slots after each prune point) equals bucket=0, in mixed batches."""
    cfg = BackboneConfig.from_hf_dict(tiny_hf_config("roberta", layers=4))
    model = peaky_init(build(cfg, LTPParams((0.01, 0.0, 0.015, 0.02), score_norm_length=32).to_dict()), seed=4).eval()
    rng = np.random.default_rng(0)
    pruned = 0
    for _ in range(6):
        lengths = rng.integers(1, cfg.max_tokens + 1, 5).tolist()
        feeds = random_batch(rng, lengths, cfg.vocab_size, cfg.pad_token_id, cfg.uses_token_type_ids)
        with torch.no_grad():
            model.bucket = 0
            ref = model(*torch_feeds(feeds))
            model.bucket = 8
            got = model(*torch_feeds(feeds))
        assert got[1].equal(ref[1])
        torch.testing.assert_close(got[0], ref[0], atol=1e-5, rtol=0)
        pruned += int((ref[1][:, -1] < ref[1][:, 0]).sum())
    assert pruned > 0


def test_pad_batch_multiple():
    ids = [[2, 5, 6], [2, 7, 8, 9, 10]]
    types = [[0] * 3, [0] * 5]
    assert pad_batch(ids, types, 0, False)["input_ids"].shape == (2, 5)
    feeds = pad_batch(ids, types, 0, True, multiple=4)
    assert feeds["input_ids"].shape == (2, 8)
    assert feeds["attention_mask"].sum() == 8 and feeds["token_type_ids"].shape == (2, 8)
    assert pad_batch(ids, types, 0, False, multiple=16, max_width=6)["input_ids"].shape == (2, 6)
    assert pad_batch(ids, types, 0, False, multiple=16, max_width=4)["input_ids"].shape == (2, 5)


def test_input_padding_is_invisible_to_the_reference():
    """The reference model gives the same result for a batch padded further (what input bucketing does)."""
    cfg = BackboneConfig.from_hf_dict(tiny_hf_config("bert", layers=3))
    model = peaky_init(build(cfg, LTPParams((0.0, 0.02, 0.03), score_norm_length=32).to_dict()), seed=3).eval()
    rng = np.random.default_rng(1)
    feeds = random_batch(rng, [5, 9, 20], cfg.vocab_size, cfg.pad_token_id, True)
    wide = _stack([{k: v[i : i + 1] for k, v in feeds.items()} for i in range(3)], 32, cfg.pad_token_id)
    with torch.no_grad():
        ref, got = model(*torch_feeds(feeds)), model(*torch_feeds(wide))
    assert got[1].equal(ref[1])
    torch.testing.assert_close(got[0], ref[0], atol=1e-5, rtol=0)

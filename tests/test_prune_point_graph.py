"""What one exported prune point is made of (``docs/prune_overhead.md``): the cheap ops, and the reference behind them.

A prune point packs each row's kept tokens with one ``TopK`` whose k is the new width and moves the hidden rows with
one ``GatherND``; the LTP score weights the live query rows with a ``MatMul`` before summing heads. The ops these
replaced (a full argsort + ``NonZero`` slice, an ``Expand``ed index + ``GatherElements``, a ``ReduceSum`` over the
heads of the [B,H,S,S] probabilities) cost 3-4x more per prune point in ONNX Runtime.
"""

from __future__ import annotations

import collections

import numpy as np
import onnx
import pytest
import torch

from pruneport.export.onnx_export import write_export_folder
from pruneport.methods.backbone import BackboneConfig
from pruneport.methods.checkpoint import LoadedModel
from pruneport.methods.ltp.model import LTPParams, build, ltp_scores
from pruneport.methods.prune_ops import gather_rows
from pruneport.methods.pruned_encoder import compact
from tests.tiny import peaky_init, tiny_hf_config, tiny_tokenizer_json

PRUNING = LTPParams((0.0, 0.02, 0.03), score_norm_length=32).to_dict()  # prune points after layers 1 and 2


@pytest.fixture(scope="module")
def ops(tmp_path_factory) -> collections.Counter:
    hf = tiny_hf_config("bert", layers=3)
    cfg = BackboneConfig.from_hf_dict(hf)
    model = peaky_init(build(cfg, PRUNING), seed=3).eval()
    loaded = LoadedModel(model, "ltp", hf, PRUNING, tiny_tokenizer_json(), ["a", "b"], cfg.max_tokens)
    folder = write_export_folder(loaded, tmp_path_factory.mktemp("ltp") / "export")
    proto = onnx.load(str(folder / "model.onnx"))
    return collections.Counter(n.op_type for n in proto.graph.node)


def test_each_prune_point_packs_with_one_topk_and_moves_rows_with_one_gathernd(ops):
    assert ops["TopK"] == 2
    assert ops["GatherND"] == 2
    assert ops["GatherElements"] == 0, "no element-wise gather of an expanded index"
    assert ops["NonZero"] == 0, "no sort of every slot followed by a NonZero slice"
    assert ops["Expand"] == 0


def test_compact_keeps_position_order_and_marks_the_tail_dead():
    rows = [[1, 0, 1, 1, 0, 0, 1, 0], [1, 1, 0, 0, 0, 0, 0, 0], [1, 0, 0, 0, 0, 0, 0, 1]]
    keep = torch.tensor(rows, dtype=torch.bool)
    packed = compact(keep)
    assert packed.index[:, :4].tolist()[0] == [0, 2, 3, 6]
    assert packed.index[1, :2].tolist() == [0, 1]
    assert packed.index[2, :2].tolist() == [0, 7]
    assert packed.live.tolist() == [[True] * 4, [True, True, False, False], [True, True, False, False]]


def test_compact_matches_a_python_loop_on_random_masks():
    rng = np.random.default_rng(0)
    for _ in range(50):
        batch, seq = int(rng.integers(1, 6)), int(rng.integers(1, 50))
        keep = rng.random((batch, seq)) < rng.uniform(0.05, 0.95)
        keep[:, 0] = True
        packed = compact(torch.from_numpy(keep))
        width = int(keep.sum(1).max())
        assert packed.index.shape == (batch, width)
        for b in range(batch):
            kept = np.flatnonzero(keep[b])
            assert packed.index[b, : len(kept)].tolist() == kept.tolist()
            assert packed.live[b].tolist() == [j < len(kept) for j in range(width)]


def test_gather_rows_takes_rows_and_sends_gradients_back():
    x = torch.randn(2, 5, 3, dtype=torch.double, requires_grad=True)
    index = torch.tensor([[0, 3, 3], [4, 1, 0]])
    assert torch.equal(gather_rows(x, index), torch.stack([x[0, [0, 3, 3]], x[1, [4, 1, 0]]]))
    assert torch.autograd.gradcheck(lambda t: gather_rows(t, index), (x,))


def test_ltp_score_is_attention_received_from_live_queries():
    torch.manual_seed(0)
    probs = torch.softmax(torch.randn(2, 4, 6, 6), -1)
    live = torch.tensor([[1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1]], dtype=torch.bool)
    expected = (probs * live[:, None, :, None]).sum((1, 2)) / (4 * 32)
    torch.testing.assert_close(ltp_scores(probs, live, 32), expected)

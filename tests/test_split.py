"""Loop-split export: stage graphs plus host-side compaction reproduce the single graph exactly."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from pruneport.export.split import Stage, prune_points, split_stages
from pruneport.methods.backbone import BackboneConfig
from pruneport.methods.ltp.model import LTPParams, LTPPruner, build
from pruneport.methods.pruned_encoder import PrunedSequenceClassifier, keep_cls
from pruneport.runtime.split import compact_host
from tests.tiny import peaky_init, random_batch, tiny_hf_config, torch_feeds


class LTPWithBefore(LTPPruner):
    """LTP plus a before-layer rule at layer 2 (keep tokens whose first feature is positive): both hook kinds."""

    def before_layer(self, layer, hidden, live, state):
        if layer != 2:
            return None
        return keep_cls(live & (hidden[..., 0] > 0))


def toy_model() -> PrunedSequenceClassifier:
    cfg = BackboneConfig.from_hf_dict(tiny_hf_config("bert", layers=4))
    params = LTPParams((0.0, 0.02, 0.0, 0.03), score_norm_length=32)
    return peaky_init(PrunedSequenceClassifier(cfg, LTPWithBefore(params)), seed=2).eval()


def run_stages(stages: list[Stage], feeds: dict[str, np.ndarray], bucket: int) -> tuple[np.ndarray, np.ndarray]:
    """The split runtime's loop with torch stages (no export): numpy compaction between them."""
    live = feeds["attention_mask"].astype(bool)
    initial = torch.from_numpy(live.sum(1))
    tokens = np.zeros((live.shape[0], stages[0].model.config.num_hidden_layers), dtype=np.int64)
    args = torch_feeds(feeds)
    with torch.no_grad():
        for stage in stages:
            for layer in stage.attention_layers():
                tokens[:, layer] = live.sum(1)
            out = stage(*args)
            if stage.attention_layers():
                np.testing.assert_array_equal(out[-1].numpy(), tokens[:, stage.attention_layers()])
            if stage.end is None:
                return out[0].numpy(), tokens
            index, live = compact_host(out[1].numpy(), bucket)
            hidden = np.take_along_axis(out[0].numpy(), index[:, :, None], axis=1)
            args = (torch.from_numpy(hidden), torch.from_numpy(live), initial)
    raise AssertionError("no last stage")


def test_prune_points_and_stage_layers():
    model = toy_model()
    assert prune_points(model) == [3, 4, 7]  # after attention 1, before layer 2, after attention 3
    stages = split_stages(model)
    assert [(s.start, s.end) for s in stages] == [(-1, 3), (3, 4), (4, 7), (7, None)]
    assert [s.attention_layers() for s in stages] == [[0, 1], [], [2, 3], []]
    unpruned = build(model.config, LTPParams((0.0,) * 4).to_dict())
    assert [(s.start, s.end) for s in split_stages(unpruned)] == [(-1, None)]


@pytest.mark.parametrize("bucket", [0, 4])
def test_stages_with_host_compaction_equal_the_model(bucket):
    model = toy_model()
    stages = split_stages(model)
    cfg = model.config
    rng = np.random.default_rng(bucket)
    pruned = 0
    for _ in range(8):
        lengths = rng.integers(1, cfg.max_tokens + 1, int(rng.integers(1, 5))).tolist()
        feeds = random_batch(rng, lengths, cfg.vocab_size, cfg.pad_token_id, cfg.uses_token_type_ids)
        with torch.no_grad():
            ref_logits, ref_tokens = (t.numpy() for t in model(*torch_feeds(feeds)))
        logits, tokens = run_stages(stages, feeds, bucket)
        np.testing.assert_array_equal(tokens, ref_tokens)
        np.testing.assert_allclose(logits, ref_logits, atol=1e-5, rtol=0)
        pruned += int((ref_tokens[:, -1] < ref_tokens[:, 0]).sum())
    assert pruned > 0


def test_split_refuses_hidden_outputs():
    cfg = BackboneConfig.from_hf_dict(tiny_hf_config("bert", layers=2))
    model = build(cfg, LTPParams((0.0, 0.02)).to_dict(), output_hidden=True)
    with pytest.raises(ValueError, match="--split"):
        split_stages(model)


def test_cli_export_split_and_bucket(tmp_path):
    """`pruneport export --split --bucket 8`: manifest records both; ORT split == ORT single graph."""
    from pruneport.cli import main
    from pruneport.export.manifest import Manifest
    from pruneport.methods.checkpoint import LoadedModel, save_model_pt
    from pruneport.runtime import load
    from tests.tiny import tiny_tokenizer_json

    hf = tiny_hf_config("roberta", layers=4)
    cfg = BackboneConfig.from_hf_dict(hf)
    pruning = LTPParams((0.01, 0.0, 0.015, 0.02), score_norm_length=32).to_dict()
    model = peaky_init(build(cfg, pruning), seed=4).eval()
    loaded = LoadedModel(model, "ltp", hf, pruning, tiny_tokenizer_json(), ["neg", "pos"], cfg.max_tokens)
    pt = save_model_pt(loaded, tmp_path / "model.pt")
    out = tmp_path / "out"
    assert main(["export", str(pt), "-o", str(out), "--split", "--bucket", "8"]) == 0
    manifest = Manifest.read(out)
    assert manifest.extra["bucket"] == 8
    assert [s["end"] for s in manifest.extra["split"]["stages"]] == [1, 5, 7, None]
    texts = ["a great movie and a good story", "bad", "the plot was boring but the music was very good"] * 2
    ref = load(out, split=False, bucket=0).predict(texts)
    for split, bucket in ((False, None), (True, 0), (True, 8)):
        got = load(out, split=split, bucket=bucket).predict(texts)
        np.testing.assert_array_equal(got.tokens_per_layer, ref.tokens_per_layer)
        np.testing.assert_allclose(got.logits, ref.logits, atol=1e-4, rtol=0)
    assert main(["export", str(pt), "-o", str(tmp_path / "bad"), "--bucket", "-1"]) == 2


def test_runtime_modules_stay_torch_free():
    code = (
        "import sys; import pruneport.runtime, pruneport.runtime.split, pruneport.runtime.commands, "
        "pruneport.export.openvino; "
        "bad = [m for m in ('torch', 'transformers', 'openvino') if m in sys.modules]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)

"""Every way a user hands LTP weights to pruneport loads the same model, and bad checkpoints fail clearly."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from pruneport.methods import load_checkpoint
from pruneport.methods.checkpoint import CheckpointError, CheckpointKeyError, save_model_pt
from tests.tiny import hf_state_dict, random_batch, tiny_hf_config, torch_feeds, write_hf_folder


def logits_of(model, feeds):
    with torch.no_grad():
        return model(*torch_feeds(feeds))


@pytest.fixture
def feeds(tiny_ltp_loaded):
    cfg = tiny_ltp_loaded.model.config
    return random_batch(np.random.default_rng(0), [32, 20, 7], cfg.vocab_size, cfg.pad_token_id, True)


def upstream_ltp_folder(tmp_path, reference, final_token_threshold=0.03):
    """An upstream kssteven418/LTP folder: model_type ltp, ibert.* keys, learned deltas, I-BERT buffers."""
    hf = tiny_hf_config(
        "ltp",
        layers=3,
        max_positions=32,
        prune_mode="absolute_threshold",
        final_token_threshold=final_token_threshold,
        token_keep_rate=1.0,
        token_threshold=0.0,
    )
    state = hf_state_dict(reference, "ltp", prefix="ibert.")
    deltas = [0.001, -0.002, 0.004]
    for i, d in enumerate(deltas):
        state[f"ibert.encoder.layer.{i}.attention.self.pruner.keep_threshold"] = torch.tensor(d)
        state[f"ibert.encoder.layer.{i}.attention.self.query.weight_integer"] = torch.zeros(4, dtype=torch.int8)
        state[f"ibert.encoder.layer.{i}.attention.self.query.fc_scaling_factor"] = torch.ones(1)
        state[f"ibert.encoder.layer.{i}.intermediate.intermediate_act_fn.act_scaling_factor"] = torch.ones(1)
    return write_hf_folder(tmp_path / "upstream", hf, state), deltas


def roberta_reference():
    from pruneport.methods.backbone import BackboneConfig
    from pruneport.methods.ltp.model import LTPParams, build
    from tests.tiny import peaky_init

    cfg = BackboneConfig.from_hf_dict(tiny_hf_config("roberta", layers=3, max_positions=32))
    return peaky_init(build(cfg, LTPParams((0.0, 0.0, 0.0)).to_dict()), seed=7).eval()


def test_upstream_ltp_folder_loads_with_rising_effective_thresholds(tmp_path):
    reference = roberta_reference()
    folder, deltas = upstream_ltp_folder(tmp_path, reference, final_token_threshold=0.03)
    loaded = load_checkpoint(folder, "ltp")
    expected = [d + 0.03 * i / 3 for i, d in enumerate(deltas)]
    assert loaded.pruning["thresholds"] == pytest.approx(expected)
    assert loaded.pruning["score_norm_length"] == 128
    for name, value in reference.state_dict().items():
        torch.testing.assert_close(loaded.model.state_dict()[name], value)
    assert any("CLS" in note for note in loaded.notes)


def test_upstream_ltp_folder_exports(tmp_path):
    from pruneport.export.manifest import Manifest
    from pruneport.export.onnx_export import write_export_folder

    folder, _ = upstream_ltp_folder(tmp_path, roberta_reference())
    out = write_export_folder(load_checkpoint(folder, "ltp"), tmp_path / "out")
    manifest = Manifest.read(out)
    assert manifest.inputs == ["input_ids", "attention_mask"]  # RoBERTa: no token types
    assert manifest.pruning["thresholds"][2] == pytest.approx(0.004 + 0.02)
    assert (out / "model.onnx").exists() and (out / "tokenizer.json").exists()


def test_upstream_folder_without_thresholds_names_the_missing_keys(tmp_path):
    folder, _ = upstream_ltp_folder(tmp_path, roberta_reference())
    state = torch.load(folder / "pytorch_model.bin", weights_only=True)
    del state["ibert.encoder.layer.1.attention.self.pruner.keep_threshold"]
    torch.save(state, folder / "pytorch_model.bin")
    with pytest.raises(CheckpointKeyError, match=r"layer\.1\.attention\.self\.pruner\.keep_threshold"):
        load_checkpoint(folder, "ltp")


def test_plain_hf_folder_with_thresholds_from_the_command_line(tmp_path, tiny_ltp_loaded, feeds):
    hf = dict(tiny_ltp_loaded.backbone)
    folder = write_hf_folder(tmp_path / "bert", hf, hf_state_dict(tiny_ltp_loaded.model, "bert"))
    by_list = load_checkpoint(folder, "ltp", thresholds=[0.0, 0.02, 0.03], score_norm_length=32)
    for ours, theirs in zip(logits_of(by_list.model, feeds), logits_of(tiny_ltp_loaded.model, feeds), strict=True):
        torch.testing.assert_close(ours, theirs)
    rising = load_checkpoint(folder, "ltp", final_threshold=0.09)
    assert rising.pruning["thresholds"] == pytest.approx([0.0, 0.03, 0.06])
    with pytest.raises(ValueError, match="--thresholds"):
        load_checkpoint(folder, "ltp")
    with pytest.raises(ValueError, match="needs 3 values"):
        load_checkpoint(folder, "ltp", thresholds=[0.1])


def test_wrong_keys_are_named(tmp_path, tiny_ltp_loaded):
    state = hf_state_dict(tiny_ltp_loaded.model, "bert")
    state["bert.encoder.layer.0.attention.self.querry.weight"] = state.pop(
        "bert.encoder.layer.0.attention.self.query.weight"
    )
    folder = write_hf_folder(tmp_path / "bad", dict(tiny_ltp_loaded.backbone), state)
    with pytest.raises(CheckpointKeyError) as err:
        load_checkpoint(folder, "ltp", final_threshold=0.01)
    assert "layer.0.attention.self.query.weight" in str(err.value)  # missing
    assert "bert.encoder.layer.0.attention.self.querry.weight" in str(err.value)  # unexpected


def test_model_pt_round_trip_is_exact_and_safe(tmp_path, tiny_ltp_loaded, feeds):
    path = save_model_pt(tiny_ltp_loaded, tmp_path / "model.pt")
    payload = torch.load(path, weights_only=True)  # readable without unpickling code
    assert payload["format_version"] == 1 and payload["method"] == "ltp"
    assert json.loads(payload["tokenizer"])["model"]["type"] == "WordPiece"
    again = load_checkpoint(path)
    for ours, theirs in zip(logits_of(again.model, feeds), logits_of(tiny_ltp_loaded.model, feeds), strict=True):
        torch.testing.assert_close(ours, theirs, atol=0, rtol=0)
    assert again.label_names == tiny_ltp_loaded.label_names
    with pytest.raises(ValueError, match="holds a 'ltp' model"):
        load_checkpoint(path, "trbert")


def test_pickled_module_is_refused_unless_trusted(tmp_path, tiny_ltp_loaded):
    path = tmp_path / "module.pt"
    torch.save(tiny_ltp_loaded.model, path)
    with pytest.raises(CheckpointError, match="--trust-pickle"):
        load_checkpoint(path)
    with pytest.raises(CheckpointError, match="pickled nn.Module"):
        load_checkpoint(path, trust_pickle=True)


def test_missing_and_corrupt_checkpoints(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "nope.pt")
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError):
        load_checkpoint(garbage)
    with pytest.raises(ValueError, match="say which method"):
        load_checkpoint(tmp_path)

"""Training TR-BERT, Transkimmer, AdapLeR and Pyramid-BERT on CPU, each from a fine-tuned model.

For every trainer, on a tiny BERT that learns a keyword-sentiment task written by the test (a few dozen steps):
the loss falls, the pruning statistic moves the way the method's objective pushes it, the saved model.pt exports and
the ONNX model gives the trained module's logits (1e-4) and tokens_per_layer, and an interrupted run resumed from its
checkpoint ends with the uninterrupted run's weights.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pruneport.cli import main
from pruneport.methods import load_checkpoint
from pruneport.methods.backbone import BackboneConfig
from pruneport.methods.ltp.model import LTPParams, build
from pruneport.training import trainer
from pruneport.training.adapler import AdapLeROptions, AdaptiveLengthModel, soft_removal, train_adapler
from pruneport.training.data import collate, encode, read_labeled
from pruneport.training.method_model import method_model
from pruneport.training.model_io import load_for_training
from pruneport.training.pyramid import PyramidOptions, keep_ratio_for_flops, train_pyramid
from pruneport.training.recipes import FinetuneOptions, finetune
from pruneport.training.transkimmer import SkimTrainingModel, TranskimmerOptions, train_transkimmer
from pruneport.training.trbert import TRBertOptions, top_k_actions, train_trbert
from tests.test_training import bert_like_init, write_data
from tests.tiny import hf_state_dict, tiny_hf_config, write_hf_folder

LAYERS = 4  # TR-BERT selects before layers 1 and 2 (L // 2)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def work(tmp_path_factory, one_thread):
    """A tiny encoder, keyword data and a fine-tuned (unpruned) model.pt made from them."""
    root = tmp_path_factory.mktemp("method_training")
    config = tiny_hf_config("bert", layers=LAYERS, max_positions=64, hidden_dropout_prob=0.0)
    config["architectures"] = ["BertModel"]
    for key in ("id2label", "label2id"):
        config.pop(key)
    model = bert_like_init(build(BackboneConfig.from_hf_dict(config), LTPParams((0.0,) * LAYERS).to_dict()))
    state = {k: v for k, v in hf_state_dict(model, "bert").items() if not k.startswith("classifier.")}
    backbone = write_hf_folder(root / "backbone", config, state)
    write_data(root / "train.tsv", 160, seed=1)
    loaded = load_for_training(backbone, ["neg", "pos"])
    data = encode(read_labeled(str(root / "train.tsv"), "train"), loaded.tokenizer_json, 32)
    torch.manual_seed(0)
    options = FinetuneOptions(steps=80, batch_size=16, lr=2e-3, train_word_embeddings=True)
    finetune(loaded, data, options, root / "ft", progress=False)
    return {"root": root, "data": data, "finetuned": root / "ft" / "model.pt"}


def finetuned(work):
    return load_for_training(work["finetuned"])


COMMON = {"batch_size": 16, "train_word_embeddings": True}


def run_transkimmer(work, out, resume=False, **kw):
    options = TranskimmerOptions(harmony=2.0, steps=40, lr=5e-4, predictor_lr=5e-3, init_keep_bias=1.0, **COMMON, **kw)
    return train_transkimmer(finetuned(work), work["data"], options, out, work["data"], resume, progress=False)


def run_adapler(work, out, resume=False, **kw):
    options = AdapLeROptions(
        gamma=0.05, phi=0.05, steps=40, lr=5e-4, cp_lr=5e-3, eta_lr=2e-2, lambda_end=1e3, **COMMON, **kw
    )
    return train_adapler(finetuned(work), work["data"], options, out, work["data"], resume, progress=False)


def run_trbert(work, out, resume=False, **kw):
    options = TRBertOptions(
        length_penalty=3.0, samples=4, policy_steps=30, joint_steps=10, lr=5e-4, policy_lr=2e-2, **COMMON, **kw
    )
    return train_trbert(finetuned(work), work["data"], options, out, work["data"], resume, progress=False)


def run_pyramid(work, out, resume=False, **kw):
    options = PyramidOptions(flops_target=0.6, prune_upto=2, steps=30, lr=5e-4, **COMMON, **kw)
    return train_pyramid(finetuned(work), work["data"], options, out, work["data"], resume, progress=False)


RUNS = {"transkimmer": run_transkimmer, "adapler": run_adapler, "trbert": run_trbert, "pyramid": run_pyramid}
LAST_PHASE = {"transkimmer": "skim", "adapler": "adaptive", "trbert": "joint", "pyramid": "pyramid"}


@pytest.fixture(scope="module")
def trained(work):
    """Each method trained once (module scope: the tests below read the outcomes)."""
    torch.manual_seed(0)
    return {name: (work["root"] / name, run(work, work["root"] / name)) for name, run in RUNS.items()}


def _falls(losses: list[float], window: int = 6) -> bool:
    return float(np.mean(losses[-window:])) < float(np.mean(losses[:window]))


def test_transkimmer_skims_more_under_the_skim_loss_and_keeps_learning(trained):
    _, outcome = trained["transkimmer"]
    assert _falls(outcome.phases["skim"].losses), "CE + harmony * skim loss did not fall"
    # the predictors start keeping every token (upstream's init); the skim loss pushes them to skim
    assert outcome.evals["start"].relative_flops == pytest.approx(1.0)
    assert outcome.evals["transkimmer"].relative_flops < 0.95, outcome.evals["transkimmer"].relative_flops


def test_adapler_raises_eta_under_the_length_loss(trained):
    _, outcome = trained["adapler"]
    assert _falls(outcome.phases["adaptive"].losses), "CE + gamma * CP + phi * length did not fall"
    eta = np.array(outcome.learned["eta"])
    assert eta.mean() > 0.25 + 0.05, f"the length loss did not raise eta above its start 0.25: {eta}"
    assert outcome.loaded.pruning["eta"] == pytest.approx(list(eta))
    assert outcome.evals["adapler"].relative_flops < 0.95


def test_trbert_policy_selects_fewer_tokens_under_the_length_penalty(trained):
    _, outcome = trained["trbert"]
    assert _falls(outcome.phases["joint"].losses, 3) or outcome.phases["joint"].losses[-1] < 0.2
    assert outcome.evals["trbert"].relative_flops < outcome.evals["start"].relative_flops - 0.05
    assert outcome.evals["trbert"].accuracy >= 0.7, outcome.evals["trbert"].accuracy


def test_pyramid_reaches_its_flops_target_and_adapts(trained):
    _, outcome = trained["pyramid"]
    assert _falls(outcome.phases["pyramid"].losses)
    assert outcome.learned["train_relative_flops"] <= 0.6
    assert outcome.evals["pyramid"].relative_flops == pytest.approx(outcome.learned["train_relative_flops"])
    assert outcome.evals["pyramid"].loss < outcome.evals["start"].loss


def test_keep_ratio_search_finds_the_largest_ratio_within_the_target():
    backbone = {"num_hidden_layers": 4, "hidden_size": 64, "intermediate_size": 256}
    lengths = np.array([10, 40, 120, 300])
    ratio, flops = keep_ratio_for_flops(backbone, lengths, 0.5, prune_upto=2)
    assert flops <= 0.5
    worse, more = keep_ratio_for_flops(backbone, lengths, 0.5 + 1e-3, prune_upto=2)
    assert worse >= ratio and more <= 0.5 + 1e-3
    assert keep_ratio_for_flops(backbone, lengths, 1.0, prune_upto=2) == (1.0, 1.0)


@pytest.mark.parametrize("method", sorted(RUNS))
def test_trained_model_exports_and_onnx_matches_the_trained_module(trained, method, tmp_path):
    out, outcome = trained[method]
    export = tmp_path / "onnx"
    assert main(["export", str(out / "model.pt"), "-o", str(export)]) == 0
    from tokenizers import Tokenizer

    from pruneport.runtime import load
    from pruneport.runtime.text import pad_batch

    words = ["the", "movie", "was", "great", "and", "the", "plot", "bad", "fun"]
    texts = [" ".join(words * k) for k in (1, 2, 3)]
    predictions = load(export).predict(texts)
    reloaded = load_checkpoint(out / "model.pt")
    assert reloaded.method == method
    tok = Tokenizer.from_str(outcome.loaded.tokenizer_json)
    for i, text in enumerate(texts):
        enc = tok.encode(text)
        feeds = pad_batch([enc.ids], [enc.type_ids], 0, True)
        inputs = [torch.from_numpy(feeds[n]) for n in reloaded.model.input_names]
        with torch.no_grad():
            logits, tokens = outcome.loaded.model.eval()(*inputs)
            stored = reloaded.model(*inputs)[0]
        torch.testing.assert_close(stored, logits, atol=0, rtol=0)  # model.pt holds exactly the trained module
        np.testing.assert_allclose(predictions.logits[i], logits[0].numpy(), atol=1e-4)
        np.testing.assert_array_equal(predictions.tokens_per_layer[i], tokens[0].numpy())


# (method, the training step at which the run is interrupted): TR-BERT once in each of its two phases
INTERRUPTIONS = [("adapler", 23), ("pyramid", 23), ("transkimmer", 23), ("trbert", 23), ("trbert", 35)]


@pytest.mark.parametrize(("method", "interrupt_at"), INTERRUPTIONS)
def test_resumed_run_ends_with_the_uninterrupted_weights(work, method, interrupt_at, tmp_path, monkeypatch):
    run = RUNS[method]
    torch.manual_seed(0)
    reference = run(work, tmp_path / "whole", checkpoint_every=4).loaded.model.state_dict()
    calls = {"n": 0}
    real_collate = trainer.collate

    def interrupted(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == interrupt_at:
            raise KeyboardInterrupt
        return real_collate(*args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(trainer, "collate", interrupted)
        torch.manual_seed(0)
        with pytest.raises(KeyboardInterrupt):
            run(work, tmp_path / "split", checkpoint_every=4)
    assert list((tmp_path / "split").glob("checkpoint-*.pt"))
    torch.manual_seed(123)  # the resumed run restores the RNG from its checkpoint
    resumed = run(work, tmp_path / "split", checkpoint_every=4, resume=True)
    for name, value in reference.items():
        torch.testing.assert_close(resumed.loaded.model.state_dict()[name], value, atol=1e-6, rtol=0, msg=name)
    assert sorted(p.name for p in (tmp_path / "split").iterdir()) == ["model.pt", "training.json"]


def test_transkimmer_training_model_in_eval_mode_is_the_hard_model(work):
    loaded = method_model(finetuned(work), "transkimmer", {"semantics": "removal"}, seed=3)
    with torch.no_grad():  # predictors that skim about half of the tokens
        for predictor in loaded.model.pruner.skim_predictors:
            predictor.predictor[-1].bias.zero_()
            predictor.predictor[-1].weight.normal_(0, 1.0)
    batch = collate(work["data"], list(range(12)), 0, True)
    soft = SkimTrainingModel(loaded.model, tau=0.1).eval()
    with torch.no_grad():
        expected, tokens = loaded.model(*batch.inputs)
        got = soft(*batch.inputs)
    assert (tokens[:, -1] < tokens[:, 0]).any()
    torch.testing.assert_close(got.logits, expected, atol=1e-5, rtol=0)
    kept = torch.stack([m.sum(1) for m in got.masks], dim=1).long()
    torch.testing.assert_close(kept, tokens)


def test_adapler_soft_removal_is_negative_below_the_threshold_and_near_zero_above():
    scores = torch.tensor([[0.05, 0.2, 0.5]])
    delta = torch.tensor([[0.25]])
    m = soft_removal(scores, delta, lam=100.0, beta=0.05)
    assert m[0, 0] < m[0, 1] < 0 and -1e-3 < float(m[0, 2]) <= 0
    steeper = soft_removal(scores, delta, lam=1000.0, beta=0.05)
    assert steeper[0, 0] < m[0, 0]


def test_adapler_training_model_counts_every_token_when_nothing_is_removed(work):
    loaded = method_model(finetuned(work), "adapler", {"eta": [0.0] * LAYERS}, seed=0)
    model = AdaptiveLengthModel(loaded.model, AdapLeROptions(eta_init=0.01), total_steps=10).eval()
    with torch.no_grad():
        model.eta.fill_(0.0)
    batch = collate(work["data"], list(range(8)), 0, True)
    with torch.no_grad():
        out = model(*batch.inputs)
        expected = loaded.model(*batch.inputs)[0]
    torch.testing.assert_close(out.logits, expected, atol=1e-4, rtol=0)
    assert all(torch.allclose(w, batch.attention_mask.float(), atol=1e-3) for w in out.key_weights)


def test_trbert_imitation_takes_the_k_most_important_candidates():
    importance = torch.tensor([[9.0, 1.0, 5.0, 3.0, 7.0]])
    candidates = torch.tensor([[False, True, True, True, False]])
    chosen = top_k_actions(importance, candidates, torch.tensor([2]))
    assert chosen.tolist() == [[False, False, True, True, False]]


def test_cli_trains_every_method_from_a_finetuned_model(work, tmp_path, capsys):
    common = ["--from", str(work["finetuned"]), "--data", str(work["root"] / "train.tsv"), "--max-length", "32"]
    common += ["--batch-size", "16", "--no-progress"]
    extra = {
        "transkimmer": ["--steps", "2"],
        "adapler": ["--steps", "2"],
        "trbert": ["--policy-steps", "2", "--joint-steps", "2", "--samples", "2"],
        "pyramid": ["--steps", "2", "--flops-target", "0.7", "--prune-upto", "2"],
    }
    for method, flags in extra.items():
        out = tmp_path / method
        assert main(["train", method, *common, *flags, "-o", str(out)]) == 0, method
        assert sorted(p.name for p in out.iterdir()) == ["model.pt", "training.json"]
        assert load_checkpoint(out / "model.pt").method == method
    assert "wrote" in capsys.readouterr().out
    assert main(["train", "pyramid", *common, "--keep-ratio", "0.5", "--flops-target", "0.5", "-o", "x"]) == 2


def test_relative_flops_count_from_the_real_length_when_layer_0_already_prunes(work):
    from pruneport.flops import relative_flops
    from pruneport.training.evaluate import evaluate

    loaded = method_model(finetuned(work), "adapler", {"eta": [1.0] * LAYERS}, seed=0)  # prunes before layer 0
    result = evaluate(loaded.model, work["data"])
    lengths = np.array([len(ids) for ids in work["data"].ids])
    assert (result.tokens_per_layer[:, 0] < lengths).any()
    assert result.relative_flops == pytest.approx(relative_flops(loaded.backbone, result.tokens_per_layer, lengths))
    assert result.relative_flops < relative_flops(loaded.backbone, result.tokens_per_layer)

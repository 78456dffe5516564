"""Training on CPU: fine-tuning, LTP soft then hard pruning, resume, and the trained model.pt exporting and running.

A tiny BERT (built in code, saved as a HF ``BertModel`` folder without head) learns a keyword sentiment task written
by the test; every run is a few dozen steps.
"""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from pruneport.cli import main
from pruneport.methods import load_checkpoint
from pruneport.methods.backbone import BackboneConfig
from pruneport.methods.ltp.model import LTPParams, build
from pruneport.training.data import encode, read_labeled
from pruneport.training.model_io import load_for_training
from pruneport.training.recipes import FinetuneOptions, LTPOptions, cross_entropy_step, finetune, train_ltp
from pruneport.training.soft_ltp import SoftLTPModel
from pruneport.training.trainer import ParamGroup, PhaseSettings, train_phase
from tests.tiny import WORDS, hf_state_dict, tiny_hf_config, write_hf_folder

N = 32  # score_norm_length of the tiny runs
POSITIVE = ["great", "good", "fun", "love", "best"]
NEGATIVE = ["bad", "awful", "boring", "hate", "worst"]


def write_data(path, n: int, seed: int) -> None:
    """A TSV of filler words with one sentiment keyword; label 1 for a positive keyword."""
    rng = random.Random(seed)
    filler = [w for w in WORDS if w not in POSITIVE + NEGATIVE]
    lines = ["sentence\tlabel"]
    for i in range(n):
        label = i % 2
        words = [rng.choice(filler) for _ in range(rng.randint(6, 24))]
        words.insert(rng.randrange(len(words)), rng.choice(POSITIVE if label else NEGATIVE))
        lines.append(" ".join(words) + f"\t{label}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models train fastest on one thread (no spinning on a busy 2-core machine); restored afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def work(tmp_path_factory, one_thread):
    """A tiny encoder folder (no head), training data, and a fine-tuned model.pt made from them."""
    root = tmp_path_factory.mktemp("training")
    config = tiny_hf_config("bert", layers=3, max_positions=64, hidden_dropout_prob=0.0)
    config["architectures"] = ["BertModel"]
    for key in ("id2label", "label2id"):
        config.pop(key)
    model = bert_like_init(build(BackboneConfig.from_hf_dict(config), LTPParams((0.0,) * 3).to_dict()))
    state = {k: v for k, v in hf_state_dict(model, "bert").items() if not k.startswith("classifier.")}
    backbone = write_hf_folder(root / "backbone", config, state)
    write_data(root / "train.tsv", 192, seed=0)
    loaded = load_for_training(backbone, ["neg", "pos"], score_norm_length=N)
    data = encode(read_labeled(str(root / "train.tsv"), "train"), loaded.tokenizer_json, 32)
    torch.manual_seed(0)
    before = _loss(loaded.model, data)
    options = FinetuneOptions(steps=100, batch_size=16, lr=2e-3, train_word_embeddings=True)
    outcome = finetune(loaded, data, options, root / "ft", eval_data=data, progress=False)
    return {"root": root, "backbone": backbone, "data": data, "loss_before": before, "finetune": outcome}


def bert_like_init(model: torch.nn.Module, qk_std: float = 0.3) -> torch.nn.Module:
    """BERT's initialisation (normal std 0.02, zero biases), with large Q/K so that attention is peaky."""
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "LayerNorm" in name:
                continue
            if name.endswith("bias"):
                p.zero_()
                continue
            std = qk_std if (".query." in name or ".key." in name) else 0.02
            p.copy_(torch.randn(p.shape, generator=gen) * std)
    return model


def _loss(model, data) -> float:
    from pruneport.training.evaluate import evaluate

    return evaluate(model, data).loss


def test_finetune_lowers_loss_and_saves_an_unpruned_model(work):
    after = work["finetune"].evals["finetune"]
    assert after.loss < work["loss_before"] - 0.05, (work["loss_before"], after.loss)
    loaded = load_checkpoint(work["root"] / "ft" / "model.pt", "ltp")
    assert loaded.pruning["thresholds"] == [0.0, 0.0, 0.0]
    assert loaded.label_names == ["neg", "pos"]
    assert after.relative_flops == pytest.approx(1.0)


@pytest.fixture(scope="module")
def ltp(work):
    loaded = load_for_training(work["root"] / "ft" / "model.pt", score_norm_length=N)
    options = LTPOptions(
        lam=0.5,
        temperature=2e-3,
        final_threshold=0.03,
        score_norm_length=N,
        soft_steps=40,
        hard_steps=40,
        lr=7e-4,
        hard_lr=7e-4,
        threshold_lr=1e-3,
        batch_size=16,
        train_word_embeddings=True,
    )
    out = work["root"] / "ltp"
    return out, train_ltp(loaded, work["data"], options, out, eval_data=work["data"], progress=False)


def test_ltp_learns_thresholds_prunes_and_recovers_loss(ltp):
    _, outcome = ltp
    moved = np.abs(np.array(outcome.thresholds) - np.array(outcome.initial_thresholds))
    assert moved.max() > 2e-3, f"thresholds did not move: {outcome.initial_thresholds} -> {outcome.thresholds}"
    soft = outcome.phases["soft"].losses
    assert np.mean(soft[-8:]) < np.mean(soft[:8]), "soft-pruning loss (CE + lambda * mask) did not fall"
    # lambda > 0 pushes thresholds up: the hard model prunes more than the initial rising thresholds did
    assert outcome.evals["soft"].relative_flops < outcome.evals["start"].relative_flops - 0.05
    # hard-pruning fine-tuning lowers the loss of the binarized model
    assert outcome.evals["hard"].loss < outcome.evals["soft"].loss


def test_trained_model_pt_exports_and_runs_like_torch(ltp, tmp_path):
    out, outcome = ltp
    export = tmp_path / "onnx"
    assert main(["export", "--method", "ltp", str(out / "model.pt"), "-o", str(export)]) == 0
    from pruneport.runtime import load
    from pruneport.runtime.text import pad_batch

    texts = [" ".join(["the", "movie", "was", "great", "and", "the", "plot", "fun"] * k) for k in (1, 2, 3)]
    predictions = load(export).predict(texts)
    model = load_checkpoint(out / "model.pt").model
    assert model.pruner.params.thresholds == tuple(outcome.thresholds)
    from tokenizers import Tokenizer

    tok = Tokenizer.from_str(outcome.loaded.tokenizer_json)
    for i, text in enumerate(texts):
        enc = tok.encode(text)
        feeds = pad_batch([enc.ids], [enc.type_ids], 0, True)
        with torch.no_grad():
            logits, tokens = model(*[torch.from_numpy(feeds[n]) for n in model.input_names])
        np.testing.assert_allclose(predictions.logits[i], logits[0].numpy(), atol=1e-4)
        np.testing.assert_array_equal(predictions.tokens_per_layer[i], tokens[0].numpy())
    tokens = np.asarray(predictions.tokens_per_layer)
    assert (tokens[:, -1] < tokens[:, 0]).any(), f"the trained model prunes nothing: {tokens.tolist()}"


def test_soft_model_with_zero_thresholds_equals_unpruned_model(work):
    loaded = load_for_training(work["root"] / "ft" / "model.pt", score_norm_length=N)
    model = loaded.model.eval()
    soft = SoftLTPModel(model, [0.0, 0.0, 0.0], temperature=1e-7, score_norm_length=N).eval()
    from pruneport.training.data import collate

    batch = collate(work["data"], list(range(8)), 0, True)
    with torch.no_grad():
        expected = model(*batch.inputs)[0]
        got = soft(*batch.inputs)
    torch.testing.assert_close(got.logits, expected, atol=1e-5, rtol=0)
    high = SoftLTPModel(model, [1.0, 1.0, 1.0], temperature=1e-4, score_norm_length=N).eval()
    with torch.no_grad():
        masks = high(*batch.inputs).masks
    assert all(float(m[:, 1:].max()) < 1e-6 and bool((m[:, 0] == 1).all()) for m in masks)


@pytest.mark.parametrize("group_by_length", [False, True])
def test_resume_gives_the_uninterrupted_result(work, tmp_path, group_by_length):
    data = work["data"]
    settings = PhaseSettings("finetune", steps=6, batch_size=16, lr=1e-3, seed=3, group_by_length=group_by_length)

    def run(checkpoint, fail_at=None, resume=False):
        loaded = load_for_training(work["root"] / "ft" / "model.pt", score_norm_length=N)
        model = loaded.model
        calls = {"n": 0}

        def step(m, batch):
            calls["n"] += 1
            if fail_at is not None and calls["n"] == fail_at:
                raise KeyboardInterrupt
            return cross_entropy_step(m, batch)

        torch.manual_seed(11)
        train_phase(
            model,
            step,
            data,
            settings,
            [ParamGroup([p for p in model.parameters()])],
            0,
            True,
            checkpoint=checkpoint,
            checkpoint_every=3,
            resume=resume,
            progress=False,
        )
        return model

    reference = run(None)
    checkpoint = tmp_path / "checkpoint-finetune.pt"
    with pytest.raises(KeyboardInterrupt):
        run(checkpoint, fail_at=5)
    assert checkpoint.exists()
    resumed = run(checkpoint, resume=True)
    for (name, a), b in zip(reference.state_dict().items(), resumed.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=0, msg=name)


def test_cli_train_finetune_then_ltp(work, tmp_path, capsys):
    data = str(work["root"] / "train.tsv")
    ft = tmp_path / "ft"
    common = ["--data", data, "--max-length", "32", "--batch-size", "16", "--no-progress"]
    argv = ["train", "finetune", "--backbone", str(work["backbone"]), *common, "--steps", "3", "-o", str(ft)]
    assert main(argv) == 0
    assert (ft / "model.pt").exists() and not list(ft.glob("checkpoint-*.pt"))  # a finished run keeps no checkpoint
    finished = (ft / "model.pt").read_bytes()
    assert main(argv) == 2  # results there: not replaced without --overwrite
    assert "--overwrite" in capsys.readouterr().err
    assert main([*argv, "--resume"]) == 2  # nothing to resume
    assert "finished" in capsys.readouterr().err
    assert (ft / "model.pt").read_bytes() == finished
    assert main([*argv, "--overwrite"]) == 0
    out = tmp_path / "ltp"
    ltp_argv = ["train", "ltp", "--from", str(ft / "model.pt"), *common, "--score-norm-length", str(N)]
    assert main([*ltp_argv, "--soft-steps", "2", "--hard-steps", "2", "--lambda", "0.2", "-o", str(out)]) == 0
    assert load_checkpoint(out / "model.pt").pruning["score_norm_length"] == N
    assert sorted(p.name for p in out.iterdir()) == ["model.pt", "training.json"]
    assert main([*ltp_argv, "--soft-steps", "2", "--hard-steps", "2", "-o", str(ft)]) == 2  # --out holds --from
    assert "input" in capsys.readouterr().err and (ft / "model.pt").exists()


def test_interrupted_run_resumes_and_then_drops_its_checkpoint(work, tmp_path, capsys, monkeypatch):
    data = str(work["root"] / "train.tsv")
    ft = tmp_path / "ft"
    argv = ["train", "finetune", "--backbone", str(work["backbone"]), "--data", data, "--max-length", "32"]
    argv += ["--batch-size", "16", "--no-progress", "--steps", "4", "--checkpoint-every", "2", "-o", str(ft)]
    from pruneport.training import recipes

    def killed(*_args, **_kwargs):
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(recipes, "save_model_pt", killed)  # interrupted after the last step, before the result
        with pytest.raises(KeyboardInterrupt):
            main(argv)
    assert (ft / "checkpoint-finetune.pt").exists() and not (ft / "model.pt").exists()
    assert main(argv) == 2 and "--resume" in capsys.readouterr().err
    assert main([*argv, "--resume"]) == 0
    assert sorted(p.name for p in ft.iterdir()) == ["model.pt", "training.json"]


def test_cli_rejects_unlabeled_data(work, tmp_path, capsys):
    bad = tmp_path / "unlabeled.tsv"
    bad.write_text("sentence\na good movie\n", encoding="utf-8")
    argv = ["train", "finetune", "--backbone", str(work["backbone"]), "--data", str(bad), "-o", str(tmp_path / "o")]
    assert main(argv) == 2
    assert "label" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()  # a failed run leaves no empty output folder

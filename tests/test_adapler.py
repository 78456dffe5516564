"""AdapLeR: ONNX parity with real pruning, the upstream Keras .h5 loader (built here with h5py) and model.pt."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from transformers import BertConfig, BertForSequenceClassification

from pruneport.methods import load_checkpoint
from pruneport.methods.adapler.model import AdapLeRParams, build, contribution_scores, load_folder, params_from_upstream
from pruneport.methods.backbone import BackboneConfig
from pruneport.methods.checkpoint import CheckpointError, CheckpointKeyError, save_model_pt
from tests.parity import check_export_parity
from tests.tiny import peaky_init, random_batch, tiny_hf_config, tiny_tokenizer_json, torch_feeds

CASES = {
    # layout, layers, ETA per layer (0 = no prune op there), CLS scale per layer (upstream THETA_PR; None = all 1):
    # 20-70% of tokens pruned by the last layer
    "bert-3": ("bert", 3, (0.4, 0.6, 0.8), None),
    "roberta-4": ("roberta", 4, (0.6, 0.0, 0.8, 0.9), (1.0, 1.0, 1.5, 0.5)),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_onnx_matches_reference_with_real_pruning(case, tmp_path):
    layout, layers, eta, cls_scale = CASES[case]
    cfg = BackboneConfig.from_hf_dict(tiny_hf_config(layout, layers=layers))
    model = peaky_init(build(cfg, AdapLeRParams(eta, cls_scale).to_dict()), seed=layers)
    stats = check_export_parity(model, tmp_path, n_inputs=56, batch=8)
    long_inputs = stats.tokens_first >= 8
    pruned_share = 1 - stats.tokens_last[long_inputs].sum() / stats.tokens_first[long_inputs].sum()
    assert 0.2 <= pruned_share <= 0.7, f"ETA prunes {pruned_share:.0%} of tokens; the test needs 20-70%"


# ----------------------------------------------------------------------------------------------------------------
# An upstream-layout .h5, written from a HF torch BERT with an independent torch -> TF name conversion
# ----------------------------------------------------------------------------------------------------------------

LAYERS = 3
TOP = "tf_bert_for_sequence_classification"


def tf_name(torch_key: str) -> tuple[str, bool]:
    """HF torch key -> (Keras weight name, transpose), following HF's TF BERT naming."""
    parts = torch_key.split(".")
    if parts[-2].endswith("embeddings") and parts[-2] != "word_embeddings":
        parts[-1] = "embeddings"  # position/token_type: ``.../embeddings``; word embeddings keep ``weight``
        transpose = False
    elif "LayerNorm" in parts:
        parts[-1] = {"weight": "gamma", "bias": "beta"}[parts[-1]]
        transpose = False
    elif parts[-1] == "weight" and parts[-2] != "word_embeddings":
        parts[-1], transpose = "kernel", True
    else:
        transpose = False
    name = "/".join(parts).replace("layer/", "layer_._")
    return f"{TOP}/{name}:0", transpose


def make_hf_model(seed: int = 0) -> tuple[dict, BertForSequenceClassification]:
    config = tiny_hf_config("bert", layers=LAYERS)
    torch.manual_seed(seed)
    settings = {k: v for k, v in config.items() if k != "model_type"}
    hf = BertForSequenceClassification(BertConfig(**settings, attn_implementation="eager")).eval()
    peaky_init(hf, seed=seed)
    return config, hf


def write_upstream_h5(path: Path, hf: BertForSequenceClassification, eta: list[float], seed: int = 1) -> dict:
    """A Keras ``save_weights`` file in AdapLeR's layout; returns the predictor arrays written (torch layout)."""
    gen = np.random.default_rng(seed)
    hidden = hf.config.hidden_size
    predictors = {}
    layer_weights: dict[str, list[tuple[str, np.ndarray]]] = {"bert": [], "classifier": []}
    for key, value in hf.state_dict().items():
        if key.endswith(("position_ids", "token_type_ids")):
            continue
        name, transpose = tf_name(key)
        array = value.numpy().T if transpose else value.numpy()
        layer_weights["classifier" if key.startswith("classifier") else "bert"].append((name, array))
    for k in range(1, LAYERS + 1):
        auto = f"t_fbert_lr_exp_head_{k + 4}"  # Keras auto names carry run-dependent counters
        pre_w, pre_b = gen.normal(0, 0.5, (hidden, 32)), gen.normal(0, 0.1, 32)
        head_w, head_b = gen.normal(0, 0.5, (32, 1)), gen.normal(0, 0.1, 1)
        scope = f"{TOP}/bert/encoder/{auto}"
        layer_weights["bert"] += [
            (f"{scope}/exp_head_pre_{k}/kernel:0", pre_w),
            (f"{scope}/exp_head_pre_{k}/bias:0", pre_b),
            (f"{scope}/exp_head_{k}/kernel:0", head_w),
            (f"{scope}/exp_head_{k}/bias:0", head_b),
        ]
        predictors[k - 1] = (pre_w.T, pre_b, head_w.T, head_b)
    layer_weights["bert"] += [
        ("lr_lambda:0", np.float32(1e20)),
        ("ETA:0", np.asarray(eta + [0.25] * (12 - len(eta)))),
        ("ratio_count:0", np.float32(0)),
        ("THETA:0", np.ones(11)),
        ("THETA_PR:0", np.ones(11)),
    ]
    with h5py.File(path, "w") as f:
        f.attrs["layer_names"] = [b"bert", b"dropout_37", b"classifier"]
        f.attrs["backend"] = b"tensorflow"
        f.attrs["keras_version"] = b"2.7.0"
        f.create_group("dropout_37").attrs["weight_names"] = []
        for layer, weights in layer_weights.items():
            group = f.require_group(layer)
            group.attrs["weight_names"] = [n.encode() for n, _ in weights]
            for name, array in weights:
                group.create_dataset(name, data=np.asarray(array, dtype=np.float32))
    return predictors


def write_folder(tmp: Path, hf, eta: list[float]) -> tuple[Path, dict]:
    folder = tmp / "adapler_upstream"
    folder.mkdir()
    config = hf.config.to_dict()
    (folder / "config.json").write_text(json.dumps(config), encoding="utf-8")
    (folder / "tokenizer.json").write_text(tiny_tokenizer_json(), encoding="utf-8")
    predictors = write_upstream_h5(folder / "bert_SST2_3_lr.h5", hf, eta)
    return folder, predictors


def upstream_lr_mode(hf: BertForSequenceClassification, predictors: dict, eta: list[float], ids: np.ndarray):
    """Upstream ``lr_mode=True`` at batch 1, written against HF's torch layers: (logits, tokens per layer)."""
    with torch.no_grad():
        hidden = hf.bert.embeddings(input_ids=torch.from_numpy(ids)[None])[0]
        n = hidden.shape[0]
        acc = torch.ones(n)
        acc[0] = 0  # CLS never prunable, SEP prunable
        counts = []
        for i, layer in enumerate(hf.bert.encoder.layer):
            pre_w, pre_b, head_w, head_b = (torch.from_numpy(np.asarray(a, dtype=np.float32)) for a in predictors[i])
            logits = torch.nn.functional.gelu(hidden @ pre_w.T + pre_b) @ head_w.T + head_b
            expl = torch.softmax(logits[:, 0], dim=0) * torch.cat([torch.ones(1), acc[1:]])
            expl = expl / (expl.sum() + 1e-15)
            delta = 1.0 / (acc.sum() + 1) * eta[i]
            retain = (1 - (1 - expl) * acc) >= delta
            hidden, acc = hidden[retain], acc[retain]
            counts.append(int(retain.sum()))
            hidden = layer(hidden[None])[0]
        pooled = hf.bert.pooler(hidden[None])
        return hf.classifier(pooled).numpy()[0], counts


@pytest.fixture(scope="module")
def upstream(tmp_path_factory):
    config, hf = make_hf_model()
    eta = [0.5, 0.7, 0.9]
    folder, predictors = write_folder(tmp_path_factory.mktemp("adapler"), hf, eta)
    return hf, folder, predictors, eta


def test_h5_loader_reads_bert_predictors_and_eta(upstream):
    hf, folder, predictors, eta = upstream
    loaded = load_folder(folder, {})
    assert loaded.method == "adapler"
    np.testing.assert_allclose(loaded.pruning["eta"], eta, rtol=1e-6)
    model = loaded.model
    for i, arrays in predictors.items():
        predictor = model.pruner.predictors[i]
        params = (predictor.pre.weight, predictor.pre.bias, predictor.head.weight, predictor.head.bias)
        for param, array in zip(params, arrays, strict=True):
            np.testing.assert_allclose(param.detach().numpy(), array, rtol=1e-6)
    rng = np.random.default_rng(3)
    pruned = 0
    for n in [1, 2, 9, 30, 64, 17, 45]:
        feeds = random_batch(rng, [n], model.config.vocab_size, 0, True)
        with torch.no_grad():
            logits, tokens = (t.numpy()[0] for t in model(*torch_feeds(feeds)))
        ref_logits, ref_counts = upstream_lr_mode(hf, predictors, eta, feeds["input_ids"][0])
        np.testing.assert_allclose(logits, ref_logits, atol=1e-4)
        assert tokens.tolist() == ref_counts, f"length {n}: {tokens} vs upstream {ref_counts}"
        pruned += n - tokens[-1]
    assert pruned > 0, "the test ETA must prune something"


def test_h5_loader_without_pruning_equals_hf_model(upstream, tmp_path):
    hf, folder, _, _ = upstream
    loaded = load_folder(folder, {"eta": [0.0, 0.0, 0.0]})
    assert loaded.pruning["eta"] == [0.0, 0.0, 0.0]
    rng = np.random.default_rng(5)
    feeds = random_batch(rng, [12, 40, 5], loaded.model.config.vocab_size, 0, True)
    args = torch_feeds(feeds)
    with torch.no_grad():
        ours = loaded.model(*args)[0].numpy()
        theirs = hf(input_ids=args[0], attention_mask=args[1], token_type_ids=args[2]).logits.numpy()
    np.testing.assert_allclose(ours, theirs, atol=1e-4)


def test_model_pt_round_trip(upstream, tmp_path):
    _, folder, _, eta = upstream
    loaded = load_folder(folder, {})
    path = save_model_pt(loaded, tmp_path / "model.pt")
    again = load_checkpoint(path)
    assert again.method == "adapler" and again.pruning == loaded.pruning
    feeds = random_batch(np.random.default_rng(7), [50, 23], loaded.model.config.vocab_size, 0, True)
    with torch.no_grad():
        a, b = loaded.model(*torch_feeds(feeds)), again.model(*torch_feeds(feeds))
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x.numpy(), y.numpy())


def _copy_h5(src: Path, dst: Path, drop: str | None = None, reshape: str | None = None) -> None:
    with h5py.File(src, "r") as f, h5py.File(dst, "w") as g:

        def visit(name, obj):
            if isinstance(obj, h5py.Dataset) and (drop is None or not name.endswith(drop)):
                data = obj[()]
                if reshape is not None and name.endswith(reshape):
                    data = data[:-1]
                g.create_dataset(name, data=data)

        f.visititems(visit)


@pytest.mark.parametrize(
    ("drop", "reshape", "error", "words"),
    [
        ("exp_head_2/kernel:0", None, CheckpointKeyError, ["exp_head_2/kernel", "pruner.predictors.1.head.weight"]),
        ("/ETA:0", None, CheckpointKeyError, ["ETA"]),
        ("layer_._1/attention/self/query/kernel:0", None, CheckpointKeyError, ["layer.1.attention.self.query"]),
        (None, "exp_head_pre_3/kernel:0", CheckpointError, ["exp_head_pre_3/kernel", "pruner.predictors.2.pre"]),
    ],
)
def test_h5_loader_names_wrong_or_missing_weights(upstream, tmp_path, drop, reshape, error, words):
    _, folder, _, _ = upstream
    broken = tmp_path / "broken"
    broken.mkdir()
    for name in ("config.json", "tokenizer.json"):
        (broken / name).write_bytes((folder / name).read_bytes())
    _copy_h5(next(folder.glob("*.h5")), broken / "model_lr.h5", drop=drop, reshape=reshape)
    with pytest.raises(error) as info:
        load_folder(broken, {})
    for word in words:
        assert word in str(info.value)


def test_h5_loader_rejects_a_config_of_other_depth(upstream, tmp_path):
    _, folder, _, _ = upstream
    other = tmp_path / "other"
    other.mkdir()
    config = json.loads((folder / "config.json").read_text())
    config["num_hidden_layers"] = 2
    (other / "config.json").write_text(json.dumps(config))
    (other / "tokenizer.json").write_bytes((folder / "tokenizer.json").read_bytes())
    (other / "m_lr.h5").write_bytes(next(folder.glob("*.h5")).read_bytes())
    with pytest.raises(CheckpointKeyError, match="layer_._2"):
        load_folder(other, {})


def test_theta_pr_gives_the_cls_scale_and_scores_stay_normalised():
    extras = {"ETA": np.array([0.1, 0.2, 0.3, 0.4]), "THETA_PR": np.array([2.0, 0.0, 5.0])}
    params = params_from_upstream(extras, 3, "test")
    assert params.eta == (0.1, 0.2, 0.3) and params.scales() == (1.0, 2.0, 0.001)
    logits = torch.randn(2, 6)
    live = torch.tensor([[1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1]], dtype=torch.bool)
    plain, scaled = contribution_scores(logits, live), contribution_scores(logits, live, 2.0)
    torch.testing.assert_close(scaled.sum(1), torch.ones(2))
    assert (scaled[~live] == 0).all() and (scaled[:, 0] > plain[:, 0]).all()
    ratio = (scaled[:, 0] / scaled[:, 1]) / (plain[:, 0] / plain[:, 1])
    torch.testing.assert_close(ratio, torch.full((2,), 2.0))

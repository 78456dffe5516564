"""Tiny LTP export folders and labeled texts shared by the quantization, calibration and report tests."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from pruneport.calibration.data import LabeledTexts
from pruneport.export.onnx_export import write_export_folder
from pruneport.methods.backbone import BackboneConfig
from pruneport.methods.checkpoint import LoadedModel
from pruneport.methods.ltp.model import LTPParams, build
from tests.tiny import WORDS, peaky_init, tiny_hf_config, tiny_tokenizer_json

# N = 32: layer 0 prunes too, so its decision depends only on the embeddings and layer 0's Q/K (the score path)
THRESHOLDS = (0.03, 0.035, 0.04)


def tiny_ltp_folder(out: Path, thresholds: tuple[float, ...] = THRESHOLDS, seed: int = 3) -> Path:
    """Export a tiny 3-layer BERT LTP model (peaky random weights) to ``out``."""
    hf = tiny_hf_config("bert", layers=len(thresholds), max_positions=64)
    cfg = BackboneConfig.from_hf_dict(hf)
    pruning = LTPParams(thresholds, score_norm_length=32).to_dict()
    model = peaky_init(build(cfg, pruning), seed=seed, qk_std=0.3).eval()
    loaded = LoadedModel(model, "ltp", hf, pruning, tiny_tokenizer_json(), ["neg", "pos"], 64, "tiny")
    return write_export_folder(loaded, out, overwrite=True)


def random_texts(n: int, seed: int = 0, min_words: int = 4, max_words: int = 40) -> LabeledTexts:
    """Sentences of tiny-vocabulary words with random labels."""
    rng = random.Random(seed)
    texts = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(min_words, max_words))) for _ in range(n)]
    return LabeledTexts(texts, [rng.randint(0, 1) for _ in texts], f"random-{seed}")


# pytest registers an imported fixture once per importing module; this cache makes the session share one export
_CACHE: dict[str, object] = {}


def _cached(key: str, make):
    if key not in _CACHE:
        _CACHE[key] = make()
    return _CACHE[key]


@pytest.fixture(scope="session")
def tiny_folder(tmp_path_factory) -> Path:
    """The tiny LTP export folder, exported once per test session."""
    return _cached("fp32", lambda: tiny_ltp_folder(tmp_path_factory.mktemp("tiny_ltp") / "fp32"))


@pytest.fixture(scope="session")
def calib_data(tiny_folder):
    from pruneport.calibration.batches import tokenized_batches

    return _cached("calib", lambda: tokenized_batches(tiny_folder, random_texts(96, seed=0), batch_size=16))


@pytest.fixture(scope="session")
def eval_data(tiny_folder):
    from pruneport.calibration.batches import tokenized_batches

    return _cached("eval", lambda: tokenized_batches(tiny_folder, random_texts(96, seed=1), batch_size=16))


@pytest.fixture(scope="session")
def int8_all(tiny_folder, calib_data, tmp_path_factory) -> Path:
    """ORT static QDQ with the score path quantized too."""
    from pruneport.calibration.quantize import QuantizeOptions, quantize_folder

    options = QuantizeOptions(mode="static", keep_score_path=False)
    return _cached(
        "all", lambda: quantize_folder(tiny_folder, calib_data, tmp_path_factory.mktemp("q") / "all", options)
    )


@pytest.fixture(scope="session")
def int8_score(tiny_folder, calib_data, tmp_path_factory) -> Path:
    """ORT static QDQ with the score path in FP32 (static's default)."""
    from pruneport.calibration.quantize import QuantizeOptions, quantize_folder

    options = QuantizeOptions(mode="static")
    return _cached(
        "score", lambda: quantize_folder(tiny_folder, calib_data, tmp_path_factory.mktemp("q") / "sp", options)
    )

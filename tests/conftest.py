"""Shared pytest set-up: quiet exporter logs, deterministic torch, one thread per op (2-core CI)."""

from __future__ import annotations

import logging
import warnings

import pytest
import torch


def pytest_configure(config: pytest.Config) -> None:
    torch.set_num_threads(2)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", message=".*torchvision.*")
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)


@pytest.fixture(scope="session")
def tiny_ltp_loaded():
    """A tiny BERT-layout LTP model (3 layers, N=32) with the tiny tokenizer, as a LoadedModel."""
    from pruneport.methods.backbone import BackboneConfig
    from pruneport.methods.checkpoint import LoadedModel
    from pruneport.methods.ltp.model import LTPParams, build
    from tests.tiny import peaky_init, tiny_hf_config, tiny_tokenizer_json

    hf = tiny_hf_config("bert", layers=3, max_positions=32)
    params = LTPParams((0.0, 0.02, 0.03), score_norm_length=32)
    model = peaky_init(build(BackboneConfig.from_hf_dict(hf), params.to_dict()), seed=3).eval()
    return LoadedModel(
        model, "ltp", hf, params.to_dict(), tiny_tokenizer_json(), ["class_0", "class_1"], 32, source="tests"
    )


@pytest.fixture(scope="session")
def tiny_ltp_export(tiny_ltp_loaded, tmp_path_factory):
    """The tiny LTP model exported once per test session (read-only for tests)."""
    from pruneport.export.onnx_export import write_export_folder

    return write_export_folder(tiny_ltp_loaded, tmp_path_factory.mktemp("export") / "tiny_ltp")

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

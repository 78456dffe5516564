"""The engine layer (``pruneport.runtime.ort`` / ``.openvino``): sessions, IO binding and the CUDA options.

CI has no GPU: the IO-binding path runs on the CPU execution provider here (the same code binds to CUDA memory on a
GPU), and the CUDA options are checked as values.
"""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest

from pruneport.errors import ModelLoadError
from pruneport.export.manifest import Manifest
from pruneport.runtime.ort import CUDA_OPTIONS, OrtSession, providers_for
from tests.tiny import random_batch


def test_io_binding_gives_the_plain_runs_outputs(tiny_ltp_export):
    path = tiny_ltp_export / Manifest.read(tiny_ltp_export).model_file
    plain = OrtSession(path, threads=1)
    bound = OrtSession(path, threads=1, io_binding=True)
    assert not plain.io_binding and bound.io_binding
    manifest = Manifest.read(tiny_ltp_export)
    rng = np.random.default_rng(0)
    for lengths in ([5], [24, 9, 17, 3], [12, 12]):
        feeds = random_batch(rng, lengths, manifest.backbone["vocab_size"], 0, True)
        expected, got = plain.run(feeds), bound.run(feeds)
        assert list(got) == plain.output_names
        for name in plain.output_names:
            np.testing.assert_array_equal(got[name], expected[name])


def test_cuda_provider_keeps_tf32_off_for_cpu_equal_decisions(monkeypatch):
    assert CUDA_OPTIONS["use_tf32"] == "0"
    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    cuda, cpu = providers_for("gpu")
    assert cuda == ("CUDAExecutionProvider", CUDA_OPTIONS) and cpu == "CPUExecutionProvider"


def test_gpu_without_onnxruntime_gpu_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CPUExecutionProvider"])
    with pytest.raises(ModelLoadError, match="onnxruntime-gpu"):
        providers_for("gpu")
    with pytest.raises(ValueError, match="unknown device"):
        providers_for("tpu")

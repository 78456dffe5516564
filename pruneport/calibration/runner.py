"""Running an export folder (ONNX Runtime or OpenVINO IR) over tokenized data, with thresholds changeable in place.

Threshold search and reports run one graph many times with different thresholds. On ONNX Runtime the named
threshold initializers (:mod:`pruneport.calibration.thresholds`) are listed as graph inputs in an in-memory copy,
which makes them *overridable initializers*: new values are fed per run, no new session. On OpenVINO the threshold
Constants (found by friendly name) are replaced and the model recompiled (compiled models are cached per value set).
OpenVINO runs with ``INFERENCE_PRECISION_HINT=f32`` (its CPU default is bf16 on this kind of machine). Torch-free.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pruneport.calibration.batches import TokenizedData
from pruneport.calibration.thresholds import (
    THRESHOLD_PREFIX,
    ThresholdError,
    ThresholdSpec,
    name_thresholds,
    threshold_name,
    threshold_spec,
)
from pruneport.export.manifest import Manifest

log = logging.getLogger(__name__)


@dataclass
class RunResult:
    """Outputs over a data set in example order: logits [n, labels], tokens_per_layer [n, layers], seconds spent."""

    logits: np.ndarray
    tokens_per_layer: np.ndarray
    seconds: float

    @property
    def predictions(self) -> np.ndarray:
        """Predicted class per example [n]: the argmax of the logits."""
        return self.logits.argmax(-1)


def backend_of(folder: Path, manifest: Manifest) -> str:
    """ "openvino" for IR folders (model.xml or ``extra.backend``), else "onnxruntime"."""
    if manifest.extra.get("backend") == "openvino" or manifest.model_file.endswith(".xml"):
        return "openvino"
    return "onnxruntime"


class FolderRunner:
    """Runs one export folder; ``set_thresholds({layer: value})`` changes named thresholds for later runs."""

    def __init__(self, folder: str | Path, threads: int = 0) -> None:
        self.folder = Path(folder)
        self.manifest = Manifest.read(self.folder)
        self.backend = backend_of(self.folder, self.manifest)
        self.threads = threads
        self.thresholds: dict[int, float] = {}
        self.input_names = list(self.manifest.inputs)
        if self.backend == "openvino":
            self._open_openvino()
        else:
            self._open_onnxruntime()

    # -- ONNX Runtime ------------------------------------------------------------------------------------------
    def _open_onnxruntime(self) -> None:
        import onnx

        from pruneport.runtime.ort import cpu_session

        path = self.folder / self.manifest.model_file
        if not path.exists():
            raise FileNotFoundError(f"model file not found: {path}")
        model = onnx.load(str(path))
        try:  # name the thresholds in memory when the folder is a plain export
            name_thresholds(model, self.manifest.method, self.manifest.pruning, self.manifest.num_layers)
        except ThresholdError as err:
            log.debug("%s: thresholds not adjustable: %s", self.folder, err)
        graph_inputs = {i.name for i in model.graph.input}
        self.threshold_defaults: dict[int, float] = {}
        for init in model.graph.initializer:
            if init.name.startswith(THRESHOLD_PREFIX):
                from onnx import numpy_helper

                layer = int(init.name[len(THRESHOLD_PREFIX) :])
                self.threshold_defaults[layer] = float(numpy_helper.to_array(init).reshape(()))
                if init.name not in graph_inputs:
                    model.graph.input.append(onnx.helper.make_tensor_value_info(init.name, onnx.TensorProto.FLOAT, []))
        self._session = cpu_session(model.SerializeToString(), self.threads, spinning=False)
        self._outputs = [o.name for o in self._session.get_outputs()]

    # -- OpenVINO ----------------------------------------------------------------------------------------------
    def _open_openvino(self) -> None:
        import openvino as ov

        path = self.folder / self.manifest.model_file
        if not path.exists():
            raise FileNotFoundError(f"model file not found: {path}")
        self._core = ov.Core()
        self._model = self._core.read_model(str(path))
        self._constants = {
            op.get_friendly_name(): op
            for op in self._model.get_ops()
            if op.get_type_name() == "Constant" and op.get_friendly_name().startswith(THRESHOLD_PREFIX)
        }
        self.threshold_defaults = {
            int(name[len(THRESHOLD_PREFIX) :]): float(np.asarray(op.get_data()).reshape(()))
            for name, op in self._constants.items()
        }
        self._compiled_cache: dict[tuple, object] = {}
        self._compile()

    def _compile(self) -> None:
        from pruneport.runtime.openvino import compile_cpu, replace_constants

        key = tuple(sorted(self.thresholds.items()))
        if key not in self._compiled_cache:
            values = {threshold_name(k): v for k, v in {**self.threshold_defaults, **self.thresholds}.items()}
            self._constants.update(replace_constants(self._model, values))
            if len(self._compiled_cache) > 8:
                self._compiled_cache.clear()
            self._compiled_cache[key] = compile_cpu(self._model, self.threads)
        self._compiled = self._compiled_cache[key]
        self._request = self._compiled.create_infer_request()
        self._outputs = [o.get_any_name() for o in self._compiled.outputs]

    # -- common ------------------------------------------------------------------------------------------------
    @property
    def spec(self) -> ThresholdSpec:
        """The method's threshold spec (raises ThresholdError for methods without thresholds)."""
        return threshold_spec(self.manifest.method)

    def scaled_thresholds(self, scale: float, base: dict[int, float] | None = None) -> dict[int, float]:
        """The stored thresholds (or ``base``) under threshold scale ``scale`` (1 = stored, 0 = keep every token)."""
        return self.spec.scaled(self.threshold_defaults if base is None else base, scale)

    def set_thresholds(self, values: dict[int, float] | None) -> None:
        """Use these graph threshold values (layer -> value) from now on; None or {} restores the stored ones."""
        values = dict(values or {})
        unknown = sorted(set(values) - set(self.threshold_defaults))
        if unknown:
            raise ThresholdError(
                f"{self.folder}: no named threshold for layers {unknown} (named: {sorted(self.threshold_defaults)})"
            )
        self.thresholds = values
        if self.backend == "openvino":
            self._compile()

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """One batch of int64 feeds -> outputs by name."""
        inputs = {n: np.ascontiguousarray(feeds[n], dtype=np.int64) for n in self.input_names}
        if self.backend == "openvino":
            result = self._request.infer(inputs)
            return {name: np.asarray(result[i]) for i, name in enumerate(self._outputs)}
        for layer, value in self.thresholds.items():
            inputs[threshold_name(layer)] = np.asarray(value, dtype=np.float32)
        values = self._session.run(self._outputs, inputs)
        return dict(zip(self._outputs, values, strict=True))

    def evaluate(self, data: TokenizedData) -> RunResult:
        """Run every batch; results in example order."""
        layers = self.manifest.num_layers
        logits = np.zeros((data.n, len(self.manifest.label_names)), dtype=np.float32)
        tokens = np.zeros((data.n, layers), dtype=np.int64)
        start = time.perf_counter()
        for batch in data.batches:
            out = self.run(batch.feeds)
            logits[batch.rows] = out["logits"]
            tokens[batch.rows] = out["tokens_per_layer"]
        return RunResult(logits, tokens, time.perf_counter() - start)

"""INT8 quantization of export folders, keeping what decides pruning in higher precision.

Backends (``shared/research/deployment-notes.md`` section 3 has the measurements behind each default):

- ``onnxruntime`` static QDQ (``onnxruntime.quantization.quantize_static``): MatMuls only, U8 activations (S8S8 is
  slower than FP32 on x86 while U8S8 is about 2.75x faster), per-channel S8 weights, MinMax calibration on real
  variable-length batches. Histogram methods (entropy, percentile, distribution) fail on shapes that vary between
  samples (onnxruntime #18792), and pruning makes every intermediate length vary, so they calibrate a *no-prune twin*
  (every threshold at its keep-all value, inputs padded to one width, one example per batch) and the twin's
  thresholds are then set back: the twin is the same graph, so its ranges carry over name for name.
- ``onnxruntime`` dynamic (``quantize_dynamic``, **the default**): MatMul weights S8 per channel, activations
  quantized at run time. Chosen by ``benchmarks/bench_long_text.py`` (benchmarks/README.md, "Long text"): on the
  trained LTP models it was the fastest ORT INT8 at batch 1 and 32 on SST-2 and IMDB and stayed within 1 point of
  FP32 pruned on both, while static QDQ MinMax lost 1.04 points on SST-2 and ran 4-36% slower. Its activation
  ranges are taken per run, over the whole batch, so a row's logits can move slightly with its batch neighbours
  (static QDQ keeps every row equal to its batch-1 result).
- ``openvino``: the ONNX graph read by OpenVINO and quantized by NNCF with ``ModelType.TRANSFORMER`` (best accuracy
  of the schemes measured); with labeled data and ``max_drop``, ``nncf.quantize_with_accuracy_control`` reverts
  layers to FP32 until the drop is within bounds. Saved as IR (``model.xml``/``.bin``, FP32 weights kept).
- neural-compressor: not used, for measured reasons. The 3.10 wheel (``pip download --no-deps``, checked for this
  issue) holds the subpackages common, evaluation, jax, tensorflow, torch and transformers: no ONNX and no OpenVINO
  backend (ONNX moved to the separate ``onnx-neural-compressor``), and its ``pt`` extra pulls ``torchao``. Its
  accuracy-aware tuning (``neural_compressor.torch.quantization.autotune(model, TuningConfig(tolerable_loss=...),
  eval_fn)``) produces PT2E/IPEX torch modules, which would have to go through pruneport's dynamo export again
  (exporting a PT2E-quantized pruned model was not attempted); ORT's ``SmoothQuant`` option needs the 2.x API.
  The tuning it would offer is what ``nncf.quantize_with_accuracy_control`` (``--max-drop``) does here, on the
  deployed graph itself. It is not installed in pruneport's environment.

Score path (``keep_score_path``; by default on, except for ORT dynamic, see
:attr:`QuantizeOptions.score_path_fp32`): INT8 moves pruning decisions a lot (the final kept count matched FP32 for
only 3-12% of inputs in the measurements), because a threshold compares a score computed from quantized values. With
the option on, the MatMuls that compute what decides pruning stay FP32: for attention-score methods (LTP) the Q and
K projections and the Q.K^T MatMul of every pruning layer and the score MatMul; for predictor methods every MatMul
of the predictor MLPs (module path ``pruner.*``); for Pyramid-BERT the k-center distance MatMuls (the method spec's
``score_source`` says which). Their inputs, and every reader of a pruning layer's attention
probabilities other than the P.V MatMul, are rewired to the float tensors, so the score sees no fake-quantized
value. Roles come from :func:`pruneport.graph.roles.matmul_table`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import onnx

import pruneport
from pruneport.calibration.batches import OrtCalibrationReader, TokenizedData
from pruneport.calibration.thresholds import (
    ThresholdError,
    has_thresholds,
    name_thresholds,
    set_thresholds,
    threshold_spec,
)
from pruneport.export.folders import carry_over, check_output, scratch_dir, staged_folder, temp_files_under
from pruneport.export.manifest import Manifest
from pruneport.graph.roles import GraphIndex, GraphRoleError, MatMulInfo, matmul_table
from pruneport.methods import find_method

log = logging.getLogger(__name__)

BACKENDS = ("onnxruntime", "openvino")
ORT_MODES = ("static", "dynamic")
CALIBRATION_METHODS = ("minmax", "entropy", "percentile", "distribution")
SCORE_ROLES_ATTENTION = ("query", "key", "qk")
DECISION_ROLES = ("score", "predictor", "selection")  # MatMuls that exist only to decide what to keep


@dataclass
class QuantizeOptions:
    """What to quantize and how (see the module docstring)."""

    backend: str = "onnxruntime"
    mode: str = "dynamic"  # onnxruntime: dynamic | static (the default chosen by benchmarks/bench_long_text.py)
    calibration: str = "minmax"  # onnxruntime static
    keep_score_path: bool | None = None  # None: FP32 except for ORT dynamic (see score_path_fp32)
    max_drop: float | None = None  # openvino: accuracy control when labels are given
    per_channel: bool = True

    @property
    def score_path_fp32(self) -> bool:
        """Whether the score path stays FP32: ``keep_score_path`` when set; by default yes, except for ONNX Runtime
        dynamic quantization, where keeping it bought no decision fidelity (17% vs 15% of SST-2 rows with FP32's
        exact tokens_per_layer; IMDB 0.5% both) and cost 11-15% of the speed (benchmarks/README.md)."""
        if self.keep_score_path is not None:
            return self.keep_score_path
        return not (self.backend == "onnxruntime" and self.mode == "dynamic")

    def check(self) -> None:
        """Raise ValueError for an unknown backend, mode or calibration method, or a ``max_drop`` outside (0, 1)."""
        if self.backend not in BACKENDS:
            raise ValueError(f"unknown backend {self.backend!r}; choose one of {', '.join(BACKENDS)}")
        if self.mode not in ORT_MODES:
            raise ValueError(f"unknown mode {self.mode!r}; choose one of {', '.join(ORT_MODES)}")
        if self.calibration not in CALIBRATION_METHODS:
            raise ValueError(
                f"unknown calibration method {self.calibration!r}; choose one of {', '.join(CALIBRATION_METHODS)}"
            )
        if self.max_drop is not None and not 0 < self.max_drop < 1:
            raise ValueError(f"--max-drop is an absolute accuracy drop in (0, 1), got {self.max_drop}")


@dataclass
class ScorePath:
    """Nodes to keep in float: MatMuls excluded from quantization, Softmaxes whose probabilities decide pruning."""

    matmuls: list[str] = field(default_factory=list)
    softmaxes: list[str] = field(default_factory=list)
    layers: list[int] = field(default_factory=list)


def pruning_layers(manifest: Manifest) -> list[int]:
    """Layers whose attention decides pruning (methods with a threshold spec), else []."""
    try:
        spec = threshold_spec(manifest.method)
    except ThresholdError:
        return []
    return spec.layers(manifest.pruning, manifest.num_layers)


def score_path(model: onnx.ModelProto, table: list[MatMulInfo], manifest: Manifest) -> ScorePath:
    """The score path of ``model`` (see the module docstring)."""
    spec = find_method(manifest.method)
    attention_decides = spec is not None and spec.score_source == "attention"
    layers = pruning_layers(manifest) if attention_decides else []
    names = [
        m.name for m in table if m.role in DECISION_ROLES or (m.role in SCORE_ROLES_ATTENTION and m.layer in layers)
    ]
    softmaxes = []
    if layers:
        from pruneport.graph.roles import layer_of_scope, module_path

        for node in model.graph.node:
            if node.op_type == "Softmax":
                found = layer_of_scope(module_path(node))
                if found and found[0] in layers:
                    softmaxes.append(node.name)
    return ScorePath(names, softmaxes, layers)


def restore_float_inputs(model: onnx.ModelProto, path: ScorePath, table: list[MatMulInfo]) -> int:
    """Rewire the score path's readers of fake-quantized activations (Q -> DQ) to the float tensors, in place.

    Returns the number of inputs rewired. Quantized consumers (the P.V MatMul) keep their DQ inputs.
    """
    index = GraphIndex(model)
    pv = {m.name for m in table if m.role == "pv"}
    targets: list[onnx.NodeProto] = [n for n in model.graph.node if n.name in set(path.matmuls)]
    targets += [n for n in model.graph.node if n.op_type != "MatMul" and _in_pruner(n)]
    softmax_outputs = {n.output[0] for n in model.graph.node if n.name in set(path.softmaxes)}
    for out in softmax_outputs:
        for q in index.consumers.get(out, []):
            if q.op_type != "QuantizeLinear":
                continue
            for dq in index.consumers.get(q.output[0], []):
                if dq.op_type == "DequantizeLinear":
                    targets += [c for c in index.consumers.get(dq.output[0], []) if c.name not in pv]
    rewired = 0
    for node in targets:
        for pos, name in enumerate(node.input):
            dq = index.producer.get(name)
            if dq is None or dq.op_type != "DequantizeLinear":
                continue
            q = index.producer.get(dq.input[0])
            if q is not None and q.op_type == "QuantizeLinear":
                node.input[pos] = q.input[0]
                rewired += 1
    _prune_dead_nodes(model)
    return rewired


def _in_pruner(node: onnx.NodeProto) -> bool:
    from pruneport.graph.roles import module_path

    return module_path(node).startswith("pruner")


def _prune_dead_nodes(model: onnx.ModelProto) -> None:
    """Drop Q/DQ nodes whose outputs nobody reads any more."""
    outputs = {o.name for o in model.graph.output}
    while True:
        used = {i for n in model.graph.node for i in n.input} | outputs
        dead = [
            n
            for n in model.graph.node
            if n.op_type in ("QuantizeLinear", "DequantizeLinear") and n.output[0] not in used
        ]
        if not dead:
            return
        for n in dead:
            model.graph.node.remove(n)


def prepared_fp32(folder: Path, manifest: Manifest) -> onnx.ModelProto:
    """The folder's ONNX graph with named thresholds (methods that have them)."""
    path = folder / manifest.model_file
    if not manifest.model_file.endswith(".onnx"):
        raise ValueError(f"{folder} holds {manifest.model_file}; quantization starts from an ONNX export folder")
    if manifest.precision != "fp32":
        raise ValueError(f"{folder} is already {manifest.precision}; quantize the FP32 export folder")
    if not path.exists():
        raise FileNotFoundError(f"model file not found: {path}")
    model = onnx.load(str(path))
    try:
        name_thresholds(model, manifest.method, manifest.pruning, manifest.num_layers)
    except ThresholdError as err:
        if has_thresholds(manifest.method):
            raise
        log.info("no named thresholds: %s", err)
    return model


def _quantize_ort_static(
    model: onnx.ModelProto,
    manifest: Manifest,
    data: TokenizedData,
    opts: QuantizeOptions,
    exclude: list[str],
    work: Path,
) -> onnx.ModelProto:
    import numpy as np
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    methods = {
        "minmax": CalibrationMethod.MinMax,
        "entropy": CalibrationMethod.Entropy,
        "percentile": CalibrationMethod.Percentile,
        "distribution": CalibrationMethod.Distribution,
    }
    source = work / "fp32.onnx"
    reader_data = data
    twin = opts.calibration != "minmax"
    slots = []
    if twin:
        twin_model = onnx.ModelProto()
        twin_model.CopyFrom(model)
        if has_thresholds(manifest.method):  # a graph without thresholds (the plain baselines) is its own twin
            slots = name_thresholds(model, manifest.method, manifest.pruning, manifest.num_layers)
            keep_all = threshold_spec(manifest.method).keep_all  # keep every token: shapes follow the input
            set_thresholds(twin_model, {s.layer: keep_all for s in slots})
        onnx.save(twin_model, str(source))
        width = int(min(np.percentile(data.lengths, 25), manifest.max_length))
        reader_data = data.fixed_length(width)
        log.info(
            "%s calibration on a no-prune twin: %d examples cut to %d tokens", opts.calibration, reader_data.n, width
        )
    else:
        onnx.save(model, str(source))
    out = work / "int8.onnx"
    quantize_static(
        str(source),
        str(out),
        OrtCalibrationReader(reader_data, manifest.inputs),
        quant_format=QuantFormat.QDQ,
        op_types_to_quantize=["MatMul"],
        per_channel=opts.per_channel,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        nodes_to_exclude=exclude,
        calibrate_method=methods[opts.calibration],
        extra_options={"CalibTensorRangeSymmetric": False},
    )
    quantized = onnx.load(str(out))
    if slots:
        set_thresholds(quantized, {s.layer: s.value for s in slots})
    return quantized


def _quantize_ort_dynamic(
    model: onnx.ModelProto, opts: QuantizeOptions, exclude: list[str], work: Path
) -> onnx.ModelProto:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    source, out = work / "fp32.onnx", work / "int8.onnx"
    stripped = onnx.ModelProto()
    stripped.CopyFrom(model)
    del stripped.graph.value_info[:]  # the dynamo graph's stored shapes clash with the quantizer's shape inference
    onnx.save(stripped, str(source))
    quantize_dynamic(
        str(source),
        str(out),
        op_types_to_quantize=["MatMul"],
        per_channel=opts.per_channel,
        weight_type=QuantType.QInt8,
        nodes_to_exclude=exclude,
        # ONNX shape inference cannot type the outputs of ORT's contrib ops (optimized folders): they are float
        extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
    )
    return onnx.load(str(out))


def _quantize_openvino(
    model: onnx.ModelProto,
    manifest: Manifest,
    data: TokenizedData,
    opts: QuantizeOptions,
    exclude: list[str],
    work: Path,
    validation: TokenizedData | None,
):
    import nncf
    import numpy as np
    import openvino as ov

    # NNCF logs its INFO lines to stdout through its own handler: keep them for pruneport's DEBUG level only
    nncf.set_log_level(logging.INFO if log.isEnabledFor(logging.DEBUG) else logging.WARNING)
    source = work / "fp32.onnx"
    onnx.save(model, str(source))
    core = ov.Core()
    ov_model = core.read_model(str(source))
    present = {op.get_friendly_name() for op in ov_model.get_ops()}
    missing = [n for n in exclude if n not in present]
    if missing:
        raise RuntimeError(f"OpenVINO renamed score-path MatMuls {missing[:5]}; cannot keep them in FP32")
    inputs = list(manifest.inputs)

    def transform(batch):
        return {n: batch.feeds[n] for n in inputs}

    calibration = nncf.Dataset(data.batches, transform)
    ignored = nncf.IgnoredScope(names=list(exclude), validate=False) if exclude else None
    common = dict(model_type=nncf.ModelType.TRANSFORMER, subset_size=max(1, len(data.batches)), ignored_scope=ignored)
    if opts.max_drop is not None and validation is not None and validation.labels is not None:

        def accuracy(compiled, items) -> float:
            correct = total = 0
            for batch in items:
                logits = compiled(transform(batch))[0]
                correct += int((np.asarray(logits).argmax(-1) == batch.labels).sum())
                total += batch.size
            return correct / max(total, 1)

        quantized = nncf.quantize_with_accuracy_control(
            ov_model,
            calibration,
            nncf.Dataset(validation.batches),
            accuracy,
            max_drop=opts.max_drop,
            drop_type=nncf.DropType.ABSOLUTE,
            **common,
        )
    else:
        if opts.max_drop is not None:
            log.warning("--max-drop needs labeled data; quantizing without accuracy control")
        quantized = nncf.quantize(ov_model, calibration, **common)
    return quantized


def quantize_folder(
    folder: str | Path,
    data: TokenizedData,
    out: str | Path,
    options: QuantizeOptions | None = None,
    validation: TokenizedData | None = None,
    overwrite: bool = False,
) -> Path:
    """Quantize an FP32 export folder into ``out`` (atomic: written beside it, renamed when complete).

    Args:
        folder: FP32 pruneport export folder.
        data: calibration batches (:func:`pruneport.calibration.batches.tokenized_batches`).
        out: the INT8 export folder to write.
        options: backend and scheme.
        validation: labeled batches for OpenVINO accuracy control (``options.max_drop``).
        overwrite: replace ``out`` when it exists.
    """
    opts = options or QuantizeOptions()
    opts.check()
    folder, out = Path(folder), Path(out)
    manifest = Manifest.read(folder)
    check_output(out, [folder], overwrite)
    model = prepared_fp32(folder, manifest)
    try:
        table = matmul_table(model)
    except GraphRoleError:
        if opts.score_path_fp32:
            raise
        table = []  # a graph pruneport did not export (the plain baselines): nothing to keep in FP32
    path = score_path(model, table, manifest) if opts.score_path_fp32 else ScorePath()
    with staged_folder(out) as tmp:
        work = scratch_dir(tmp)  # temporary models, and the quantizers' own temporary files, go with the staging
        with temp_files_under(work):
            if opts.backend == "openvino":
                import openvino as ov

                quantized = _quantize_openvino(model, manifest, data, opts, path.matmuls, work, validation)
                ov.save_model(quantized, str(tmp / "model.xml"), compress_to_fp16=False)
                model_file, scheme = "model.xml", "nncf-transformer" + ("-accuracy-control" if opts.max_drop else "")
                rewired = 0
            else:
                if opts.mode == "static":
                    qmodel = _quantize_ort_static(model, manifest, data, opts, path.matmuls, work)
                    rewired = restore_float_inputs(qmodel, path, table) if opts.score_path_fp32 else 0
                    scheme = f"qdq-u8s8-{opts.calibration}"
                else:
                    qmodel = _quantize_ort_dynamic(model, opts, path.matmuls, work)
                    rewired, scheme = 0, "dynamic-s8"
                onnx.checker.check_model(qmodel)
                onnx.save(qmodel, str(tmp / "model.onnx"))
                model_file = "model.onnx"
        # split stages and OpenVINO IR were made from the FP32 graph: they do not describe the quantized one
        dropped = manifest.drop_derived()
        carry_over(folder, tmp, manifest, model=False)  # the tokenizer
        step: dict[str, Any] = {
            "step": "quantize",
            "backend": opts.backend,
            "scheme": scheme,
            "score_path_fp32": opts.score_path_fp32,
            "calibration": {"source": data.source, "examples": data.n},
            "pruneport": pruneport.__version__,
        }
        if dropped:
            step["dropped"] = dropped
            log.warning("not carried over (made from the FP32 graph; re-create them): %s", dropped)
        manifest.model_file = model_file
        manifest.precision = "int8"
        manifest.record(**step)
        manifest.extra = {
            **manifest.extra,
            "backend": opts.backend,
            "quantization": {**step, "fp32_matmuls": path.matmuls, "rewired_inputs": rewired},
            "matmuls": [m.to_dict() for m in table],
        }
        manifest.write(tmp)
    log.info("wrote %s (%s %s)", out, opts.backend, scheme)
    return out

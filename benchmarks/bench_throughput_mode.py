"""Latency mode against throughput mode of ``pruneport.runtime`` on one export folder (OpenVINO and ONNX Runtime).

Throughput mode runs independent batches concurrently: on OpenVINO through a pool of async infer requests owned by
the session (``OpenVINOSession.run_many``), on ONNX Runtime through parallel ``run`` calls. Every text is first run
once in each mode (first-seen shapes), then the modes are timed in interleaved order and each timing is the minimum
over ``--repeats``. Labels of both modes must agree.

    python benchmarks/bench_throughput_mode.py EXPORT_FOLDER --limit 400 --batch-size 8

Measured 2026-11-21 (2-vCPU AMD EPYC, AVX2, onnxruntime 1.31.1, openvino 2026.4.1, f32, quiet machine; the demo LTP
model from ``pruneport demo``, SST-2 dev first 400 sentences, batches of 8, min of 3): OpenVINO latency 1.99 s,
throughput 1.62 s (1.23x); ONNX Runtime latency 1.69 s, throughput 1.46 s (1.16x); labels identical; 2 requests.
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import time
from pathlib import Path

DATA = Path(os.environ.get("PRUNEPORT_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


def sst2_dev(limit: int) -> list[str]:
    with open(DATA / "sst2" / "dev.tsv", newline="") as fh:
        return [row["sentence"] for row in csv.DictReader(fh, delimiter="\t")][:limit]


def main() -> None:
    from pruneport.runtime import load

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--limit", type=int, default=400)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    texts = sst2_dev(args.limit)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs; {len(texts)} texts")
    for backend in ("openvino", "onnxruntime"):
        modes = ("latency", "throughput")
        classifiers = {m: load(args.folder, backend=backend, mode=m, batch_size=args.batch_size) for m in modes}
        labels = {m: clf.predict(texts).labels for m, clf in classifiers.items()}  # first-seen shapes
        best = dict.fromkeys(modes, float("inf"))
        for _ in range(args.repeats):
            for mode, clf in classifiers.items():
                start = time.perf_counter()
                clf.predict(texts)
                best[mode] = min(best[mode], time.perf_counter() - start)
        same = labels["latency"] == labels["throughput"]
        print(
            f"{backend}: latency {best['latency']:.2f} s, throughput {best['throughput']:.2f} s "
            f"({best['latency'] / best['throughput']:.2f}x); labels identical: {same}"
        )


if __name__ == "__main__":
    main()

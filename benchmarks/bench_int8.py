"""INT8 benchmark: MiniLM LTP on SST-2 dev, FP32 against INT8 (ONNX Runtime U8S8 QDQ, OpenVINO NNCF).

Per variant: accuracy, relative FLOPs and BOPs (against the FP16 unpruned baseline), kept-token agreement with FP32,
batch-1 latency and its ratio to FP32 on ONNX Runtime (interleaved runs, min of repeats, measured in this one run),
and the accuracy-vs-BOPs sweep over threshold scales (report.json/.csv/.md/.png under ``--work``/report).

Variants: FP32; INT8 with the score path in FP32 (default) and fully INT8; fully INT8 with thresholds re-fitted to
FP32's kept tokens on the calibration data. Targets (issue 6): at most 1 point accuracy drop against FP32 pruned and
8x or more fewer BOPs than FP16 unpruned.

Model: ``--model`` or ``$PRUNEPORT_BENCH_MODEL`` (a model.pt or an export folder), default the demo's
``/tmp/demo_q/model.pt`` (``pruneport demo -o /tmp/demo_q``). Run it with ``nice -n 10``; it is not part of CI.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import time
from pathlib import Path

import numpy as np

log = logging.getLogger("bench_int8")

VARIANTS = {
    # name: (backend, keep_score_path, refit)
    "ort-u8s8-scorefp32": ("onnxruntime", True, False),
    "ort-u8s8-all": ("onnxruntime", False, False),
    "ort-u8s8-all-refit": ("onnxruntime", False, True),
    "ov-nncf-scorefp32": ("openvino", True, False),
    "ov-nncf-all": ("openvino", False, False),
    "ov-nncf-all-refit": ("openvino", False, True),
}


def fp32_folder(model: Path, work: Path) -> Path:
    if (model / "pruneport.json").exists():
        return model
    out = work / "fp32"
    if (out / "pruneport.json").exists() and (out / "model.onnx").stat().st_mtime > model.stat().st_mtime:
        return out
    from pruneport.export.onnx_export import write_export_folder
    from pruneport.methods import load_checkpoint

    return write_export_folder(load_checkpoint(model), out, overwrite=True)


def build_variants(fp32: Path, work: Path, names: list[str], calib, refit_data, fresh: bool) -> dict[str, Path]:
    from pruneport.calibration.calibrate import refit_to_reference, write_thresholds
    from pruneport.calibration.quantize import QuantizeOptions, quantize_folder
    from pruneport.calibration.runner import FolderRunner

    folders: dict[str, Path] = {"fp32": fp32}
    reference = None
    for name in names:
        backend, keep, refit = VARIANTS[name]
        out = work / name
        if (out / "pruneport.json").exists() and not fresh:
            folders[name] = out
            continue
        base_name = name.removesuffix("-refit")
        base = folders.get(base_name) or work / base_name
        started = time.perf_counter()
        if not refit or not (base / "pruneport.json").exists():
            target = base if refit else out
            quantize_folder(fp32, calib, target, QuantizeOptions(backend=backend, keep_score_path=keep), overwrite=True)
            log.info("quantized %s in %.0f s", target.name, time.perf_counter() - started)
            folders[base_name] = target
        if refit:
            if reference is None:
                reference = FolderRunner(fp32).evaluate(refit_data).tokens_per_layer
            fit = refit_to_reference(FolderRunner(base), refit_data, reference)
            write_thresholds(base, out, fit.values, {"step": "calibrate", "refit_to": str(fp32)}, overwrite=True)
            log.info(
                "refit %s: identical %.1f%% -> %.1f%% (%d runs, %.0f s)",
                name, 100 * fit.before.identical, 100 * fit.after.identical, fit.runs, time.perf_counter() - started,
            )  # fmt: skip
        folders[name] = out
    return {k: v for k, v in folders.items() if k == "fp32" or k in names}


def latency(folders: dict[str, Path], data, repeats: int) -> dict[str, float]:
    """Batch-1 seconds per example: interleaved passes over the same examples, min over repeats."""
    from pruneport.calibration.runner import FolderRunner

    runners = {name: FolderRunner(folder) for name, folder in folders.items()}
    for runner in runners.values():  # warm-up pass (OpenVINO compiles per new shape)
        runner.evaluate(data)
    best = {name: float("inf") for name in runners}
    for _ in range(repeats):
        for name, runner in runners.items():
            best[name] = min(best[name], runner.evaluate(data).seconds / data.n)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default_model = os.environ.get("PRUNEPORT_BENCH_MODEL", "/tmp/demo_q/model.pt")
    parser.add_argument("--model", type=Path, default=Path(default_model))
    parser.add_argument("--work", type=Path, default=Path("/tmp/bench_int8"))
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--calib-limit", type=int, default=300, help="SST-2 train examples for calibration")
    parser.add_argument("--refit-limit", type=int, default=160, help="of those, examples for the threshold refit")
    parser.add_argument("--dev-limit", type=int, default=None, help="SST-2 dev subset (default: all 872)")
    parser.add_argument("--scales", default="0,1,1.5,2,3")
    parser.add_argument("--timing-n", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--fresh", action="store_true", help="re-quantize even when variant folders exist")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    logging.getLogger().setLevel(logging.WARNING)  # ORT's quantizer logs advice on the root logger
    for name in ("bench_int8", "pruneport"):
        logging.getLogger(name).setLevel(logging.INFO)
    logging.getLogger("nncf").setLevel(logging.ERROR)

    from pruneport.calibration.batches import TokenizedData, tokenized_batches
    from pruneport.report.sweep import sweep, write_report

    started = time.perf_counter()
    args.work.mkdir(parents=True, exist_ok=True)
    if not args.model.exists():
        raise SystemExit(f"{args.model} not found: run `pruneport demo -o /tmp/demo_q` or set PRUNEPORT_BENCH_MODEL")
    fp32 = fp32_folder(args.model, args.work)
    names = [v for v in args.variants.split(",") if v]
    calib = tokenized_batches(fp32, "sst2", "train", args.calib_limit, 16)
    refit_batches = calib.batches[: max(1, args.refit_limit // 16)]
    refit_rows = sorted(r for b in refit_batches for r in b.rows)
    refit_data = TokenizedData(
        [type(b)(b.feeds, b.labels, [refit_rows.index(r) for r in b.rows]) for b in refit_batches],
        None,
        calib.lengths[refit_rows],
        calib.source,
    )
    folders = build_variants(fp32, args.work, names, calib, refit_data, args.fresh)

    dev = tokenized_batches(fp32, "sst2", "dev", args.dev_limit, 32)
    scales = tuple(float(s) for s in args.scales.split(","))
    if 1.0 not in scales:
        scales = (*scales, 1.0)
    points, baseline = sweep(list(folders.values()), dev, scales)
    meta = {"data": dev.source, "examples": dev.n, "models": {k: str(v) for k, v in folders.items()}}
    paths = write_report(args.work / "report", points, baseline, meta, "accuracy")

    timing_data = tokenized_batches(fp32, "sst2", "dev", args.timing_n, 1, seed=1)
    seconds = latency(folders, timing_data, args.repeats)

    by_folder = {str(v): k for k, v in folders.items()}
    at_one = {by_folder[p.folder]: p for p in points if p.scale == 1.0}
    ref = at_one["fp32"]
    rows = []
    for name in folders:
        p = at_one[name]
        drop = ref.accuracy - p.accuracy
        rows.append(
            {
                "variant": name,
                "accuracy": p.accuracy,
                "accuracy_drop_points": 100 * drop,
                "relative_flops": p.relative_flops,
                "relative_bops": p.relative_bops,
                "bops_reduction": 1 / p.relative_bops,
                "identical_kept": p.identical_to_fp32,
                "kept_relative_difference": p.kept_relative_difference,
                "ms_per_example_batch1": 1000 * seconds[name],
                "speed_vs_fp32_ort": seconds["fp32"] / seconds[name],
                "meets_accuracy_target": drop <= 0.01,
                "meets_bops_target": 1 / p.relative_bops >= 8,
                "bits": p.bits,
            }
        )
    machine = {
        "platform": platform.platform(),
        "cpu": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "load_average": os.getloadavg(),
    }
    result = {
        "model": str(args.model),
        "machine": machine,
        "dev_examples": dev.n,
        "calibration_examples": calib.n,
        "baseline": baseline,
        "rows": rows,
        "report": {k: str(v) for k, v in paths.items()},
        "seconds": time.perf_counter() - started,
    }
    (args.work / "bench_int8.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")

    print(f"\nMiniLM LTP, SST-2 dev ({dev.n} examples), thresholds as trained (scale 1); machine: {machine}")
    accuracy = baseline["accuracy"]
    shown = f"{accuracy:.4f}" if accuracy is not None else "not measured (no scale 0 in --scales)"
    print(f"baseline FP16 unpruned: {baseline['gbops']:.2f} GBOPs/example, FP32-unpruned accuracy {shown}")
    print(
        "| variant | accuracy | drop (pts) | rel. FLOPs | rel. BOPs | BOPs reduction | identical kept | kept rel. diff "
        "| ms/example (b=1) | speed vs FP32 ORT | acc. target | BOPs target |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | :-: | :-: |")
    for r in rows:
        ident = "-" if r["identical_kept"] is None else f"{r['identical_kept']:.1%}"
        rel = "-" if r["kept_relative_difference"] is None else f"{r['kept_relative_difference']:.3f}"
        print(
            f"| {r['variant']} | {r['accuracy']:.4f} | {r['accuracy_drop_points']:+.2f} | {r['relative_flops']:.3f} "
            f"| {r['relative_bops']:.3f} | {r['bops_reduction']:.1f}x | {ident} | {rel} "
            f"| {r['ms_per_example_batch1']:.2f} "
            f"| {r['speed_vs_fp32_ort']:.2f}x | {'yes' if r['meets_accuracy_target'] else 'no'} "
            f"| {'yes' if r['meets_bops_target'] else 'no'} |"
        )
    print(f"\nreport: {paths['png']} (and .md/.csv/.json); results {args.work / 'bench_int8.json'}")
    print(f"total {time.perf_counter() - started:.0f} s")
    print((args.work / "report" / "report.md").read_text(encoding="utf-8"))


if __name__ == "__main__":
    np.set_printoptions(precision=3)
    main()

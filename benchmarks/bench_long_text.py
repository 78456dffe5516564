"""Pruned LTP against what users deploy instead, on long text (IMDB) and short (SST-2): FP32 and INT8, ORT and OpenVINO.

    python benchmarks/bench_long_text.py --imdb-model IMDB_LTP_MODEL_PT [--sst2-model SST2_LTP_MODEL_PT]
        [--work DIR] [--n-imdb 500] [--repeats 2] [--readme]

For each data set, from one trained LTP ``model.pt`` (``benchmarks/train_ltp_imdb.py``; the SST-2 one from
``pruneport demo`` or ``train_ltp_sst2.py``):

1. ``ltp_fp32``: ``pruneport export --max-length 512``; INT8 folders quantized from it by ``quantize_folder`` on
   64 examples of the data set's *train* split (the same texts calibrate the unpruned INT8 baselines):
   ``ltp_int8_ort_dynamic`` (ORT ``quantize_dynamic``, score path FP32), ``ltp_int8_ort_dynamic_all`` (the same with
   the score path quantized too), ``ltp_int8_ort_static`` (static QDQ U8S8 MinMax, score path FP32) and
   ``ltp_int8_ov`` (OpenVINO NNCF, score path FP32).
2. ``pruneport bench`` once per group below (one process each: at 512 tokens and batch 32 an ONNX Runtime session
   peaks at a few GB, and eight in one process ran out of 24 GB). Every group times its own unpruned FP32 plain
   export, so every ratio comes from one run:
   - ``ort``: pruned FP32, dynamic and dynamic-all INT8 | unpruned FP32, unpruned ``quantize_dynamic`` (ort-dynamic);
   - ``ort-static``: pruned static INT8 | unpruned FP32, unpruned static QDQ (ort-static);
   - ``openvino-fp32``: pruned FP32 | unpruned plain ONNX, optimum-intel's export;
   - ``openvino-int8``: pruned NNCF INT8 | unpruned FP32, unpruned NNCF INT8 (openvino-nncf), optimum-intel FP32 and
     its ``OVQuantizer`` INT8 (optimum rows need ``scripts/setup-optimum``; skipped with the reason otherwise).
3. One table per data set (every row with its group's ratios) and the targets of the long-text issue, written to
   ``--work/summary.md`` and, with ``--readme``, into benchmarks/README.md.

The unpruned baselines carry the pruned model's own weights with pruning off (``--baseline-from`` the same
model.pt): the ratios isolate pruning. Run on a quiet machine (nothing else running). Not CI.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parent / "README.md"
SECTION = "## Long text: pruned LTP against what users deploy (`bench_long_text.py`)"
CALIBRATION_N = 64
INT8_VARIANTS = {  # folder -> QuantizeOptions fields
    "ltp_int8_ort_dynamic": {"backend": "onnxruntime", "mode": "dynamic", "keep_score_path": True},
    "ltp_int8_ort_dynamic_all": {"backend": "onnxruntime", "mode": "dynamic", "keep_score_path": False},
    "ltp_int8_ort_static": {"backend": "onnxruntime", "mode": "static", "keep_score_path": True},
    "ltp_int8_ov": {"backend": "openvino", "keep_score_path": True},
}
GROUPS = {  # name -> (folder@backend list, baseline backends, INT8 baselines)
    "ort": (
        ["ltp_fp32@onnxruntime", "ltp_int8_ort_dynamic@onnxruntime", "ltp_int8_ort_dynamic_all@onnxruntime"],
        "onnxruntime",
        "ort-dynamic",
    ),
    "ort-static": (["ltp_int8_ort_static@onnxruntime"], "onnxruntime", "ort-static"),
    "openvino-fp32": (["ltp_fp32@openvino"], "openvino", "none"),
    "openvino-int8": (["ltp_int8_ov@openvino"], "openvino", "openvino-nncf"),
}


def prepare(model_pt: Path, work: Path, data: str) -> None:
    """Export and quantize (folders that exist are kept: delete them to rebuild)."""
    from pruneport.calibration.batches import tokenized_batches
    from pruneport.calibration.quantize import QuantizeOptions, quantize_folder
    from pruneport.export.onnx_export import write_export_folder
    from pruneport.methods import load_checkpoint

    fp32 = work / "ltp_fp32"
    if not (fp32 / "pruneport.json").exists():
        write_export_folder(load_checkpoint(model_pt, "ltp"), fp32, overwrite=True, max_length=512)
    calibration = None
    for name, fields in INT8_VARIANTS.items():
        out = work / name
        if (out / "pruneport.json").exists():
            continue
        if calibration is None:
            calibration = tokenized_batches(fp32, data, "train", CALIBRATION_N, batch_size=8, seed=0)
        print(f"quantizing {name}", flush=True)
        quantize_folder(fp32, calibration, out, QuantizeOptions(**fields))


def run_group(name: str, model_pt: Path, work: Path, data: str, n: int | None, repeats: int, threads: int) -> dict:
    folders, baselines, int8 = GROUPS[name]
    out = work / f"bench_{name}.json"
    argv = [sys.executable, "-m", "pruneport.cli", "bench", *[str(work / f) for f in folders]]
    argv += ["--data", data, "--split", "dev" if data == "sst2" else "test", "--baseline-from", str(model_pt)]
    argv += ["--baselines", baselines, "--baseline-int8", int8, "--calibration-n", str(CALIBRATION_N)]
    argv += ["--batch-sizes", "1,32", "--repeats", str(repeats), "--threads", str(threads), "--max-length", "512"]
    argv += ["--work", str(work / "bench_work"), "--json", str(out)] + (["--n", str(n)] if n else [])
    print(" ".join(argv), flush=True)
    subprocess.run(argv, check=True)
    return json.loads(out.read_text(encoding="utf-8"))


def fmt(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def table(results: dict[str, dict]) -> str:
    head = (
        "| group | batch | model | backend | precision | seq/s | p50 ms | p90 ms | accuracy | rel. FLOPs | "
        "peak RSS MB | vs unpruned FP32 same backend | vs unpruned same quantizer | vs best plain FP32 | "
        "speedup / FLOPs ratio |"
    )
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for group, result in results.items():
        ratios = result["ratios"]
        for row in sorted(result["rows"], key=lambda r: (r["batch_size"], r["method"] != "ltp", r["model"])):
            key = row["key"]
            lines.append(
                f"| {group} | {row['batch_size']} | {row['model']} | {row['backend']} | {row['precision']} | "
                f"{row['throughput']:.2f} | {fmt(row['latency_p50_ms'], '.1f')} | "
                f"{fmt(row['latency_p90_ms'], '.1f')} | "
                f"{fmt(row['accuracy'], '.4f')} | {row['relative_flops']:.3f} | {fmt(row['peak_rss_mb'], '.0f')} | "
                f"{fmt(ratios['speedup_vs_unpruned_same_backend'].get(key), '.2f')} | "
                f"{fmt(ratios['speedup_vs_unpruned_same_quantizer'].get(key), '.2f')} | "
                f"{fmt(ratios['speedup_vs_best_plain_baseline'].get(key), '.2f')} | "
                f"{fmt(ratios['speedup_over_flops_ratio'].get(key), '.2f')} |"
            )
    return "\n".join(lines)


def targets(results: dict[str, dict]) -> list[str]:
    """The long-text issue's targets, checked on every pruned row (met / missed with the numbers)."""
    out = []
    best_fp32: dict[int, float] = {}
    for result in results.values():
        for row in result["rows"]:
            if row["method"] != "ltp" and row["precision"] == "fp32":
                b = row["batch_size"]
                best_fp32[b] = max(best_fp32.get(b, 0.0), row["throughput"])
    for result in results.values():
        ratios = result["ratios"]
        for row in result["rows"]:
            if row["method"] != "ltp":
                continue
            key, b = row["key"], row["batch_size"]
            flops = ratios["flops_ratio"].get(key) or 1.0
            label = f"{row['model']} {row['backend']} b{b}"
            if row["precision"] == "fp32":
                s = ratios["speedup_vs_unpruned_same_backend"].get(key)
                if s is not None:
                    verdict = "met" if s >= 0.95 * flops else "missed"
                    out.append(
                        f"- pruned vs unpruned FP32 >= 0.95 x FLOPs ratio {flops:.2f}: {label}: {s:.2f}x ({verdict})"
                    )
            else:
                s = ratios["speedup_vs_unpruned_same_quantizer"].get(key)
                if s is not None:
                    verdict = "met" if s >= 0.9 * flops else "missed"
                    out.append(
                        f"- pruned INT8 vs unpruned same quantizer >= 0.9 x {flops:.2f}: {label}: {s:.2f}x ({verdict})"
                    )
                overall = row["throughput"] / best_fp32[b] if best_fp32.get(b) else None
                drop = ratios["accuracy_drop_vs_unpruned"].get(key)
                if overall is not None and drop is not None:
                    verdict = "met" if overall >= 6 and drop <= 0.01 else "missed"
                    out.append(
                        f"- pruned INT8 vs best plain FP32 of all groups >= 6x at <= 1 pt: {label}: {overall:.2f}x, "
                        f"drop {drop * 100:+.2f} pt ({verdict})"
                    )
    return out


def write_readme(text: str) -> None:
    body = README.read_text(encoding="utf-8")
    pattern = re.compile(re.escape(SECTION) + r".*?(?=^## |\Z)", re.S | re.M)
    new = SECTION + "\n\n" + text.strip() + "\n\n"
    body = pattern.sub(lambda _m: new, body) if pattern.search(body) else body.rstrip("\n") + "\n\n" + new
    README.write_text(body, encoding="utf-8")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--imdb-model", type=Path, help="LTP model.pt trained on IMDB")
    parser.add_argument("--sst2-model", type=Path, help="LTP model.pt trained on SST-2")
    parser.add_argument("--work", type=Path, default=Path("/tmp/pruneport_long_text"))
    parser.add_argument("--n-imdb", type=int, default=500, help="seeded IMDB test subset (default 500)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--groups", default=",".join(GROUPS))
    parser.add_argument("--readme", action="store_true")
    args = parser.parse_args()

    sections = []
    for data, model, n in (("imdb", args.imdb_model, args.n_imdb), ("sst2", args.sst2_model, None)):
        if model is None:
            continue
        work = args.work / data
        work.mkdir(parents=True, exist_ok=True)
        prepare(model, work, data)
        results = {}
        for group in [g for g in args.groups.split(",") if g]:
            results[group] = run_group(group, model, work, data, n, args.repeats, args.threads)
        machine = next(iter(results.values()))["machine"]
        settings = next(iter(results.values()))["settings"]
        sections.append(
            "\n".join(
                [
                    f"### {data} ({settings['n']} examples, mean length {settings['mean_length']:.1f}, max length "
                    f"{settings['max_length']}, model `{model}`)",
                    "",
                    table(results),
                    "",
                    "Targets:",
                    "",
                    *targets(results),
                    "",
                    f"Machine: {machine['cpu']}, {machine['logical_cpus']} CPUs, ISA {machine.get('isa')}, threads "
                    f"{machine['intra_op_threads']}, versions {json.dumps(machine['versions'])}",
                ]
            )
        )
    text = "\n\n".join(sections)
    (args.work / "summary.md").write_text(text + "\n", encoding="utf-8")
    print(text)
    if args.readme:
        write_readme(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The ``pruneport bench`` subcommand: argument parsing and printing; the work is in :mod:`pruneport.report.bench`.

Light to import (argparse only): the CLI builds every parser at start-up.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from pruneport.validate import non_negative_int, positive_int, positive_ints


def _names(text: str) -> list[str]:
    return [t for t in text.replace(" ", "").split(",") if t]


def add_bench_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``pruneport bench`` on the CLI's subparsers."""
    p = sub.add_parser(
        "bench",
        help="speed, accuracy, FLOPs and memory of export folders vs the unpruned model (plain ONNX, OpenVINO, torch)",
        description="Interleaved, repeated timings of export folders on ONNX Runtime and OpenVINO, against the "
        "unpruned model with the same weights (--baseline-from), written as JSON.",
    )
    p.add_argument(
        "folders",
        nargs="*",
        help="export folders (pruneport export / optimize / quantize); FOLDER@openvino or FOLDER@onnxruntime+openvino "
        "runs that folder on those backends only",
    )
    p.add_argument(
        "--data", required=True, help="sst2, imdb, mrpc, a path to a tsv/csv/json file or folder, or hub:NAME[/CONFIG]"
    )
    p.add_argument("--split", default="dev", help="data split (default dev; IMDB's dev is its test file)")
    p.add_argument("--n", type=positive_int, help="seeded random subset of this many examples (default: all)")
    p.add_argument("--seed", type=int, default=0, help="subset seed")
    p.add_argument("--batch-sizes", type=positive_ints, default=[1, 32], help="comma-separated (default 1,32)")
    p.add_argument(
        "--backends", type=_names, default=["onnxruntime", "openvino"], help="backends for the folders (default both)"
    )
    p.add_argument(
        "--baseline-from",
        type=Path,
        help="the unpruned weights: pruneport model.pt or a HF / upstream folder (builds the plain baselines)",
    )
    p.add_argument("--baseline-method", help="loader for a --baseline-from folder (default: read as BERT/RoBERTa)")
    p.add_argument(
        "--baselines",
        type=_names,
        default=["onnxruntime", "openvino", "pytorch"],
        help="which baselines to run (default onnxruntime,openvino,pytorch)",
    )
    p.add_argument(
        "--baseline-int8",
        default="auto",
        help="unpruned INT8 baselines, comma-separated: ort-dynamic (the one-line quantize_dynamic), ort-static, "
        "ort-static-entropy|percentile|distribution, openvino-nncf; auto (default): the quantizer of every INT8 "
        "folder given plus ort-dynamic; none: no INT8 baseline",
    )
    p.add_argument("--calibration-data", help="calibration texts of the INT8 baselines (default: --data, split train)")
    p.add_argument("--calibration-n", type=positive_int, default=64, help="calibration examples of the INT8 baselines")
    p.add_argument(
        "--optimum",
        default="auto",
        help="optimum-intel OpenVINO baselines: auto (default: when .venv-optimum or $PRUNEPORT_OPTIMUM_PYTHON "
        "exists, see scripts/setup-optimum), off, or the python of an environment with optimum-intel",
    )
    p.add_argument(
        "--max-length", type=positive_int, help="truncation length for every system (default: smallest folder's)"
    )
    p.add_argument("--repeats", type=positive_int, default=3, help="timed passes over the data per system (default 3)")
    p.add_argument(
        "--warmup", type=non_negative_int, default=4, help="un-timed batches per system first (default 4; 0: none)"
    )
    p.add_argument(
        "--threads",
        type=non_negative_int,
        default=0,
        help="intra-op threads for every runtime (default 0: all CPUs)",
    )
    p.add_argument(
        "--device",
        choices=("cpu", "gpu"),
        default="cpu",
        help="gpu: ONNX Runtime on the CUDA EP (needs onnxruntime-gpu), OpenVINO on its GPU plugin, and with "
        "--baseline-from the FP16 baselines (unpruned FP16, ORT transformers optimizer FP16, PyTorch FP16 SDPA)",
    )
    p.add_argument(
        "--memory", choices=["subprocess", "off"], default="subprocess", help="peak RSS per system in a fresh process"
    )
    p.add_argument("--work", type=Path, default=Path("bench_work"), help="where baselines are built and cached")
    p.add_argument("--json", type=Path, help="write the results to this file (checked before the benchmark runs)")
    p.add_argument("--trust-pickle", action="store_true", help="allow unpickling --baseline-from (runs its code!)")
    p.set_defaults(func=_bench)


def _int8_baselines(text: str) -> tuple[str, ...] | None:
    """``auto`` -> None (chosen from the folders), ``none`` -> (), else the comma-separated names."""
    if text.strip().lower() == "auto":
        return None
    if text.strip().lower() == "none":
        return ()
    return tuple(_names(text))


def split_folder_backends(specs: list[str]) -> tuple[list[Path], dict[str, tuple[str, ...]]]:
    """``FOLDER`` or ``FOLDER@backend[+backend]`` -> folders and the backends chosen per folder."""
    folders: list[Path] = []
    chosen: dict[str, tuple[str, ...]] = {}
    for spec in specs:
        path, at, backends = spec.rpartition("@")
        if not at or Path(spec).exists():
            folders.append(Path(spec))
            continue
        folders.append(Path(path))
        chosen[str(Path(path))] = tuple(b for b in backends.split("+") if b)
    return folders, chosen


def _bench(args: argparse.Namespace) -> int:
    from pruneport.report.bench import BenchConfig, run_bench
    from pruneport.report.bench_rows import format_table, write_json
    from pruneport.validate import check_output_file, check_output_folder

    if args.json is not None:  # outputs first: a bad --json must not fail after the whole benchmark ran
        check_output_file(args.json, "--json")
        check_output_file(args.json.with_name(args.json.name + ".partial"), "--json")
    check_output_folder(args.work, "--work")
    folders, chosen = split_folder_backends(args.folders)
    cfg = BenchConfig(
        folders=folders,
        folder_backends=chosen,
        data=args.data,
        split=args.split,
        n=args.n,
        seed=args.seed,
        batch_sizes=tuple(args.batch_sizes),
        backends=tuple(args.backends),
        baseline_from=args.baseline_from,
        baseline_method=args.baseline_method,
        baseline_backends=tuple(args.baselines),
        max_length=args.max_length,
        repeats=args.repeats,
        warmup=args.warmup,
        threads=args.threads,
        device=args.device,
        memory=args.memory,
        work=args.work,
        trust_pickle=args.trust_pickle,
        baseline_int8=_int8_baselines(args.baseline_int8),
        calibration_data=args.calibration_data,
        calibration_n=args.calibration_n,
        optimum=args.optimum,
    )
    partial = args.json.with_name(args.json.name + ".partial") if args.json else None
    from pruneport.export.folders import no_empty_leftovers

    with no_empty_leftovers(args.work, *([args.json.parent] if args.json else [])):  # a failed run leaves none
        result = run_bench(cfg, progress=print, partial_json=partial)
    if partial is not None:
        partial.unlink(missing_ok=True)
    for skip in result["skipped"]:
        print(f"skipped {skip['model']} on {skip['backend']}: {skip['reason']}")
    print(format_table(result))
    if args.json:
        print(f"wrote {write_json(result, args.json)}")
    return 0

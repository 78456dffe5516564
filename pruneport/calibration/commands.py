"""Subcommands of this stage for ``pruneport`` (see ``pruneport.cli.PLUGIN_MODULES``): quantize, calibrate."""

from __future__ import annotations

import argparse
from pathlib import Path

from pruneport.validate import non_negative_float, positive_float, positive_int


def add_data_options(p: argparse.ArgumentParser, split: str = "train", limit: int = 300) -> None:
    """Where calibration data comes from (a ``datasets`` spec: sst2/mrpc/imdb, a local file, or ``hub:NAME``)."""
    p.add_argument(
        "--data",
        required=True,
        help="data: sst2, mrpc, imdb, a .tsv/.csv/.json file or folder, or hub:NAME[/CONFIG] (network)",
    )
    p.add_argument("--split", default=split, help=f"split to read (default {split})")
    p.add_argument(
        "--limit", type=positive_int, default=limit, help=f"examples to use, a seeded random subset (default {limit})"
    )
    p.add_argument("--batch-size", type=positive_int, default=16, help="examples per batch (default 16)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random subset")


def register(sub: argparse._SubParsersAction) -> None:
    """Add this stage's subcommands; each parser sets ``func`` (args -> exit code) with ``set_defaults``."""
    p = sub.add_parser("quantize", help="INT8 export folder (ONNX Runtime QDQ/dynamic or OpenVINO IR with NNCF)")
    p.add_argument("folder", type=Path, help="FP32 export folder")
    p.add_argument("-o", "--out", type=Path, required=True, help="INT8 export folder to write")
    add_data_options(p)
    p.add_argument(
        "--backend",
        choices=["onnxruntime", "openvino"],
        default="onnxruntime",
        help="engine the INT8 folder is for: ONNX QDQ (or dynamic) for onnxruntime, NNCF IR for openvino",
    )
    p.add_argument(
        "--mode",
        choices=["dynamic", "static"],
        default="dynamic",
        help="onnxruntime: dynamic (activations quantized at run time; the fastest measured, within 1 point of FP32 "
        "on SST-2 and IMDB) or static QDQ U8S8",
    )
    p.add_argument(
        "--calibration",
        choices=["minmax", "entropy", "percentile", "distribution"],
        default="minmax",
        help="onnxruntime static: range method; histogram methods calibrate a no-prune, fixed-length twin",
    )
    score = p.add_mutually_exclusive_group()
    score.add_argument(
        "--no-score-path",
        action="store_true",
        help="quantize the score path too (default for onnxruntime dynamic; elsewhere what decides pruning stays FP32)",
    )
    score.add_argument(
        "--fp32-score-path",
        action="store_true",
        help="keep what decides pruning in FP32 (default except for onnxruntime dynamic, where it bought no fidelity)",
    )
    p.add_argument(
        "--max-drop", type=non_negative_float, help="openvino: NNCF accuracy control, max absolute accuracy drop"
    )
    p.add_argument("--validation-split", default="dev", help="labeled split for --max-drop (default dev)")
    p.add_argument(
        "--refit-thresholds",
        action="store_true",
        help="after quantizing, re-fit thresholds so the INT8 graph keeps as many tokens as FP32 on the data",
    )
    p.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    p.set_defaults(func=_quantize)

    p = sub.add_parser("calibrate", help="fit thresholds on data: a relative-FLOPs target and/or an FP32 reference")
    p.add_argument("folder", type=Path, help="export folder (FP32 or INT8)")
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("-o", "--out", type=Path, help="folder to write (a copy of FOLDER with the new thresholds)")
    where.add_argument(
        "--in-place", action="store_true", help="replace FOLDER itself (atomically) instead of writing -o OUT"
    )
    add_data_options(p, limit=256)
    p.add_argument(
        "--target-flops",
        type=positive_float,
        help="relative FLOPs to reach, e.g. 0.5 (one scale on all thresholds)",
    )
    p.add_argument(
        "--reference",
        type=Path,
        help="FP32 export folder: re-fit FOLDER's thresholds so it keeps as many tokens as this one",
    )
    p.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    p.set_defaults(func=_calibrate)


def _load(args: argparse.Namespace, folder: Path, split: str | None = None):
    from pruneport.calibration.batches import tokenized_batches

    return tokenized_batches(folder, args.data, split or args.split, args.limit, args.batch_size, args.seed)


def _quantize(args: argparse.Namespace) -> int:
    from pruneport.calibration.calibrate import quantize_checked
    from pruneport.calibration.quantize import QuantizeOptions

    opts = QuantizeOptions(
        backend=args.backend,
        mode=args.mode,
        calibration=args.calibration,
        keep_score_path=False if args.no_score_path else (True if args.fp32_score_path else None),
        max_drop=args.max_drop,
    )
    opts.check()
    data = _load(args, args.folder)
    validation = _load(args, args.folder, args.validation_split) if args.max_drop is not None else None
    done = quantize_checked(
        args.folder, data, args.out, opts, validation, overwrite=args.overwrite, refit=args.refit_thresholds
    )
    scheme = f"{args.backend} {args.mode}" if args.backend == "onnxruntime" else args.backend
    print(f"wrote {done.out} ({scheme}, score path {'FP32' if opts.score_path_fp32 else 'INT8'})")
    if done.refit is not None:
        before, after = done.refit.before.identical, done.refit.after.identical
        print(f"re-fitted thresholds: identical kept tokens {before:.1%} -> {after:.1%}")
    elif done.agreement is not None:
        print(
            f"kept-token agreement with FP32 on the calibration data: {done.agreement.identical:.1%} identical, "
            f"mean relative difference {done.agreement.mean_relative_difference:.3f}"
        )
    return 0


def _calibrate(args: argparse.Namespace) -> int:
    from pruneport.calibration.calibrate import refit_to_reference, search_flops_scale, write_thresholds
    from pruneport.calibration.runner import FolderRunner

    if args.target_flops is None and args.reference is None:
        raise ValueError("give --target-flops R, --reference FP32_FOLDER, or both")
    from pruneport.export.folders import check_output

    out = args.folder if args.in_place else args.out
    check_output(out, [args.folder, args.reference], args.overwrite, in_place=args.in_place)
    data = _load(args, args.folder)
    runner = FolderRunner(args.folder)
    values = dict(runner.threshold_defaults)
    step: dict = {"step": "calibrate", "data": data.source, "examples": data.n}
    if args.target_flops is not None:
        result = search_flops_scale(runner, data, args.target_flops)
        values = result.values
        step.update(target_flops=args.target_flops, scale=result.scale, relative_flops=result.relative_flops)
        print(f"threshold scale {result.scale:.4g}: relative FLOPs {result.relative_flops:.3f} ({result.runs} runs)")
    if args.reference is not None:
        if args.target_flops is not None:
            raise ValueError("--reference re-fits to the reference's own thresholds; calibrate the reference first")
        reference = FolderRunner(args.reference).evaluate(data).tokens_per_layer
        result = refit_to_reference(runner, data, reference)
        values = result.values
        step.update(refit_to=str(args.reference), before=result.before.to_dict(), after=result.after.to_dict())
        print(
            f"kept-token agreement with {args.reference}: identical {result.before.identical:.1%} -> "
            f"{result.after.identical:.1%}, mean relative difference {result.before.mean_relative_difference:.3f} -> "
            f"{result.after.mean_relative_difference:.3f}"
        )
    write_thresholds(args.folder, out, values, step, overwrite=args.overwrite, in_place=args.in_place)
    print(f"wrote {out}")
    return 0

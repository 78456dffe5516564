"""Subcommands of this stage for ``pruneport`` (see ``pruneport.cli.PLUGIN_MODULES``): report, bench."""

from __future__ import annotations

import argparse
from pathlib import Path

from pruneport.validate import positive_int

REPORT_ENTRIES = ("report.json", "report.csv", "report.md", "report.png", "models")  # what ``report`` writes in OUT

QUANTIZE_VARIANTS = {
    # name: (backend, mode, keep_score_path)
    "ort": ("onnxruntime", "static", True),
    "ort-all": ("onnxruntime", "static", False),
    "ort-dynamic": ("onnxruntime", "dynamic", True),
    "ort-dynamic-all": ("onnxruntime", "dynamic", False),  # pruneport quantize's default
    "ov": ("openvino", "static", True),
    "ov-all": ("openvino", "static", False),
}


def _scales(text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(t) for t in text.split(",") if t.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None
    if not values or any(v < 0 for v in values):
        raise argparse.ArgumentTypeError(f"scales must be non-negative numbers, got {text!r}")
    return values


def add_report_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """The ``report`` subcommand: accuracy versus BOPs over precisions and threshold scales."""
    p = sub.add_parser("report", help="accuracy-vs-BOPs report: precisions x threshold scales on labeled data")
    p.add_argument("models", nargs="+", type=Path, help="export folders (FP32, INT8) or model.pt files")
    p.add_argument("-o", "--out", type=Path, required=True, help="report folder (report.json/.csv/.md/.png)")
    p.add_argument(
        "--data", required=True, help="labeled data: sst2, mrpc, imdb, a file or folder, or hub:NAME[/CONFIG]"
    )
    p.add_argument("--split", default="dev", help="split the accuracy is measured on")
    p.add_argument("--limit", type=positive_int, help="use a seeded random subset of this many examples")
    p.add_argument("--batch-size", type=positive_int, default=32, help="examples per batch")
    p.add_argument("--scales", type=_scales, default=None, help="threshold scales (default 0,0.5,1,1.5,2,3)")
    p.add_argument("--metric", choices=["auto", "accuracy", "f1"], default="auto", help="auto: F1 for MRPC/QQP")
    p.add_argument(
        "--quantize",
        default="",
        help=f"also quantize the FP32 folders: comma-separated among {','.join(QUANTIZE_VARIANTS)}",
    )
    p.add_argument("--refit", action="store_true", help="re-fit quantized thresholds to FP32 on the calibration data")
    p.add_argument("--calib-split", default="train", help="split the --quantize variants are calibrated on")
    p.add_argument(
        "--calib-limit", type=positive_int, default=300, help="calibration examples (a seeded random subset)"
    )
    p.add_argument("--method", help="pruning method of model folders given as checkpoints")
    p.add_argument("--overwrite", action="store_true", help="replace the results of an earlier report in OUT")
    p.set_defaults(func=_report)
    return p


def register(sub: argparse._SubParsersAction) -> None:
    """Add this stage's subcommands; each parser sets ``func`` (args -> exit code) with ``set_defaults``."""
    add_report_parser(sub)
    from pruneport.report.bench_command import add_bench_parser  # ``pruneport bench`` (issue 7's helper)

    add_bench_parser(sub)


def _as_export_folder(path: Path, out: Path, method: str | None) -> Path:
    if (path / "pruneport.json").exists():
        return path
    if not path.exists():
        raise FileNotFoundError(f"model not found: {path}")
    from pruneport.export.onnx_export import write_export_folder
    from pruneport.methods import load_checkpoint

    folder = out / "models" / f"fp32-{path.stem}"
    return write_export_folder(load_checkpoint(path, method), folder, overwrite=True)


def _report(args: argparse.Namespace) -> int:
    from pruneport.calibration.batches import tokenized_batches
    from pruneport.calibration.calibrate import refit_to_reference, write_thresholds
    from pruneport.calibration.quantize import QuantizeOptions, quantize_folder
    from pruneport.calibration.runner import FolderRunner
    from pruneport.export.folders import check_output
    from pruneport.export.manifest import Manifest
    from pruneport.report.sweep import DEFAULT_SCALES, F1_TASKS, sweep, write_report

    variants = [v for v in args.quantize.split(",") if v]
    unknown = [v for v in variants if v not in QUANTIZE_VARIANTS]
    if unknown:
        raise ValueError(f"unknown --quantize variants {unknown}; choose among {', '.join(QUANTIZE_VARIANTS)}")
    check_output(args.out, args.models, args.overwrite, owned=REPORT_ENTRIES)
    folders = [_as_export_folder(m, args.out, args.method) for m in args.models]
    for folder in list(folders):
        if variants and Manifest.read(folder).precision == "fp32":
            calib = tokenized_batches(folder, args.data, args.calib_split, args.calib_limit, 16)
            reference = FolderRunner(folder).evaluate(calib).tokens_per_layer if args.refit else None
            for v in variants:
                backend, mode, keep = QUANTIZE_VARIANTS[v]
                target = args.out / "models" / f"{folder.name}-{v}"
                quantize_folder(
                    folder, calib, target, QuantizeOptions(backend, mode, keep_score_path=keep), overwrite=True
                )
                folders.append(target)
                if reference is not None:
                    fit = refit_to_reference(FolderRunner(target), calib, reference)
                    refit = target.with_name(target.name + "-refit")
                    write_thresholds(target, refit, fit.values, {"step": "calibrate", "refit_to": str(folder)}, True)
                    folders.append(refit)
    data = tokenized_batches(folders[0], args.data, args.split, args.limit, args.batch_size)
    use_f1 = args.metric == "f1" or (args.metric == "auto" and any(t in args.data.lower() for t in F1_TASKS))
    points, baseline = sweep(folders, data, args.scales or DEFAULT_SCALES, use_f1=use_f1)
    meta = {"data": data.source, "examples": data.n, "models": [str(f) for f in folders]}
    paths = write_report(args.out, points, baseline, meta, "F1" if use_f1 else "accuracy")
    print(paths["md"].read_text(encoding="utf-8"))
    print(f"wrote {', '.join(str(p) for p in paths.values())}")
    return 0

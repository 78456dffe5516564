"""Subcommands of this stage for ``pruneport`` (see ``pruneport.cli.PLUGIN_MODULES``): report, bench."""

from __future__ import annotations

import argparse
from pathlib import Path

from pruneport.report.build import QUANTIZE_VARIANTS
from pruneport.validate import positive_int


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


def _report(args: argparse.Namespace) -> int:
    from pruneport.report.build import ReportRequest, build_report

    request = ReportRequest(
        models=list(args.models),
        out=args.out,
        data=args.data,
        split=args.split,
        limit=args.limit,
        batch_size=args.batch_size,
        scales=args.scales,
        metric=args.metric,
        quantize=tuple(v for v in args.quantize.split(",") if v),
        refit=args.refit,
        calib_split=args.calib_split,
        calib_limit=args.calib_limit,
        method=args.method,
        overwrite=args.overwrite,
    )
    paths = build_report(request)
    print(paths["md"].read_text(encoding="utf-8"))
    print(f"wrote {', '.join(str(p) for p in paths.values())}")
    return 0

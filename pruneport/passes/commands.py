"""Subcommands of this stage for ``pruneport`` (see ``pruneport.cli.PLUGIN_MODULES``): ``optimize``."""

from __future__ import annotations

import argparse
from pathlib import Path

from pruneport.validate import non_negative_float


def _names(text: str) -> list[str]:
    return [t for t in text.replace(" ", "").split(",") if t]


def register(sub: argparse._SubParsersAction) -> None:
    """Add this stage's subcommands; each parser sets ``func`` (args -> exit code) with ``set_defaults``."""
    p = sub.add_parser("optimize", help="export folder -> optimized export folder (graph passes, parity-checked)")
    p.add_argument("folder", type=Path, nargs="?", help="an export folder (pruneport export ... -o FOLDER)")
    p.add_argument("-o", "--out", type=Path, help="output folder (required unless --list-passes)")
    p.add_argument(
        "--target",
        choices=["onnxruntime", "openvino"],
        default="onnxruntime",
        help="backend the result is for: picks the default pipeline (ort-fusions emit ONNX Runtime-only ops)",
    )
    p.add_argument("--passes", type=_names, help="comma-separated passes to run instead of the target's default")
    p.add_argument("--list-passes", action="store_true", help="print the passes and default pipelines, then exit")
    p.add_argument(
        "--expand-token-prune",
        action="store_true",
        help="after the passes, inline ai.pruneport::TokenPrune functions back into standard ops (for OpenVINO)",
    )
    p.add_argument("--no-verify", action="store_true", help="skip the parity check against the source graph")
    p.add_argument(
        "--atol", type=non_negative_float, default=1e-5, help="parity tolerance on float outputs (default 1e-5)"
    )
    p.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    p.set_defaults(func=_optimize)


def _optimize(args: argparse.Namespace) -> int:
    from pruneport.passes.pipeline import optimize_folder
    from pruneport.passes.registry import DEFAULT_PIPELINES, get_pass, pass_names, precision_pass_names

    if args.list_passes:
        for name in pass_names():
            print(f"{name}\t{get_pass(name).summary}")
        for name in precision_pass_names():
            print(f"{name}\t{get_pass(name).summary} (lowers precision: use --atol)")
        for target, names in DEFAULT_PIPELINES.items():
            print(f"default for {target}: {','.join(names)}")
        return 0
    if args.folder is None or args.out is None:
        raise ValueError("optimize needs an export folder and -o OUT (or --list-passes)")
    passes = args.passes
    if args.expand_token_prune:
        passes = [*(passes if passes is not None else DEFAULT_PIPELINES[args.target]), "expand-token-prune"]
    out, runs = optimize_folder(
        args.folder,
        args.out,
        target=args.target,
        passes=passes,
        overwrite=args.overwrite,
        verify=not args.no_verify,
        atol=args.atol,
    )
    for run in runs:
        print(f"{run.name}\t{run.count}\t{run.seconds:.1f} s")
    print(f"wrote {out}")
    return 0

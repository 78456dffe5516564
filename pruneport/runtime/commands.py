"""Subcommands of this stage for ``pruneport`` (see ``pruneport.cli.PLUGIN_MODULES``): ``convert``."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    """Add this stage's subcommands; each parser sets ``func`` (args -> exit code) with ``set_defaults``."""
    p = sub.add_parser("convert", help="export folder -> copy with OpenVINO IR (model.xml/.bin) added")
    p.add_argument("folder", type=Path, help="an export folder (pruneport export / optimize)")
    p.add_argument("-o", "--out", type=Path, required=True, help="output folder")
    p.add_argument("--fp16", action="store_true", help="store FP16 weights (default FP32)")
    p.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    p.set_defaults(func=_convert)


def _convert(args: argparse.Namespace) -> int:
    from pruneport.export.openvino import convert_to_openvino

    out = convert_to_openvino(args.folder, args.out, fp16=args.fp16, overwrite=args.overwrite)
    print(f"converted {args.folder} to OpenVINO IR in {out}")
    return 0

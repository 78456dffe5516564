"""The ``pruneport`` command line: parses arguments and calls library functions, nothing more.

Expected failures (bad paths, unknown methods, keys that do not fit, corrupt files) print one ``error:`` line and
exit with status 2; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

log = logging.getLogger("pruneport")

COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {}


def command(name: str):
    def register(fn: Callable[[argparse.Namespace], int]):
        COMMANDS[name] = fn
        return fn

    return register


def _floats(text: str) -> list[float]:
    try:
        return [float(t) for t in text.replace(" ", "").split(",") if t]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def add_model_options(p: argparse.ArgumentParser) -> None:
    """Options that say how to read a checkpoint (shared by export and other commands that take MODEL)."""
    p.add_argument("--method", help="pruning method (required for folders; read from model.pt otherwise)")
    p.add_argument("--thresholds", type=_floats, help="LTP: one effective threshold per layer, comma-separated")
    p.add_argument("--final-threshold", type=float, help="LTP: rising schedule final_threshold * l / L")
    p.add_argument("--score-norm-length", type=int, help="LTP: score denominator N (default 128)")
    p.add_argument("--trust-pickle", action="store_true", help="allow unpickling checkpoints (runs their code!)")
    p.add_argument(
        "--transkimmer-semantics",
        choices=["removal", "master"],
        help="Transkimmer: real removal (default) or upstream master's post-softmax masking",
    )
    p.add_argument("--eta", type=_floats, help="AdapLeR: ETA per layer (overrides the checkpoint's)")
    p.add_argument("--keep-ratio", type=float, help="Pyramid-BERT: target keep ratio p")
    p.add_argument("--prune-upto", type=int, help="Pyramid-BERT: layer by which the ratio is reached")
    p.add_argument("--kcenter-m", help="Pyramid-BERT: tokens added per greedy round: an integer or 'k-1'")
    p.add_argument("--distance", choices=["euclidean", "cosine"], help="Pyramid-BERT: k-center distance")


def model_options(args: argparse.Namespace) -> dict[str, Any]:
    """The method-specific loader options given on the command line (those not None)."""
    skip = {"command", "model", "out", "method", "overwrite", "opset", "debug", "verbose", "func", "outputs"}
    skip |= {"bucket", "split", "cls_only_last_layer", "max_length"}  # export options, not loader options
    return {k: v for k, v in vars(args).items() if k not in skip and v is not None and v is not False}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pruneport", description=__doc__.splitlines()[0])
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("export", help="checkpoint -> deployable folder (model.onnx, pruneport.json, tokenizer)")
    p.add_argument("model", type=Path, help="model.pt, or an upstream / HF checkpoint folder")
    p.add_argument("-o", "--out", type=Path, required=True, help="output folder")
    add_model_options(p)
    p.add_argument(
        "--outputs",
        choices=["logits", "hidden"],
        default=None,
        help="'hidden' adds last_hidden_state [batch, seq, hidden] in original positions",
    )
    p.add_argument("--opset", type=int, default=18)
    p.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    p.add_argument(
        "--bucket",
        type=int,
        default=0,
        help="round each prune point's kept length up to a multiple of N (dead slots; same results, fewer shapes "
        "for OpenVINO); recorded in the manifest, also used for input lengths at run time",
    )
    p.add_argument("--split", action="store_true", help="also write one graph per stretch between prune points")
    p.add_argument(
        "--cls-only-last-layer",
        action="store_true",
        help="compute the last layer for CLS alone (same logits and tokens_per_layer, less work); not with "
        "--outputs hidden",
    )
    p.add_argument(
        "--max-length",
        type=int,
        help="longest input the runtime accepts (manifest max_length; default: the checkpoint's, at most the "
        "backbone's positions)",
    )

    p = sub.add_parser("demo", help="train, export and run the embedded MiniLM LTP demo (offline)")
    p.add_argument("-o", "--out", type=Path, default=Path("demo_out"))
    p.add_argument("--final-threshold", type=float, default=0.005)
    p.add_argument("--train-size", type=int, default=2000)

    p = sub.add_parser("predict", help="classify texts with an export folder (torch-free runtime)")
    p.add_argument("folder", type=Path)
    p.add_argument("texts", nargs="+")
    p.add_argument("--backend", default="onnxruntime")
    p.add_argument("--device", default="cpu")

    for module_name in PLUGIN_MODULES:
        _plugin(module_name).register(sub)
    return parser


# Stage modules that add their own subcommands: each has ``register(subparsers)``, whose parsers set
# ``func`` (args -> exit code) with ``set_defaults``. Their imports must stay light (torch inside ``func``).
PLUGIN_MODULES: list[str] = [
    "pruneport.training.commands",  # train finetune, train ltp
    "pruneport.passes.commands",  # optimize
    "pruneport.calibration.commands",  # quantize, calibrate
    "pruneport.report.commands",  # report, bench
    "pruneport.runtime.commands",  # convert (OpenVINO IR)
]


def _plugin(module_name: str):
    import importlib

    return importlib.import_module(module_name)


@command("export")
def _export(args: argparse.Namespace) -> int:
    from pruneport.export.onnx_export import write_export_folder
    from pruneport.methods import get_method, load_checkpoint

    if args.method is not None:
        get_method(args.method)  # unknown methods fail before any file is read
    options = model_options(args)
    if args.outputs == "hidden":
        options["output_hidden"] = True
    loaded = load_checkpoint(args.model, args.method, **options)
    for note in loaded.notes:
        log.info("note: %s", note)
    out = write_export_folder(
        loaded,
        args.out,
        opset=args.opset,
        overwrite=args.overwrite,
        bucket=args.bucket,
        cls_only_last_layer=args.cls_only_last_layer,
        split=args.split,
        max_length=args.max_length,
    )
    print(f"exported {loaded.method} model to {out}")
    return 0


@command("demo")
def _demo(args: argparse.Namespace) -> int:
    from pruneport.demo import run_demo

    run_demo(args.out, final_threshold=args.final_threshold, train_size=args.train_size, say=print)
    return 0


@command("predict")
def _predict(args: argparse.Namespace) -> int:
    from pruneport.runtime import load

    classifier = load(args.folder, backend=args.backend, device=args.device)
    result = classifier.predict(args.texts)
    for text, label, probs, tokens in zip(
        args.texts, result.labels, result.probabilities, result.tokens_per_layer, strict=True
    ):
        print(f"{label}\t{probs.max():.3f}\t{tokens.tolist()}\t{text}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    from pruneport.errors import USER_ERRORS

    try:
        func = getattr(args, "func", None) or COMMANDS[args.command]
        return int(func(args) or 0)
    except USER_ERRORS as err:
        if args.debug:
            raise
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

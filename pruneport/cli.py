"""The ``pruneport`` command line: parses arguments and calls library functions, nothing more.

Expected failures (bad paths, unknown methods, keys that do not fit, corrupt files) print one ``error:`` line and
exit with status 2; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import errno
import logging
import os
import signal
import sys
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pruneport.validate import non_negative_float, non_negative_int, positive_int

log = logging.getLogger("pruneport")

COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {}


def command(name: str):
    """Decorator that registers a subcommand's handler (args -> exit status) in ``COMMANDS`` as ``name``."""

    def register(fn: Callable[[argparse.Namespace], int]):
        COMMANDS[name] = fn
        return fn

    return register


def add_model_options(p: argparse.ArgumentParser) -> None:
    """Options that say how to read a checkpoint (shared by export and other commands that take MODEL).

    Method options (thresholds, ETA, schedule, semantics) replace a model.pt's stored values (the manifest records
    the new values and a note); an option of another method than the checkpoint's is refused.
    """
    from pruneport.methods import all_methods

    p.add_argument("--method", help="pruning method (required for folders; read from model.pt otherwise)")
    p.add_argument("--trust-pickle", action="store_true", help="allow unpickling checkpoints (runs their code!)")
    for spec in all_methods():  # each method's own options, from its spec
        for option in spec.options:
            p.add_argument(option.flag, type=option.parse, choices=option.choices, help=f"{spec.title}: {option.help}")


def model_options(args: argparse.Namespace) -> dict[str, Any]:
    """The checkpoint loader's options given on the command line (those not None)."""
    from pruneport.methods import loader_option_names

    names = loader_option_names()
    return {k: v for k, v in vars(args).items() if k in names and v is not None and v is not False}


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows each option's default after its help, unless the default is None/False or the help states it."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        hidden = action.default is None or action.default is False or action.default == argparse.SUPPRESS
        if not action.option_strings or hidden or "default" in text:
            return text
        return f"{text} (default: %(default)s)"


def _parsers(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    """``parser`` and every subcommand parser below it."""
    found = [parser]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in dict.fromkeys(action.choices.values()):
                found += _parsers(child)
    return found


def build_parser() -> argparse.ArgumentParser:
    """The ``pruneport`` argument parser: export, demo, predict and the plugin modules' subcommands."""
    from pruneport import __version__

    parser = argparse.ArgumentParser(prog="pruneport", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"pruneport {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="show pruneport's progress (INFO log lines; not other libraries')"
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

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
    p.add_argument(
        "--opset",
        type=int,
        default=18,
        help="ONNX opset of the graph: 18..25 (what the exporter produces; the manifest records the graph's)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    p.add_argument(
        "--bucket",
        type=non_negative_int,
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
        type=positive_int,
        help="longest input the runtime accepts (manifest max_length; default: the checkpoint's, at most the "
        "backbone's positions)",
    )

    p = sub.add_parser("demo", help="train, export and run the embedded MiniLM LTP demo (offline)")
    p.add_argument("-o", "--out", type=Path, default=Path("demo_out"), help="output folder")
    p.add_argument(
        "--final-threshold",
        type=non_negative_float,
        default=None,
        help="LTP: initial threshold of the last layer (default: the demo schedule's, 0.0075)",
    )
    p.add_argument(
        "--train-size",
        type=positive_int,
        default=None,
        help="packaged SST-2 training phrases to fine-tune on (default: all 4,000)",
    )

    p = sub.add_parser(
        "predict",
        help="classify texts with an export folder (torch-free runtime)",
        description="Prints one line per input: label, its probability, tokens per layer, then the text (two "
        "columns with --pair); --json prints a JSON list instead.",
    )
    p.add_argument("folder", type=Path, help="an export folder (pruneport export / optimize / quantize / convert)")
    p.add_argument("texts", nargs="+", help="texts to classify (with --pair: FIRST SECOND FIRST SECOND ...)")
    p.add_argument(
        "--pair",
        action="store_true",
        help="read the texts two at a time as sentence pairs (premise hypothesis, question sentence, ...)",
    )
    p.add_argument("--backend", choices=["onnxruntime", "openvino"], default="onnxruntime", help="inference engine")
    p.add_argument(
        "--device", choices=["cpu", "gpu", "auto"], default="cpu", help="device ('auto': OpenVINO picks one)"
    )
    p.add_argument("--batch-size", type=positive_int, default=32, help="texts per run")
    p.add_argument("--json", action="store_true", help="print the results as JSON (labels, probabilities, tokens)")

    for module_name in PLUGIN_MODULES:
        _plugin(module_name).register(sub)
    for each in _parsers(parser):
        each.formatter_class = HelpFormatter
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
    from pruneport.export.onnx_export import check_opset, write_export_folder
    from pruneport.methods import get_method, load_checkpoint
    from pruneport.validate import check_output_folder

    if args.method is not None:
        get_method(args.method)  # unknown methods fail before any file is read
    check_opset(args.opset)
    check_output_folder(args.out, "-o")
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
        inputs=(args.model,),
        progress=sys.stderr.isatty(),
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
    import json

    from pruneport.runtime import load
    from pruneport.runtime.text import check_unicode

    for i, text in enumerate(args.texts):
        check_unicode(text, f"text argument {i + 1}")  # undecodable bytes on the command line
    texts: list[str | tuple[str, str]] = list(args.texts)
    if args.pair:
        if len(texts) % 2:
            raise ValueError(f"--pair reads texts two at a time (FIRST SECOND ...), got an odd number ({len(texts)})")
        texts = list(zip(args.texts[::2], args.texts[1::2], strict=True))
    classifier = load(args.folder, backend=args.backend, device=args.device, batch_size=args.batch_size)
    result = classifier.predict(texts)
    rows = zip(texts, result.labels, result.probabilities, result.tokens_per_layer, strict=True)
    if args.json:
        names = classifier.manifest.label_names
        records = [
            {
                "text": list(text) if isinstance(text, tuple) else text,
                "label": label,
                "probability": round(float(probs.max()), 6),
                "probabilities": {n: round(float(v), 6) for n, v in zip(names, probs, strict=True)},
                "tokens_per_layer": tokens.tolist(),
            }
            for text, label, probs, tokens in rows
        ]
        print("[\n" + ",\n".join(json.dumps(r, ensure_ascii=False) for r in records) + "\n]")
        return 0
    for text, label, probs, tokens in rows:
        shown = "\t".join(text) if isinstance(text, tuple) else text
        print(f"{label}\t{probs.max():.3f}\t{tokens.tolist()}\t{shown}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (2 for a usage error, after argparse's message)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as done:  # --help, --version, or a value an option's type refused
        return done.code if isinstance(done.code, int) else 2
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    # -v: pruneport's own INFO lines only (other libraries stay at WARNING)
    logging.getLogger("pruneport").setLevel(logging.INFO if args.verbose else logging.WARNING)
    from pruneport.errors import USER_ERRORS

    installed, previous = _unwind_on_sigterm()
    try:
        func = getattr(args, "func", None) or COMMANDS[args.command]
        return _run(func, args)
    except USER_ERRORS as err:
        if args.debug:
            raise
        print(f"error: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # a read-only or full output location, a folder where a file belongs, ...
        if args.debug or not _environment_error(err):
            raise
        print(f"error: {_os_error_line(err)}", file=sys.stderr)
        return 2
    finally:
        if installed:
            signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)


def _run(func: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    """Run a command, showing each Python warning as one ``warning: ...`` line (no source file and line)."""
    with warnings.catch_warnings():
        warnings.showwarning = _show_warning
        return int(func(args) or 0)


def _show_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int, file=None, line=None):
    print(f"warning: {message}", file=file or sys.stderr)


# OSErrors that describe the user's environment (permissions, read-only or full disks, a folder where a file is
# expected) rather than a bug: one error line each
_ENVIRONMENT_ERRNOS = {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT, errno.EISDIR, errno.ENOTDIR}


def _environment_error(err: OSError) -> bool:
    return isinstance(err, PermissionError | IsADirectoryError | NotADirectoryError) or err.errno in _ENVIRONMENT_ERRNOS


def _os_error_line(err: OSError) -> str:
    """``strerror: path``; for a hidden staging folder that could not be made, the folder it was to be made in."""
    reason = err.strerror or type(err).__name__
    if not err.filename:
        return reason
    path = Path(os.fsdecode(err.filename))
    if path.name.startswith(".") and not path.exists():
        return f"cannot write in {path.parent}: {reason}"
    return f"{reason}: {path}"


def _terminated(signum: int, _frame: Any) -> None:
    """SIGTERM handler: unwind like Ctrl-C, so staging folders and temporary files are removed on the way out."""
    print("error: terminated", file=sys.stderr)
    raise SystemExit(128 + signum)


def _unwind_on_sigterm() -> tuple[bool, Any]:
    """Install :func:`_terminated` for SIGTERM (main thread only); returns (installed, the previous handler)."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        return False, None
    return True, signal.signal(signal.SIGTERM, _terminated)


if __name__ == "__main__":
    sys.exit(main())

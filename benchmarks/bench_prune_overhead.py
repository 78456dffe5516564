"""What a prune point costs: one LTP model.pt exported four ways, timed with ``pruneport bench`` in one run.

    python benchmarks/bench_prune_overhead.py MODEL_PT [--work DIR] [--datasets sst2,imdb] [--n-sst2 300]
        [--n-imdb 96] [--batch-sizes 1,32] [--repeats 3] [--threads 2] [--json overhead.json]

Systems (same weights; every graph is pruneport's export unless named plain):

- ``plain``: the unpruned model as transformers ``BertForSequenceClassification``, plain ``torch.onnx.export``
  (``pruneport bench --baseline-from``; OpenVINO reads the same ONNX file);
- ``no-prune-ops``: every threshold 0, so the graph has no prune op at all;
- ``noop-prune``: every threshold at LTP's 1e-5 floor: every prune op runs, (almost) nothing is removed;
- ``trained``: the checkpoint's learned thresholds (really pruned).

With ``--methods``, a second SST-2 run adds one ``noop-<method>`` export per other method: the same backbone and
head, random predictors (seeded; no trained checkpoint exists offline) and a setting that keeps every token
(TR-BERT keep probability 0, Transkimmer margin -1e9, AdapLeR ETA 1e-6, Pyramid-BERT keep ratio 1): the cost of the
method's predictors plus its prune points.

``machinery`` = time(noop-prune) / time(no-prune-ops) - 1: what the prune points cost when they remove nothing
(the target of ``docs/prune_overhead.md`` is <= 3% on CPU at batch 1). Speeds are relative to ``plain`` on the same
backend, batch size and data, from each batch's fastest of ``--repeats`` interleaved passes, summed
(``throughput_batch_min``: a whole pass's time moved by +-3% between identical graphs on a 2-core VM); the full
bench JSON (machine, median throughputs, latencies) is written with ``--json``. Run it on a quiet machine: nothing
else running (a loaded 2-core box moved such ratios by 30%). Not run in CI.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

VARIANTS = {  # folder name -> LTP thresholds for `pruneport export` (None: the checkpoint's)
    "no-prune-ops": "0",
    "noop-prune": "1e-5",
    "trained": None,
}
BACKENDS = ("onnxruntime", "openvino")


def export_variants(model: Path, work: Path, layers: int, max_length: int) -> dict[str, Path]:
    """The three pruneport exports of ``model`` under ``work`` (re-exported every run: seconds each)."""
    from pruneport.cli import main as cli

    folders = {}
    for name, threshold in VARIANTS.items():
        out = work / name
        args = ["export", str(model), "-o", str(out), "--overwrite", "--max-length", str(max_length)]
        if threshold is not None:
            args += ["--thresholds", ",".join([threshold] * layers)]
        if cli(args) != 0:
            raise SystemExit(f"export of {name} failed")
        folders[name] = out
    return folders


NOOP_METHODS = {  # method -> pruning dict that keeps every token
    "trbert": {"keep_probability": [0.0, 0.0]},
    "transkimmer": {"semantics": "removal", "margin": [-1e9] * 64},
    "adapler": {"eta": [1e-6] * 64},  # ETA 0 would export no prune op at all
    "pyramid": {"keep_ratio": 1.0, "prune_upto": 3, "m": 1, "distance": "euclidean"},
}


def export_method_noops(model: Path, work: Path, methods: list[str]) -> dict[str, Path]:
    """One export per method with ``model``'s backbone and head, random predictors and nothing pruned."""
    import torch

    from pruneport.export.onnx_export import write_export_folder
    from pruneport.methods import get_method
    from pruneport.methods.backbone import BackboneConfig
    from pruneport.methods.checkpoint import LoadedModel

    checkpoint = torch.load(model, map_location="cpu", weights_only=True)
    hf = checkpoint["backbone_config"]
    cfg = BackboneConfig.from_hf_dict(hf)
    folders = {}
    for method in methods:
        pruning = dict(NOOP_METHODS[method])
        for key in ("margin", "eta"):
            if key in pruning:
                pruning[key] = pruning[key][: cfg.num_hidden_layers]
        torch.manual_seed(0)
        built = get_method(method).build(cfg, pruning)
        missing = built.load_state_dict(checkpoint["state_dict"], strict=False).missing_keys
        if any(not key.startswith("pruner.") for key in missing):
            raise SystemExit(f"{method}: backbone keys missing from {model}: {missing[:3]}")
        loaded = LoadedModel(built.eval(), method, hf, pruning, checkpoint["tokenizer"], checkpoint["label_names"], 512)
        folders[f"noop-{method}"] = write_export_folder(loaded, work / f"noop-{method}", overwrite=True)
    return folders


def method_table(result: dict) -> list[str]:
    """Markdown rows: each noop-<method> export's cost over the graph without prune ops."""
    lines = []
    for r in result["rows"]:
        if not r["model"].startswith("noop-"):
            continue
        base = next(
            b
            for b in result["rows"]
            if b["model"] == "no-prune-ops" and b["backend"] == r["backend"] and b["batch_size"] == r["batch_size"]
        )
        cost = base["throughput_batch_min"] / r["throughput_batch_min"] - 1.0
        lines.append(f"| {r['model']} | {r['backend']} | {r['batch_size']} | {100 * cost:+.1f}% |")
    return lines


def table(result: dict) -> list[str]:
    """Markdown rows: per backend and batch size, seq/s of plain and each variant's speed relative to plain."""
    rows = result["rows"]
    lines = []
    for backend in BACKENDS:
        for batch in sorted({r["batch_size"] for r in rows}):
            picked = {r["model"]: r for r in rows if r["backend"] == backend and r["batch_size"] == batch}
            plain = next((r for r in picked.values() if r["method"] == "plain-onnx"), None)
            if plain is None or any(v not in picked for v in VARIANTS):
                continue
            speed = {v: picked[v]["throughput_batch_min"] / plain["throughput_batch_min"] for v in VARIANTS}
            machinery = speed["no-prune-ops"] / speed["noop-prune"] - 1.0
            lines.append(
                f"| {plain['dataset']} | {backend} | {batch} | {plain['throughput_batch_min']:.1f} | "
                + " | ".join(f"{speed[v]:.3f}x" for v in VARIANTS)
                + f" | {100 * machinery:+.1f}% | {picked['trained']['relative_flops']:.3f} |"
            )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path, help="an LTP model.pt (e.g. from pruneport demo or train ltp)")
    parser.add_argument("--work", type=Path, default=Path("/tmp/pruneport_prune_overhead"))
    parser.add_argument("--datasets", default="sst2,imdb")
    parser.add_argument("--n-sst2", type=int, default=300, help="SST-2 dev sentences (seeded subset)")
    parser.add_argument("--n-imdb", type=int, default=96, help="IMDB test reviews (seeded subset), max length 512")
    parser.add_argument("--batch-sizes", default="1,32")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--methods",
        default="",
        help="also time noop exports of these methods on SST-2, e.g. trbert,transkimmer,adapler,pyramid",
    )
    parser.add_argument("--json", type=Path, default=None, help="write every bench result here")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    import torch

    from pruneport.report.bench import BenchConfig, run_bench

    checkpoint = torch.load(args.model, map_location="cpu", weights_only=True)
    if checkpoint.get("method") != "ltp":
        raise SystemExit(f"{args.model} is not an LTP model.pt (method {checkpoint.get('method')!r})")
    layers = int(checkpoint["backbone_config"]["num_hidden_layers"])
    args.work.mkdir(parents=True, exist_ok=True)
    folders = export_variants(args.model, args.work, layers, 512)
    results, lines = [], []
    header = [
        "| data | backend | batch | plain seq/s | no prune ops | noop prune | trained | machinery | rel. FLOPs |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]

    def settings(folders_to_time: list[Path], dataset: str, **extra) -> BenchConfig:
        return BenchConfig(
            folders=folders_to_time,
            data=dataset,
            split="test" if dataset == "imdb" else "dev",
            n=args.n_imdb if dataset == "imdb" else args.n_sst2,
            batch_sizes=tuple(int(b) for b in args.batch_sizes.split(",")),
            max_length=512 if dataset == "imdb" else 128,
            repeats=args.repeats,
            warmup=args.warmup,
            threads=args.threads,
            memory="off",
            work=args.work / "bench",
            **extra,
        )

    for dataset in filter(None, args.datasets.split(",")):
        for backend in BACKENDS:  # one backend per run: IMDB at batch 32 with 8 sessions in one process ran out of RAM
            chosen = {"backends": (backend,), "baseline_from": args.model, "baseline_backends": (backend,)}
            result = run_bench(settings(list(folders.values()), dataset, **chosen))
            for row in result["rows"]:
                if row["method"] == "plain-onnx":
                    row["model"] = "plain"
            results.append(result)
            lines += table(result)
            print("\n".join(header + lines), flush=True)
            if args.json:
                args.json.write_text(json.dumps(results, indent=1))
    if args.methods:
        noops = export_method_noops(args.model, args.work, args.methods.split(","))
        result = run_bench(settings([folders["no-prune-ops"], *noops.values()], "sst2"))
        results.append(result)
        print("\n| export | backend | batch | cost over no prune ops |\n| --- | --- | --- | --- |")
        print("\n".join(method_table(result)))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    print("machine:", json.dumps(results[0]["machine"]))


if __name__ == "__main__":
    main()

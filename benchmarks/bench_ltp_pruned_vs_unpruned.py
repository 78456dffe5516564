"""Pruned against unpruned on ONNX Runtime, for one LTP model.pt: relative FLOPs and wall-clock ratio.

    python benchmarks/bench_ltp_pruned_vs_unpruned.py [MODEL_PT] [--data sst2] [--limit 400] [--repeats 5]

MODEL_PT defaults to demo_out/model.pt (run `pruneport demo` first). The unpruned twin is the same weights with
every threshold 0 (no prune ops in the graph). Both graphs run at batch 1 on the same texts, interleaved text by
text, each text timed ``repeats`` times per graph keeping the minimum; the ratio is the sum of the minima. The machine
is recorded. Not run in CI.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
import time
from pathlib import Path

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", nargs="?", default="demo_out/model.pt")
    parser.add_argument("--data", default="sst2")
    parser.add_argument("--split", default="dev")
    parser.add_argument("--limit", type=int, default=400)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    import torch

    from pruneport.calibration.data import load_texts
    from pruneport.export.onnx_export import write_export_folder
    from pruneport.flops import relative_flops
    from pruneport.methods import load_checkpoint
    from pruneport.methods.ltp.model import LTPParams, build
    from pruneport.report.bench_machine import machine_info
    from pruneport.runtime import load

    pruned = load_checkpoint(args.model)
    config = pruned.model.config
    zero = LTPParams((0.0,) * config.num_hidden_layers, pruned.pruning.get("score_norm_length", 128)).to_dict()
    twin = build(config, zero)  # same weights, no prune point
    twin.load_state_dict(pruned.model.state_dict())
    unpruned = dataclasses.replace(pruned, model=twin.eval(), pruning=zero)
    data = load_texts(args.data, args.split, limit=args.limit)
    with tempfile.TemporaryDirectory() as tmp:
        folders = {
            "pruned": write_export_folder(pruned, Path(tmp) / "pruned"),
            "unpruned": write_export_folder(unpruned, Path(tmp) / "unpruned"),
        }
        runners = {name: load(folder, threads=args.threads, batch_size=1) for name, folder in folders.items()}
        encoded = runners["pruned"].encoder.encode(data.texts)
        from pruneport.runtime.text import pad_batch

        feeds = [
            pad_batch([i], [t], runners["pruned"].encoder.pad_token_id, runners["pruned"].with_types)
            for i, t in zip(encoded.ids, encoded.type_ids, strict=True)
        ]
        for runner in runners.values():  # warm-up
            for f in feeds[:20]:
                runner.run_feeds(f)
        best = {name: np.full(len(feeds), np.inf) for name in runners}
        outputs = {name: [] for name in runners}
        for _ in range(args.repeats):
            for i, f in enumerate(feeds):
                for name, runner in runners.items():
                    start = time.perf_counter()
                    out = runner.run_feeds(f)
                    best[name][i] = min(best[name][i], time.perf_counter() - start)
                    if len(outputs[name]) < len(feeds):
                        outputs[name].append(out)
    tokens = np.concatenate([o["tokens_per_layer"] for o in outputs["pruned"]])
    accuracy = {}
    if data.labels is not None:
        for name in runners:
            predicted = np.concatenate([o["logits"].argmax(-1) for o in outputs[name]])
            accuracy[name] = float((predicted == np.array(data.labels)).mean())
    result = {
        "model": str(args.model),
        "data": data.source,
        "n": len(feeds),
        "mean_length": float(np.mean([len(i) for i in encoded.ids])),
        "mean_tokens_per_layer": tokens.mean(0).round(2).tolist(),
        "relative_flops": relative_flops(pruned.model.config.to_dict(), tokens),
        "time_pruned_s": float(best["pruned"].sum()),
        "time_unpruned_s": float(best["unpruned"].sum()),
        "speedup": float(best["unpruned"].sum() / best["pruned"].sum()),
        "accuracy": accuracy,
        "thresholds": pruned.pruning["thresholds"],
        "machine": machine_info(torch.get_num_threads()),
    }
    result["flops_ratio"] = 1 / result["relative_flops"]
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

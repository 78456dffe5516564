"""Accuracy, loss and relative FLOPs of a (hard-pruned) classifier on encoded data."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from pruneport.flops import relative_flops
from pruneport.training.data import EncodedData, collate, eval_batches


@dataclass
class EvalResult:
    """accuracy and mean cross-entropy; tokens_per_layer [n, layers] in data order; FLOPs relative to unpruned."""

    accuracy: float
    loss: float
    tokens_per_layer: np.ndarray
    relative_flops: float
    examples: int

    def to_dict(self) -> dict[str, float]:
        """Accuracy, loss, relative FLOPs, example count and mean tokens per layer, as a JSON-ready dict."""
        return {
            "accuracy": self.accuracy,
            "loss": self.loss,
            "relative_flops": self.relative_flops,
            "examples": self.examples,
            "mean_tokens_per_layer": [float(x) for x in self.tokens_per_layer.mean(0)],
        }


def evaluate(model: torch.nn.Module, data: EncodedData, batch_size: int = 64) -> EvalResult:
    """Run a PrunedSequenceClassifier (eval mode, no grad) over ``data``; batches of similar length."""
    model.eval()
    n = len(data)
    correct, loss_sum = 0, 0.0
    tokens = np.zeros((n, model.config.num_hidden_layers), dtype=np.int64)
    with torch.no_grad():
        for indices in eval_batches(data, batch_size):
            batch = collate(data, indices, model.config.pad_token_id, model.config.uses_token_type_ids)
            logits, tpl = model(*batch.inputs)[:2]
            loss_sum += float(torch.nn.functional.cross_entropy(logits, batch.labels, reduction="sum"))
            correct += int((logits.argmax(-1) == batch.labels).sum())
            tokens[indices] = tpl.numpy()
    lengths = np.array([len(ids) for ids in data.ids])  # methods that prune before layer 0 (AdapLeR) see fewer
    rel = relative_flops(model.config.to_dict(), tokens, lengths)
    return EvalResult(correct / n, loss_sum / n, tokens, rel, n)

"""Custom torch ops of a prune point, so that the exporter can write each one as the cheapest ONNX node.

``pruneport::gather_rows`` takes each row's kept slots: ``x[b, index[b, j], :]``. Written with ``torch.gather`` it
exports as ``Reshape`` + ``Concat`` + ``Expand`` of the index to ``[B, W, D]`` + ``GatherElements``, which gathers
element by element (about 65 us per prune point at 25 tokens and 1.2 ms at batch 32 in ONNX Runtime on MiniLM,
``docs/prune_overhead.md``). As a custom op it exports through
:data:`pruneport.export.translations.TRANSLATIONS` as one ``GatherND(batch_dims=1)`` that copies whole rows.
Eager PyTorch (the parity reference and training) runs the same ``torch.gather``; the backward pass scatters the
gradient back (``scatter_add``, so slots that point at the same row add up).
"""

from __future__ import annotations

import torch


@torch.library.custom_op("pruneport::gather_rows", mutates_args=())
def gather_rows(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """x [batch, seq, hidden] gathered along seq with index [batch, new_seq] (int64) -> [batch, new_seq, hidden]."""
    return torch.gather(x, 1, index.unsqueeze(-1).expand(-1, -1, x.shape[2]))


@gather_rows.register_fake
def _gather_rows_shape(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    return x.new_empty(index.shape[0], index.shape[1], x.shape[2])


def _setup_context(ctx, inputs, output) -> None:
    x, index = inputs
    ctx.save_for_backward(index)
    ctx.x_shape = x.shape


def _backward(ctx, grad: torch.Tensor):
    (index,) = ctx.saved_tensors
    expanded = index.unsqueeze(-1).expand(-1, -1, grad.shape[2])
    return grad.new_zeros(ctx.x_shape).scatter_add(1, expanded, grad), None


gather_rows.register_autograd(_backward, setup_context=_setup_context)

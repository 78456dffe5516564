"""Loop-split export: one ONNX graph per stretch of layers between prune points; the runtime compacts on the host.

A ``PrunedSequenceClassifier`` has prune hooks at fixed points (``before_layer`` of layer i = point 2i,
``after_attention`` of layer i = point 2i+1; whether a hook prunes is decided when the model is built). The split
export cuts the model at every pruning point: stage k runs from just after cut k-1 up to cut k, evaluates the
method's own hook there and returns ``state`` [B,S,D] (the hidden states at the cut) and ``keep`` [B,S] bool; the
last stage returns ``logits``; every stage that runs attention also returns ``counts`` [B, its layers] (the
method's ``tokens_entering``). The score and threshold therefore stay in the graph (written once, by the method),
while the data-dependent step (pack kept tokens left, gather) runs on the host in numpy
(:mod:`pruneport.runtime.split`). Each stage graph has no NonZero, so OpenVINO and GPUs see plain dense graphs
whose shapes the runtime controls (bucketing), and no in-graph host synchronisation is needed.

Why written by hand: no exporter splits a model at data-dependent points; each stage is a small ``nn.Module`` over
the same submodules, exported with the same dynamo settings as the single graph.

Not supported: ``output_hidden`` models (token-level outputs need the scatter-back tracker across stages).
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

import torch
from torch import nn

from pruneport.export.dynamo import batch_and_sequence_dims, dynamo_export, sample_inputs
from pruneport.export.manifest import Manifest
from pruneport.methods.pruned_encoder import PrunedSequenceClassifier, PruneState

log = logging.getLogger(__name__)

SPLIT_DIR = "split"


def prune_points(model: PrunedSequenceClassifier) -> list[int]:
    """The hook points (2i before layer i, 2i+1 after layer i's attention) where the model really prunes.

    Found by running the model once on sample inputs and recording which hooks return a mask.
    """

    pruner = model.pruner
    found: list[int] = []
    states: list[PruneState] = []
    before, after = pruner.before_layer, pruner.after_attention

    def rec_before(layer, *args, **kwargs):
        states.append(args[-1])
        keep = before(layer, *args, **kwargs)
        if keep is not None:
            found.append(2 * layer)
        return keep

    def rec_after(layer, *args, **kwargs):
        states.append(args[-1])
        keep = after(layer, *args, **kwargs)
        if keep is not None:
            found.append(2 * layer + 1)
        return keep

    pruner.before_layer, pruner.after_attention = rec_before, rec_after
    try:
        with torch.no_grad():
            model.eval()(*sample_inputs(model.config))
    finally:
        del pruner.before_layer, pruner.after_attention
    if any(getattr(st, "scratch", None) for st in states):
        raise ValueError(
            f"--split is not supported for this {getattr(pruner, 'method', '')} configuration: its pruner carries "
            "state across prune points; export the single graph"
        )
    return found


class Stage(nn.Module):
    """The part of ``model`` from just after hook point ``start`` (-1: from the embeddings) to hook point ``end``.

    First stage: forward(input_ids, attention_mask[, token_type_ids]); later ones: forward(hidden [B,S,D],
    live [B,S] bool, initial_lengths [B] int64). Returns (hidden, keep) at ``end``, or (logits,) when ``end`` is
    None (the last stage).
    """

    def __init__(self, model: PrunedSequenceClassifier, start: int, end: int | None) -> None:
        super().__init__()
        self.model = model
        self.start = start
        self.end = end

    @property
    def input_names(self) -> list[str]:
        """The model's inputs for the first stage, else ``hidden``, ``live``, ``initial_lengths``."""
        return self.model.input_names if self.start < 0 else ["hidden", "live", "initial_lengths"]

    @property
    def output_names(self) -> list[str]:
        """``logits`` (last stage) or ``state``, ``keep``; plus ``counts`` when an attention runs in the stage."""
        names = ["logits"] if self.end is None else ["state", "keep"]
        return names + (["counts"] if self.attention_layers() else [])

    def attention_layers(self) -> list[int]:
        """Layers whose attention runs in this stage (their tokens_per_layer is this stage's live count)."""
        layers = range(self.model.config.num_hidden_layers)
        return [i for i in layers if self.start <= 2 * i and (self.end is None or 2 * i < self.end)]

    def forward(self, a: torch.Tensor, b: torch.Tensor, c: torch.Tensor | None = None) -> tuple[torch.Tensor, ...]:
        """(input_ids, attention_mask, token_type_ids) for the first stage, (hidden, live, initial_lengths) after."""
        m, s, e = self.model, self.start, self.end
        if s < 0:
            live = b.bool()
            state = PruneState(initial_lengths=live.sum(1))
            x = m.embeddings(a, live, c)
        else:
            x, live = a, b
            state = PruneState(initial_lengths=c)
        counts: list[torch.Tensor] = []

        def done(*outputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
            return outputs + ((torch.stack(counts, dim=1),) if counts else ())

        for i, layer in enumerate(m.layer):
            before, after = 2 * i, 2 * i + 1
            if s > after:
                continue
            if s < before and e == before:
                return done(x, m.pruner.before_layer(i, x, live, state))
            if s < after:
                counts.append(m.pruner.tokens_entering(i, live, state))
                x, probs = layer.attention(x, live, m.pruner.attention_key_weights(i, x, live, state))
                if e == after:
                    return done(x, m.pruner.after_attention(i, probs, x, live, state))
            x = layer.ffn(x)
        return done(m.classifier(x[:, 0]))


def _sample(stage: Stage, cfg) -> tuple[torch.Tensor, ...]:

    if stage.start < 0:
        return sample_inputs(cfg)
    gen = torch.Generator().manual_seed(0)
    hidden = torch.randn(2, 16, cfg.hidden_size, generator=gen)
    live = torch.ones(2, 16, dtype=torch.bool)
    live[1, 8:] = False
    return hidden, live, live.sum(1)


def export_stage(stage: Stage, path: Path, opset: int) -> None:
    """Export one stage with dynamic batch and sequence (dynamo, like the single graph)."""
    cfg = stage.model.config
    batch, seq = batch_and_sequence_dims(cfg.max_tokens)
    if stage.start < 0:
        dynamic: Any = tuple({0: batch, 1: seq} for _ in stage.input_names)
    else:
        dynamic = ({0: batch, 1: seq}, {0: batch, 1: seq}, {0: batch})
    dynamo_export(stage, _sample(stage, cfg), stage.input_names, stage.output_names, dynamic, path, opset)


def split_stages(model: PrunedSequenceClassifier) -> list[Stage]:
    """The stages of ``model``: one per prune point plus the last one (a model that never prunes has one stage)."""
    if model.output_hidden:
        raise ValueError("--split does not support --outputs hidden (token-level outputs); export without --split")
    points = prune_points(model)
    starts = [-1, *points]
    ends: list[int | None] = [*points, None]
    return [Stage(model, s, e) for s, e in zip(starts, ends, strict=True)]


def add_split_export(model: PrunedSequenceClassifier, folder: str | Path, opset: int = 18) -> dict[str, Any]:
    """Write the stage graphs into ``folder/split/`` of an existing export folder and record them in its manifest.

    Returns the manifest entry ``extra["split"]``: stage files, the points they end at and the layers whose
    attention each one runs. On failure nothing is left behind and the manifest is unchanged.
    """
    folder = Path(folder)
    manifest = Manifest.read(folder)
    model = model.eval()
    stages = split_stages(model)
    tmp = folder / f".{SPLIT_DIR}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        entries = []
        for k, stage in enumerate(stages):
            name = f"stage_{k}.onnx"
            log.info("exporting split stage %d/%d (points %s..%s)", k + 1, len(stages), stage.start, stage.end)
            export_stage(stage, tmp / name, opset)
            entries.append(
                {
                    "file": f"{SPLIT_DIR}/{name}",
                    "start": stage.start,
                    "end": stage.end,
                    "layers": stage.attention_layers(),
                    "inputs": stage.input_names,
                    "outputs": stage.output_names,
                }
            )
        info = {"stages": entries}
        target = folder / SPLIT_DIR
        if target.exists():
            shutil.rmtree(target)
        tmp.rename(target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    manifest.extra["split"] = info
    manifest.record("split", stages=len(entries))
    manifest.write(folder)
    log.debug("split manifest entry: %s", json.dumps(info))
    return info

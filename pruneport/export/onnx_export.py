"""Export a reference model to a deployable folder: ``model.onnx``, ``pruneport.json`` and ``tokenizer.json``.

Uses the dynamo exporter (``torch.onnx.export(..., dynamo=True)``) with dynamic batch and sequence dimensions:
the prune points are tensor ops (a ``TopK`` whose k is the new width, a ``GatherND`` of the kept rows), so each one
really shortens the sequence in the graph; the TorchScript exporter would freeze data-dependent sizes
(``shared/research/deployment-notes.md`` section 1). pruneport's custom torch ops (``pruneport.methods.prune_ops``)
are written as ONNX by :data:`pruneport.export.translations.TRANSLATIONS`.

The folder is written under a temporary name beside ``OUT`` and renamed into place only when every file is written
and ``onnx.checker`` passed, so a failed export leaves nothing half-written.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import onnx
import torch

import pruneport
from pruneport.export.dynamo import (  # noqa: F401 - DEFAULT_OPSET, SUPPORTED_OPSETS, check_opset: re-exported
    DEFAULT_OPSET,
    SUPPORTED_OPSETS,
    batch_and_sequence_dims,
    check_opset,
    dynamo_export,
    graph_opset,
    sample_inputs,
)
from pruneport.export.folders import check_output, staged_folder
from pruneport.export.manifest import Manifest
from pruneport.methods.backbone import BackboneConfig
from pruneport.methods.checkpoint import LoadedModel
from pruneport.progress import StageProgress

log = logging.getLogger(__name__)


def export_onnx_model(model: torch.nn.Module, path: Path, opset: int = DEFAULT_OPSET) -> onnx.ModelProto:
    """Write ``model`` (a PrunedSequenceClassifier) to ``path`` as ONNX with dynamic batch and sequence."""
    cfg: BackboneConfig = model.config
    batch, seq = batch_and_sequence_dims(cfg.max_tokens)
    dynamic = {name: {0: batch, 1: seq} for name in model.input_names}
    return dynamo_export(model, sample_inputs(cfg), model.input_names, model.output_names, dynamic, path, opset)


def write_export_folder(
    loaded: LoadedModel,
    out: str | Path,
    opset: int = DEFAULT_OPSET,
    overwrite: bool = False,
    extra: dict[str, Any] | None = None,
    *,
    bucket: int = 0,
    cls_only_last_layer: bool = False,
    split: bool = False,
    max_length: int | None = None,
    inputs: tuple[str | Path, ...] = (),
    progress: bool = False,
) -> Path:
    """Export ``loaded`` to the folder ``out`` atomically; returns ``out``.

    Args:
        inputs: the checkpoint files/folders read (besides ``loaded.source``): ``out`` may not be, contain or sit
            inside one of them.
        bucket: round each prune point's kept width up to a multiple of this (0: off); recorded in the manifest.
        cls_only_last_layer: compute the last layer for CLS alone (same logits and tokens_per_layer).
        split: also write one graph per stretch between prune points (``split/``, see ``pruneport.export.split``).
        max_length: longest input the runtime accepts (default: the checkpoint's, at most the backbone's positions).
        progress: draw a stage progress bar on stderr (stages are logged either way).

    The manifest records the opset of the written graph (``opset`` must be in :data:`SUPPORTED_OPSETS`).
    """
    check_opset(opset)
    model = loaded.model
    limit = model.config.max_tokens
    if max_length is not None and not 1 <= max_length <= limit:
        raise ValueError(f"--max-length must be between 1 and the backbone's {limit} positions, got {max_length}")
    if bucket < 0:
        raise ValueError(f"--bucket must be >= 0, got {bucket}")
    if cls_only_last_layer and (model.output_hidden or split):
        raise ValueError("--cls-only-last-layer computes CLS alone: it cannot go with --outputs hidden or --split")
    extra = dict(extra or {})
    if bucket:
        model.bucket = bucket
        extra["bucket"] = bucket
    if cls_only_last_layer:
        model.cls_only_last_layer = True
        extra["cls_only_last_layer"] = True
    if max_length is not None:
        loaded.max_length = max_length
    out = Path(out)
    source = Path(loaded.source) if loaded.source and Path(loaded.source).exists() else None
    check_output(out, [*inputs, source], overwrite)
    stages = ["tracing to ONNX", "writing the folder", *(["split graphs"] if split else [])]
    with staged_folder(out) as tmp, StageProgress("export", stages, progress, log) as stage:
        model = loaded.model.eval()
        cfg: BackboneConfig = model.config
        stage(f"tracing the {loaded.method} model ({cfg.num_hidden_layers} layers) to ONNX")
        proto = export_onnx_model(model, tmp / "model.onnx", opset)
        stage("writing tokenizer.json and pruneport.json")
        (tmp / "tokenizer.json").write_text(loaded.tokenizer_json, encoding="utf-8")
        manifest = Manifest(
            method=loaded.method,
            backbone=cfg.to_dict(),
            pruning=loaded.pruning,
            label_names=list(loaded.label_names),
            inputs=model.input_names,
            outputs=model.output_names,
            max_length=min(loaded.max_length, cfg.max_tokens),
            pad_token_id=cfg.pad_token_id,
            pruneport_version=pruneport.__version__,
            opset=graph_opset(proto),
            extra={"notes": loaded.notes, **extra},
        )
        manifest.record("export", source=loaded.source, torch=torch.__version__)
        manifest.write(tmp)
        if split:
            from pruneport.export.split import add_split_export

            stage("exporting one graph per stretch between prune points (--split)")
            add_split_export(model, tmp, opset=opset)
    log.info("wrote %s", out)
    return out

"""The one dynamo export call every pruneport graph goes through, and what it needs (opsets, dims, sample inputs).

Shared by the single graph (:mod:`pruneport.export.onnx_export`), the split stages (:mod:`pruneport.export.split`)
and the plain baselines of ``pruneport bench``; its own module so that those import it without importing each other.
pruneport's custom torch ops are written as ONNX by :data:`pruneport.export.translations.TRANSLATIONS`.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

import onnx
import torch

from pruneport.export.translations import TRANSLATIONS
from pruneport.methods.backbone import BackboneConfig

DEFAULT_OPSET = 18
# Default-domain opsets the dynamo exporter really produces for pruneport's graphs, and ONNX Runtime and OpenVINO
# run (torch 2.13, onnxscript, onnx 1.23, ORT 1.32, OpenVINO 2026.4): below 18 the exporter's version conversion
# fails (LayerNormalization, ReduceMax attributes) and leaves an opset-18 graph behind; 26 fails onnx.checker (Gelu).
SUPPORTED_OPSETS = range(18, 26)


def check_opset(opset: int) -> int:
    """``opset`` if the exporter produces it (:data:`SUPPORTED_OPSETS`); OptionError otherwise."""
    from pruneport.validate import OptionError

    if isinstance(opset, bool) or not isinstance(opset, int) or opset not in SUPPORTED_OPSETS:
        raise OptionError(
            f"--opset {opset!r} is not supported: the exporter produces opsets "
            f"{SUPPORTED_OPSETS.start}..{SUPPORTED_OPSETS.stop - 1} (default {DEFAULT_OPSET})"
        )
    return opset


def graph_opset(proto: onnx.ModelProto) -> int:
    """The default-domain opset a graph really imports."""
    return max((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), default=0)


def sample_inputs(cfg: BackboneConfig, batch: int = 2, length: int = 16) -> tuple[torch.Tensor, ...]:
    """Example inputs for tracing: a full row and a shorter one (so neither dimension is specialised)."""
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(5, min(cfg.vocab_size, 1000), (batch, length), generator=gen)
    mask = torch.ones(batch, length, dtype=torch.long)
    mask[1:, length // 2 :] = 0
    ids = ids.masked_fill(mask == 0, cfg.pad_token_id)
    inputs: tuple[torch.Tensor, ...] = (ids, mask)
    if cfg.uses_token_type_ids:
        inputs += (torch.zeros_like(ids),)
    return inputs


def batch_and_sequence_dims(max_tokens: int) -> tuple[torch.export.Dim, torch.export.Dim]:
    """The dynamic batch and sequence dimensions every pruneport graph is exported with."""
    return torch.export.Dim("batch", min=1, max=4096), torch.export.Dim("sequence", min=1, max=max_tokens)


def dynamo_export(
    module: torch.nn.Module,
    args: tuple,
    input_names: list[str],
    output_names: list[str],
    dynamic_shapes: Any,
    path: Path,
    opset: int = DEFAULT_OPSET,
) -> onnx.ModelProto:
    """``torch.onnx.export(dynamo=True)`` of ``module`` to ``path`` (no external data), checked by onnx.checker.

    The one export call shared by the single graph, the split stages and the plain baselines of ``pruneport bench``.
    ``opset`` must be in :data:`SUPPORTED_OPSETS`.
    """
    check_opset(opset)
    # the exporter warns once per torchvision op it cannot register; torchvision is deliberately not installed
    logging.getLogger("torch.onnx._internal.exporter._registration").setLevel(logging.ERROR)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            module.eval(),
            args,
            input_names=input_names,
            output_names=output_names,
            dynamic_shapes=dynamic_shapes,
            opset_version=opset,
            dynamo=True,
            external_data=False,
            verbose=False,
            custom_translation_table=TRANSLATIONS,
        )
    program.save(str(path), external_data=False)
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto, full_check=False)
    return proto

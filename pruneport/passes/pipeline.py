"""Run passes over an ONNX model, and ``optimize_folder``: export folder in, optimized export folder out.

The output folder is written under a temporary name beside ``OUT`` and renamed into place only when the model is
saved, checked by ``onnx.checker`` and (by default) proven equal to the source by :mod:`pruneport.passes.parity`;
a failure leaves nothing half-written. The manifest gets a history entry naming the passes, their counts and the
target backend.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import onnx
import onnx_ir as ir

from pruneport.export.folders import carry_over, check_output, staged_folder
from pruneport.export.manifest import DERIVED_ENTRIES, Manifest
from pruneport.passes.parity import DEFAULT_ATOL, check_parity
from pruneport.passes.registry import PassSpec, resolve_pipeline

log = logging.getLogger(__name__)

MODEL_FILE = "model.onnx"
DERIVED_ARTEFACTS = DERIVED_ENTRIES  # manifest.extra entries that describe files made from the source graph
PARITY_MAX_LENGTH = 64  # longest random input of the parity gate (keeps it fast on big models)


@dataclass
class PassRun:
    """One applied pass: its name, the number of rewrites it made and the seconds it took."""

    name: str
    count: int
    seconds: float


def run_passes(model: ir.Model, specs: list[PassSpec]) -> list[PassRun]:
    """Apply ``specs`` to ``model`` in place, in order; returns each pass's count."""
    runs = []
    for spec in specs:
        start = time.perf_counter()
        count = spec.apply(model)
        runs.append(PassRun(spec.name, count, time.perf_counter() - start))
        log.info("pass %s: %d rewrites (%.1f s)", spec.name, count, runs[-1].seconds)
    return runs


def optimize_file(source: Path, target_path: Path, specs: list[PassSpec]) -> list[PassRun]:
    """Load ``source``, run ``specs``, save to ``target_path`` (no external data) and check it."""
    model = ir.load(str(source))
    runs = run_passes(model, specs)
    ir.save(model, str(target_path))
    onnx.checker.check_model(str(target_path), full_check=False)
    return runs


def optimize_folder(
    source: str | Path,
    out: str | Path,
    target: str = "onnxruntime",
    passes: list[str] | None = None,
    overwrite: bool = False,
    verify: bool = True,
    atol: float = DEFAULT_ATOL,
) -> tuple[Path, list[PassRun]]:
    """Optimize the export folder ``source`` into ``out`` for the ``target`` backend.

    Raises NotAnExportError when ``source`` is not an export folder, ValueError for unknown passes or targets,
    FileExistsError when ``out`` is not empty (without ``overwrite``), ParityError when the result differs.
    """
    source, out = Path(source), Path(out)
    manifest = Manifest.read(source)
    model_path = source / manifest.model_file
    if not manifest.model_file.endswith(".onnx"):
        raise ValueError(f"{source} holds {manifest.model_file!r}; optimize works on ONNX export folders")
    if not model_path.is_file():
        raise FileNotFoundError(f"{source} names model file {manifest.model_file!r} but it does not exist")
    specs = resolve_pipeline(target, passes)
    check_output(out, [source], overwrite)
    with staged_folder(out) as tmp:
        runs = optimize_file(model_path, tmp / MODEL_FILE, specs)
        lowers_precision = any(getattr(spec.module, "PRECISION", None) for spec in specs)
        entry = {"step": "optimize", "target": target, "passes": [[r.name, r.count] for r in runs]}
        if verify:
            backbone = manifest.backbone
            result = check_parity(
                model_path,
                tmp / MODEL_FILE,
                vocab_size=int(backbone["vocab_size"]),
                pad_id=int(manifest.pad_token_id),
                max_length=min(manifest.max_length, PARITY_MAX_LENGTH),
                atol=atol,
                exact_ints=not lowers_precision,
            )
            entry["parity"] = {"inputs": result.inputs, "max_abs_diff": result.max_abs_diff, "atol": atol}
            if lowers_precision:  # decisions may move with the precision: reported, not required
                entry["parity"]["tokens_per_layer_rows_equal"] = result.rows_equal
                log.info("tokens_per_layer equal to the source's in %d of %d rows", result.rows_equal, result.inputs)
        # artefacts derived from the source graph (split stages, OpenVINO IR) do not describe the optimized one
        dropped = manifest.drop_derived(DERIVED_ARTEFACTS)
        carry_over(source, tmp, manifest, model=False)  # the tokenizer
        if dropped:
            entry["dropped"] = dropped
            log.warning("not carried over (derived from the unoptimized graph; re-create them): %s", dropped)
        manifest.model_file = MODEL_FILE
        for spec in specs:  # a pass that changes the graph's precision (fp16) says so in the manifest
            manifest.precision = getattr(spec.module, "PRECISION", manifest.precision)
        manifest.opset = max(manifest.opset, _default_opset(tmp / MODEL_FILE))
        manifest.record(**entry)
        manifest.write(tmp)
    return out, runs


def _default_opset(path: Path) -> int:
    proto = onnx.load(str(path), load_external_data=False)
    return max((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), default=0)

"""``pruneport report`` as a library call: models in, an accuracy-versus-BOPs report folder out.

:func:`build_report` exports model.pt inputs, quantizes FP32 folders with the asked variants (optionally re-fitting
their thresholds to FP32's decisions), sweeps every folder over threshold scales and writes report.json/.csv/.md/.png
(:func:`pruneport.report.sweep.write_report`). The command handler only parses arguments into a
:class:`ReportRequest` and prints.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

REPORT_ENTRIES = ("report.json", "report.csv", "report.md", "report.png", "models")  # what a report writes in OUT

QUANTIZE_VARIANTS = {
    # name: (backend, mode, keep_score_path)
    "ort": ("onnxruntime", "static", True),
    "ort-all": ("onnxruntime", "static", False),
    "ort-dynamic": ("onnxruntime", "dynamic", True),
    "ort-dynamic-all": ("onnxruntime", "dynamic", False),  # pruneport quantize's default
    "ov": ("openvino", "static", True),
    "ov-all": ("openvino", "static", False),
}


@dataclass
class ReportRequest:
    """What to report on and how (the ``pruneport report`` options)."""

    models: list[Path]  # export folders or model.pt files
    out: Path
    data: str
    split: str = "dev"
    limit: int | None = None
    batch_size: int = 32
    scales: tuple[float, ...] | None = None  # None: sweep.DEFAULT_SCALES
    metric: str = "auto"  # auto: F1 for MRPC/QQP
    quantize: tuple[str, ...] = ()  # keys of QUANTIZE_VARIANTS
    refit: bool = False
    calib_split: str = "train"
    calib_limit: int = 300
    method: str | None = None  # of model.pt inputs given without one
    overwrite: bool = False

    def check(self) -> None:
        """ValueError for unknown quantization variants."""
        unknown = [v for v in self.quantize if v not in QUANTIZE_VARIANTS]
        if unknown:
            raise ValueError(f"unknown --quantize variants {unknown}; choose among {', '.join(QUANTIZE_VARIANTS)}")


def as_export_folder(path: Path, out: Path, method: str | None) -> Path:
    """``path`` itself when it is an export folder, else its FP32 export under ``out/models``."""
    if (path / "pruneport.json").exists():
        return path
    if not path.exists():
        raise FileNotFoundError(f"model not found: {path}")
    from pruneport.export.onnx_export import write_export_folder
    from pruneport.methods import load_checkpoint

    folder = out / "models" / f"fp32-{path.stem}"
    return write_export_folder(load_checkpoint(path, method), folder, overwrite=True)


def quantized_variants(folder: Path, request: ReportRequest) -> list[Path]:
    """The ``request.quantize`` variants of an FP32 folder (and their re-fitted twins), written under
    ``out/models``."""
    from pruneport.calibration.batches import tokenized_batches
    from pruneport.calibration.calibrate import refit_to_reference, write_thresholds
    from pruneport.calibration.quantize import QuantizeOptions, quantize_folder
    from pruneport.calibration.runner import FolderRunner

    calib = tokenized_batches(folder, request.data, request.calib_split, request.calib_limit, 16)
    reference = FolderRunner(folder).evaluate(calib).tokens_per_layer if request.refit else None
    written = []
    for variant in request.quantize:
        backend, mode, keep = QUANTIZE_VARIANTS[variant]
        target = request.out / "models" / f"{folder.name}-{variant}"
        quantize_folder(folder, calib, target, QuantizeOptions(backend, mode, keep_score_path=keep), overwrite=True)
        written.append(target)
        if reference is not None:
            fit = refit_to_reference(FolderRunner(target), calib, reference)
            refit = target.with_name(target.name + "-refit")
            write_thresholds(target, refit, fit.values, {"step": "calibrate", "refit_to": str(folder)}, True)
            written.append(refit)
    return written


def build_report(request: ReportRequest) -> dict[str, Path]:
    """Write the report folder; returns the paths of report.json/.csv/.md/.png by suffix."""
    from pruneport.calibration.batches import tokenized_batches
    from pruneport.export.folders import check_output
    from pruneport.export.manifest import Manifest
    from pruneport.report.sweep import DEFAULT_SCALES, F1_TASKS, sweep, write_report

    request.check()
    check_output(request.out, request.models, request.overwrite, owned=REPORT_ENTRIES)
    folders = [as_export_folder(m, request.out, request.method) for m in request.models]
    for folder in list(folders):
        if request.quantize and Manifest.read(folder).precision == "fp32":
            folders += quantized_variants(folder, request)
    data = tokenized_batches(folders[0], request.data, request.split, request.limit, request.batch_size)
    use_f1 = request.metric == "f1" or (request.metric == "auto" and any(t in request.data.lower() for t in F1_TASKS))
    points, baseline = sweep(folders, data, request.scales or DEFAULT_SCALES, use_f1=use_f1)
    meta = {"data": data.source, "examples": data.n, "models": [str(f) for f in folders]}
    return write_report(request.out, points, baseline, meta, "F1" if use_f1 else "accuracy")

"""Convert an export folder to OpenVINO IR (``model.xml`` + ``model.bin``) with ``ov.convert_model``.

The output folder is a copy of the input (the files its manifest names) with the IR added next to the ONNX file(s)
(single graph and, when present, the split stages), so one folder serves both backends; the manifest records the IR
under ``extra["openvino"]`` and a ``convert`` history step. Weights stay FP32 unless ``fp16=True``
(``ov.save_model`` would compress to FP16 by default). Torch-free. The folder is written under a temporary name and
renamed into place when complete. :func:`add_openvino_ir` also serves writers that regenerate the IR (calibrate).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from pruneport.export.folders import carry_over, check_output, staged_folder
from pruneport.export.manifest import Manifest

log = logging.getLogger(__name__)


def _convert_file(onnx_path: Path, xml_path: Path, fp16: bool) -> None:
    import openvino as ov

    model = ov.convert_model(str(onnx_path))
    ov.save_model(model, str(xml_path), compress_to_fp16=fp16)


def add_openvino_ir(folder: Path, manifest: Manifest, fp16: bool = False) -> dict[str, Any]:
    """Convert the ONNX model (and split stages) of the folder being written to IR beside them; records the IR in
    ``manifest.extra["openvino"]`` (the caller writes the manifest) and returns that entry."""
    try:
        import openvino as ov
    except ImportError:
        raise ValueError("writing OpenVINO IR needs openvino (pip install 'pruneport[openvino]')") from None
    xml = Path(manifest.model_file).with_suffix(".xml").as_posix()
    log.info("converting %s to OpenVINO IR (%s weights)", manifest.model_file, "FP16" if fp16 else "FP32")
    _convert_file(folder / manifest.model_file, folder / xml, fp16)
    info: dict[str, Any] = {"model_file": xml, "weights": "f16" if fp16 else "f32", "openvino": ov.get_version()}
    stages = manifest.split_stages
    if stages:
        info["stages"] = []
        for stage in stages:
            stage_xml = Path(stage.file).with_suffix(".xml").as_posix()
            _convert_file(folder / stage.file, folder / stage_xml, fp16)
            info["stages"].append(stage_xml)
    manifest.extra["openvino"] = info
    return info


def convert_to_openvino(src: str | Path, out: str | Path, fp16: bool = False, overwrite: bool = False) -> Path:
    """Write ``out``: the export folder ``src`` plus OpenVINO IR of its model (and split stages); returns ``out``."""
    try:
        import openvino  # noqa: F401
    except ImportError:
        raise ValueError("pruneport convert needs openvino (pip install 'pruneport[openvino]')") from None
    src, out = Path(src), Path(out)
    manifest = Manifest.read(src)
    if not manifest.model_file.endswith(".onnx"):
        raise ValueError(f"{src} holds {manifest.model_file}, not an ONNX model; convert an ONNX export folder")
    check_output(out, [src], overwrite)
    with staged_folder(out) as tmp:
        manifest.drop_derived(("openvino",))  # an earlier conversion is made again below
        carry_over(src, tmp, manifest)
        info = add_openvino_ir(tmp, manifest, fp16)
        manifest.record("convert", format="openvino", **info)
        manifest.write(tmp)
    log.info("wrote %s", out)
    return out

"""The FP16 baselines of ``pruneport bench --device gpu``: the unpruned model as GPU users deploy it in half precision.

- ``unpruned-fp16``: the plain ONNX baseline through pruneport's own ``fp16`` pass (``optimize --passes
  cleanup,fp16``), so pruned FP16 folders have an unpruned twin made by the same converter
  (``speedup_vs_unpruned_same_quantizer``);
- ``ort-optimizer-fp16``: the plain ONNX baseline fused by ONNX Runtime's transformers optimizer
  (``optimize_model(model_type="bert", opt_level=1)``) and converted with its ``convert_float_to_float16(
  keep_io_types=True)``: what Optimum's O4 level does;
- ``pytorch-sdpa-fp16``: the HF baseline folder in PyTorch FP16 on CUDA with ``attn_implementation="sdpa"``.

Each is built next to the other baselines under ``--work``. They rank against each other through
``speedup_vs_best_fp16_baseline``. Built with the libraries made for it (ORT's optimizer, transformers); only the
folder bookkeeping is pruneport's.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

from pruneport.export.folders import staged_folder
from pruneport.export.manifest import Manifest, read_tokenizer
from pruneport.report.bench_baselines import ORT_OPTIMIZER_METHOD, TORCH_SDPA_METHOD, BaselineFolders
from pruneport.report.bench_systems import System

log = logging.getLogger(__name__)

FP16_ATOL = 0.1  # logit tolerance of the fp16 pass's parity gate on the unpruned twin


def build_unpruned_fp16(plain_folder: Path, work: Path) -> Path:
    """The plain ONNX baseline converted by pruneport's ``fp16`` pass (the twin of pruned FP16 folders)."""
    from pruneport.passes.pipeline import optimize_folder

    out, _ = optimize_folder(
        plain_folder, work / "baseline_plain_onnx_fp16", passes=["cleanup", "fp16"], overwrite=True, atol=FP16_ATOL
    )
    return out


def ort_optimizer_fp16(source: Path, out: Path, heads: int, hidden: int, use_gpu: bool) -> dict[str, int]:
    """Write ``out``: the plain ONNX model ``source`` fused by ONNX Runtime's transformers optimizer
    (``model_type="bert"``, ``opt_level=1``) and converted to FP16 with FP32 IO; returns the fused-op counts."""
    from onnxruntime.transformers.optimizer import optimize_model

    fused = optimize_model(
        str(source), model_type="bert", num_heads=heads, hidden_size=hidden, use_gpu=use_gpu, opt_level=1
    )
    fused.convert_float_to_float16(keep_io_types=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    fused.save_model_to_file(str(out))
    return fused.get_fused_operator_statistics()


def build_ort_optimizer_fp16(plain_folder: Path, work: Path, use_gpu: bool) -> Path:
    """The plain ONNX baseline folder through :func:`ort_optimizer_fp16`, as an export folder."""
    manifest = Manifest.read(plain_folder)
    backbone = manifest.backbone
    out = work / "baseline_ort_optimizer_fp16"
    if out.exists():
        shutil.rmtree(out)
    with staged_folder(out) as tmp:
        heads, hidden = int(backbone["num_attention_heads"]), int(backbone["hidden_size"])
        fused = ort_optimizer_fp16(plain_folder / manifest.model_file, tmp / "model.onnx", heads, hidden, use_gpu)
        shutil.copy2(plain_folder / manifest.tokenizer_file, tmp / manifest.tokenizer_file)
        manifest.model_file = "model.onnx"
        manifest.method = ORT_OPTIMIZER_METHOD
        manifest.precision = "fp16"
        exporter = "onnxruntime.transformers.optimizer optimize_model(model_type=bert, opt_level=1) + float16"
        manifest.extra = {**manifest.extra, "baseline_exporter": exporter}
        manifest.record("ort-optimizer-fp16", use_gpu=use_gpu, fused=fused)
        manifest.write(tmp)
    return out


def _require_cuda() -> None:
    import torch

    if not torch.cuda.is_available():
        raise RuntimeError("PyTorch sees no CUDA device (the FP16 SDPA baseline runs on the GPU)")


class TorchFp16Session:
    """A transformers sequence classifier in PyTorch FP16 on CUDA, behind the runtime's Session protocol."""

    def __init__(self, model: Any) -> None:
        import torch

        _require_cuda()
        self._torch = torch
        self.model = model.half().to("cuda").eval()
        self.output_names = ["logits"]

    @classmethod
    def from_folder(cls, hf_folder: Path) -> TorchFp16Session:
        """The HF folder's model with ``attn_implementation="sdpa"`` (RuntimeError before loading it without CUDA)."""
        from transformers import AutoModelForSequenceClassification

        _require_cuda()
        return cls(AutoModelForSequenceClassification.from_pretrained(str(hf_folder), attn_implementation="sdpa"))

    def run(self, feeds: dict[str, Any]) -> dict[str, Any]:
        """feeds {input name: int64 array} -> {"logits": float32 array}; waits for the GPU."""
        torch = self._torch
        with torch.inference_mode():
            inputs = {k: torch.from_numpy(v).to("cuda") for k, v in feeds.items()}
            logits = self.model(**inputs).logits.float().cpu().numpy()
        return {"logits": logits}


def torch_sdpa_system(base: BaselineFolders) -> System:
    """PyTorch FP16 SDPA on the baseline HF folder; tokenizer and I/O names from the plain ONNX folder."""
    manifest = Manifest.read(base.plain_onnx)
    session = TorchFp16Session.from_folder(base.hf)
    return System(
        model="unpruned-sdpa-fp16",
        method=TORCH_SDPA_METHOD,
        backend="pytorch",
        precision="fp16",
        run=session.run,
        tokenizer_json=read_tokenizer(base.plain_onnx, manifest),
        pad_token_id=manifest.pad_token_id,
        input_names=list(manifest.inputs),
        max_length=manifest.max_length,
        backbone=dict(manifest.backbone),
        spec={"kind": "torch-fp16", "folder": str(base.hf), "plain": str(base.plain_onnx)},
        notes={"baseline": "transformers FP16, attn_implementation=sdpa, CUDA"},
    )

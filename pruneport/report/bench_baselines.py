"""The baselines of ``pruneport bench``: the *unpruned* model with the same weights, as a user without pruneport
would deploy it.

- ``hf`` folder: the weights as a transformers ``BertForSequenceClassification`` / ``RobertaForSequenceClassification``
  ``save_pretrained`` folder (pruneport's names mapped back with
  :func:`pruneport.methods.checkpoint.to_hf_state_dict`; pruner parameters dropped). PyTorch eager runs this.
- ``plain-onnx`` folder: that HF model exported with plain ``torch.onnx.export(dynamo=True)`` (opset 18, dynamic
  batch and sequence, output ``logits`` only), run by ONNX Runtime and by OpenVINO (which reads the ONNX file).
- INT8 folders (:func:`build_int8_baselines`): that plain ONNX export quantized as users quantize it: ORT
  ``quantize_dynamic`` (the one-liner; Optimum's avx512_vnni dynamic config), ORT static QDQ U8S8, OpenVINO NNCF
  (``ModelType.TRANSFORMER``). bench pairs every pruned INT8 folder with the baseline of its own quantizer
  (``speedup_vs_unpruned_same_quantizer``).
- optimum-intel's OpenVINO export and its ``OVQuantizer`` INT8: built in optimum-intel's own environment
  (:mod:`pruneport.report.bench_optimum`).
- FP16 baselines for GPU runs (unpruned FP16 by pruneport's pass, ORT's transformers optimizer FP16, PyTorch FP16
  SDPA): :mod:`pruneport.report.bench_fp16_baselines`.

Optimum's ONNX exporter is not a baseline: ``optimum-onnx`` 0.1.0 requires ``transformers<4.58`` and its
``main_export`` is ``torch.onnx.export`` of the same HF class with no graph optimization unless asked, which is what
the plain export is. ONNX Runtime applies its default graph optimizations to every graph at session creation. Every
row says which exporter made it (``baseline_exporter``).
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pruneport
from pruneport.export.manifest import MANIFEST_NAME, Manifest

log = logging.getLogger(__name__)

PLAIN_METHOD = "plain-onnx"
EAGER_METHOD = "pytorch-eager"
OPTIMUM_METHOD = "optimum-intel"  # pruneport.report.bench_optimum
ORT_OPTIMIZER_METHOD = "ort-optimizer"  # pruneport.report.bench_fp16_baselines
TORCH_SDPA_METHOD = "pytorch-sdpa"  # pruneport.report.bench_fp16_baselines
BASELINE_METHODS = (PLAIN_METHOD, EAGER_METHOD, OPTIMUM_METHOD, ORT_OPTIMIZER_METHOD, TORCH_SDPA_METHOD)
BASELINE_EXPORTER = (
    "plain torch.onnx.export(dynamo=True, opset 18) of transformers {arch} (transformers {tf}; optimum-onnx 0.1.0, "
    "which requires transformers<4.58, would call the same exporter)"
)
SOURCE_FILE = "bench_source.json"


class BaselineError(ValueError):
    """The baseline model cannot be built from the given checkpoint."""


@dataclass
class BaselineFolders:
    """Where the baselines live: the HF folder (PyTorch eager) and the plain ONNX export folder."""

    hf: Path
    plain_onnx: Path
    exporter: str
    architecture: str


def _source_stamp(source: Path, max_length: int) -> dict[str, Any]:
    stat = source.stat() if source.is_file() else (source / "config.json").stat()
    return {
        "source": str(source.resolve()),
        "mtime": stat.st_mtime,
        "size": stat.st_size,
        "max_length": max_length,
        "pruneport": pruneport.__version__,
    }


def is_cached(folder: Path, stamp: dict[str, Any]) -> bool:
    """Whether ``folder`` was built from what ``stamp`` describes (its ``bench_source.json`` equals it)."""
    path = folder / SOURCE_FILE
    if not path.exists():
        return False
    try:
        return json.loads(path.read_text(encoding="utf-8")) == stamp
    except (OSError, json.JSONDecodeError):
        return False


def unpruned_reference(source: Path, method: str | None = None, trust_pickle: bool = False):
    """The checkpoint as a pruneport ``LoadedModel`` (pruned or not; only its weights are used).

    source: pruneport's model.pt, or a HF / upstream folder (``config.json`` + weights + tokenizer). Folders are read
    with LTP's loader and all thresholds 0 (nothing pruned) unless ``method`` names another loader.
    """
    from pruneport.methods import checkpoint as ck
    from pruneport.methods import load_checkpoint

    source = ck.require_path(source, "baseline checkpoint")
    if source.is_file():
        return load_checkpoint(source, method, trust_pickle=trust_pickle)
    if method not in (None, "ltp"):
        return load_checkpoint(source, method, trust_pickle=trust_pickle)
    config = ck.read_json(source / "config.json")
    layers = int(config["num_hidden_layers"])
    return load_checkpoint(source, "ltp", thresholds=[0.0] * layers, trust_pickle=trust_pickle)


def hf_model_from_reference(loaded) -> Any:
    """A transformers ``*ForSequenceClassification`` with the reference model's weights (eval mode)."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification, RobertaConfig, RobertaForSequenceClassification

    from pruneport.methods.checkpoint import to_hf_state_dict

    cfg = loaded.model.config
    common = dict(
        vocab_size=cfg.vocab_size,
        hidden_size=cfg.hidden_size,
        num_hidden_layers=cfg.num_hidden_layers,
        num_attention_heads=cfg.num_attention_heads,
        intermediate_size=cfg.intermediate_size,
        max_position_embeddings=cfg.max_position_embeddings,
        type_vocab_size=cfg.type_vocab_size,
        layer_norm_eps=cfg.layer_norm_eps,
        hidden_act=cfg.hidden_act,
        pad_token_id=cfg.pad_token_id,
        num_labels=cfg.num_labels,
        id2label={i: name for i, name in enumerate(loaded.label_names)},
        label2id={name: i for i, name in enumerate(loaded.label_names)},
    )
    if cfg.model_type == "roberta":
        model = RobertaForSequenceClassification(RobertaConfig(**common))
    else:
        model = BertForSequenceClassification(BertConfig(**common))
    state = to_hf_state_dict(loaded.model)
    result = model.load_state_dict(state, strict=False)
    missing = [k for k in result.missing_keys if not k.endswith(("position_ids", "token_type_ids"))]
    if missing or result.unexpected_keys:
        raise BaselineError(
            f"the reference weights do not fit {type(model).__name__}: missing {missing}, "
            f"unexpected {list(result.unexpected_keys)}"
        )
    with torch.no_grad():
        model.eval()
    return model


def _logits_module(model):
    """A module around a HF classifier that returns the logits tensor alone (the export's single output)."""
    import torch

    class LogitsOnly(torch.nn.Module):
        def __init__(self, inner) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, input_ids, attention_mask, token_type_ids=None):
            kwargs = {"input_ids": input_ids, "attention_mask": attention_mask}
            if token_type_ids is not None:
                kwargs["token_type_ids"] = token_type_ids
            return self.inner(**kwargs).logits

    return LogitsOnly(model).eval()


def export_plain_onnx(model, path: Path, input_names: list[str], max_tokens: int, opset: int = 18) -> None:
    """``torch.onnx.export(dynamo=True)`` of a HF classifier: inputs [batch, sequence] int64, output ``logits``."""
    import torch

    from pruneport.export.dynamo import batch_and_sequence_dims, dynamo_export

    wrapper = _logits_module(model)
    length = min(16, max_tokens)
    ids = torch.randint(5, 100, (2, length), generator=torch.Generator().manual_seed(0))
    mask = torch.ones(2, length, dtype=torch.long)
    mask[1, length // 2 :] = 0
    args = [ids, mask] + ([torch.zeros_like(ids)] if "token_type_ids" in input_names else [])
    batch, seq = batch_and_sequence_dims(max_tokens)
    dynamic = {name: {0: batch, 1: seq} for name in input_names}
    dynamo_export(wrapper, tuple(args), input_names, ["logits"], dynamic, path, opset)


def build_baselines(
    source: str | Path,
    work: str | Path,
    max_length: int,
    method: str | None = None,
    trust_pickle: bool = False,
) -> BaselineFolders:
    """Write (or reuse, when built from the same file) the HF folder and the plain ONNX folder under ``work``."""
    import torch
    import transformers

    source = Path(source)
    work = Path(work)
    work.mkdir(parents=True, exist_ok=True)
    stamp = _source_stamp(source, max_length) if source.exists() else {}
    hf_dir, onnx_dir = work / "baseline_hf", work / "baseline_plain_onnx"
    if stamp and is_cached(hf_dir, stamp) and is_cached(onnx_dir, stamp):
        manifest = Manifest.read(onnx_dir)
        log.info("reusing baselines in %s", work)
        return BaselineFolders(hf_dir, onnx_dir, manifest.extra["baseline_exporter"], manifest.extra["architecture"])
    loaded = unpruned_reference(source, method, trust_pickle)
    stamp = _source_stamp(source, max_length)
    model = hf_model_from_reference(loaded)
    cfg = loaded.model.config
    arch = type(model).__name__
    exporter = BASELINE_EXPORTER.format(arch=arch, tf=transformers.__version__)
    max_length = min(max_length, cfg.max_tokens)

    for folder in (hf_dir, onnx_dir):
        if folder.exists():
            shutil.rmtree(folder)
    tmp = Path(tempfile.mkdtemp(prefix=".baseline_hf.", dir=work))
    model.save_pretrained(str(tmp))
    (tmp / "tokenizer.json").write_text(loaded.tokenizer_json, encoding="utf-8")
    (tmp / SOURCE_FILE).write_text(json.dumps(stamp), encoding="utf-8")
    tmp.rename(hf_dir)

    tmp = Path(tempfile.mkdtemp(prefix=".baseline_plain_onnx.", dir=work))
    try:
        input_names = ["input_ids", "attention_mask"] + (["token_type_ids"] if cfg.uses_token_type_ids else [])
        log.info("exporting the unpruned %s with plain torch.onnx (dynamo)", arch)
        export_plain_onnx(model, tmp / "model.onnx", input_names, cfg.max_tokens)
        (tmp / "tokenizer.json").write_text(loaded.tokenizer_json, encoding="utf-8")
        manifest = Manifest(
            method=PLAIN_METHOD,
            backbone=cfg.to_dict(),
            pruning={},
            label_names=list(loaded.label_names),
            inputs=input_names,
            outputs=["logits"],
            max_length=max_length,
            pad_token_id=cfg.pad_token_id,
            pruneport_version=pruneport.__version__,
            extra={"baseline_exporter": exporter, "architecture": arch},
        )
        manifest.record("baseline-export", source=str(source), torch=torch.__version__)
        manifest.write(tmp)
        (tmp / SOURCE_FILE).write_text(json.dumps(stamp), encoding="utf-8")
        tmp.rename(onnx_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return BaselineFolders(hf_dir, onnx_dir, exporter, arch)


class EagerSession:
    """PyTorch eager inference of a HF folder behind the runtime's Session protocol (``run(feeds)``)."""

    def __init__(self, hf_folder: Path, threads: int = 0) -> None:
        import torch
        from transformers import AutoModelForSequenceClassification

        if threads:
            torch.set_num_threads(threads)
        self._torch = torch
        self.model = AutoModelForSequenceClassification.from_pretrained(str(hf_folder)).eval()
        self.output_names = ["logits"]

    def run(self, feeds: dict[str, Any]) -> dict[str, Any]:
        """feeds {input name: int64 array} -> {"logits": float32 array}, in inference mode."""
        torch = self._torch
        with torch.inference_mode():
            inputs = {k: torch.from_numpy(v) for k, v in feeds.items()}
            logits = self.model(**inputs).logits
        return {"logits": logits.numpy()}


def is_baseline_folder(folder: Path) -> bool:
    """True for a plain ONNX baseline folder written by :func:`build_baselines`."""
    path = folder / MANIFEST_NAME
    if not path.exists():
        return False
    try:
        return json.loads(path.read_text(encoding="utf-8")).get("method") == PLAIN_METHOD
    except (OSError, json.JSONDecodeError):
        return False


# ------------------------------------------------------------------------------------------------------------------
# INT8 baselines: the unpruned plain export quantized the way users quantize it
# ------------------------------------------------------------------------------------------------------------------

INT8_BASELINES: dict[str, dict[str, str]] = {
    # the one-liner users run (Optimum's avx512_vnni dynamic config: U8 activations at run time, S8 weights per
    # channel; MatMuls only here, as pruneport's dynamic mode)
    "ort-dynamic": {"backend": "onnxruntime", "mode": "dynamic"},
    # static QDQ U8S8, MinMax (or the named method) on calibration batches
    "ort-static": {"backend": "onnxruntime", "mode": "static", "calibration": "minmax"},
    "ort-static-entropy": {"backend": "onnxruntime", "mode": "static", "calibration": "entropy"},
    "ort-static-percentile": {"backend": "onnxruntime", "mode": "static", "calibration": "percentile"},
    "ort-static-distribution": {"backend": "onnxruntime", "mode": "static", "calibration": "distribution"},
    # OpenVINO's NNCF post-training quantization, ModelType.TRANSFORMER
    "openvino-nncf": {"backend": "openvino"},
}
INT8_MODEL_PREFIX = "unpruned-int8-"


def int8_baseline_for_scheme(scheme: str | None) -> str | None:
    """The INT8 baseline that quantizes like a folder whose manifest records ``scheme`` (None: no match)."""
    if not scheme:
        return None
    if scheme == "dynamic-s8":
        return "ort-dynamic"
    if scheme.startswith("qdq-u8s8-"):
        method = scheme.removeprefix("qdq-u8s8-")
        return "ort-static" if method == "minmax" else f"ort-static-{method}"
    if scheme.startswith("nncf-transformer"):
        return "openvino-nncf"
    return None


@dataclass(frozen=True)
class CalibrationSpec:
    """Where the INT8 baselines' calibration texts come from (a seeded subset of a data set's split)."""

    data: str
    split: str = "train"
    n: int = 64
    seed: int = 0


def build_int8_baselines(
    plain_folder: Path, work: Path, names: list[str], calibration: CalibrationSpec
) -> dict[str, Path]:
    """Quantize the plain FP32 baseline once per name in ``names`` (keys of :data:`INT8_BASELINES`) under ``work``;
    a folder built from the same plain export and calibration is reused. Nothing is kept in FP32 (a plain model has
    no score path)."""
    from pruneport.calibration.batches import tokenized_batches
    from pruneport.calibration.quantize import QuantizeOptions, quantize_folder

    unknown = [n for n in names if n not in INT8_BASELINES]
    if unknown:
        raise BaselineError(f"unknown INT8 baselines {unknown}; use {', '.join(INT8_BASELINES)}")
    source_stamp = json.loads((plain_folder / SOURCE_FILE).read_text(encoding="utf-8"))
    folders: dict[str, Path] = {}
    data = None
    for name in names:
        out = work / f"baseline_int8_{name}"
        stamp = {**source_stamp, "int8": name, "calibration": calibration.__dict__}
        if not is_cached(out, stamp):
            if data is None:
                data = tokenized_batches(
                    plain_folder,
                    calibration.data,
                    calibration.split,
                    calibration.n,
                    batch_size=8,
                    seed=calibration.seed,
                )
            if out.exists():
                shutil.rmtree(out)
            log.info("quantizing the unpruned baseline: %s", name)
            options = QuantizeOptions(**INT8_BASELINES[name], keep_score_path=False)
            quantize_folder(plain_folder, data, out, options)
            (out / SOURCE_FILE).write_text(json.dumps(stamp), encoding="utf-8")
        folders[name] = out
    return folders

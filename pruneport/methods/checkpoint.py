"""Reading and writing checkpoints: pruneport's own ``model.pt``, HF folders and their state dicts.

``model.pt`` is a ``torch.save`` of a plain dict (format name and version, method, the backbone's HF config dict,
the pruning parameters, the state dict under pruneport's parameter names, the tokenizer.json text, label names), so
``torch.load(weights_only=True)`` reads it without unpickling code. Anything else stored with pickle is refused
unless the caller passes ``trust_pickle=True`` (the CLI's ``--trust-pickle``).
"""

from __future__ import annotations

import json
import logging
import pickle
import re
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from pruneport.methods.backbone import BackboneConfig
from pruneport.methods.pickle_scan import inspect_checkpoint_file
from pruneport.methods.tokenizer_files import tokenizer_json_from_folder

log = logging.getLogger(__name__)

MODEL_FORMAT = "pruneport-model"
MODEL_FORMAT_VERSION = 1

# I-BERT quantization buffers carried by upstream LTP checkpoints; they have no role in float inference.
_IBERT_BUFFER = re.compile(
    r"(weight_integer|bias_integer|scaling_factor|x_min|x_max|shift|act_scaling_factor|fc_scaling_factor)$"
)


class CheckpointError(ValueError):
    """A checkpoint that cannot be read as asked (missing file, wrong format, wrong keys)."""


class CheckpointKeyError(CheckpointError):
    """A state dict whose keys do not fit the model; names the missing and unexpected keys."""

    def __init__(self, source: str, missing: Iterable[str], unexpected: Iterable[str]) -> None:
        self.missing = sorted(missing)
        self.unexpected = sorted(unexpected)

        def show(keys: list[str]) -> str:
            return ", ".join(keys[:20]) + (f" ... ({len(keys)} in all)" if len(keys) > 20 else "") or "none"

        super().__init__(
            f"{source}: checkpoint keys do not fit the model. Missing keys: {show(self.missing)}. "
            f"Unexpected keys: {show(self.unexpected)}."
        )


@dataclass
class LoadedModel:
    """A reference model ready to run or export, with what the export folder needs besides the graph."""

    model: torch.nn.Module
    method: str
    backbone: dict[str, Any]  # the HF config dict
    pruning: dict[str, Any]
    tokenizer_json: str
    label_names: list[str]
    max_length: int
    source: str = ""
    notes: list[str] = field(default_factory=list)


def require_path(path: str | Path, what: str = "checkpoint") -> Path:
    """``path`` as a Path; CheckpointError ``{what} not found`` when it does not exist."""
    p = Path(path)
    if not p.exists():
        raise CheckpointError(f"{what} not found: {p}")
    return p


def read_json(path: Path) -> dict[str, Any]:
    """A JSON file's content; CheckpointError when the file is missing or not valid JSON."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckpointError(f"missing file: {path}") from None
    except json.JSONDecodeError as err:
        raise CheckpointError(f"{path} is not valid JSON: {err}") from None


def safe_torch_load(path: Path, trust_pickle: bool = False) -> Any:
    """``torch.load`` with ``weights_only=True``; with ``trust_pickle`` falls back to full unpickling.

    A failure is explained by what the file is (:func:`inspect_checkpoint_file`): no zip and no pickle -> "not a
    PyTorch checkpoint"; a pickle the safe loader refused -> the globals it would import, and ``--trust-pickle``.
    """
    try:
        with warnings.catch_warnings():  # torch warns about odd pickle protocols before failing on them
            warnings.simplefilter("ignore", UserWarning)
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        found = inspect_checkpoint_file(path)
        if found.kind == "other":
            raise CheckpointError(f"{path} is not a PyTorch checkpoint: {found.reason}") from None
        if not trust_pickle:
            unsafe = found.unsafe_globals
            if unsafe:
                shown = ", ".join(unsafe[:8]) + (f" ... ({len(unsafe)} in all)" if len(unsafe) > 8 else "")
                raise CheckpointError(
                    f"{path} contains pickled Python objects ({shown}), which pruneport does not unpickle by default "
                    "(that can run arbitrary code). If you trust this file, pass --trust-pickle"
                ) from None
            raise CheckpointError(
                f"{path} uses pickle features that the safe loader does not accept ({_weights_only_reason(err)}). "
                "If you trust this file, pass --trust-pickle"
            ) from None
        log.warning("unpickling %s with weights_only=False because trust_pickle was given", path)
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:  # torch reports damaged files as RuntimeError, EOFError, KeyError, IndexError, ...
        found = inspect_checkpoint_file(path)
        if found.kind == "other":
            raise CheckpointError(f"{path} is not a PyTorch checkpoint: {found.reason}") from None
        detail = " ".join(str(err).split())[:200] or type(err).__name__
        raise CheckpointError(f"cannot read {path} as a PyTorch checkpoint (damaged or truncated?): {detail}") from None


def _weights_only_reason(err: BaseException) -> str:
    """The one line of torch's weights-only error that says what was refused."""
    text = str(err)
    marker = "WeightsUnpickler error:"
    tail = text[text.index(marker) + len(marker) :] if marker in text else text
    lines = [line.strip() for line in tail.splitlines() if line.strip()]
    return lines[0][:200] if lines else "refused"


def read_state_dict(folder: Path, trust_pickle: bool = False) -> dict[str, torch.Tensor]:
    """The weights of a HF ``save_pretrained`` folder (safetensors preferred, then pytorch_model.bin)."""
    st = folder / "model.safetensors"
    if st.exists():
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(st))
        except (SafetensorError, OSError) as err:  # truncated, corrupt or unreadable
            raise CheckpointError(f"cannot read {st} (truncated or corrupt safetensors file?): {err}") from None
    bin_path = folder / "pytorch_model.bin"
    if bin_path.exists():
        state = safe_torch_load(bin_path, trust_pickle)
        if not isinstance(state, dict):
            raise CheckpointError(f"{bin_path} does not hold a state dict")
        return state
    raise CheckpointError(f"{folder} has no model.safetensors or pytorch_model.bin")


def backbone_prefix(state: dict[str, torch.Tensor]) -> str:
    """The prefix in front of ``embeddings.word_embeddings.weight``: "bert.", "roberta.", "ibert." or ""."""
    for key in state:
        if key.endswith("embeddings.word_embeddings.weight"):
            return key[: -len("embeddings.word_embeddings.weight")]
    raise CheckpointKeyError("state dict", ["embeddings.word_embeddings.weight"], [])


class MappedState(dict):
    """A renamed state dict that remembers each entry's key in the checkpoint (``origin``), for error messages."""

    def __init__(self) -> None:
        super().__init__()
        self.origin: dict[str, str] = {}

    def put(self, name: str, source_key: str, value: torch.Tensor) -> None:
        """Store ``value`` under pruneport's ``name`` and remember its checkpoint key ``source_key``."""
        self[name] = value
        self.origin[name] = source_key


def map_hf_state(
    state: dict[str, torch.Tensor], cfg: BackboneConfig, skip: Iterable[str] = ()
) -> tuple[MappedState, list[str]]:
    """Rename a HF BERT/RoBERTa/I-BERT sequence-classification state dict to pruneport's names.

    Returns the mapped dict and the keys that do not belong to a BERT-family classifier (left for the method's
    loader or reported as unexpected). Keys in ``skip`` (already consumed by the method's loader) and buffers that
    carry no weights (position_ids, I-BERT quantization state) are dropped.
    """
    prefix = backbone_prefix(state)
    skip = set(skip)
    mapped = MappedState()
    leftover: list[str] = []
    for key, value in state.items():
        if key in skip or key.endswith(("position_ids", "embeddings.token_type_ids")) or _IBERT_BUFFER.search(key):
            continue
        name = key[len(prefix) :] if key.startswith(prefix) else None
        if name is not None and name.startswith("embeddings."):
            mapped.put(name, key, value)
        elif name is not None and name.startswith("encoder.layer."):
            mapped.put("layer." + name[len("encoder.layer.") :], key, value)
        elif name is not None and name.startswith("pooler.dense."):
            if cfg.model_type == "bert":
                mapped.put("classifier.dense." + name.rsplit(".", 1)[1], key, value)
        elif key in ("classifier.weight", "classifier.bias"):
            mapped.put("classifier.out_proj." + key.rsplit(".", 1)[1], key, value)
        elif key.startswith(("classifier.dense.", "classifier.out_proj.")):
            mapped.put(key, key, value)
        else:
            leftover.append(key)
    return mapped, leftover


def load_into(
    model: torch.nn.Module,
    mapped: dict[str, torch.Tensor],
    unexpected: Iterable[str],
    source: str,
    optional: Callable[[str], bool] = lambda key: False,
) -> list[str]:
    """Load ``mapped`` strictly: raise CheckpointKeyError naming missing/unexpected keys (shape mismatches too).

    Keys for which ``optional(key)`` is true may be missing (for example a classifier head that the caller will
    train); their names are returned.
    """
    expected = dict(model.state_dict())
    expected_params = {k for k in expected if not k.startswith("pruner.") or k in mapped}
    origin = getattr(mapped, "origin", {})
    unexpected = set(unexpected) | {origin.get(k, k) for k in mapped if k not in expected}
    missing = {k for k in expected_params if k not in mapped}
    allowed_missing = {k for k in missing if optional(k)}
    missing -= allowed_missing
    wrong_shape = [
        f"{k} {tuple(v.shape)} (model wants {tuple(expected[k].shape)})"
        for k, v in mapped.items()
        if k in expected and tuple(v.shape) != tuple(expected[k].shape)
    ]
    if missing or unexpected:
        raise CheckpointKeyError(source, missing, unexpected)
    if wrong_shape:
        raise CheckpointError(f"{source}: tensors with the wrong shape: {', '.join(wrong_shape)}")
    model.load_state_dict({k: v for k, v in mapped.items() if k in expected}, strict=False)
    return sorted(allowed_missing)


def loaded_from_hf_folder(
    model: torch.nn.Module,
    folder: Path,
    config: dict[str, Any],
    method: str,
    pruning: dict[str, Any],
    mapped: dict[str, torch.Tensor],
    leftover: Iterable[str],
    options: dict[str, Any],
    notes: list[str],
) -> LoadedModel:
    """Load a method's renamed HF-folder weights into ``model`` strictly and wrap it with the folder's tokenizer.

    A missing classifier head is allowed only with ``options["allow_missing_head"]`` (a head the caller trains).
    """
    head_optional = bool(options.get("allow_missing_head"))
    load_into(model, mapped, leftover, str(folder), optional=lambda k: head_optional and k.startswith("classifier."))
    return LoadedModel(
        model=model.eval(),
        method=method,
        backbone=config,
        pruning=pruning,
        tokenizer_json=tokenizer_json_from_folder(folder, vocab_size=config.get("vocab_size")),
        label_names=label_names_from_config(config, model.config.num_labels),
        max_length=model.config.max_tokens,
        source=str(folder),
        notes=notes,
    )


def label_names_from_config(config: dict[str, Any], num_labels: int) -> list[str]:
    """Names of labels 0..num_labels-1 from a HF config's ``id2label`` (str or int keys), ``LABEL_{i}`` where absent."""
    id2label = config.get("id2label") or {}
    names = [str(id2label.get(str(i), id2label.get(i, f"LABEL_{i}"))) for i in range(num_labels)]
    return names


def save_model_pt(loaded: LoadedModel, path: str | Path) -> Path:
    """Write pruneport's single-file ``model.pt`` (readable with ``torch.load(weights_only=True)``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": MODEL_FORMAT,
        "format_version": MODEL_FORMAT_VERSION,
        "method": loaded.method,
        "backbone_config": loaded.backbone,
        "pruning": loaded.pruning,
        "state_dict": {k: v.detach().cpu().contiguous() for k, v in loaded.model.state_dict().items()},
        "tokenizer": loaded.tokenizer_json,
        "label_names": list(loaded.label_names),
        "max_length": int(loaded.max_length),
    }
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    tmp.replace(path)
    return path


def read_model_pt(path: Path, trust_pickle: bool = False) -> dict[str, Any]:
    """The dict stored in a ``model.pt``, checked for format and fields."""
    payload = safe_torch_load(path, trust_pickle)
    if isinstance(payload, torch.nn.Module):
        raise CheckpointError(
            f"{path} holds a pickled nn.Module, not a pruneport model.pt; save it with "
            "pruneport.methods.checkpoint.save_model_pt"
        )
    if not isinstance(payload, dict) or payload.get("format") != MODEL_FORMAT:
        raise CheckpointError(f"{path} is not a pruneport model.pt (no 'format': '{MODEL_FORMAT}' entry)")
    if int(payload.get("format_version", 0)) > MODEL_FORMAT_VERSION:
        raise CheckpointError(
            f"{path} has format version {payload['format_version']}; this pruneport reads up to {MODEL_FORMAT_VERSION}"
        )
    needed = ["method", "backbone_config", "pruning", "state_dict", "tokenizer"]
    absent = [k for k in needed if k not in payload]
    if absent:
        raise CheckpointError(f"{path} lacks the entries {absent}")
    return payload


def to_hf_state_dict(model: torch.nn.Module, prefix: str | None = None) -> dict[str, torch.Tensor]:
    """The inverse of :func:`map_hf_state`: a HF ``*ForSequenceClassification`` state dict of a pruneport model.

    BERT: ``bert.embeddings.*``, ``bert.encoder.layer.*``, ``bert.pooler.dense.*`` (pruneport's
    ``classifier.dense``) and ``classifier.{weight,bias}`` (``classifier.out_proj``); RoBERTa: ``roberta.*`` and
    ``classifier.dense`` / ``classifier.out_proj`` as they are. Pruner parameters (``pruner.*``) are left out, so
    the result is the unpruned model with the same weights (what a user exports without pruneport).
    """
    roberta = model.config.model_type == "roberta"
    prefix = prefix if prefix is not None else ("roberta." if roberta else "bert.")
    out: dict[str, torch.Tensor] = {}
    for key, value in model.state_dict().items():
        if key.startswith("pruner."):
            continue
        if key.startswith("embeddings."):
            out[prefix + key] = value
        elif key.startswith("layer."):
            out[prefix + "encoder." + key] = value
        elif key.startswith("classifier.dense.") and not roberta:
            out[prefix + "pooler." + key[len("classifier.") :]] = value
        elif key.startswith("classifier.out_proj.") and not roberta:
            out["classifier." + key.rsplit(".", 1)[1]] = value
        elif key.startswith("classifier."):
            out[key] = value
        else:
            raise CheckpointError(f"to_hf_state_dict: no HF name for parameter {key!r}")
    return out

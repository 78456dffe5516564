"""The manifest ``pruneport.json`` of an export folder: the contract between export, passes, quantizers and runtime.

Torch-free: the runtime reads it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

MANIFEST_NAME = "pruneport.json"
EXPORT_FORMAT = "pruneport-export"
EXPORT_FORMAT_VERSION = 1


class NotAnExportError(ValueError):
    """A folder that is not a pruneport export (no or unreadable pruneport.json)."""


@dataclass
class Manifest:
    """What an export folder holds and how to feed it.

    I/O contract: inputs ``input_ids``, ``attention_mask`` (+ ``token_type_ids`` when the backbone uses them), all
    int64 [batch, sequence], right-padded; outputs ``logits`` float32 [batch, labels] and ``tokens_per_layer`` int64
    [batch, layers] (+ ``last_hidden_state`` float32 [batch, sequence, hidden] when exported with hidden outputs).
    """

    method: str
    backbone: dict[str, Any]  # model_type, hidden_size, num_hidden_layers, num_attention_heads, ...
    pruning: dict[str, Any]  # method parameters (LTP: thresholds, score_norm_length)
    label_names: list[str]
    inputs: list[str]
    outputs: list[str]
    max_length: int
    pad_token_id: int
    pruneport_version: str
    model_file: str = "model.onnx"
    tokenizer_file: str = "tokenizer.json"
    opset: int = 18
    precision: str = "fp32"
    format: str = EXPORT_FORMAT
    format_version: int = EXPORT_FORMAT_VERSION
    history: list[dict[str, Any]] = field(default_factory=list)  # export, optimize, quantize steps
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def num_layers(self) -> int:
        return int(self.backbone["num_hidden_layers"])

    def write(self, folder: str | Path) -> Path:
        path = Path(folder) / MANIFEST_NAME
        path.write_text(json.dumps(asdict(self), indent=2) + "\n", encoding="utf-8")
        return path

    @classmethod
    def read(cls, folder: str | Path) -> Manifest:
        folder = Path(folder)
        if not folder.is_dir():
            raise NotAnExportError(f"{folder} is not a folder; expected a pruneport export folder")
        path = folder / MANIFEST_NAME
        if not path.exists():
            raise NotAnExportError(f"{folder} is not a pruneport export: it has no {MANIFEST_NAME}")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as err:
            raise NotAnExportError(f"{path} is not valid JSON: {err}") from None
        if data.get("format") != EXPORT_FORMAT:
            raise NotAnExportError(f"{path} is not a pruneport export manifest")
        known = set(cls.__dataclass_fields__)
        try:
            return cls(**{k: v for k, v in data.items() if k in known})
        except TypeError as err:
            raise NotAnExportError(f"{path} lacks required fields: {err}") from None

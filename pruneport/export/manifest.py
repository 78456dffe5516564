"""The manifest ``pruneport.json`` of an export folder: the contract between export, passes, quantizers and runtime.

Reading it validates, in this one place, everything a reader relies on: the file is a JSON object of the export
format, of a format version this code knows; every field has its type and sizes are in range (``max_length`` within
the backbone's positions); and every file it names (:meth:`Manifest.file_entries`: the model, the tokenizer, split
stages, OpenVINO IR and its weights) is a plain relative name that resolves inside the folder (:func:`safe_file`:
no absolute path, no ``..``, no symbolic link leading out). Anything else raises :class:`NotAnExportError`
(:class:`UnsafePathError` for file names) with a one-line message, before any named file is opened. Writing checks
the same against the folder written, and that every named file is there.

Torch-free: the runtime reads it.
"""

from __future__ import annotations

import json
import math
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

MANIFEST_NAME = "pruneport.json"
EXPORT_FORMAT = "pruneport-export"
EXPORT_FORMAT_VERSION = 1

MAX_LAYERS = 1024  # sanity bounds for sizes read from a manifest (they size arrays in the runtime)
MAX_SIZE = 1 << 24
MAX_OPSET = 1000
KNOWN_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
KNOWN_BACKENDS = ("onnxruntime", "openvino")
DERIVED_ENTRIES = ("split", "openvino")  # extra entries describing files made from the model file (see derived())


class NotAnExportError(ValueError):
    """A folder that is not a valid pruneport export (no, unreadable or invalid pruneport.json)."""


class UnsafePathError(NotAnExportError):
    """A file name in a manifest that is not a plain relative name inside its folder."""


def _show(value: Any, limit: int = 60) -> str:
    """``repr(value)`` cut to ``limit`` characters (keeps messages on one short line)."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def safe_file(folder: str | Path, name: object, what: str = "file name") -> Path:
    """``folder / name`` when ``name`` is a plain relative file name that resolves inside ``folder``.

    Refused (UnsafePathError): non-strings and empty names, control characters and backslashes, absolute paths and
    drive letters, ``..`` anywhere, and names that resolve outside the folder or to the folder itself (through a
    symbolic link). Sub-folders (``split/stage_0.onnx``) are fine.
    """
    folder = Path(folder)
    if not isinstance(name, str) or not name.strip():
        raise UnsafePathError(f"{folder}: {what} must be a file name (a non-empty string), got {_show(name)}")
    if "\\" in name or any(ord(c) < 32 for c in name):
        raise UnsafePathError(f"{folder}: {what} {_show(name)} has a backslash or control character")
    pure = PurePosixPath(name)
    if pure.is_absolute() or PureWindowsPath(name).drive:
        raise UnsafePathError(f"{folder}: {what} {_show(name)} is an absolute path; export folders name their files")
    if ".." in pure.parts:
        raise UnsafePathError(f"{folder}: {what} {_show(name)} contains '..'; export folders name files inside them")
    root = folder.resolve()
    try:
        target = (root / pure).resolve()
    except (OSError, RuntimeError) as err:  # a symbolic link loop
        raise UnsafePathError(f"{folder}: {what} {_show(name)} cannot be resolved ({type(err).__name__})") from None
    if target == root or not target.is_relative_to(root):
        raise UnsafePathError(
            f"{folder}: {what} {_show(name)} leads outside the folder (a symbolic link); export folders are "
            "self-contained"
        )
    return folder / pure


def backbone_positions(backbone: dict[str, Any]) -> int:
    """Longest input the backbone's position table allows (torch-free twin of ``BackboneConfig.max_tokens``)."""
    positions = int(backbone["max_position_embeddings"])
    if backbone.get("model_type") == "roberta":
        return positions - int(backbone.get("pad_token_id") or 0) - 1
    return positions


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


class _Checker:
    """Type and range checks that raise NotAnExportError naming the manifest and the field."""

    def __init__(self, where: str) -> None:
        self.where = where

    def fail(self, message: str) -> None:
        raise NotAnExportError(f"{self.where}: {message}")

    def integer(self, name: str, value: Any, low: int, high: int) -> int:
        if not _is_int(value):
            self.fail(f"{name} must be an integer, got {_show(value)}")
        if not low <= value <= high:
            self.fail(f"{name} must be between {low} and {high}, got {_show(value)}")
        return value

    def string(self, name: str, value: Any, nonempty: bool = True) -> str:
        if not isinstance(value, str) or (nonempty and not value):
            self.fail(f"{name} must be a{' non-empty' if nonempty else ''} string, got {_show(value)}")
        return value

    def mapping(self, name: str, value: Any) -> dict:
        if not isinstance(value, dict):
            self.fail(f"{name} must be a JSON object, got {_show(value)}")
        return value

    def sequence(self, name: str, value: Any, item: str = "", nonempty: bool = False) -> list:
        if not isinstance(value, list):
            self.fail(f"{name} must be a list, got {_show(value)}")
        if nonempty and not value:
            self.fail(f"{name} must not be empty")
        kinds = {
            "str": lambda v: isinstance(v, str),
            "int": _is_int,
            "number": lambda v: v is None or _is_number(v),
            "dict": lambda v: isinstance(v, dict),
            "scalar": lambda v: v is None or isinstance(v, (str, int, float, bool)),
        }
        if item:
            bad = [v for v in value if not kinds[item](v)]
            if bad:
                self.fail(f"{name} must hold {item} values, got {_show(bad[0])}")
        return value


_PRUNING_KINDS = {
    "thresholds": "numbers",
    "keep_probability": "numbers",
    "margin": "numbers",
    "eta": "numbers",
    "cls_scale": "numbers",
    "selection_layers": "ints",
    "score_norm_length": "int",
    "prune_upto": "int",
    "keep_ratio": "number",
    "semantics": "str",
    "distance": "str",
}


@dataclass(frozen=True)
class SplitStage:
    """One graph of a split export (``pruneport export --split``): its file, the layers whose attention it runs,
    its inputs, and the prune point it ends at (None: it ends the model)."""

    file: str
    layers: tuple[int, ...]
    inputs: tuple[str, ...]
    end: int | None


@dataclass(frozen=True)
class OpenVINOIR:
    """The OpenVINO IR written beside the ONNX model (``pruneport convert``; regenerated by ``calibrate``)."""

    model_file: str
    stages: tuple[str, ...]  # one .xml per split stage (empty without a split export)
    weights: str  # "f32" or "f16"


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
        """Encoder layers of the backbone."""
        return int(self.backbone["num_hidden_layers"])

    # -- typed views of the entries kept in ``extra`` (their place in the file is unchanged: format version 1) --
    @property
    def bucket(self) -> int:
        """Kept lengths are rounded up to a multiple of this at every prune point (0: exact lengths)."""
        return int(self.extra.get("bucket") or 0)

    @property
    def split_stages(self) -> list[SplitStage]:
        """The stage graphs of a split export, in order (empty without one)."""
        stages = (self.extra.get("split") or {}).get("stages") or []
        return [SplitStage(s["file"], tuple(s["layers"]), tuple(s["inputs"]), s.get("end")) for s in stages]

    @property
    def openvino_ir(self) -> OpenVINOIR | None:
        """The OpenVINO IR beside the ONNX model, if ``pruneport convert`` wrote one."""
        ov = self.extra.get("openvino")
        if not ov:
            return None
        return OpenVINOIR(ov["model_file"], tuple(ov.get("stages") or ()), str(ov.get("weights", "f32")))

    def model_file_for(self, backend: str) -> tuple[str, list[str]]:
        """(single-graph file, split stage files) that ``backend`` reads: OpenVINO reads the IR when there is one
        (its stages too), everything else the ONNX files. Names as stored: open them through :func:`safe_file`."""
        single, stages = self.model_file, [s.file for s in self.split_stages]
        ir = self.openvino_ir
        if backend == "openvino" and ir is not None:
            single = ir.model_file
            stages = list(ir.stages) or stages
        return single, stages

    def record(self, step: str, **details: Any) -> dict[str, Any]:
        """Append a history entry ``{"step": step, **details, "pruneport": version}`` (every writer calls this)."""
        from pruneport import __version__

        entry = {"step": step, **details}
        entry.setdefault("pruneport", __version__)
        self.history = [*self.history, entry]
        return entry

    # -- validation --------------------------------------------------------------------------------------------
    def validate(self, where: str = MANIFEST_NAME) -> None:
        """Check every field's type and range (NotAnExportError naming ``where`` and the field otherwise)."""
        check = _Checker(where)
        if self.format != EXPORT_FORMAT:
            check.fail("not a pruneport export manifest")
        check.integer("format_version", self.format_version, 1, MAX_SIZE)
        if self.format_version > EXPORT_FORMAT_VERSION:
            check.fail(
                f"format version {self.format_version} is newer than this pruneport reads "
                f"({EXPORT_FORMAT_VERSION}); upgrade pruneport"
            )
        for name in ("method", "pruneport_version", "precision"):
            check.string(name, getattr(self, name), nonempty=name != "pruneport_version")
        check.string("model_file", self.model_file)
        check.string("tokenizer_file", self.tokenizer_file)
        self._validate_backbone(check)
        check.sequence("label_names", self.label_names, "str", nonempty=True)
        check.sequence("inputs", self.inputs, "str", nonempty=True)
        unknown = [n for n in self.inputs if n not in KNOWN_INPUTS]
        if unknown or len(set(self.inputs)) != len(self.inputs):
            check.fail(f"inputs must be distinct names among {', '.join(KNOWN_INPUTS)}, got {_show(self.inputs)}")
        if not {"input_ids", "attention_mask"} <= set(self.inputs):
            check.fail(f"inputs must include input_ids and attention_mask, got {_show(self.inputs)}")
        check.sequence("outputs", self.outputs, "str", nonempty=True)
        if "logits" not in self.outputs:
            check.fail(f"outputs must include logits, got {_show(self.outputs)}")
        positions = backbone_positions(self.backbone)
        if positions < 1:
            check.fail(f"the backbone has no positions for tokens ({positions})")
        if _is_int(self.max_length) and self.max_length > positions:
            check.fail(f"max_length {self.max_length} is beyond the backbone's {positions} positions")
        check.integer("max_length", self.max_length, 1, positions)
        check.integer("pad_token_id", self.pad_token_id, 0, int(self.backbone["vocab_size"]) - 1)
        check.integer("opset", self.opset, 1, MAX_OPSET)
        check.sequence("history", self.history, "dict")
        self._validate_pruning(check)
        self._validate_extra(check)

    def _validate_backbone(self, check: _Checker) -> None:
        backbone = check.mapping("backbone", self.backbone)
        for key in ("vocab_size", "hidden_size", "num_attention_heads", "intermediate_size", "max_position_embeddings"):
            if key not in backbone:
                check.fail(f"backbone lacks {key}")
            check.integer(f"backbone.{key}", backbone[key], 1, MAX_SIZE)
        if "num_hidden_layers" not in backbone:
            check.fail("backbone lacks num_hidden_layers")
        check.integer("backbone.num_hidden_layers", backbone["num_hidden_layers"], 1, MAX_LAYERS)
        if "model_type" in backbone:
            check.string("backbone.model_type", backbone["model_type"])
        for key in ("pad_token_id", "type_vocab_size"):
            if backbone.get(key) is not None:
                check.integer(f"backbone.{key}", backbone[key], 0, MAX_SIZE)

    def _validate_pruning(self, check: _Checker) -> None:
        pruning = check.mapping("pruning", self.pruning)
        for key, value in pruning.items():
            name, kind = f"pruning.{key}", _PRUNING_KINDS.get(key)
            if value is None:
                continue
            if kind == "numbers":
                check.sequence(name, value, "number")
            elif kind == "ints":
                check.sequence(name, value, "int")
            elif kind == "int":
                check.integer(name, value, 0, MAX_SIZE)
            elif kind == "number":
                if not _is_number(value) or not math.isfinite(value):
                    check.fail(f"{name} must be a finite number, got {_show(value)}")
            elif kind == "str":
                check.string(name, value)
            elif isinstance(value, list):
                check.sequence(name, value, "scalar")
            elif not isinstance(value, (str, int, float, bool)):
                check.fail(f"{name} must be a number, string or list, got {_show(value)}")

    def _validate_extra(self, check: _Checker) -> None:
        extra = check.mapping("extra", self.extra)
        if extra.get("bucket") is not None:
            check.integer("extra.bucket", extra["bucket"], 0, MAX_SIZE)
        if extra.get("backend") is not None and extra["backend"] not in KNOWN_BACKENDS:
            check.fail(f"extra.backend must be one of {', '.join(KNOWN_BACKENDS)}, got {_show(extra['backend'])}")
        for key, kind in (("quantization", "mapping"), ("matmuls", "sequence"), ("notes", "sequence")):
            if extra.get(key) is not None:
                getattr(check, kind)(f"extra.{key}", extra[key])
        stages = self._split_stages(check)
        ov = extra.get("openvino")
        if ov is not None:
            check.mapping("extra.openvino", ov)
            check.string("extra.openvino.model_file", ov.get("model_file"))
            if ov.get("stages"):
                check.sequence("extra.openvino.stages", ov["stages"], "str")
                if len(ov["stages"]) != len(stages):
                    check.fail(f"extra.openvino.stages lists {len(ov['stages'])} files for {len(stages)} split stages")

    def _split_stages(self, check: _Checker) -> list[dict[str, Any]]:
        split = self.extra.get("split")
        if split is None:
            return []
        check.mapping("extra.split", split)
        stages = check.sequence("extra.split.stages", split.get("stages"), "dict", nonempty=True)
        for k, stage in enumerate(stages):
            name = f"extra.split.stages[{k}]"
            check.string(f"{name}.file", stage.get("file"))
            layers = check.sequence(f"{name}.layers", stage.get("layers"), "int")
            if any(not 0 <= layer < self.num_layers for layer in layers):
                check.fail(f"{name}.layers must be layer indices below {self.num_layers}, got {_show(layers)}")
            check.sequence(f"{name}.inputs", stage.get("inputs"), "str", nonempty=True)
            if stage.get("end") is not None:
                check.integer(f"{name}.end", stage["end"], 0, 2 * MAX_LAYERS)
        if stages[-1].get("end") is not None:
            check.fail("extra.split.stages: the last stage must end the model (end null)")
        return stages

    # -- the files it names ------------------------------------------------------------------------------------
    def file_entries(self) -> list[tuple[str, str]]:
        """(field, file name) of every file the manifest names, OpenVINO weights (``.bin`` beside ``.xml``) too."""
        entries = [("model_file", self.model_file), ("tokenizer_file", self.tokenizer_file)]
        split = self.extra.get("split") or {}
        entries += [(f"extra.split.stages[{k}].file", s["file"]) for k, s in enumerate(split.get("stages") or [])]
        ov = self.extra.get("openvino") or {}
        if ov:
            entries.append(("extra.openvino.model_file", ov["model_file"]))
            entries += [(f"extra.openvino.stages[{k}]", name) for k, name in enumerate(ov.get("stages") or [])]
        weights = [(f"{what} weights", name[:-4] + ".bin") for what, name in entries if name.endswith(".xml")]
        return entries + weights

    def check_files(self, folder: str | Path, must_exist: bool = False) -> list[Path]:
        """The named files as paths in ``folder``, each checked by :func:`safe_file` (and for existence)."""
        paths = []
        for what, name in self.file_entries():
            path = safe_file(folder, name, what)
            if must_exist and not path.is_file():
                raise NotAnExportError(f"{folder}: the manifest names {what} {_show(name)}, which is not there")
            paths.append(path)
        return paths

    def derived(self) -> list[str]:
        """The ``extra`` entries describing files derived from the model file (split stages, OpenVINO IR)."""
        return [key for key in DERIVED_ENTRIES if self.extra.get(key)]

    def drop_derived(self, keys: tuple[str, ...] = DERIVED_ENTRIES) -> list[str]:
        """Remove derived-file entries ``keys`` from ``extra`` (their files then are not carried over)."""
        return [key for key in keys if self.extra.pop(key, None)]

    # -- reading and writing -----------------------------------------------------------------------------------
    def write(self, folder: str | Path) -> Path:
        """Write ``folder/pruneport.json`` after checking the fields and that every named file is in ``folder``."""
        path = Path(folder) / MANIFEST_NAME
        self.validate(str(path))
        self.check_files(folder, must_exist=True)
        path.write_text(json.dumps(asdict(self), indent=2) + "\n", encoding="utf-8")
        return path

    @classmethod
    def from_dict(cls, data: Any, where: str = MANIFEST_NAME) -> Manifest:
        """A validated manifest from parsed JSON (unknown keys are ignored)."""
        if not isinstance(data, dict):
            kind = {list: "list", str: "string", type(None): "null", bool: "boolean"}.get(type(data), "number")
            raise NotAnExportError(f"{where} holds a JSON {kind}, not a manifest object")
        if data.get("format") != EXPORT_FORMAT:
            raise NotAnExportError(f"{where} is not a pruneport export manifest")
        version = data.get("format_version", EXPORT_FORMAT_VERSION)
        if _is_int(version) and version > EXPORT_FORMAT_VERSION:
            raise NotAnExportError(
                f"{where}: format version {version} is newer than this pruneport reads ({EXPORT_FORMAT_VERSION}); "
                "upgrade pruneport"
            )
        known = {f.name for f in fields(cls)}
        required = [f.name for f in fields(cls) if f.default is MISSING and f.default_factory is MISSING]
        missing = [name for name in required if name not in data]
        if missing:
            raise NotAnExportError(f"{where} lacks required fields: {', '.join(missing)}")
        manifest = cls(**{k: v for k, v in data.items() if k in known})
        manifest.validate(where)
        return manifest

    @classmethod
    def read(cls, folder: str | Path) -> Manifest:
        """Read and validate ``folder/pruneport.json`` (NotAnExportError, in one line, when it is not valid)."""
        folder = Path(folder)
        if not folder.is_dir():
            raise NotAnExportError(f"{folder} is not a folder; expected a pruneport export folder")
        path = folder / MANIFEST_NAME
        if not path.exists() and not path.is_symlink():
            raise NotAnExportError(f"{folder} is not a pruneport export: it has no {MANIFEST_NAME}")
        safe_file(folder, MANIFEST_NAME, "the manifest")
        if not path.is_file():
            raise NotAnExportError(f"{path} is not a file; expected the export manifest")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except UnicodeDecodeError:
            raise NotAnExportError(f"{path} is not UTF-8 text") from None
        except RecursionError:
            raise NotAnExportError(f"{path} is nested too deeply to be a manifest") from None
        except json.JSONDecodeError as err:
            raise NotAnExportError(f"{path} is not valid JSON: {err}") from None
        except ValueError as err:  # e.g. an integer with more digits than Python converts
            raise NotAnExportError(f"{path} is not a valid manifest: {str(err).splitlines()[0]}") from None
        except OSError as err:
            raise NotAnExportError(f"cannot read {path}: {err.strerror or type(err).__name__}") from None
        manifest = cls.from_dict(data, str(path))
        manifest.check_files(folder)
        return manifest


def read_tokenizer(folder: str | Path, manifest: Manifest) -> str:
    """The text of the export's tokenizer file (checked to be a JSON object; NotAnExportError otherwise)."""
    path = safe_file(folder, manifest.tokenizer_file, "tokenizer_file")
    if not path.exists():
        raise FileNotFoundError(f"{folder} has no {manifest.tokenizer_file}")
    if not path.is_file():
        raise NotAnExportError(f"{path} is not a file; expected the tokenizer (tokenizer.json)")
    try:
        text = path.read_text(encoding="utf-8")
        data = json.loads(text)
    except UnicodeDecodeError:
        raise NotAnExportError(f"{path} is not UTF-8 text; expected the tokenizer (tokenizer.json)") from None
    except RecursionError:
        raise NotAnExportError(f"{path} is nested too deeply to be a tokenizer") from None
    except ValueError as err:
        raise NotAnExportError(f"{path} is not a valid tokenizer file: {str(err).splitlines()[0]}") from None
    except OSError as err:
        raise NotAnExportError(f"cannot read {path}: {err.strerror or type(err).__name__}") from None
    if not isinstance(data, dict):
        raise NotAnExportError(f"{path} is not a tokenizer file (a JSON object)")
    return text

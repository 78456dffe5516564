"""Running a loop-split export: stage graphs with the prune step (pack kept tokens left, gather) on the host.

The stage graphs (see :mod:`pruneport.export.split`) return ``(state, keep)`` at each prune point; this module
packs each row's kept tokens to the left in position order, rounds the new width up to a bucket (the extra slots are
dead, masked like padding, so results do not change) and feeds the next stage. Written by hand in numpy because it is
the runtime half of pruneport's own split format; torch-free.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from pruneport.runtime.session import ModelLoadError, Session

log = logging.getLogger(__name__)


def bucket_width(width: int, bucket: int, cap: int) -> int:
    """``width`` rounded up to a multiple of ``bucket`` (0 = no rounding), never above ``cap``."""
    if bucket <= 0:
        return width
    return min(-(-width // bucket) * bucket, cap)


def compact_host(keep: np.ndarray, bucket: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Numpy twin of :func:`pruneport.methods.pruned_encoder.compact`.

    keep [B,S] bool -> (index [B,W] int64: the old slot each new slot takes, live [B,W] bool); W = the largest kept
    count, rounded up to ``bucket`` (capped at S).
    """
    seq = keep.shape[1]
    positions = np.arange(seq)
    order = np.argsort(np.where(keep, positions, positions + seq), axis=1, kind="stable")
    counts = keep.sum(1)
    width = bucket_width(int(counts.max()), bucket, seq)
    index = order[:, :width]
    live = np.arange(width)[None, :] < counts[:, None]
    return index, live


class SplitSession:
    """A split export behind the :class:`~pruneport.runtime.session.Session` protocol.

    run(feeds) -> {"logits" [B, labels], "tokens_per_layer" [B, layers]}, like the single graph.
    """

    def __init__(
        self,
        folder: Path,
        split: dict[str, Any],
        num_layers: int,
        opener: Callable[[Path], Session],
        bucket: int = 0,
    ) -> None:
        self.stages = split["stages"]
        if not self.stages:
            raise ModelLoadError(f"{folder}: the manifest's split entry has no stages")
        self.sessions = []
        for stage in self.stages:
            path = folder / stage["file"]
            if not path.exists():
                raise ModelLoadError(f"split stage file not found: {path}; re-export with --split")
            self.sessions.append(opener(path))
        self.num_layers = num_layers
        self.bucket = bucket
        self.input_names = list(self.stages[0]["inputs"])
        self.output_names = ["logits", "tokens_per_layer"]

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run the stages in turn, packing kept tokens on the host between them; returns logits and tokens_per_layer."""
        live = feeds["attention_mask"].astype(bool)
        initial = live.sum(1).astype(np.int64)
        tokens = np.zeros((live.shape[0], self.num_layers), dtype=np.int64)
        stage_feeds: dict[str, np.ndarray] = {n: feeds[n] for n in self.input_names}
        for stage, session in zip(self.stages, self.sessions, strict=True):
            counts = live.sum(1)
            for layer in stage["layers"]:
                tokens[:, layer] = counts
            out = session.run(stage_feeds)
            if "counts" in out:  # the method's own count (exports before it was added: live tokens)
                tokens[:, stage["layers"]] = out["counts"]
            if stage["end"] is None:
                return {"logits": out["logits"], "tokens_per_layer": tokens}
            index, live = compact_host(out["keep"], self.bucket)
            hidden = np.take_along_axis(out["state"], index[:, :, None], axis=1)
            stage_feeds = {"hidden": np.ascontiguousarray(hidden), "live": live, "initial_lengths": initial}
        raise ModelLoadError("the split export's last stage does not end the model (no logits)")


# Per-backend defaults, chosen from benchmarks/bench_runtimes.py on a 2-vCPU EPYC (CPU only; no GPU was available):
# whether a folder that holds a split export runs it instead of the single graph, and the bucket used for input
# lengths and host-side compaction when the manifest records none. On CPU the single graph was as fast or faster
# than the split on both backends (the split adds one engine call and one host gather per prune point), and
# bucketing cost more padded work on short inputs (SST-2) than it saved in first-seen shapes on long ones (IMDB).
DEFAULT_SPLIT = {"onnxruntime": False, "openvino": False}
DEFAULT_BUCKET = {"onnxruntime": 0, "openvino": 0}


def model_files(folder: Path, manifest, backend: str) -> tuple[Path, list[Path]]:
    """The single-graph file and the split stage files (empty when not exported) that ``backend`` should read.

    OpenVINO reads the IR written by ``pruneport convert`` when the manifest records one, else the ONNX files.
    """
    from pruneport.export.manifest import safe_file  # names were checked on reading; checked again where opened

    single, stages = manifest.model_file_for(backend)
    return safe_file(folder, single, "model file"), [safe_file(folder, name, "stage file") for name in stages]


def open_export(
    folder: Path,
    manifest,
    backend: str = "onnxruntime",
    device: str = "cpu",
    split: bool | None = None,
    bucket: int | None = None,
    **options: Any,
) -> tuple[Session, int]:
    """Open an export folder's model for ``backend``: the single graph or its split stages.

    split: None = the backend's default (:data:`DEFAULT_SPLIT`) when the folder holds a split export; True requires
    one. bucket: None = the manifest's ``bucket``, else the backend default. Returns (session, bucket); the
    bucket also applies to input lengths (the caller pads to it).
    """
    from pruneport.runtime.session import open_session

    if bucket is None:
        bucket = manifest.bucket or DEFAULT_BUCKET.get(backend, 0)
    if bucket < 0:
        raise ValueError(f"bucket must be >= 0, got {bucket}")
    single, stages = model_files(folder, manifest, backend)
    if backend == "onnxruntime" and single.suffix != ".onnx":
        raise ModelLoadError(
            f"{folder} holds an OpenVINO model only ({single.name}, from `pruneport quantize --backend openvino`), "
            "which ONNX Runtime cannot run: pass --backend openvino (API: load(folder, backend='openvino'))"
        )
    if split and not stages:
        raise ValueError(f"{folder} holds no split export; re-export with `pruneport export --split`")
    use_split = bool(stages) and (DEFAULT_SPLIT.get(backend, False) if split is None else split)
    if not use_split:
        return open_session(single, backend, device, **options), bucket
    if backend == "onnxruntime":
        # one ORT thread pool per stage: spinning pools would steal the cores from the next stage
        options.setdefault("spinning", False)
    info = {
        "stages": [
            dict(s, file=str(p.relative_to(folder)))
            for s, p in zip(manifest.extra["split"]["stages"], stages, strict=True)
        ]
    }
    session = SplitSession(
        folder, info, manifest.num_layers, lambda path: open_session(path, backend, device, **dict(options)), bucket
    )
    session.jobs = max(getattr(s, "jobs", 0) for s in session.sessions)
    return session, bucket

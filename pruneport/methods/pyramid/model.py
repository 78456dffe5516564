"""Pyramid-BERT (Huang et al., ACL'22): greedy k-center token selection on an exponentially decaying length schedule.

Inference semantics (``shared/methods.md``, Pyramid-BERT section):

- no extra parameters: a fine-tuned BERT/RoBERTa plus a schedule (keep ratio p, ``prune_upto``, m, distance);
- 0-based layer j receives ``l_j = ceil(n * p ** (min(j, prune_upto) / prune_upto) - 1e-9)`` tokens, n the example's
  real length (so l_0 = n); the selection before layer j (j = 1 .. min(prune_upto, L - 1)) runs on layer j-1's
  output and keeps l_j tokens; later layers keep l_prune_upto and need no prune op;
- selection = k-Center-greedy-batch-m (paper Algorithm 1): start from {CLS}; each round adds the m candidates
  farthest from the current set (a token's distance = its minimum distance to a set member; Euclidean, or cosine
  ``1 - cos``); distances are not updated within a round; ties go to the lower position; the last round adds only
  what is left to reach k. m = 1 is the exact greedy, m = "k-1" is one shot (the k-1 tokens farthest from CLS);
- padding and already-pruned tokens are never candidates; kept tokens keep their position order.

How the greedy loop is exported: the loop is data-dependent (its length is each row's k), so it is written with
``torch._higher_order_ops.while_loop``, which the dynamo exporter turns into one ONNX ``Loop`` per prune point (no
Python-side loop). The loop carries a [B, S] distance vector, a [B, S] selected mask and a [B] count (plus an [S]
anchor, see :func:`kcenter_keep`); it stops when every row has its k tokens, and a row that is done is frozen by
masking, so each row's result does not depend on the batch. Distances are computed once per prune point as a
[B, S, S] matrix (Euclidean through ``|a|^2 + |b|^2 - 2 a.b``, kept squared: same order as the distance itself),
and each m = 1 iteration gathers one row of it. m = "k-1" needs no loop at all (one rank computation), and an
integer m > 1 runs ceil((k-1)/m) iterations that each rank the candidates.

Measured (``benchmarks/bench_methods_adapler_pyramid.py``: all-MiniLM-L6-v2, keep_ratio 0.5, prune_upto 3,
Euclidean, batch 1, S = 128, ORT 1.31 CPU, 2 threads, interleaved min-of-7 over 6 inputs; shared 2-core EPYC under
a load average of 7-15, so indicative; two runs). Token counts 128/102/81/64/64/64, FLOPs 0.59x of unpruned:

- m = 1 (Loop): 490 nodes, Loop body 27 nodes; time ratio pruned/unpruned 0.95 and 1.00. The 101 + 80 + 63 = 244
  iterations cost ~15 ms (~60 us each, ~2 us per node of a body working on [1, <=128] tensors: per-op overhead,
  not arithmetic), which eats most of the FLOPs saving at this length;
- m = 8 (Loop, 36-node body, ~32 iterations): ratio 0.80;
- m = "k-1" (vectorised, no Loop): 430 nodes; ratio 0.68 and 0.70 (about 1.45x faster than unpruned).

Unrolling instead would put up to max_positions - 1 copies of the 27-node body per prune point in the graph (about
41,000 nodes for 3 prune points at 512 positions, against 490 for the whole model), and a scan over the full width
runs S - 1 iterations where the while loop runs max(k) - 1: the Loop is kept for integer m. Choose m = "k-1" or a
larger m when latency matters; m = 1 is the paper's exact greedy.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from pruneport.methods.pruned_encoder import PruneState, TokenPruner
from pruneport.methods.pyramid.spec import DISTANCES

SCHEDULE_FILE = "pyramid_schedule.json"
ONE_SHOT = "k-1"


@dataclass(frozen=True)
class PyramidParams:
    """The schedule of a Pyramid-BERT model.

    keep_ratio: p in (0, 1]; prune_upto: the layer by which the ratio is reached (>= 1); m: tokens added per greedy
    round (an int >= 1, or "k-1" for one shot); distance: "euclidean" or "cosine".
    """

    keep_ratio: float
    prune_upto: int
    m: int | str = 1
    distance: str = "euclidean"

    def __post_init__(self) -> None:
        if not 0.0 < float(self.keep_ratio) <= 1.0:
            raise ValueError(f"Pyramid keep_ratio must be in (0, 1], got {self.keep_ratio}")
        if int(self.prune_upto) < 1:
            raise ValueError(f"Pyramid prune_upto must be >= 1, got {self.prune_upto}")
        if self.m != ONE_SHOT and (not isinstance(self.m, int) or isinstance(self.m, bool) or self.m < 1):
            raise ValueError(f"Pyramid m must be an integer >= 1 or {ONE_SHOT!r}, got {self.m!r}")
        if self.distance not in DISTANCES:
            raise ValueError(f"Pyramid distance must be one of {DISTANCES}, got {self.distance!r}")

    def factor(self, layer: int) -> float:
        """p ** (min(j, prune_upto) / prune_upto) for 0-based layer j."""
        return float(self.keep_ratio) ** (min(layer, self.prune_upto) / self.prune_upto)

    def length(self, n: int, layer: int) -> int:
        """l_j for an example of real length n (plain Python, the reference for the graph's arithmetic)."""
        return max(1, math.ceil(n * self.factor(layer) - 1e-9))

    def to_dict(self) -> dict[str, Any]:
        """The schedule as the manifest's pruning dict."""
        return {"keep_ratio": self.keep_ratio, "prune_upto": self.prune_upto, "m": self.m, "distance": self.distance}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PyramidParams:
        """A schedule from a pruning dict (m defaults to 1, distance to euclidean); ValueError when ``keep_ratio``
        or ``prune_upto`` is missing."""
        missing = [k for k in ("keep_ratio", "prune_upto") if data.get(k) is None]
        if missing:
            raise ValueError(f"Pyramid-BERT schedule lacks {missing}")
        return cls(
            keep_ratio=float(data["keep_ratio"]),
            prune_upto=int(data["prune_upto"]),
            m=parse_m(data.get("m", 1)),
            distance=str(data.get("distance", "euclidean")),
        )


def parse_m(value: Any) -> int | str:
    """An m given as int, "k-1" or a digit string."""
    if isinstance(value, str):
        text = value.strip().lower().replace(" ", "")
        if text == ONE_SHOT:
            return ONE_SHOT
        if text.isdigit():
            return int(text)
        raise ValueError(f"Pyramid m must be an integer >= 1 or {ONE_SHOT!r}, got {value!r}")
    if isinstance(value, bool) or not isinstance(value, int | float) or int(value) != value:
        raise ValueError(f"Pyramid m must be an integer >= 1 or {ONE_SHOT!r}, got {value!r}")
    return int(value)


# ----------------------------------------------------------------------------------------------------------------
# Selection (tensor ops only; also the parity reference)
# ----------------------------------------------------------------------------------------------------------------


def pairwise_distances(hidden: torch.Tensor, distance: str) -> torch.Tensor:
    """hidden [B,S,D] -> [B,S,S]: squared Euclidean distance (clamped at 0) or cosine distance 1 - cos."""
    if distance == "cosine":
        unit = hidden / hidden.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        return 1.0 - torch.matmul(unit, unit.transpose(1, 2))
    sq = (hidden * hidden).sum(-1)
    gram = torch.matmul(hidden, hidden.transpose(1, 2))
    return (sq.unsqueeze(2) + sq.unsqueeze(1) - 2.0 * gram).clamp_min(0.0)


def _ranks(score: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """[B,S] -> rank of each entry in descending order, ties to the lower position (0 = largest).

    Counted from a [B,S,S] comparison (rank_i = #{j: s_j > s_i} + #{j < i: s_j == s_i}) rather than sorted:
    ``argsort(stable=True)`` has no ONNX translation, and an unstable sort may order ties differently in torch
    and in the runtime. positions: [1, S] arange.
    """
    s_i, s_j = score.unsqueeze(2), score.unsqueeze(1)
    before = positions.unsqueeze(1) < positions.unsqueeze(2)  # [1, i, j]: j < i
    return ((s_j > s_i) | ((s_j == s_i) & before)).sum(2)


def kcenter_keep(
    hidden: torch.Tensor, live: torch.Tensor, k: torch.Tensor, m: int | str, distance: str
) -> torch.Tensor:
    """Greedy k-center selection seeded with CLS.

    hidden [B,S,D], live [B,S] bool (CLS at 0, live tokens packed left), k [B] int64 (1 <= k <= live count) ->
    keep [B,S] bool with exactly k[b] True entries per row, CLS among them.
    """
    positions = torch.arange(hidden.shape[1], device=hidden.device).unsqueeze(0)
    is_cls = positions == 0
    candidate = live & ~is_cls
    dist = pairwise_distances(hidden, distance)
    neg = torch.full_like(dist[:, 0], -math.inf)
    to_cls = torch.where(candidate, dist[:, 0], neg)
    if m == ONE_SHOT:
        return is_cls | (candidate & (_ranks(to_cls, positions) < (k - 1).unsqueeze(1)))
    from torch._higher_order_ops.while_loop import while_loop

    step = int(m)

    def cond(anchor: torch.Tensor, selected: torch.Tensor, mindist: torch.Tensor, count: torch.Tensor) -> torch.Tensor:
        return (count < k).any()

    def body(anchor: torch.Tensor, selected: torch.Tensor, mindist: torch.Tensor, count: torch.Tensor):
        score = torch.where(selected | ~candidate, neg, mindist)
        active = count < k
        if step == 1:
            best = torch.argmax(score, dim=1, keepdim=True)
            chosen = (positions == best) & active.unsqueeze(1)
            # the chosen token's row of dist (expand_as: no Python-int shapes inside the exported loop body)
            update = torch.gather(dist, 1, best.unsqueeze(2).expand_as(score.unsqueeze(1))).squeeze(1)
        else:
            take = torch.clamp(k - count, min=0, max=step)
            chosen = _ranks(score, positions) < take.unsqueeze(1)
            update = torch.where(chosen.unsqueeze(2), dist, torch.full_like(dist, math.inf)).amin(dim=1)
        new_min = torch.where(active.unsqueeze(1), torch.minimum(mindist, update), mindist)
        return anchor.clone(), selected | chosen, new_min, count + chosen.to(count.dtype).sum(1)

    # ``anchor`` ([S], carried unchanged) comes first so that the exporter reads the width S inside the loop body
    # as the size of a carried input; otherwise it reads it as a stride, which has no ONNX translation.
    anchor = torch.arange(hidden.shape[1], device=hidden.device)
    count0 = torch.ones_like(k)
    _, selected, _, _ = while_loop(cond, body, (anchor, is_cls.expand_as(live).clone(), to_cls.clone(), count0))
    return selected


# ----------------------------------------------------------------------------------------------------------------
# Pruner and loaders
# ----------------------------------------------------------------------------------------------------------------


class PyramidPruner(TokenPruner):
    """k-center selection before layers 1 .. min(prune_upto, L-1) on the previous layer's output.

    The schedule is a lookup table ``l_j`` for every real length 0..max_tokens, computed in Python with
    :meth:`PyramidParams.length`: float arithmetic in the graph would not reproduce it (the exporter stores Python
    float constants as float32, so ``ceil(55 * 0.4 - 1e-9)`` became 23 instead of 22).
    """

    method = "pyramid"

    def __init__(self, params: PyramidParams, num_layers: int, max_tokens: int) -> None:
        super().__init__()
        self.params = params
        self.prune_layers = tuple(range(1, min(params.prune_upto, num_layers - 1) + 1))
        table = [[params.length(n, j) for j in range(num_layers)] for n in range(max_tokens + 1)]
        self.register_buffer("schedule", torch.tensor(table, dtype=torch.int64), persistent=False)

    def target_lengths(self, initial_lengths: torch.Tensor, layer: int) -> torch.Tensor:
        """[B] int64 real lengths -> l_layer per row."""
        return self.schedule[:, layer].index_select(0, initial_lengths)

    def before_layer(
        self, layer: int, hidden: torch.Tensor, live: torch.Tensor, state: PruneState
    ) -> torch.Tensor | None:
        """keep [B,S]: k-center selection of min(l_j, live count) tokens before a prune layer, else None."""
        if layer not in self.prune_layers:
            return None
        k = torch.minimum(self.target_lengths(state.initial_lengths, layer), live.sum(1))
        return kcenter_keep(hidden, live, k, self.params.m, self.params.distance)


def build(cfg, pruning: dict[str, Any], output_hidden: bool = False):
    """The Pyramid-BERT :class:`PrunedSequenceClassifier` for ``cfg`` and a schedule dict."""
    from pruneport.methods.pruned_encoder import PrunedSequenceClassifier

    params = PyramidParams.from_dict(pruning)
    return PrunedSequenceClassifier(
        cfg, PyramidPruner(params, cfg.num_hidden_layers, cfg.max_tokens), output_hidden=output_hidden
    )


def _schedule_options(options: dict[str, Any]) -> dict[str, Any]:
    """The schedule entries given as options (``keep_ratio``, ``prune_upto``, ``kcenter_m``, ``distance``)."""
    given = {
        "keep_ratio": options.get("keep_ratio"),
        "prune_upto": options.get("prune_upto"),
        "m": options.get("kcenter_m"),
        "distance": options.get("distance"),
    }
    return {k: v for k, v in given.items() if v is not None}


def override(pruning: dict[str, Any], options: dict[str, Any], num_layers: int) -> tuple[dict[str, Any], list[str]]:
    """A model.pt's stored schedule with the user's entries applied (checked), and a note per replaced entry."""
    given = _schedule_options(options)
    if not given:
        return pruning, []
    params = PyramidParams.from_dict({**pruning, **given})
    new = params.to_dict()
    notes = [
        f"{key} given on the command line replaces the checkpoint's: {pruning.get(key)!r} -> {new[key]!r}"
        for key in given
        if pruning.get(key) != new[key]
    ]
    return {**pruning, **new}, notes


def schedule_from(folder: Path, options: dict[str, Any]) -> PyramidParams:
    """The schedule from ``pyramid_schedule.json`` in ``folder``, overridden by options given by the user."""
    from pruneport.methods import checkpoint as ck

    data: dict[str, Any] = {}
    path = folder / SCHEDULE_FILE
    if path.exists():
        data = ck.read_json(path)
        if not isinstance(data, dict):
            raise ck.CheckpointError(f"{path} must hold a JSON object with keep_ratio, prune_upto, m, distance")
    data.update(_schedule_options(options))
    if data.get("keep_ratio") is None or data.get("prune_upto") is None:
        raise ValueError(
            f"{folder} has no Pyramid-BERT schedule: add {SCHEDULE_FILE} "
            '({"keep_ratio": 0.5, "prune_upto": 3, "m": 1, "distance": "euclidean"}) or pass --keep-ratio and '
            "--prune-upto (and optionally --kcenter-m, --distance)"
        )
    return PyramidParams.from_dict(data)


def load_folder(folder, options: dict[str, Any]):
    """A fine-tuned BERT/RoBERTa folder plus the schedule (``pyramid_schedule.json`` or options)."""
    from pruneport.methods import checkpoint as ck
    from pruneport.methods.backbone import BackboneConfig

    folder = Path(folder)
    config = ck.read_json(folder / "config.json")
    cfg = BackboneConfig.from_hf_dict(config)
    params = schedule_from(folder, options)
    state = ck.read_state_dict(folder, bool(options.get("trust_pickle")))
    model = build(cfg, params.to_dict(), bool(options.get("output_hidden")))
    mapped, leftover = ck.map_hf_state(state, cfg)
    return ck.loaded_from_hf_folder(
        model,
        folder,
        config,
        "pyramid",
        params.to_dict(),
        mapped,
        leftover,
        options,
        ["Pyramid-BERT is for sequence-level (CLS) tasks; pruned tokens are discarded"],
    )


def write_schedule(folder: Path, params: PyramidParams) -> Path:
    """Write ``pyramid_schedule.json`` into ``folder`` (used by tests and by users preparing a folder)."""
    path = Path(folder) / SCHEDULE_FILE
    path.write_text(json.dumps(params.to_dict()), encoding="utf-8")
    return path

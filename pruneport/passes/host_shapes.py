"""Shape values after a compaction read from the compacted tensor (host) instead of the device count.

At every prune point the kept width ``k = max(kept count)`` is computed on the device (``ReduceMax`` of the rows'
counts) and read by ``TopK`` as its ``K``: one device-to-host copy per prune point, inherent to real removal (the
output shape depends on data). The exporter then reuses the same device ``k`` for the shapes that follow (the
``Reshape`` shapes of the attention heads, ``Range`` limits), so ONNX Runtime's CUDA EP copies it to the host again
for each of them, every copy stalling the stream (:mod:`pruneport.graph.cuda_placement` predicts 41 copies for the
11 prune points of a 12-layer LTP export). Once ``TopK`` has run, ``k`` is also ``Shape(indices)[1]``, which the
CUDA EP keeps on the host. This pass makes every host-bound reader of ``k`` after the ``TopK`` (a kernel input read
from host memory, or shape arithmetic whose other inputs are host values) read that instead: one copy per prune
point.

Exact: the same integers, read from another tensor. Which readers are host-bound comes from the placement
emulation; the real count of Memcpy nodes is for ``benchmarks/bench_gpu.py`` on a GPU. Values equal to ``k`` are
followed up from ``TopK``'s K through ``Reshape``/``Squeeze``/``Unsqueeze``/``Identity``/``Cast``/``Gather`` while
every tensor on the way is an int64 known (by shape inference) to hold exactly one element. Written over protos by
hand: the rewrite depends on the emulated placement, which no rewrite library models.
"""

from __future__ import annotations

import logging

import onnx
import onnx_ir as ir
from onnx import helper

from pruneport.graph import nodes as value_flow
from pruneport.graph.cuda_placement import constant_values, predict_cuda_placement, reads_on_host

log = logging.getLogger(__name__)

NAME = "host-shapes"
SUMMARY = "shape readers of each prune point's kept width after TopK read Shape(indices) (host) instead of the device"

_SAME_VALUE = ("Reshape", "Squeeze", "Unsqueeze", "Identity", "Cast", "Gather")
_SHAPE_ARITHMETIC = ("Concat", "Unsqueeze", "Squeeze", "Reshape", "Cast", "Gather", "Add", "Sub", "Mul", "Div",
                     "Min", "Max", "Equal", "Less", "Greater", "Identity")  # fmt: skip


def _single_ints(proto: onnx.ModelProto) -> dict[str, int]:
    """int64 tensors known to hold exactly one element (shape inference): name -> rank (0 or 1)."""
    inferred = onnx.shape_inference.infer_shapes(proto)
    found = {}
    for v in [*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output]:
        t = v.type.tensor_type
        if t.elem_type != onnx.TensorProto.INT64 or not t.HasField("shape"):
            continue
        dims = [d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim]
        if len(dims) <= 1 and all(d == 1 for d in dims):
            found[v.name] = len(dims)
    return found


def _equal_to_k(topk: onnx.NodeProto, producer: dict[str, onnx.NodeProto], singles: dict[str, int]) -> list[str]:
    """K and the tensors above it that hold the same one integer (int64 scalars or one-element tensors, each made
    from the next by a value-preserving op)."""
    found, name = [], topk.input[1]
    while name in singles:
        found.append(name)
        node = producer.get(name)
        if node is None or node.op_type not in _SAME_VALUE:
            break
        name = node.input[0]
    return found


def rewire(proto: onnx.ModelProto) -> int:
    """Rewire host-bound readers of each dynamic TopK's K (in place); returns the number of inputs rewired."""
    graph = proto.graph
    nodes = list(graph.node)  # topological (ONNX requires it): a reader after the TopK is never its ancestor
    producer = {out: n for n in nodes for out in n.output}
    position = {id(n): k for k, n in enumerate(nodes)}
    placement = predict_cuda_placement(proto)
    singles = _single_ints(proto)
    consumers = value_flow.consumers(nodes)
    constants, _ = constant_values(graph)
    free = constants | {i.name for i in graph.input}
    taken = {out for n in nodes for out in n.output}
    count = 0
    for t, topk in enumerate(n for n in nodes if n.op_type == "TopK"):
        if topk.input[1] in constants or len(topk.output) < 2:
            continue
        width = _fresh(f"pruneport.width_{t}", taken)
        scalar = _fresh(f"{width}.scalar", taken)
        used: set[str] = set()
        for name in _equal_to_k(topk, producer, singles):
            for k in consumers.get(name, []):
                reader = nodes[k]
                if position[id(reader)] <= position[id(topk)]:
                    continue
                for i, value in enumerate(reader.input):
                    if value == name and _host_bound(reader, i, placement.host_tensors, free):
                        reader.input[i] = width if singles[name] == 1 else scalar
                        used.add(reader.input[i])
                        count += 1
        if used:
            graph.node.append(
                helper.make_node("Shape", [topk.output[1]], [width], name=f"{width}.shape", start=1, end=2)
            )
            if scalar in used:
                graph.node.append(helper.make_node("Squeeze", [width], [scalar], name=f"{width}.squeeze"))
    if count:  # the new Shape/Squeeze nodes were appended: sort them before their readers
        ordered = value_flow.topological_order(list(graph.node), graph)
        del graph.node[:]
        graph.node.extend(ordered)
    return count


def _fresh(name: str, taken: set[str]) -> str:
    """``name``, or ``name_<n>`` when a value of the graph already has it (a second run of the pass)."""
    candidate, n = name, 0
    while candidate in taken:
        n += 1
        candidate = f"{name}_{n}"
    taken.add(candidate)
    return candidate


def _host_bound(reader: onnx.NodeProto, position: int, host: set[str], free: set[str]) -> bool:
    """Whether ``reader`` wants input ``position`` on the host: its kernel reads it there, or it is shape
    arithmetic whose other inputs are all host values or constants."""
    if reads_on_host(reader, position):
        return True
    if reader.op_type not in _SHAPE_ARITHMETIC:
        return False
    return all(not x or x in host or x in free for j, x in enumerate(reader.input) if j != position)


def apply(model: ir.Model) -> int:
    """Rewire in place; returns the number of inputs rewired."""
    from pruneport.passes.token_prune import replace_model

    proto = ir.serde.serialize_model(model)
    count = rewire(proto)
    if count:
        replace_model(model, proto)
        log.info("host-shapes: %d readers of the kept width now read it on the host", count)
    return count

"""Which nodes ONNX Runtime's CUDA EP runs on the host, and which tensors it copies between host and device.

An emulation of ONNX Runtime's ``GetCpuPreferredNodes`` (onnxruntime/core/framework/fallback_cpu_capability.cc,
default mode) for graphs whose nodes all have CUDA kernels: outputs of ``Shape``/``Size`` are host tensors; a node
reached from them runs on the host when each input is a small initializer (at most 100 elements), a graph input, or
a host tensor that its CUDA kernel does not itself read from host memory; everything else runs on the device. A
``MemcpyFromHost`` is counted for each host tensor a device node reads as device data, a ``MemcpyToHost`` for each
device tensor read on the host (by a host node, or by a CUDA kernel's host-memory input such as ``TopK``'s K or
``Reshape``'s shape). Every ``MemcpyToHost`` stalls the CUDA stream until the value is computed.

Why an emulation: the placement is only observable with the CUDA EP installed, which CI and most development machines
lack; this lets a CPU test state the property the GPU needs. ``benchmarks/bench_gpu.py`` counts the real Memcpy nodes
(``optimized_model_filepath``) to check it. The kernels' host-memory inputs (:data:`HOST_INPUTS`) are read from their
CUDA registrations (``InputMemoryType(OrtMemTypeCPUInput, i)``) for the ops pruneport's graphs use. Subgraphs (Loop
bodies) are not analysed. Torch-free.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field

import numpy as np
import onnx

# CUDA kernels' host-memory inputs, by op type (input positions)
HOST_INPUTS: dict[str, tuple[int, ...]] = {
    "Reshape": (1,),
    "Expand": (1,),
    "Unsqueeze": (1,),
    "Squeeze": (1,),
    "Slice": (1, 2, 3, 4),
    "ConstantOfShape": (0,),
    "Range": (0, 1, 2),
    "TopK": (1,),
    "Tile": (1,),
    "Clip": (1, 2),
    "Loop": (0, 1),
    "ReduceSum": (1,),
    "ReduceMax": (1,),
    "ReduceMin": (1,),
    "ReduceMean": (1,),
    "ReduceProd": (1,),
    "Pad": (1, 2, 3),
    "Split": (1,),
    "OneHot": (1,),
    "Resize": (1, 2, 3),
    "Trilu": (1,),
}
HOST_OUTPUT_OPS = ("Shape", "Size")  # CUDA kernels that write their output to host memory
SMALL_INITIALIZER = 100  # onnxruntime's kSmallInitializerThreshold (elements)


@dataclass
class Placement:
    """The predicted placement: host nodes, host tensors, and the copies between host and device."""

    host_nodes: list[str] = field(default_factory=list)
    host_tensors: set[str] = field(default_factory=set)
    from_host: list[tuple[str, str]] = field(default_factory=list)  # (host tensor, first device node reading it)
    to_host: list[tuple[str, str]] = field(default_factory=list)  # (device tensor, first host reader)


def constant_values(graph: onnx.GraphProto) -> tuple[set[str], set[str]]:
    """(every constant value, the small ones): initializers and ``Constant`` outputs (ORT folds those)."""
    constants, small = set(), set()
    for init in graph.initializer:
        constants.add(init.name)
        if int(np.prod(init.dims)) <= SMALL_INITIALIZER:
            small.add(init.name)
    for node in graph.node:
        if node.op_type == "Constant":
            constants.add(node.output[0])
            value = next((a.t for a in node.attribute if a.name == "value"), None)
            if value is None or int(np.prod(value.dims)) <= SMALL_INITIALIZER:
                small.add(node.output[0])
    return constants, small


def reads_on_host(node: onnx.NodeProto, position: int) -> bool:
    """Whether the CUDA kernel of ``node`` reads input ``position`` from host memory."""
    return position in HOST_INPUTS.get(node.op_type, ())


def predict_cuda_placement(model: onnx.ModelProto) -> Placement:
    """The CUDA EP's host nodes and host/device copies for the main graph of ``model`` (see the module docstring)."""
    graph = model.graph
    constants, small = constant_values(graph)
    graph_inputs = {i.name for i in graph.input}
    nodes = [n for n in graph.node if n.op_type != "Constant"]
    consumers: dict[str, list[int]] = {}
    for k, node in enumerate(nodes):
        for name in node.input:
            consumers.setdefault(name, []).append(k)
    host_tensors: set[str] = set()
    queue: list[int] = []
    for node in nodes:
        if node.op_type in HOST_OUTPUT_OPS:
            host_tensors.update(node.output)
            for out in node.output:
                queue.extend(consumers.get(out, []))
    heapq.heapify(queue)  # graph order is topological: candidates are taken in it, as ORT does
    host: set[int] = set()
    visited: set[int] = set()
    while queue:
        k = heapq.heappop(queue)
        if k in visited:
            continue
        visited.add(k)
        node = nodes[k]
        if node.op_type in HOST_OUTPUT_OPS:
            continue
        on_host = all(
            not name or name in small or name in graph_inputs or (name in host_tensors and not reads_on_host(node, i))
            for i, name in enumerate(node.input)
        )
        if on_host:
            host.add(k)
            host_tensors.update(node.output)
            for out in node.output:
                for c in consumers.get(out, []):
                    heapq.heappush(queue, c)
    placement = Placement(host_nodes=[nodes[k].name for k in sorted(host)], host_tensors=host_tensors)
    copied: set[str] = set()
    for k, node in enumerate(nodes):
        for i, name in enumerate(node.input):
            if not name or name in graph_inputs or name in constants or name in copied:
                continue
            on_host_read = k in host or reads_on_host(node, i)
            if name in host_tensors and not on_host_read:
                copied.add(name)
                placement.from_host.append((name, node.name))
            elif name not in host_tensors and on_host_read:
                copied.add(name)
                placement.to_host.append((name, node.name))
    return placement

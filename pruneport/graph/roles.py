"""Reading roles off a dynamo-exported pruneport graph: which MatMul belongs to which layer and does what.

The dynamo exporter gives nodes generic names (``node_MatMul_28``) but keeps each node's module path in
``node.metadata_props`` (``pkg.torch.onnx.name_scopes``, e.g. ``['', 'layer.2.attention', 'layer.2.attention.self',
'layer.2.attention.self.query', 'linear']``; ``shared/research/deployment-notes.md`` section 1, pitfall 6). This
module turns those paths plus the graph structure into a small table of MatMul/Gemm roles that three stages share:

- quantization: the score path of pruning layers to keep in higher precision (Q/K projections, the Q.K^T MatMul,
  the attention probabilities; the predictor MLPs of predictor methods);
- BOPs: the MACs of each MatMul as a function of ``tokens_per_layer`` (:mod:`pruneport.report.bops`);
- OpenVINO: its CPU frontend keeps ONNX node names as friendly names, so the table indexes the IR's MatMuls too.

Written by hand (no library maps module paths to ONNX roles); the table is plain JSON so quantized folders carry it
in their manifest (``extra["matmuls"]``) even when the graph itself (OpenVINO IR) has lost the metadata. Torch-free.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass

import onnx
from onnx import numpy_helper

NAME_SCOPES = "pkg.torch.onnx.name_scopes"
_LAYER = re.compile(r"^layer\.(\d+)\.(.+)$")
_PRUNER_INDEX = re.compile(r"\.(\d+)(?:\.|$)")
# score and predictor MatMuls are followed by these before the keep decision
_SOFTMAX_PASSTHROUGH = {"Mul", "Div", "Where", "Add", "Sub", "Cast"}

# roles: projection rows = tokens entering the layer's attention; ffn rows = tokens entering the FFN
ROLE_ROWS = {
    "query": "attn",
    "key": "attn",
    "value": "attn",
    "attn_out": "attn",
    "ffn_in": "ffn",
    "ffn_out": "ffn",
    "qk": "attn2",
    "pv": "attn2",
    "score": "attn_sq",
    "predictor": "pred",
    "selection": "attn2",
    "head": "one",
}
STACK_TRACE = "pkg.torch.onnx.stack_trace"
# forward() lines of the pruner's hooks (pruneport.methods.pruned_encoder): a MatMul they compute outside any module
# of the pruner is a token selection's (Pyramid-BERT's k-center distances between hidden states)
HOOK_CALLS = ("self.pruner.before_layer(", "self.pruner.after_attention(")


class GraphRoleError(ValueError):
    """A graph whose MatMuls cannot be given roles (not a dynamo export of a pruneport model)."""


@dataclass
class MatMulInfo:
    """One MatMul/Gemm of the graph.

    name: ONNX node name; role: see ``ROLE_ROWS``; layer: 0-based layer (or -1 for the head); k, n: the inner and
    output sizes of a weight MatMul (0 for activation-activation MatMuls, whose MACs depend on token counts).
    """

    name: str
    op: str
    role: str
    layer: int
    k: int = 0
    n: int = 0
    scope: str = ""

    def to_dict(self) -> dict:
        """The fields as a plain dict (an entry of the manifest's ``extra["matmuls"]``)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> MatMulInfo:
        """The inverse of :meth:`to_dict`."""
        return cls(**data)


def name_scopes(node: onnx.NodeProto) -> list[str]:
    """The node's module name scopes from its ``pkg.torch.onnx.name_scopes`` metadata ([] when absent or unreadable)."""
    for prop in node.metadata_props:
        if prop.key == NAME_SCOPES:
            try:
                import ast

                value = ast.literal_eval(prop.value)
                return [str(v) for v in value]
            except (ValueError, SyntaxError):
                return []
    return []


def module_path(node: onnx.NodeProto) -> str:
    """The deepest module path of a node ('' at the top level); the last name scope is the op's own name."""
    scopes = name_scopes(node)
    modules = [s for s in scopes[:-1] if s]
    return modules[-1] if modules else ""


class GraphIndex:
    """Producers, consumers and constants of an ONNX graph."""

    def __init__(self, model: onnx.ModelProto) -> None:
        self.model = model
        self.graph = model.graph
        self.producer: dict[str, onnx.NodeProto] = {}
        self.consumers: dict[str, list[onnx.NodeProto]] = {}
        for node in self.graph.node:
            for out in node.output:
                self.producer[out] = node
            for inp in node.input:
                self.consumers.setdefault(inp, []).append(node)
        self.initializers = {i.name: i for i in self.graph.initializer}

    def constant(self, name: str):
        """The value of a constant tensor (initializer or Constant node), or None."""
        if name in self.initializers:
            return numpy_helper.to_array(self.initializers[name])
        node = self.producer.get(name)
        if node is not None and node.op_type == "Constant":
            for attr in node.attribute:
                if attr.name == "value":
                    return numpy_helper.to_array(attr.t)
        return None

    def weight_shape(self, node: onnx.NodeProto) -> tuple[int, int] | None:
        """(k, n) of a MatMul/Gemm whose B input is a constant (through Transpose/DequantizeLinear), else None."""
        name = node.input[1]
        transposed = node.op_type == "Gemm" and any(a.name == "transB" and a.i == 1 for a in node.attribute)
        for _ in range(4):
            value = self.constant(name)
            if value is not None:
                if value.ndim != 2:
                    return None
                k, n = value.shape
                return (n, k) if transposed else (k, n)
            producer = self.producer.get(name)
            if producer is None or producer.op_type not in ("DequantizeLinear", "Transpose", "Cast", "Identity"):
                return None
            if producer.op_type == "Transpose":
                transposed = not transposed
            name = producer.input[0]
        return None

    def feeds_softmax(self, node: onnx.NodeProto, depth: int = 4) -> bool:
        """True when the node's output reaches a Softmax through scaling/masking ops only."""
        frontier = [node]
        for _ in range(depth):
            nxt = []
            for n in frontier:
                for out in n.output:
                    for c in self.consumers.get(out, []):
                        if c.op_type == "Softmax":
                            return True
                        if c.op_type in _SOFTMAX_PASSTHROUGH:
                            nxt.append(c)
            frontier = nxt
        return False

    def reads_softmax(self, node: onnx.NodeProto, depth: int = 3) -> onnx.NodeProto | None:
        """The Softmax a node reads (directly or through ReduceSum/Cast/DequantizeLinear/QuantizeLinear), or None."""
        frontier = [node]
        for _ in range(depth):
            nxt = []
            for n in frontier:
                for inp in n.input:
                    p = self.producer.get(inp)
                    if p is None:
                        continue
                    if p.op_type == "Softmax":
                        return p
                    if p.op_type in ("ReduceSum", "Cast", "DequantizeLinear", "QuantizeLinear", "Identity"):
                        nxt.append(p)
            frontier = nxt
        return None


def layer_of_scope(path: str) -> tuple[int, str] | None:
    """(layer, rest) of a module path ``layer.{i}.{rest}``, else None."""
    m = _LAYER.match(path)
    return (int(m.group(1)), m.group(2)) if m else None


def matmul_table(model: onnx.ModelProto) -> list[MatMulInfo]:
    """Roles of every MatMul/Gemm of a dynamo-exported pruneport graph (FP32 or QDQ), in graph order.

    Raises GraphRoleError when the graph carries no module paths (not a dynamo export).
    """
    index = GraphIndex(model)
    table: list[MatMulInfo] = []
    softmax_layer: dict[str, int] = {}
    for node in model.graph.node:
        if node.op_type == "Softmax":
            found = layer_of_scope(module_path(node))
            if found:
                softmax_layer[node.name] = found[0]
    seen_scopes = False
    for node in model.graph.node:
        if node.op_type not in ("MatMul", "Gemm"):
            continue
        path = module_path(node)
        seen_scopes = seen_scopes or bool(name_scopes(node))
        shape = index.weight_shape(node)
        k, n = shape if shape else (0, 0)
        found = layer_of_scope(path)
        if found:
            layer, rest = found
            if rest.endswith("attention.self.query"):
                role = "query"
            elif rest.endswith("attention.self.key"):
                role = "key"
            elif rest.endswith("attention.self.value"):
                role = "value"
            elif rest.endswith("attention.output.dense"):
                role = "attn_out"
            elif rest.endswith("intermediate.dense"):
                role = "ffn_in"
            elif rest.endswith("output.dense"):
                role = "ffn_out"
            elif shape is None and rest.endswith("attention.self"):
                role = "qk" if index.feeds_softmax(node) else "pv"
            else:
                raise GraphRoleError(f"MatMul {node.name} in {path!r} has no known role")
        elif path.startswith("classifier"):
            layer, role = -1, "head"
        elif path.startswith("pruner"):
            m = _PRUNER_INDEX.search(path)
            layer, role = (int(m.group(1)) if m else 0), "predictor"
        elif shape is None and (softmax := index.reads_softmax(node)) is not None:
            layer, role = softmax_layer.get(softmax.name, 0), "score"
        elif shape is None and any(call in forward_line(node) for call in HOOK_CALLS):
            layer, role = -2, "selection"  # the layer it selects for: the next layer's (below)
        else:
            raise GraphRoleError(f"MatMul {node.name} (module path {path!r}) has no known role")
        table.append(MatMulInfo(node.name, node.op_type, role, layer, int(k), int(n), path))
    if table and not seen_scopes:
        raise GraphRoleError("the graph carries no module paths (pkg.torch.onnx.name_scopes): export it with pruneport")
    following = -1
    for info in reversed(table):  # a selection decides the tokens entering the next layer in graph order
        if info.role == "selection":
            info.layer = max(following, 0)
        elif info.layer >= 0:
            following = info.layer
    return table


def forward_line(node: onnx.NodeProto) -> str:
    """The innermost source line the exporter recorded for ``node`` (its stack trace's last line; "" without one)."""
    trace = next((p.value for p in node.metadata_props if p.key == STACK_TRACE), "").strip()
    return trace.splitlines()[-1] if trace else ""

"""FP16 weights and activations with the score path kept in FP32, so that pruning decisions match the FP32 graph.

ONNX Runtime's float16 converter (``onnxruntime.transformers.float16.convert_float_to_float16``, what Optimum's FP16
export uses) converts the graph; pruneport only chooses what it must not touch (``node_block_list``):

- every node of a prune point: the keep rule (scores, predictor MLPs, thresholds, comparisons) and the compaction,
  found by the export metadata the ``token-prune`` pass reads (:func:`~pruneport.passes.token_prune.prune_point_nodes`);
- for methods whose score is the attention itself (LTP): the self-attention of each layer whose probabilities feed
  a prune point (Q and K projections with their biases, Q.K^T, scaling, mask and Softmax: the module path
  ``layer.{l}.attention.self``), since FP16 probabilities move the attention-received sums across the threshold.

Inputs and outputs keep their types (``keep_io_types``): ``logits`` stays FP32 and ``tokens_per_layer`` int64. The
converter inserts the Casts at the border of the blocked nodes. The hidden states entering a score are FP16-derived
all the same, so a score within FP16 rounding of its threshold can still be decided differently: ``pruneport
optimize --passes ...,fp16 --atol A`` reports how many of its random rows keep FP32's exact ``tokens_per_layer``
(manifest history, ``parity.tokens_per_layer_rows_equal``) and requires logits within ``A`` on those rows.
It is meant for GPUs (CUDA EP); the CPU EP runs the result too (tests), mostly through FP32 fallbacks.
"""

from __future__ import annotations

import logging
import re

import onnx
import onnx_ir as ir

log = logging.getLogger(__name__)

NAME = "fp16"
SUMMARY = "FP16 weights and activations (ORT float16 converter); prune points and LTP's scoring attention stay FP32"
PRECISION = "fp16"  # what the manifest records after this pass

_SELF_ATTENTION = re.compile(r"^layer\.(\d+)\.attention\.self(\.|$)")


def score_path_nodes(proto: onnx.ModelProto) -> set[str]:
    """Names of the nodes that must stay FP32 (see the module docstring)."""
    from pruneport.graph import nodes as value_flow
    from pruneport.graph.roles import module_path
    from pruneport.passes.token_prune import prune_point_nodes

    nodes = list(proto.graph.node)
    keep = {nodes[i].name for i in prune_point_nodes(proto)}
    readers = value_flow.consumers(nodes)
    scoring_layers = set()
    for node in nodes:
        if node.op_type != "Softmax":
            continue
        found = _SELF_ATTENTION.match(module_path(node))
        if found and any(nodes[c].name in keep for out in node.output for c in readers.get(out, [])):
            scoring_layers.add(int(found.group(1)))
    for node in nodes:
        found = _SELF_ATTENTION.match(module_path(node))
        if found and int(found.group(1)) in scoring_layers and ".value" not in module_path(node):
            keep.add(node.name)
    return keep


def _float_values(proto: onnx.ModelProto) -> set[str]:
    """Names of the FP32 tensors of the main graph (inputs, initializers, typed intermediate values)."""
    typed = [*proto.graph.input, *proto.graph.value_info, *proto.graph.output]
    names = {v.name for v in typed if v.type.tensor_type.elem_type == onnx.TensorProto.FLOAT}
    return names | {t.name for t in proto.graph.initializer if t.data_type == onnx.TensorProto.FLOAT}


def _cast_captures(proto: onnx.ModelProto, blocked: set[str], floats: set[str]) -> list[str]:
    """After conversion: give each blocked node's subgraphs an explicit FP32 copy of the float values (``floats``,
    the FP32 values before conversion) they capture from the enclosing graph.

    The converter casts the *inputs* of blocked nodes back to FP32, but not what a Loop body reads from outside; once
    that value's producer is FP16, the body would mix types. Returns the names of the Casts added.
    """
    from pruneport.graph import nodes as value_flow

    added: list[str] = []
    new_nodes: list[onnx.NodeProto] = []
    for node in proto.graph.node:
        subgraphs = [g for a in node.attribute for g in ([a.g] if a.HasField("g") else list(a.graphs))]
        if node.name in blocked and subgraphs:
            captured = sorted({x for g in subgraphs for x in value_flow.subgraph_reads(g)} & floats)
            rename = {x: f"{x}__fp32" for x in captured}
            for x in captured:
                cast = onnx.helper.make_node(
                    "Cast", [x], [rename[x]], name=f"{x}__fp32_cast", to=onnx.TensorProto.FLOAT
                )
                new_nodes.append(cast)
                added.append(cast.name)
            for g in subgraphs:
                _rename_reads(g, rename)
        new_nodes.append(node)
    del proto.graph.node[:]
    proto.graph.node.extend(new_nodes)
    return added


def _rename_reads(graph: onnx.GraphProto, rename: dict[str, str]) -> None:
    """Point every read of a renamed outer value inside ``graph`` (and its nested subgraphs) at its new name."""
    local = {i.name for i in graph.input} | {t.name for t in graph.initializer}
    for node in graph.node:
        for pos, name in enumerate(node.input):
            if name in rename and name not in local:
                node.input[pos] = rename[name]
        for attr in node.attribute:
            for sub in [attr.g] if attr.HasField("g") else list(attr.graphs):
                _rename_reads(sub, rename)
        local.update(node.output)


def _hide_subgraphs(proto: onnx.ModelProto, blocked: set[str]) -> dict[str, dict[str, onnx.GraphProto]]:
    """Take the bodies of blocked Loop/If nodes out of the model (the converter retypes a body's inputs and outputs
    even when every node in it is blocked); returns node -> attribute -> body for :func:`_restore_subgraphs`."""
    hidden: dict[str, dict[str, onnx.GraphProto]] = {}
    for node in proto.graph.node:
        if node.name not in blocked:
            continue
        for attr in node.attribute:
            if attr.HasField("g"):
                hidden.setdefault(node.name, {})[attr.name] = onnx.GraphProto()
                hidden[node.name][attr.name].CopyFrom(attr.g)
                attr.g.Clear()
                attr.g.name = f"{node.name}_{attr.name}_hidden"
    return hidden


def _restore_subgraphs(proto: onnx.ModelProto, hidden: dict[str, dict[str, onnx.GraphProto]]) -> None:
    for node in proto.graph.node:
        for attr in node.attribute:
            body = hidden.get(node.name, {}).get(attr.name)
            if body is not None:
                attr.g.CopyFrom(body)


def convert(proto: onnx.ModelProto) -> tuple[onnx.ModelProto, int]:
    """The FP16 model and how many nodes were left in FP32."""
    from onnxruntime.transformers.float16 import convert_float_to_float16

    from pruneport.graph import nodes as value_flow

    unnamed = [n for n in proto.graph.node if not n.name]
    for i, node in enumerate(unnamed):
        node.name = f"fp16_unnamed_{i}"
    blocked = score_path_nodes(proto)  # Loop/If bodies of blocked nodes are hidden from the converter below
    floats = _float_values(proto)
    hidden = _hide_subgraphs(proto, blocked)
    converted = convert_float_to_float16(proto, keep_io_types=True, node_block_list=sorted(blocked))
    _restore_subgraphs(converted, hidden)
    casts = _cast_captures(converted, blocked, floats)
    ordered = value_flow.topological_order(list(converted.graph.node), converted.graph)  # Casts come last
    del converted.graph.node[:]
    converted.graph.node.extend(ordered)
    return converted, len(blocked) + len(casts)


def apply(model: ir.Model) -> int:
    """Convert ``model`` in place; returns the number of nodes converted to FP16 (0 when already converted)."""
    from pruneport.passes.token_prune import replace_model

    proto = ir.serde.serialize_model(model)
    if len(proto.functions):
        raise ValueError("fp16 runs on graphs without model-local functions: put it before token-prune")
    if any(
        i.data_type == onnx.TensorProto.FLOAT16 for i in proto.graph.initializer
    ):  # a second run would convert nothing
        return 0
    total = len(proto.graph.node)
    converted, blocked = convert(proto)
    log.info("fp16: %d of %d nodes kept in FP32 (prune points, scoring attention)", blocked, total)
    replace_model(model, converted)
    return total - blocked

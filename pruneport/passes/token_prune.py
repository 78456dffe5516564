"""TokenPrune fusion: each prune point's chain -> one ``ai.pruneport::TokenPrune`` node (a model-local function).

A prune point of an exported graph is the method's keep rule (e.g. LTP: score ``MatMul(live, ReduceSum(probs))``,
``GreaterOrEqual`` threshold, ``And`` live, ``Or`` CLS) followed by :func:`pruneport.methods.pruned_encoder.compact`
and the gather of the hidden states (counts ``ReduceSum``/``ReduceMax``, one ``TopK`` whose k is the new width, the
new live mask ``Less``, ``GatherND`` of hidden; exports written before December 2026 sorted all slots and sliced with
``NonZero``/``Gather``, then ``GatherElements``: both are recognised). This pass replaces those nodes by one call node
``TokenPrune`` in the domain ``ai.pruneport`` whose body is the same standard ops, carried as a ``FunctionProto`` in
``model.functions``: ONNX Runtime inlines it when it loads the model, so no extra library is needed (OpenVINO 2026.4
does not read model-local functions: see below). The call node's attributes name the rule (``rule``: threshold /
margin / eta-n / argmax / top-k / k-center / mask, read from the body's ops by :func:`_rule`), the prune point
(``point``, 0-based in graph order) and, for threshold rules, the threshold (``threshold``, documentation only: the
body reads the threshold tensor, a function input). ``expand`` (pass ``expand-token-prune``) inlines the functions
again with ``onnx.inliner.inline_selected_functions``.

**Why metadata, not a pattern.** A prune point is 20-40 ops with several outputs (new hidden, new live, and shape
values such as the new length that the next layer's reshapes share with it) and its exact op sequence changes with
the method, ``--bucket`` and exporter CSE (e.g. the first point reuses the embeddings' ``Range``). An onnxscript
``RewriteRule`` would need one multi-output pattern per method and variant and silently stop firing when the
exporter changes. The dynamo exporter records for every node the line of ``PrunedSequenceClassifier.forward`` it
came from (``metadata_props["pkg.torch.onnx.stack_trace"]``): ``self.pruner.before_layer(`` /
``self.pruner.after_attention(`` (the keep rule, "hook" nodes; so are the nodes of the pruner's own modules, e.g.
predictor MLPs, by their ``namespace`` module path ``pruner.*``) and ``self._prune(`` (compaction, "prune" nodes).
Those tags select the node set; dataflow splits it into prune points:

- a *keep anchor* is a boolean value made outside the prune nodes and read by them (the keep mask the hook returns;
  boolean from the graph's ``value_info``), one per prune point; its producer counts as a hook node (Pyramid-BERT's
  selection ``Loop`` carries the trace of the loop body's line);
- a hook node belongs to the first anchor it reaches through hook nodes (never to the point of what it reads, so
  point k's new live mask read by point k+1's rule does not merge them); a prune node to the latest point it
  depends on (anchors, and the points of the nodes it reads); a prune node that depends on no anchor
  (``positions + seq``) to the point of its consumers when they agree;
- untagged nodes on a path between two nodes of a point join it (e.g. the ops of a ``while`` condition);
- a point whose node set is not convex (a path leaves it and comes back) is left alone and logged.

Everything a point's nodes read from outside (probabilities, hidden, live, thresholds and other initializers, shape
values) becomes a function input, everything used outside (or a graph output) a function output, so shapes shared
with neighbouring layers stay correct. Identical bodies share one function; different bodies (the first point
often differs from the others by exporter CSE) get distinct ``overload`` names (IR >= 10). The graph is written and
read as protobuf here because extracting a node set into a function is simplest on names.

Quantization (``pruneport quantize``) finds the score MatMuls and threshold tensors in the main graph: run it on an
unfused export (or ``--expand-token-prune``) and fuse afterwards; export folders are never fused by default.

OpenVINO 2026.4.1 converts no model-local function, so the pass is for ONNX Runtime (``RUNS_ON``); expand first for
OpenVINO. onnxscript's optimizer (the ``cleanup`` pass) inlines functions: run ``token-prune`` last.

Measured on MiniLM-L6 LTP (5 prune points, ORT 1 thread, batch 1): CPU-time ratio export / fused 1.005 at S=128 and
0.995 at S=384, the noise (ONNX Runtime inlines the functions at load). The pass is in no default pipeline; its value
is a readable graph with one node per prune point and an anchor for later passes (``docs/passes.md``).
"""

from __future__ import annotations

import logging
from collections import defaultdict

import numpy as np
import onnx
import onnx.inliner
import onnx_ir as ir
from onnx import helper, numpy_helper

from pruneport.graph import nodes as value_flow
from pruneport.graph.roles import HOOK_CALLS, forward_line

log = logging.getLogger(__name__)

NAME = "token-prune"
SUMMARY = "each prune point's keep rule + compaction -> one ai.pruneport::TokenPrune (model-local function)"
DOMAIN = "ai.pruneport"
OP_TYPE = "TokenPrune"
NAMESPACE_KEY = "namespace"  # "<root>/pruner.predictors.0: Class/..." for nodes of the pruner's submodules
PRUNE_CALLS = ("self._prune(",)
COMPACTION_OPS = ("TopK", "NonZero")  # compact()'s packing TopK (older exports: argsort TopK + NonZero slice)
BOOL_OPS = {"And", "Or", "Not", "Xor", "Equal", "Less", "LessOrEqual", "Greater", "GreaterOrEqual", "Loop", "If"}
MIN_IR_VERSION = 10  # FunctionProto.overload
# OpenVINO 2026.4.1's ONNX frontend converts no model-local function (checked with a one-Relu function in a custom
# domain, the default domain and IR 8-10: "No conversion rule found"); expand-token-prune first for OpenVINO.
RUNS_ON = ("onnxruntime",)


def _tag(node: onnx.NodeProto) -> str | None:
    """'hook', 'prune' or None, from the forward() line the exporter recorded for ``node`` (or its module path:
    nodes of the pruner's own modules, e.g. predictor MLPs, are hook nodes)."""
    meta = {p.key: p.value for p in node.metadata_props}
    scopes = meta.get(NAMESPACE_KEY, "").split("/")
    if len(scopes) > 1 and scopes[1].split(":")[0].split(".")[0] == "pruner":
        return "hook"
    last = forward_line(node)
    if any(call in last for call in PRUNE_CALLS):
        return "prune"
    if any(call in last for call in HOOK_CALLS):
        return "hook"
    return None


def _assign_points(nodes: list[onnx.NodeProto], bool_values: set[str]) -> dict[int, int]:
    """Node index -> prune point (0-based, in order of the keep anchors); untouched nodes are absent.

    ``bool_values``: names known to be boolean tensors (graph value_info), for finding the keep masks.
    """
    tags = [_tag(n) for n in nodes]
    producer = {out: i for i, n in enumerate(nodes) for out in n.output if out}
    consumers = value_flow.consumers(nodes)
    anchors: dict[str, int] = {}  # keep mask: a boolean made outside compaction and read by it -> point
    for i, n in enumerate(nodes):
        if tags[i] == "prune":
            continue
        for out in n.output:
            is_bool = out in bool_values or (not bool_values and n.op_type in BOOL_OPS)
            if is_bool and any(tags[c] == "prune" for c in consumers.get(out, [])) and out not in anchors:
                anchors[out] = len(anchors)
                tags[i] = "hook"  # e.g. Pyramid's selection Loop, whose trace names the loop body's line
    point: dict[int, int] = {}
    # hook nodes: the first anchor they reach through hook nodes
    for i in reversed(range(len(nodes))):
        if tags[i] != "hook":
            continue
        found = [anchors[out] for out in nodes[i].output if out in anchors]
        found += [
            point[c] for out in nodes[i].output for c in consumers.get(out, []) if tags[c] == "hook" and c in point
        ]
        if found:
            point[i] = min(found)
    # prune nodes: the latest point they depend on through prune nodes or hook nodes (topological order)
    for i, n in enumerate(nodes):
        if tags[i] != "prune":
            continue
        found = [anchors[v] for v in value_flow.reads(n) if v in anchors]
        found += [point[producer[v]] for v in value_flow.reads(n) if v in producer and producer[v] in point]
        if found:
            point[i] = max(found)
    # prune nodes that depend on no anchor: the point of their consumers, when they all agree
    for i in reversed(range(len(nodes))):
        if tags[i] != "prune" or i in point:
            continue
        users = {point.get(c) for out in nodes[i].output for c in consumers.get(out, []) if tags[c] is not None}
        if len(users) == 1 and None not in users:
            point[i] = users.pop()
    return point


def _between(members: set[int], nodes: list[onnx.NodeProto], consumers: dict[str, list[int]]) -> set[int]:
    """Nodes outside ``members`` on a path from a member to a member (untagged helpers of a hook, e.g. the ops the
    exporter wrote for a ``while`` condition); adding them makes the set convex."""
    producer = {out: i for i, n in enumerate(nodes) for out in n.output if out}

    def walk(start: list[int], step) -> set[int]:
        seen: set[int] = set()
        while start:
            i = start.pop()
            if i in seen or i in members:
                continue
            seen.add(i)
            start.extend(step(i))
        return seen

    down = walk([c for i in members for o in nodes[i].output for c in consumers.get(o, [])],
                lambda i: [c for o in nodes[i].output for c in consumers.get(o, [])])  # fmt: skip
    up = walk([producer[x] for i in members for x in value_flow.reads(nodes[i]) if x in producer],
              lambda i: [producer[x] for x in value_flow.reads(nodes[i]) if x in producer])  # fmt: skip
    return down & up


def _is_convex(members: set[int], nodes: list[onnx.NodeProto]) -> bool:
    """True when no path leaves ``members`` and re-enters it (so one call node can replace them)."""
    consumers = value_flow.consumers(nodes)
    outside = set()
    stack = [c for i in members for out in nodes[i].output for c in consumers.get(out, []) if c not in members]
    while stack:
        i = stack.pop()
        if i in outside:
            continue
        outside.add(i)
        for out in nodes[i].output:
            for c in consumers.get(out, []):
                if c in members:
                    return False
                stack.append(c)
    return True


def _rule(body: list[onnx.NodeProto], consts: dict[str, np.ndarray]) -> tuple[str, float | None]:
    """The keep rule's name, read from the body's ops, and for threshold rules the constant threshold.

    k-center: greedy ``ArgMax`` selection or a ``Loop`` (Pyramid-BERT); top-k: a ``TopK`` besides compact()'s
    packing one; margin: ``Greater`` of a ``Sub`` (Transkimmer's ``logit1 - logit0``) against a constant; threshold:
    ``GreaterOrEqual``/``Greater`` against another constant scalar (LTP, TR-BERT); eta-n: against ``1 / n`` times ETA
    (AdapLeR; a ``Div``/``Reciprocal``, or a ``Mul`` of one); argmax: ``Greater`` of two computed values; otherwise
    mask.
    """
    ops = [n.op_type for n in body]
    if "ArgMax" in ops or "Loop" in ops:
        return "k-center", None
    if ops.count("TopK") > 1:
        return "top-k", None
    producer = {out: n for n in body for out in n.output}
    rule = "mask"
    for n in body:
        if n.op_type not in ("GreaterOrEqual", "Greater"):
            continue
        left, right = n.input[0], n.input[1]
        value = consts.get(right)
        if value is not None and value.size == 1:
            margin = n.op_type == "Greater" and left in producer and producer[left].op_type == "Sub"
            return ("margin" if margin else "threshold"), float(value.reshape(()))
        source = producer.get(right)
        if source is not None and source.op_type == "Mul":
            source = next((producer[i] for i in source.input if i in producer and i not in consts), source)
        if source is not None and source.op_type in ("Div", "Reciprocal"):
            rule = "eta-n"
        elif n.op_type == "Greater" and rule == "mask":
            rule = "argmax"
    return rule, None


def _function_body(body: list[onnx.NodeProto], inputs: list[str], outputs: list[str]) -> tuple:
    """Canonically renamed copies of ``body`` (names x*, t*, n*; no metadata) with its input and output names."""
    rename = {name: f"x{k}" for k, name in enumerate(inputs)}
    nodes = []
    for k, n in enumerate(body):
        copy = onnx.NodeProto()
        copy.CopyFrom(n)
        del copy.metadata_props[:]
        copy.name = f"n{k}"
        for j, out in enumerate(copy.output):
            if out:
                rename.setdefault(out, f"t{len(rename)}")
                copy.output[j] = rename[out]
        for j, name in enumerate(copy.input):
            if name:
                copy.input[j] = rename[name]
        for attr in copy.attribute:
            for sub in [attr.g] if attr.HasField("g") else list(attr.graphs):
                _rename_captures(sub, rename)
        nodes.append(copy)
    return nodes, [rename[n] for n in inputs], [rename[n] for n in outputs]


def _rename_captures(graph: onnx.GraphProto, rename: dict[str, str]) -> None:
    """Rename, inside a subgraph, the values it captures from the enclosing scope."""
    local = {i.name for i in graph.input} | {t.name for t in graph.initializer}
    for n in graph.node:
        for j, name in enumerate(n.input):
            if name and name not in local and name in rename:
                n.input[j] = rename[name]
        for attr in n.attribute:
            for sub in [attr.g] if attr.HasField("g") else list(attr.graphs):
                _rename_captures(sub, {k: v for k, v in rename.items() if k not in local})
        local.update(n.output)


def fuse(proto: onnx.ModelProto) -> int:
    """Fuse every prune point of ``proto`` (in place) into a ``TokenPrune`` call; returns how many were fused."""
    graph = proto.graph
    nodes = list(graph.node)
    bool_values = {v.name for v in graph.value_info if v.type.tensor_type.elem_type == onnx.TensorProto.BOOL}
    points = _assign_points(nodes, bool_values)
    if not points:
        return 0
    consts = {t.name: numpy_helper.to_array(t) for t in graph.initializer if _small(t)}
    graph_outputs = {o.name for o in graph.output}
    members_of: dict[int, list[int]] = defaultdict(list)
    for i, p in sorted(points.items()):
        members_of[p].append(i)
    used_by = {name: set(users) for name, users in value_flow.consumers(nodes).items()}
    opset = {o.domain: o.version for o in proto.opset_import}
    functions: dict[bytes, onnx.FunctionProto] = {}
    replaced: dict[int, onnx.NodeProto | None] = {}  # node index -> call node (at the point's last index) or None
    fused = 0
    consumers = value_flow.consumers(nodes)
    for p, members in sorted(members_of.items()):
        extra = _between(set(members), nodes, consumers)
        if any(i in points for i in extra):
            log.warning("prune point %d: paths through another prune point's nodes; left unfused", p)
            continue
        members = sorted({*members, *extra})
        member_set = set(members)
        body = [nodes[i] for i in members]
        if not any(n.op_type in COMPACTION_OPS for n in body) or not _is_convex(member_set, nodes):
            log.warning("prune point %d: not a compaction or not convex; left unfused", p)
            continue
        produced = [out for n in body for out in n.output if out]
        produced_set = set(produced)
        inputs = list(dict.fromkeys(x for n in body for x in value_flow.reads(n) if x not in produced_set))
        outputs = [v for v in produced if v in graph_outputs or used_by.get(v, set()) - member_set]
        fn_nodes, fn_inputs, fn_outputs = _function_body(body, inputs, outputs)
        rule, threshold = _rule(body, consts)
        key = (
            b"".join(n.SerializeToString(deterministic=True) for n in fn_nodes) + repr((fn_inputs, fn_outputs)).encode()
        )
        if key not in functions:
            functions[key] = helper.make_function(
                DOMAIN,
                OP_TYPE,
                fn_inputs,
                fn_outputs,
                fn_nodes,
                [helper.make_opsetid(d, v) for d, v in opset.items() if d != DOMAIN],
                attributes=["rule", "point", "threshold"],
                doc_string="pruneport prune point: keep rule + compaction (pruneport.methods.pruned_encoder.compact)",
            )
            functions[key].overload = "" if len(functions) == 1 else f"v{len(functions)}"
        attrs = {"rule": rule, "point": p}
        if threshold is not None:
            attrs["threshold"] = threshold
        call = helper.make_node(OP_TYPE, inputs, outputs, name=f"TokenPrune_{p}", domain=DOMAIN, **attrs)
        call.overload = functions[key].overload
        for i in members:
            replaced[i] = None
        replaced[members[-1]] = call
        fused += 1
    if not fused:
        return 0
    new_nodes = [replaced.get(i, n) for i, n in enumerate(nodes) if replaced.get(i, n) is not None]
    del graph.node[:]
    graph.node.extend(value_flow.topological_order(new_nodes, graph))
    proto.functions.extend(functions.values())
    if DOMAIN not in opset:
        proto.opset_import.append(helper.make_opsetid(DOMAIN, 1))
    proto.ir_version = max(proto.ir_version, MIN_IR_VERSION)
    return fused


def _small(tensor: onnx.TensorProto) -> bool:
    return int(np.prod(tensor.dims)) <= 16 and not tensor.external_data


def expand(proto: onnx.ModelProto) -> tuple[onnx.ModelProto, int]:
    """Inline every ``ai.pruneport::TokenPrune`` call; returns the new model and how many calls were inlined."""
    calls = sum(1 for n in proto.graph.node if n.domain == DOMAIN and n.op_type == OP_TYPE)
    if not any(f.domain == DOMAIN for f in proto.functions):
        return proto, 0
    expanded = onnx.inliner.inline_selected_functions(proto, [(DOMAIN, OP_TYPE)], exclude=False)
    kept = [f for f in expanded.functions if f.domain != DOMAIN]
    del expanded.functions[:]
    expanded.functions.extend(kept)
    if not any(n.domain == DOMAIN for n in expanded.graph.node):
        opsets = [o for o in expanded.opset_import if o.domain != DOMAIN]
        del expanded.opset_import[:]
        expanded.opset_import.extend(opsets)
    return expanded, calls


def prune_point_nodes(proto: onnx.ModelProto) -> set[int]:
    """Indices (in ``proto.graph.node``) of every node of every prune point: keep rule, compaction and the untagged
    nodes between them (what :func:`fuse` would put in the ``TokenPrune`` bodies, fusable or not)."""
    nodes = list(proto.graph.node)
    bool_values = {v.name for v in proto.graph.value_info if v.type.tensor_type.elem_type == onnx.TensorProto.BOOL}
    points = _assign_points(nodes, bool_values)
    members_of: dict[int, set[int]] = defaultdict(set)
    for i, p in points.items():
        members_of[p].add(i)
    consumers = value_flow.consumers(nodes)
    found: set[int] = set()
    for members in members_of.values():
        found |= members | _between(members, nodes, consumers)
    return found


def replace_model(model: ir.Model, proto: onnx.ModelProto) -> None:
    """Make ``model`` hold ``proto``'s content (passes rewrite their argument in place)."""
    new = ir.serde.deserialize_model(proto)
    model.graph = new.graph
    model.functions.clear()
    model.functions.update(new.functions)
    model.ir_version = new.ir_version


def apply(model: ir.Model) -> int:
    """Fuse every prune point of ``model`` in place; returns the number of ``TokenPrune`` nodes made."""
    proto = ir.serde.serialize_model(model)
    count = fuse(proto)
    if count:
        replace_model(model, proto)
    return count


class _Expand:
    """The ``expand-token-prune`` pass: inline the ``TokenPrune`` functions (``optimize --expand-token-prune``)."""

    NAME = "expand-token-prune"
    SUMMARY = "inline ai.pruneport::TokenPrune functions back into standard ops (undoes token-prune)"

    @staticmethod
    def apply(model: ir.Model) -> int:
        proto, count = expand(ir.serde.serialize_model(model))
        if count:
            replace_model(model, proto)
        return count


expand_pass = _Expand()

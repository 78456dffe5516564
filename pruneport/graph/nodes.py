"""Value flow of an ONNX node list: what each node reads, subgraph captures included, and who consumes each value.

Written by hand over ``onnx`` protos: the passes that need it (``token-prune``) rewrite protos directly, and
onnx-ir's use lists do not count the names a Loop/If body captures from the enclosing graph.
"""

from __future__ import annotations

from collections import defaultdict

import onnx


def subgraph_reads(graph: onnx.GraphProto) -> set[str]:
    """Names a subgraph (Loop/If/Scan body) reads from enclosing scopes."""
    local = {i.name for i in graph.input} | {t.name for t in graph.initializer}
    found: set[str] = set()
    for n in graph.node:
        found.update(x for x in reads(n) if x not in local)
        local.update(n.output)
    return found - local


def reads(node: onnx.NodeProto) -> list[str]:
    """Every value ``node`` reads: its inputs and what its subgraphs capture from outside (in order, once each)."""
    names = [x for x in node.input if x]
    for attr in node.attribute:
        for sub in [attr.g] if attr.HasField("g") else list(attr.graphs):
            names.extend(sorted(subgraph_reads(sub)))
    return list(dict.fromkeys(names))


def consumers(nodes: list[onnx.NodeProto]) -> dict[str, list[int]]:
    """Value name -> indices of the nodes that read it (subgraph captures included)."""
    found: dict[str, list[int]] = defaultdict(list)
    for i, n in enumerate(nodes):
        for name in reads(n):
            found[name].append(i)
    return found


def topological_order(nodes: list[onnx.NodeProto], graph: onnx.GraphProto) -> list[onnx.NodeProto]:
    """``nodes`` in an order where every node comes after what it reads (graph inputs and initializers are there
    from the start); stable where possible: a node keeps its place unless something it reads comes later.

    Raises ValueError on a cycle (a rewrite that made one has a bug).
    """
    available = {i.name for i in graph.input} | {t.name for t in graph.initializer} | {""}
    pending, ordered = list(nodes), []
    while pending:
        rest = []
        for n in pending:
            if all(x in available for x in reads(n)):
                ordered.append(n)
                available.update(n.output)
            else:
                rest.append(n)
        if len(rest) == len(pending):
            raise ValueError("the rewritten graph has a cycle; this is a bug in the pass that rewrote it")
        pending = rest
    return ordered

"""BOPs (bit operations) per example: MACs of every MatMul/Gemm actually in the graph x weight bits x activation bits.

MACs come from ``tokens_per_layer`` (never from the padded length) and each MatMul's role
(:func:`pruneport.graph.roles.matmul_table`), with the same token-count rules as :mod:`pruneport.flops`:

| role | MACs per example (n = tokens entering the layer's attention, m = tokens entering its FFN, D = hidden) |
| --- | --- |
| query, key, value, attn_out | n * k * n_out (k x n_out = the weight's shape) |
| ffn_in, ffn_out | m * k * n_out, m = next layer's entering count (the layer's own count for the last layer) |
| qk, pv (activation x activation) | n * n * D (all heads) |
| selection (Pyramid-BERT's k-center distances) | n * n * D (n = tokens entering the layer it selects for) |
| score (LTP's live-query sum) | n * n |
| predictor (predictor MLPs of other methods) | n * k * n_out (best effort: the count entering the layer) |
| head | k * n_out (CLS only) |

Bit widths are read from the graph: on ONNX, an input produced by ``DequantizeLinear`` has the bits of the integer
type it dequantizes (``MatMulInteger`` has 8/8); on OpenVINO IR, an input reached through ``FakeQuantize`` has
``ceil(log2(levels))`` bits and a weight stored as an integer Constant (decompressed by Convert/Multiply) that type's
bits; every other input is a float tensor of its own width (32). The baseline of LTP's figure 7 is the same model
unpruned in FP16: the backbone and head MatMuls (no score or predictor MatMuls) at the full length, 16 x 16 bits.
Torch-free; written by hand because no library counts MACs of data-dependent graphs from observed token counts.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pruneport.graph.roles import MatMulInfo

FLOAT_BITS = {1: 32, 10: 16, 16: 16, 11: 64}  # onnx TensorProto FLOAT, FLOAT16, BFLOAT16, DOUBLE
INT_BITS = {2: 8, 3: 8, 4: 16, 5: 16, 21: 4, 22: 4}  # UINT8, INT8, UINT16, INT16, UINT4, INT4
BASELINE_BITS = (16, 16)
BACKBONE_ROLES = ("query", "key", "value", "attn_out", "ffn_in", "ffn_out", "qk", "pv", "head")


@dataclass
class MatMulBits:
    """A MatMul's role and the bit widths of its activation (A) and weight (B) inputs."""

    info: MatMulInfo
    a_bits: int
    w_bits: int


def token_rows(info: MatMulInfo, tokens: np.ndarray, hidden: int) -> np.ndarray:
    """MACs of one MatMul for each example; tokens: tokens_per_layer [n_examples, layers]."""
    layers = tokens.shape[1]
    t = tokens.astype(np.float64)
    if info.role == "head":
        return np.full(t.shape[0], float(info.k * info.n))
    layer = min(max(info.layer, 0), layers - 1)
    attn = t[:, layer]
    if info.role in ("query", "key", "value", "attn_out", "predictor"):
        return attn * info.k * info.n
    if info.role in ("ffn_in", "ffn_out"):
        ffn = t[:, layer + 1] if layer + 1 < layers else attn
        return ffn * info.k * info.n
    if info.role in ("qk", "pv", "selection"):
        return attn * attn * hidden
    if info.role == "score":
        return attn * attn
    raise ValueError(f"unknown MatMul role {info.role!r}")


def bops_per_example(
    entries: Sequence[MatMulBits], tokens_per_layer: np.ndarray, hidden: int
) -> tuple[np.ndarray, np.ndarray]:
    """(MACs [n], BOPs [n]) per example of a graph with these MatMuls."""
    tokens = np.asarray(tokens_per_layer)
    macs = np.zeros(tokens.shape[0])
    bops = np.zeros(tokens.shape[0])
    for e in entries:
        m = token_rows(e.info, tokens, hidden)
        macs += m
        bops += m * e.a_bits * e.w_bits
    return macs, bops


def baseline_bops(entries: Sequence[MatMulBits], lengths: np.ndarray, hidden: int, layers: int) -> np.ndarray:
    """BOPs per example of the unpruned FP16 model (backbone and head MatMuls at the full length)."""
    full = np.repeat(np.asarray(lengths)[:, None], layers, axis=1)
    backbone = [MatMulBits(e.info, *BASELINE_BITS) for e in entries if e.info.role in BACKBONE_ROLES]
    return bops_per_example(backbone, full, hidden)[1]


# ---------------------------------------------------------------------------------------------------------------
# bit widths from graphs
# ---------------------------------------------------------------------------------------------------------------


def onnx_bits(model, table: Sequence[MatMulInfo]) -> list[MatMulBits]:
    """Bit widths of the table's MatMuls in an ONNX graph (FP32, QDQ or dynamic-quantized)."""
    from pruneport.graph.roles import GraphIndex

    index = GraphIndex(model)
    nodes = {n.name: n for n in model.graph.node}
    out = []
    for info in table:
        # quantize_dynamic renames MatMul X to X_quant (MatMulInteger) and splits Gemm X into X_MatMul(_quant) + Add
        candidates = (info.name, info.name + "_quant", info.name + "_MatMul", info.name + "_MatMul_quant")
        node = next((nodes[c] for c in candidates if c in nodes), None)
        if node is None:
            raise ValueError(f"MatMul {info.name} of the role table is not in the graph")
        if node.op_type in ("MatMulInteger", "QLinearMatMul"):
            out.append(MatMulBits(info, 8, 8))
            continue
        bits = [_onnx_input_bits(index, name) for name in node.input[:2]]
        out.append(MatMulBits(info, bits[0], bits[1]))
    return out


def _onnx_input_bits(index, name: str) -> int:
    producer = index.producer.get(name)
    for _ in range(4):
        if producer is None or producer.op_type not in ("Transpose", "Reshape", "Identity"):
            break
        producer = index.producer.get(producer.input[0])
    if producer is not None and producer.op_type == "DequantizeLinear":
        source = producer.input[0]
        if source in index.initializers:
            return INT_BITS.get(index.initializers[source].data_type, 8)
        q = index.producer.get(source)
        if q is not None and q.op_type == "QuantizeLinear":
            if len(q.input) > 2 and q.input[2] in index.initializers:
                return INT_BITS.get(index.initializers[q.input[2]].data_type, 8)
            for attr in q.attribute:
                if attr.name == "output_dtype" and attr.i:
                    return INT_BITS.get(attr.i, 8)
            return 8
        return 8
    if name in index.initializers:
        return FLOAT_BITS.get(index.initializers[name].data_type, 32)
    return 32


_OV_PASS = ("Reshape", "Transpose", "Squeeze", "Unsqueeze", "Convert", "Multiply", "Subtract", "Add")


def _ov_input_bits(node) -> int:
    for _ in range(8):
        kind = node.get_type_name()
        if kind == "FakeQuantize":
            levels = int(node.get_attributes().get("levels", 256))
            return max(1, math.ceil(math.log2(levels)))
        if kind == "Constant":
            return int(node.get_output_element_type(0).bitwidth)
        if kind == "Convert":
            source = node.input_value(0).get_node()
            if source.get_type_name() == "Constant":
                return int(source.get_output_element_type(0).bitwidth)
            return int(node.get_output_element_type(0).bitwidth)  # a cast of a computed tensor: its float width
        if kind not in _OV_PASS:
            return int(node.get_output_element_type(0).bitwidth)
        node = node.input_value(0).get_node()
    return 32


def openvino_bits(model, table: Sequence[MatMulInfo]) -> list[MatMulBits]:
    """Bit widths of the table's MatMuls in an OpenVINO model (friendly names = ONNX node names)."""
    ops = {}
    for op in model.get_ops():
        if op.get_type_name() == "MatMul":
            ops[op.get_friendly_name().removesuffix("/WithoutBiases")] = op
    out = []
    for info in table:
        op = ops.get(info.name)
        if op is None:
            raise ValueError(f"MatMul {info.name} of the role table is not in the OpenVINO model")
        a, w = (_ov_input_bits(op.input_value(i).get_node()) for i in range(2))
        out.append(MatMulBits(info, a, w))
    return out


def folder_bits(folder: str | Path) -> list[MatMulBits]:
    """Role table and bit widths of an export folder (FP32/QDQ ONNX, or OpenVINO IR with a role table)."""
    from pruneport.export.manifest import Manifest
    from pruneport.graph.roles import matmul_table

    folder = Path(folder)
    manifest = Manifest.read(folder)
    path = folder / manifest.model_file
    stored = manifest.extra.get("matmuls")
    table = [MatMulInfo.from_dict(d) for d in stored] if stored else None
    if manifest.model_file.endswith(".xml"):
        if table is None:
            raise ValueError(f"{folder}: an OpenVINO folder needs the MatMul role table (manifest extra.matmuls)")
        import openvino as ov

        return openvino_bits(ov.Core().read_model(str(path)), table)
    import onnx

    model = onnx.load(str(path))
    return onnx_bits(model, table if table is not None else matmul_table(model))


def bits_summary(entries: Sequence[MatMulBits]) -> dict[str, Any]:
    """How many MatMuls run at each (activation, weight) bit pair, e.g. {"8x8": 30, "32x32": 6}."""
    counts: dict[str, int] = {}
    for e in entries:
        key = f"{e.a_bits}x{e.w_bits}"
        counts[key] = counts.get(key, 0) + 1
    return dict(sorted(counts.items()))


def giga(values: np.ndarray | float) -> float:
    """The mean of ``values`` divided by 1e9."""
    return float(np.mean(values)) / 1e9


def hidden_size(backbone: Mapping[str, Any]) -> int:
    """``hidden_size`` of a backbone config dict, as an int."""
    return int(backbone["hidden_size"])

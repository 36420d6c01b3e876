"""Which standard ops the exported attention functions apply per score, per row and per token.

Builds the one-node ONNX model of InhibitorAttention (and DotAttention for contrast) with distinct
query and key lengths (nq=11, nk=13; B=2, H=3, d=4), inlines the function, infers every tensor's
shape and classifies each op of the body, the ops of its subgraphs (Loop/If bodies) included, by the
largest tensor it reads or writes:

- per score: a tensor with both a query and a key axis (11 and 13);
- per row:   a query axis only (one value per query row, e.g. the centring mean);
- per token: a key axis only (v, k or mask derived, once per key);
- other:     neither (attribute constants, per-batch counts).

Exits 1 unless no Mul/MatMul/MatMulInteger/Div/Pow is applied per score in InhibitorAttention.
Run: python bench/inhibitor_ops.py
"""
from __future__ import annotations

import sys
from collections import Counter

import onnx
import onnx.inliner
from onnx import TensorProto

from export.onnx_lower import op_model

B, H, NQ, NK, D = 2, 3, 11, 13, 4
MULTIPLIES = ("Mul", "MatMul", "MatMulInteger", "Div", "Pow")
CLASSES = ("per score", "per row", "per token", "other")
ATTRS = {
    "InhibitorAttention": {"z_shift": 2, "center": 1, "alpha": 3, "signed": 1, "out_shift": 2, "bits": 8},
    "DotAttention": {"q_ln2": 100, "b_int": 190, "c_int": 5000, "n_clip": 30, "prob_bits": 8, "out_shift": 8, "bits": 8},
}


def _classify(shape: tuple[int, ...] | None) -> str:
    if shape is None:
        raise SystemExit("shape inference left a tensor without a shape; cannot classify")
    has_q, has_k = NQ in shape, NK in shape
    return "per score" if has_q and has_k else "per row" if has_q else "per token" if has_k else "other"


def op_classes(op: str) -> Counter:
    """Counter of (op_type, class) over the inlined body of `op`."""
    i8 = TensorProto.INT8
    model = op_model(op, [i8, i8, i8, TensorProto.INT64], i8, ATTRS[op], [4, 4, 4, 2], 4)
    for vi, shape in zip(model.graph.input, [(B, H, NQ, D), (B, H, NK, D), (B, H, NK, D), (B, NK)]):
        for dim, size in zip(vi.type.tensor_type.shape.dim, shape):
            dim.dim_value = size
    inferred = onnx.shape_inference.infer_shapes(onnx.inliner.inline_local_functions(model), strict_mode=True, data_prop=True)
    counts: Counter = Counter()
    _count(inferred.graph, {}, counts, subgraph=False)
    return counts


def _count(graph: onnx.GraphProto, outer: dict, counts: Counter, subgraph: bool) -> None:
    """Classify the nodes of `graph` and, recursively, of the subgraphs (Loop/If/Scan bodies) of its
    nodes. A subgraph tensor whose shape inference could not fix is counted per score (the worst case),
    so a multiply hidden in a loop body still fails the check."""
    shapes = dict(outer)
    for vi in (*graph.input, *graph.value_info, *graph.output):
        if vi.type.tensor_type.HasField("shape"):
            shapes[vi.name] = tuple(d.dim_value for d in vi.type.tensor_type.shape.dim)
    for node in graph.node:
        tensors = [t for t in (*node.input, *node.output) if t]
        classes = {"per score" if subgraph and shapes.get(t) is None else _classify(shapes.get(t)) for t in tensors}
        counts[node.op_type, next(c for c in CLASSES if c in classes)] += 1
        for attr in node.attribute:
            for sub in (*([attr.g] if attr.type == onnx.AttributeProto.GRAPH else []), *attr.graphs):
                _count(sub, shapes, counts, subgraph=True)


def print_listing(op: str, counts: Counter) -> None:
    print(f"\n{op}: ops of the exported function body (counts per class)")
    print(f"  {'op':<16}" + "".join(f"{c:>11}" for c in CLASSES))
    for op_type in sorted({t for t, _ in counts}):
        print(f"  {op_type:<16}" + "".join(f"{counts[op_type, c]:>11}" for c in CLASSES))


def main() -> int:
    per_score_multiplies = {}
    for op in ("InhibitorAttention", "DotAttention"):
        counts = op_classes(op)
        print_listing(op, counts)
        per_score_multiplies[op] = sorted({t for (t, c), n in counts.items() if c == "per score" and t in MULTIPLIES})
    print(f"\nDotAttention applies per score: {', '.join(per_score_multiplies['DotAttention']) or 'none'} (for contrast)")
    if per_score_multiplies["InhibitorAttention"]:
        print(f"FAIL: InhibitorAttention applies {', '.join(per_score_multiplies['InhibitorAttention'])} per score")
        return 1
    print("OK: no Mul/MatMul/MatMulInteger/Div/Pow is applied per score in InhibitorAttention")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Validation of an exported model: every node lowered, integers only, ONNX checker (full check).

`validate(model)` runs the three passes and raises `ExportError` (a `UserError`) naming the node or
tensor at fault. The integer-only pass looks at the graph AND every function body, and into every
subgraph (the `Loop` body of isqrt, any If/Scan branch) of either: initializers, declared value
types, Cast/CastLike targets, Constant and tensor attributes, and finally the types onnx infers for
every tensor (subgraphs included) once the functions are inlined.
"""
from __future__ import annotations

import onnx
import onnx.inliner
from onnx import AttributeProto, GraphProto, ModelProto, NodeProto, TensorProto, ValueInfoProto

from models.errors import UserError
from quant.ir.contract import DOMAIN

INTEGER_TYPES = frozenset({
    TensorProto.INT8, TensorProto.INT16, TensorProto.INT32, TensorProto.INT64,
    TensorProto.UINT8, TensorProto.UINT16, TensorProto.UINT32, TensorProto.UINT64, TensorProto.BOOL,
})
FLOAT_ATTRS = (AttributeProto.FLOAT, AttributeProto.FLOATS)


class ExportError(UserError):
    """The model breaks the ONNX contract of docs/DESIGN.md."""


def _type_name(elem_type: int) -> str:
    return TensorProto.DataType.Name(elem_type)


def _check_value(where: str, vi: ValueInfoProto) -> None:
    if vi.type.HasField("tensor_type") and vi.type.tensor_type.elem_type not in INTEGER_TYPES | {TensorProto.UNDEFINED}:
        raise ExportError(f"{where}: tensor {vi.name!r} has type {_type_name(vi.type.tensor_type.elem_type)}; "
                          "the model must be integer-only")


def _check_node(where: str, node: NodeProto) -> None:
    label = f"{where}: node {node.name or node.op_type!r} ({node.op_type})"
    for attr in node.attribute:
        if attr.ref_attr_name:
            continue
        if node.op_type in ("Cast", "CastLike") and attr.name == "to" and attr.i not in INTEGER_TYPES:
            raise ExportError(f"{label} casts to {_type_name(attr.i)}; the model must be integer-only")
        if attr.type in FLOAT_ATTRS and node.op_type == "Constant":
            raise ExportError(f"{label} makes a float constant; the model must be integer-only")
        if attr.type == AttributeProto.TENSOR and attr.t.data_type not in INTEGER_TYPES:
            raise ExportError(f"{label} holds a {_type_name(attr.t.data_type)} tensor {attr.name!r}; "
                              "the model must be integer-only")
        for sub in (*([attr.g] if attr.type == AttributeProto.GRAPH else []), *attr.graphs):
            _check_graph(f"{label} subgraph {attr.name!r}", sub)


def _check_graph(where: str, graph: GraphProto) -> None:
    """Initializers, declared value types and nodes of `graph`, subgraphs (Loop/If/Scan bodies) included."""
    for init in graph.initializer:
        if init.data_type not in INTEGER_TYPES:
            raise ExportError(f"{where}: initializer {init.name!r} has type {_type_name(init.data_type)}; "
                              "params must be integer initializers")
    for vi in (*graph.input, *graph.output, *graph.value_info):
        _check_value(where, vi)
    for node in graph.node:
        _check_node(where, node)


def check_declared_integer_only(model: ModelProto) -> None:
    """Raise ExportError at the first float declared in the graph or in a function body (their
    subgraphs included); cheap: no shape inference."""
    _check_graph("graph", model.graph)
    for fn in model.functions:
        for node in fn.node:
            _check_node(f"function {fn.name}[{fn.overload}]", node)


def check_integer_only(model: ModelProto) -> None:
    """Raise ExportError at the first float anywhere in the graph or in a function body, declared
    or inferred after inlining the functions."""
    check_declared_integer_only(model)
    inferred = onnx.shape_inference.infer_shapes(onnx.inliner.inline_local_functions(model), strict_mode=True)
    _check_inferred("inlined graph", inferred.graph)


def _check_inferred(where: str, graph: GraphProto) -> None:
    """The inferred types of `graph` and of every subgraph of its nodes."""
    for vi in (*graph.value_info, *graph.output):
        _check_value(where, vi)
    for node in graph.node:
        for attr in node.attribute:
            for sub in (*([attr.g] if attr.type == AttributeProto.GRAPH else []), *attr.graphs):
                _check_inferred(f"{where}: node {node.name or node.op_type!r} subgraph {attr.name!r}", sub)


def check_lowerings(model: ModelProto) -> None:
    """Every node is a standard op or calls a function of this model."""
    functions = {(fn.domain, fn.name, fn.overload) for fn in model.functions}
    for node in model.graph.node:
        if node.domain in ("", "ai.onnx"):
            if not onnx.defs.has(node.op_type):
                raise ExportError(f"node {node.name!r}: {node.op_type!r} is not a standard ONNX op")
        elif (node.domain, node.op_type, node.overload) not in functions:
            raise ExportError(f"node {node.name!r}: no lowering for {node.domain}.{node.op_type} "
                              f"(overload {node.overload!r}) among the model's functions; "
                              f"export it with export.onnx_lower.to_onnx")
        elif node.domain != DOMAIN:
            raise ExportError(f"node {node.name!r}: domain {node.domain!r} is not {DOMAIN!r}")


def validate(model: ModelProto) -> None:
    """All checks of the ONNX contract; raises ExportError naming the node or tensor at fault."""
    check_lowerings(model)
    check_integer_only(model)
    try:
        onnx.checker.check_model(model, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as err:
        raise ExportError(f"onnx checker rejects the model: {err}") from err


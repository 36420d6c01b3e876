"""Lower an `IntProgram` to an integer-only ONNX model (docs/DESIGN.md, "ONNX contract").

Each semantic node becomes one node of its op_type in domain `hwsim.int` with the op's attributes,
calling a model-local function (`export.functions`) overloaded by the storage types it sees; the
data-movement ops become standard Reshape/Transpose/Gather. Params become integer initializers of
their declared storage type, declared formats travel as `metadata_props`.

The handlers live in one explicit table, `HANDLERS`; a node whose op has no entry is an error.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
from onnx import FunctionProto, ModelProto, NodeProto, TensorProto, helper, numpy_helper

from export.functions import OPSETS, build_function, overload_name
from models.errors import UserError
from quant.ir import contract, spec
from quant.ir.contract import DOMAIN, DOMAIN_VERSION
from quant.ir.program import IntProgram, Node, storage_dtype

IR_VERSION = 10
OPSET_IMPORTS = (*OPSETS, helper.make_opsetid(DOMAIN, DOMAIN_VERSION))
GRAPH_INPUT_DIMS = ("batch", "seq")


def onnx_dtype(dtype: np.dtype) -> int:
    return helper.np_dtype_to_tensor_dtype(np.dtype(dtype))


@dataclass
class _Lowering:
    """What the handlers share: the program, the storage type of every named tensor, the functions
    registered so far (keyed by (op_type, overload)) and the ONNX nodes and initializers emitted."""

    prog: IntProgram
    types: dict[str, int]
    functions: dict[tuple[str, str], FunctionProto] = field(default_factory=dict)
    nodes: list[NodeProto] = field(default_factory=list)
    initializers: list[TensorProto] = field(default_factory=list)

    def type_of(self, node: Node, tensor: str) -> int:
        if tensor not in self.types:
            raise UserError(f"node {node.name!r} ({node.op}): tensor {tensor!r} has no declared format; "
                            "add it to IntProgram.tensors")
        return self.types[tensor]

    def constant(self, name: str, values: Sequence[int]) -> str:
        self.initializers.append(numpy_helper.from_array(np.asarray(values, np.int64), name))
        return name


def _function_node(low: _Lowering, node: Node) -> None:
    """A semantic op: one `hwsim.int` node, its function overload registered once."""
    in_types = [low.type_of(node, t) for t in node.inputs]
    out_type = low.type_of(node, node.outputs[0])
    per_head = spec.per_head_names(node.op, node.attrs)
    overload = overload_name(in_types, out_type, per_head)
    if (node.op, overload) not in low.functions:
        low.functions[(node.op, overload)] = build_function(node.op, in_types, out_type, per_head)
    attrs = spec.with_defaults(node.op, node.attrs)  # every attribute written explicitly
    onnx_node = helper.make_node(node.op, list(node.inputs), list(node.outputs), name=node.name, domain=DOMAIN,
                                 **{k: _attr_value(v) for k, v in attrs.items()})
    onnx_node.overload = overload
    low.nodes.append(onnx_node)


def _attr_value(value) -> int | list[int]:
    """An attribute as ONNX writes it: an int (INT), or a per-head tuple as a list (INTS)."""
    return [int(v) for v in value] if spec.is_per_head(value) else int(value)


def _split_heads(low: _Lowering, node: Node) -> None:
    shape = low.constant(f"{node.name}/shape", [0, 0, int(node.attrs["heads"]), -1])
    mid = f"{node.name}/bnhd"
    low.nodes.append(helper.make_node("Reshape", [node.inputs[0], shape], [mid], name=f"{node.name}/reshape"))  # (B, n, H, d)
    low.nodes.append(helper.make_node("Transpose", [mid], list(node.outputs), name=node.name, perm=[0, 2, 1, 3]))  # (B, H, n, d)


def _merge_heads(low: _Lowering, node: Node) -> None:
    mid = f"{node.name}/bnhd"
    low.nodes.append(helper.make_node("Transpose", [node.inputs[0]], [mid], name=f"{node.name}/transpose", perm=[0, 2, 1, 3]))  # (B, n, H, d)
    shape = low.constant(f"{node.name}/shape", [0, 0, -1])
    low.nodes.append(helper.make_node("Reshape", [mid, shape], list(node.outputs), name=node.name))  # (B, n, D)


def _take_first(low: _Lowering, node: Node) -> None:
    index = f"{node.name}/index"
    low.initializers.append(numpy_helper.from_array(np.array(0, np.int64), index))
    low.nodes.append(helper.make_node("Gather", [node.inputs[0], index], list(node.outputs), name=node.name, axis=1))  # (B, D)


HANDLERS: dict[str, Callable[[_Lowering, Node], None]] = {
    **{op: _function_node for op in spec.COMPUTE_OPS},
    "SplitHeads": _split_heads,
    "MergeHeads": _merge_heads,
    "TakeFirst": _take_first,
}
"""IntProgram op -> handler that appends its ONNX nodes. Data-movement ops keep the storage type."""


def _check_node(low: _Lowering, node: Node) -> None:
    if node.op not in HANDLERS:
        raise UserError(f"node {node.name!r}: op {node.op!r} has no ONNX lowering; "
                        f"known ops: {', '.join(sorted(HANDLERS))}")
    op = spec.OPS[node.op]
    try:
        spec.check_attr_names(node.op, node.attrs)
        spec.check_head_attrs(node.op, node.attrs, low.prog.meta.get("heads"))
        spec.check_shifts(node.op, node.attrs)
    except ValueError as err:
        raise UserError(f"node {node.name!r} ({node.op}): {err}") from None
    if len(node.outputs) != 1:
        raise UserError(f"node {node.name!r} ({node.op}) has {len(node.outputs)} outputs; every op has one")
    if not op.computes and low.type_of(node, node.inputs[0]) != low.type_of(node, node.outputs[0]):
        raise UserError(f"node {node.name!r} ({node.op}) moves data: its output must keep the storage type "
                        f"of {node.inputs[0]!r}")


def _initializer(prog: IntProgram, name: str) -> TensorProto:
    if name not in prog.tensors:
        raise UserError(f"param {name!r} has no declared format; add it to IntProgram.tensors")
    arr = np.asarray(prog.params[name])
    dtype = storage_dtype(prog.tensors[name])
    info = np.iinfo(dtype)
    if arr.size and (arr.min() < info.min or arr.max() > info.max):
        raise UserError(f"param {name!r} holds values in [{arr.min()}, {arr.max()}] outside its storage type {dtype}")
    return numpy_helper.from_array(arr.astype(dtype), name)


def _metadata(prog: IntProgram) -> dict[str, str]:
    try:
        return contract.metadata_props(prog.tensors, prog.meta)
    except ValueError as err:
        raise UserError(f"{err}; fix IntProgram.meta") from None


def to_onnx(prog: IntProgram) -> ModelProto:
    """The integer-only ONNX model of `prog`: inputs `input_ids`, `attention_mask` int64
    [batch, seq], output `logits` int32; raises UserError naming the node for anything unlowerable."""
    types = {name: onnx_dtype(storage_dtype(info)) for name, info in prog.tensors.items()}
    types.update({name: TensorProto.INT64 for name in prog.inputs})
    low = _Lowering(prog, types)
    low.initializers.extend(_initializer(prog, name) for name in sorted(prog.params))
    for node in prog.nodes:
        _check_node(low, node)
        HANDLERS[node.op](low, node)
    for name in prog.outputs:
        if types.get(name) != TensorProto.INT32:
            raise UserError(f"output {name!r} must be declared 32-bit signed (int32 storage); the classifier uses bits=32")
    graph = helper.make_graph(
        low.nodes, "hwsim_int_encoder",
        [helper.make_tensor_value_info(n, TensorProto.INT64, list(GRAPH_INPUT_DIMS)) for n in prog.inputs],
        [helper.make_tensor_value_info(n, types[n], ["batch", "labels"]) for n in prog.outputs],
        initializer=low.initializers,
        value_info=[helper.make_tensor_value_info(o, types[o], None)
                    for node in prog.nodes for o in node.outputs if o not in prog.outputs])
    model = helper.make_model(graph, opset_imports=list(OPSET_IMPORTS), functions=list(low.functions.values()),
                              ir_version=IR_VERSION, producer_name="inhibitor-hwsim")
    helper.set_model_props(model, _metadata(prog))
    return model


def op_model(op: str, in_types: Sequence[int], out_type: int, attrs: dict[str, int | Sequence[int]],
             in_ranks: Sequence[int], out_rank: int) -> ModelProto:
    """A one-node model of semantic op `op` (inputs named as the function's, output `y`, every
    dimension dynamic): for testing a function body or a kernel on a single op. Attributes left out
    get the spec's defaults, written explicitly as `to_onnx` writes them; per-head attributes
    (sequences) are written as ints, as `to_onnx` writes them."""
    function = build_function(op, list(in_types), out_type, spec.per_head_names(op, attrs))
    node = helper.make_node(op, list(function.input), ["y"], name=op.lower(), domain=DOMAIN,
                            **{k: _attr_value(v) for k, v in spec.with_defaults(op, attrs).items()})
    node.overload = function.overload
    graph = helper.make_graph(
        [node], f"{op}_alone",
        [helper.make_tensor_value_info(n, t, [None] * r) for n, t, r in zip(function.input, in_types, in_ranks)],
        [helper.make_tensor_value_info("y", out_type, [None] * out_rank)])
    return helper.make_model(graph, opset_imports=list(OPSET_IMPORTS), functions=[function], ir_version=IR_VERSION)

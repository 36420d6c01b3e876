"""Lift an integer ONNX model written by `export.onnx_lower.to_onnx` back into an `IntProgram`.

The inverse of the lowering (docs/DESIGN.md, "ONNX contract"), so that the integer reference
(`quant.intops.reference.run_program`) can run exactly the program an exported file holds:

- each `hwsim.int` node becomes a `Node` of the same op with its integer attributes (the exporter
  writes every attribute explicitly, defaults included; an ints attribute, one value per head,
  becomes a tuple);
- the data-movement patterns the exporter emits are folded back into one node each:
  `Reshape([0, 0, H, -1]) -> Transpose(perm 0,2,1,3)` = `SplitHeads(heads=H)` (named after the
  Transpose), `Transpose(perm 0,2,1,3) -> Reshape([0, 0, -1])` = `MergeHeads` (named after the
  Reshape), `Gather(index 0, axis 1)` = `TakeFirst`;
- initializers become params (in their storage dtype), except the shape/index constants of those
  patterns; `hwsim.tensor_bits` / `_signed` / `_exp` become `tensors`, `hwsim.meta` becomes `meta`.

Anything else (another op, a pattern in another shape) is a `UserError` naming the node: a file
this module cannot lift was not written by the exporter, and the reference must not guess.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnx
from onnx import ModelProto, NodeProto, helper, numpy_helper

from models.errors import UserError
from quant.ir import contract, spec
from quant.ir.contract import DOMAIN
from quant.ir.program import IntProgram, Node, TensorInfo

HEADS_PERM = (0, 2, 1, 3)


def _load(model: ModelProto | str | os.PathLike) -> ModelProto:
    if isinstance(model, ModelProto):
        return model
    path = Path(model)
    if not path.is_file():
        raise UserError(f"model {path} not found; pass the .onnx file written by `hwsim export`")
    return onnx.load(str(path))  # external data, if any, resolves beside the file


def read_metadata(model: ModelProto, source: str = "the model") -> tuple[dict[str, TensorInfo], contract.ModelMeta]:
    """Declared tensor formats and `hwsim.meta` of an exported model (`quant.ir.contract.read_metadata`);
    UserError when absent or malformed."""
    try:
        return contract.read_metadata({p.key: p.value for p in model.metadata_props}, source)
    except ValueError as err:
        raise UserError(str(err)) from None


def int_attrs(node: NodeProto) -> dict[str, object]:
    """A node's attributes as Python ints (or tuples of ints); UserError for any other kind."""
    attrs: dict[str, object] = {}
    for attr in node.attribute:
        value = helper.get_attribute_value(attr)
        if isinstance(value, (list, tuple)):
            value = tuple(int(v) for v in value)
        elif not isinstance(value, int):
            raise UserError(f"node {node.name!r} ({node.op_type}): attribute {attr.name!r} is not an integer")
        attrs[attr.name] = value
    return attrs


class _Reader:
    """Walks the graph nodes in order, folding the exporter's patterns back into `Node`s."""

    def __init__(self, model: ModelProto) -> None:
        self.nodes = list(model.graph.node)
        self.inits = {t.name: t for t in model.graph.initializer}
        self.constants: set[str] = set()  # initializers that are pattern operands, not params
        self.out: list[Node] = []
        self.i = 0

    def const(self, node: NodeProto, name: str) -> np.ndarray:
        if name not in self.inits:
            raise UserError(f"node {node.name!r} ({node.op_type}): operand {name!r} is not a constant initializer; "
                            "the exporter writes shapes and indices as initializers")
        self.constants.add(name)
        return numpy_helper.to_array(self.inits[name])

    def peek(self) -> NodeProto | None:
        return self.nodes[self.i + 1] if self.i + 1 < len(self.nodes) else None

    def fail(self, node: NodeProto, why: str) -> UserError:
        return UserError(f"node {node.name!r} ({node.domain + '.' if node.domain else ''}{node.op_type}): {why}; "
                         "only graphs written by export.onnx_lower.to_onnx can be lifted")

    def step(self) -> None:
        node = self.nodes[self.i]
        if node.domain == DOMAIN:
            if node.op_type not in spec.COMPUTE_OPS:
                raise self.fail(node, f"unknown {DOMAIN} op; known: {sorted(spec.COMPUTE_OPS)}")
            attrs = int_attrs(node)
            try:
                spec.check_attr_names(node.op_type, attrs)
                spec.check_head_attrs(node.op_type, attrs)
            except ValueError as err:
                raise self.fail(node, str(err)) from None
            self.out.append(Node(node.op_type, node.name, tuple(node.input), tuple(node.output), attrs))
            self.i += 1
        elif node.domain in ("", "ai.onnx") and node.op_type == "Reshape":
            self._split_heads(node)
        elif node.domain in ("", "ai.onnx") and node.op_type == "Transpose":
            self._merge_heads(node)
        elif node.domain in ("", "ai.onnx") and node.op_type == "Gather":
            self._take_first(node)
        else:
            raise self.fail(node, "not an exported op")

    def _split_heads(self, reshape: NodeProto) -> None:
        shape = self.const(reshape, reshape.input[1]).tolist()
        nxt = self.peek()
        if (len(shape) != 4 or shape[:2] != [0, 0] or shape[3] != -1 or shape[2] < 1 or nxt is None
                or nxt.op_type != "Transpose" or list(nxt.input) != [reshape.output[0]]
                or tuple(int_attrs(nxt).get("perm", ())) != HEADS_PERM):
            raise self.fail(reshape, "expected Reshape([0, 0, H, -1]) followed by Transpose(perm 0,2,1,3) (SplitHeads)")
        self.out.append(Node("SplitHeads", nxt.name, (reshape.input[0],), tuple(nxt.output), {"heads": int(shape[2])}))
        self.i += 2

    def _merge_heads(self, transpose: NodeProto) -> None:
        nxt = self.peek()
        if (tuple(int_attrs(transpose).get("perm", ())) != HEADS_PERM or nxt is None or nxt.op_type != "Reshape"
                or nxt.input[0] != transpose.output[0] or self.const(nxt, nxt.input[1]).tolist() != [0, 0, -1]):
            raise self.fail(transpose, "expected Transpose(perm 0,2,1,3) followed by Reshape([0, 0, -1]) (MergeHeads)")
        self.out.append(Node("MergeHeads", nxt.name, (transpose.input[0],), tuple(nxt.output), {}))
        self.i += 2

    def _take_first(self, gather: NodeProto) -> None:
        index = self.const(gather, gather.input[1])
        if index.shape != () or int(index) != 0 or int_attrs(gather).get("axis", 0) != 1:
            raise self.fail(gather, "expected Gather(scalar index 0, axis=1) (TakeFirst)")
        self.out.append(Node("TakeFirst", gather.name, (gather.input[0],), tuple(gather.output), {}))
        self.i += 1


def from_onnx(model: ModelProto | str | os.PathLike) -> IntProgram:
    """The `IntProgram` held by an integer ONNX model (a `ModelProto` or a path); the inverse of
    `export.onnx_lower.to_onnx`: `from_onnx(to_onnx(prog))` has the same nodes, params (values; in
    storage dtype), tensors, inputs, outputs and meta as `prog`. Raises UserError on anything the
    exporter does not write."""
    model = _load(model)
    tensors, meta = read_metadata(model)
    reader = _Reader(model)
    while reader.i < len(reader.nodes):
        reader.step()
    params = {name: numpy_helper.to_array(t) for name, t in reader.inits.items() if name not in reader.constants}
    for name in params:
        if name not in tensors:
            raise UserError(f"initializer {name!r} has no declared width in hwsim.tensor_bits; re-export the model")
    inputs = tuple(vi.name for vi in model.graph.input if vi.name not in reader.inits)
    outputs = tuple(vi.name for vi in model.graph.output)
    return IntProgram(tuple(reader.out), params, tensors, inputs, outputs, meta)

"""Load an integer ONNX model (docs/DESIGN.md "ONNX contract") once into a validated `Plan`.

Validation, each failure a `SimError` that names the problem and the way out:
- every initializer, graph input/output and value_info is integer-typed;
- every node's op is in the supported set (`quant.ir.spec`: its `hwsim.int` ops that compute, and
  the standard data-movement ops of `STANDARD_OPS`); a semantic node's attributes are the op's (none
  unknown, none without a default missing; the spec's defaults fill the rest, so kernels and counters
  read every attribute from the plan) and its shifts are within the spec's ranges;
- every tensor has a declared width in `hwsim.tensor_bits` (outputs of data movement inherit the
  width of the data they move; shape/index operands are exempt), and every param fits it;
- external data files resolve inside the model's folder.

The internal accumulators of each node get a format too, `formats["node/label"]` (signed, the
node's declared accumulator width, `quant.ir.spec.acc_width`), which the executor checks.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from hwsim.sim.kernels.registry import BUILDERS, Kernel, KernelSpec
from models.errors import UserError
from quant.ir import spec
from quant.ir.contract import DOMAIN
from quant.ir.program import TensorInfo, storage_dtype

INT_TYPES = frozenset({TensorProto.INT8, TensorProto.UINT8, TensorProto.INT16, TensorProto.UINT16,
                       TensorProto.INT32, TensorProto.UINT32, TensorProto.INT64, TensorProto.UINT64})


class SimError(UserError):
    """A model or input that the simulator cannot run bit-accurately; the message says why and how to fix it."""


@dataclass(frozen=True)
class PlanNode:
    op_type: str
    name: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    attrs: Mapping[str, Any]
    kernel: Kernel


@dataclass
class Plan:
    """A loaded model: nodes in execution order, params, declared formats and metadata."""

    nodes: list[PlanNode]
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    params: dict[str, np.ndarray]
    formats: dict[str, TensorInfo]
    meta: dict[str, Any]
    source: str
    hw: Any = None
    count_cache: dict = field(default_factory=dict)

    def dtype_of(self, tensor: str) -> np.dtype:
        return storage_dtype(self.formats[tensor])


def _type_name(elem: int) -> str:
    return TensorProto.DataType.Name(elem)


def _load_model(path_or_model) -> tuple[onnx.ModelProto, str]:
    if isinstance(path_or_model, onnx.ModelProto):
        return path_or_model, "<in-memory model>"
    path = Path(path_or_model)
    if not path.is_file():
        raise SimError(f"model {path} not found; pass the .onnx file written by `hwsim export`")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as err:  # noqa: BLE001 - any parse failure is the user's file
        raise SimError(f"model {path} is not a readable ONNX file ({err}); re-export it") from None
    base = path.parent.resolve()
    for tensor in model.graph.initializer:
        if tensor.data_location != TensorProto.EXTERNAL:
            continue
        location = {e.key: e.value for e in tensor.external_data}.get("location", "")
        target = (base / location).resolve()
        if os.path.commonpath([base, target]) != str(base) or not target.is_file():
            raise SimError(f"initializer {tensor.name!r}: external data {location!r} does not resolve to a file "
                           f"inside {base}; keep the data file beside the model")
    onnx.load_external_data_for_model(model, str(base))
    return model, str(path)


def _metadata(model: onnx.ModelProto, source: str) -> tuple[dict[str, TensorInfo], dict[str, Any]]:
    from export.onnx_lift import read_metadata
    try:
        return read_metadata(model, source)
    except UserError as err:
        raise SimError(str(err)) from None


def _check_types(graph: onnx.GraphProto) -> None:
    for tensor in graph.initializer:
        if tensor.data_type not in INT_TYPES:
            raise SimError(f"initializer {tensor.name!r} is {_type_name(tensor.data_type)}: hwsim runs integer-only "
                           f"models; quantise it (export from an IntProgram)")
    for kind, values in (("input", graph.input), ("output", graph.output), ("value", graph.value_info)):
        for vi in values:
            elem = vi.type.tensor_type.elem_type
            if elem and elem not in INT_TYPES:
                raise SimError(f"graph {kind} {vi.name!r} is {_type_name(elem)}: hwsim runs integer-only models")


def _node_attrs(node: onnx.NodeProto) -> dict[str, Any]:
    from export.onnx_lift import int_attrs
    try:
        return int_attrs(node)
    except UserError as err:
        raise SimError(str(err)) from None


def _check_op(node: onnx.NodeProto) -> None:
    semantic = node.domain == DOMAIN and node.op_type in spec.COMPUTE_OPS
    standard = node.domain in ("", "ai.onnx") and node.op_type in spec.STANDARD_OPS
    if not (semantic or standard):
        raise SimError(f"unsupported op {node.domain + '.' if node.domain else ''}{node.op_type} in node "
                       f"{node.name!r}: hwsim runs {DOMAIN} ops {sorted(spec.COMPUTE_OPS)} and data movement "
                       f"{sorted(spec.STANDARD_OPS)}; export with `hwsim export` or add a kernel in hwsim/sim/kernels")


def _check_function_bodies(model: onnx.ModelProto) -> None:
    """hwsim runs its own kernels, not the bodies, but a float in a body still means the model
    breaks the integer-only contract that onnxruntime's cross-check relies on."""
    from export.checks import ExportError, check_declared_integer_only
    try:
        check_declared_integer_only(model)
    except ExportError as err:
        raise SimError(f"{err}; re-export the model with `hwsim export`") from None


def load_plan(path_or_model, hw=None) -> Plan:
    """Parse and validate an integer ONNX model into a `Plan` (see module docstring)."""
    model, source = _load_model(path_or_model)
    graph = model.graph
    _check_types(graph)
    _check_function_bodies(model)
    formats, meta = _metadata(model, source)
    params = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    inputs = tuple(vi.name for vi in graph.input if vi.name not in params)
    for name in inputs:
        if name not in formats:
            raise SimError(f"graph input {name!r} has no declared width in hwsim.tensor_bits; re-export the model")
    known = set(inputs) | set(params)
    nodes = []
    for node in graph.node:
        _check_op(node)
        name = node.name or node.output[0]
        missing = [t for t in node.input if t and t not in known]
        if missing:
            raise SimError(f"node {name!r} reads {missing} before any node writes them; the graph is not "
                           f"topologically sorted or is incomplete")
        data_moving = node.op_type in spec.STANDARD_OPS
        checked_inputs = node.input[:1] if data_moving else node.input
        for t in checked_inputs:
            if t and t not in formats:
                raise SimError(f"node {name!r} ({node.op_type}): tensor {t!r} has no declared width in "
                               f"hwsim.tensor_bits; re-export the model")
        for t in node.output:
            if t not in formats:
                if not data_moving:
                    raise SimError(f"node {name!r} ({node.op_type}): output {t!r} has no declared width in "
                                   f"hwsim.tensor_bits; re-export the model")
                formats[t] = formats[node.input[0]]
        attrs = _node_attrs(node)
        if not data_moving:
            try:
                spec.check_attr_names(node.op_type, attrs)
                spec.check_head_attrs(node.op_type, attrs, meta.get("heads"))
                spec.check_shifts(node.op_type, attrs)
            except ValueError as err:
                raise SimError(f"node {name!r} ({node.op_type}): {err}; re-export the model") from None
            attrs = spec.with_defaults(node.op_type, attrs)
        kspec = KernelSpec(node.op_type, attrs, tuple(params.get(t) for t in node.input),
                          tuple(formats[t].bits if t in formats else None for t in node.input),
                          tuple(formats[t].signed if t in formats else True for t in node.input),
                          storage_dtype(formats[node.output[0]]), formats[node.output[0]].bits)
        try:
            kernel = BUILDERS[node.op_type](kspec)
        except (ValueError, KeyError) as err:
            raise SimError(f"node {name!r} ({node.op_type}): {err}; re-export the model") from None
        for label in () if data_moving else spec.OPS[node.op_type].accumulators:
            formats[f"{name}/{label}"] = TensorInfo(spec.acc_width(node.op_type, attrs))
        nodes.append(PlanNode(node.op_type, name, tuple(node.input), tuple(node.output), attrs, kernel))
        known.update(node.output)
    _check_params(params, formats)
    outputs = tuple(vi.name for vi in graph.output)
    for name in outputs:
        if name not in known:
            raise SimError(f"graph output {name!r} is produced by no node; re-export the model")
    return Plan(nodes, inputs, outputs, params, formats, meta, source, hw)


def _check_params(params: dict[str, np.ndarray], formats: dict[str, TensorInfo]) -> None:
    for name, arr in params.items():
        if name not in formats or arr.size == 0:
            continue
        lo, hi = spec.int_range(formats[name].bits, formats[name].signed)
        if arr.min() < lo or arr.max() > hi:
            bad = arr.min() if arr.min() < lo else arr.max()
            raise SimError(f"param {name!r} holds {bad}, outside its declared {formats[name].bits}-bit range "
                           f"[{lo}, {hi}]; re-export the model")

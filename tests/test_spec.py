"""Every table of ops is the spec's (`quant.ir.spec`): a new op, or one missing from an executor,
fails here instead of in a user's run; shift ranges are enforced at export and at plan load."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from export.functions import BUILDERS as ONNX_FUNCTIONS
from export.onnx_lower import HANDLERS, to_onnx
from hwsim.counting import COUNTERS, ZERO_COST
from hwsim.graph import SimError, load_plan
from hwsim.kernels.registry import BUILDERS as KERNELS
from hwsim.energy import COMPONENT_OF_OP
from models.errors import UserError
from quant import intops
from quant.intops.synth import SynthConfig, synth_program
from quant.ir import spec
from quant.ir.program import IntProgram, Node, TensorInfo, storage_dtype

COMPUTE = set(spec.COMPUTE_OPS)


def test_the_op_set_splits_into_compute_and_data_movement():
    assert COMPUTE | set(spec.IR_DATA_MOVEMENT) == set(spec.OPS)
    assert spec.IR_DATA_MOVEMENT == {"SplitHeads", "MergeHeads", "TakeFirst"}
    assert not set(spec.STANDARD_OPS) & set(spec.OPS)


def test_reference_covers_exactly_the_spec():
    assert set(intops.OPS) == set(spec.OPS)


def test_onnx_lowering_covers_exactly_the_spec():
    assert set(ONNX_FUNCTIONS) == COMPUTE
    assert set(HANDLERS) == set(spec.OPS)


def test_hwsim_kernels_cover_exactly_the_compute_ops_and_standard_data_movement():
    assert set(KERNELS) == COMPUTE | set(spec.STANDARD_OPS)


def test_counters_cover_every_op_hwsim_or_the_ir_can_hold():
    assert set(COUNTERS) == COMPUTE
    assert ZERO_COST == set(spec.IR_DATA_MOVEMENT) | set(spec.STANDARD_OPS)


def test_report_components_cover_exactly_the_compute_ops():
    assert set(COMPONENT_OF_OP) == COMPUTE


def test_register_rejects_a_second_spec_of_an_op():
    with pytest.raises(ValueError, match="already specified"):
        spec.register(spec.OpSpec("Linear"))
    with pytest.raises(ValueError, match="not among its attributes"):
        spec.OpSpec("Bad", ("a",), shifts=("b",))


@pytest.mark.parametrize("bits, signed", [(8, True), (8, False), (16, True), (16, False), (32, True)])
def test_storage_type_and_memory_word(bits, signed):
    lo, hi = spec.int_range(bits, signed)
    dtype = storage_dtype(TensorInfo(bits, signed))
    assert np.iinfo(dtype).min <= lo and hi <= np.iinfo(dtype).max
    assert spec.word_bytes(bits) * 8 >= bits  # the hardware word holds the declared bits
    assert spec.word_bytes(bits) <= dtype.itemsize


def test_unsigned_16_bit_needs_a_wider_numpy_type_but_not_a_wider_memory_word():
    assert storage_dtype(TensorInfo(16, signed=False)).itemsize == 4
    assert spec.word_bytes(16) == 2


def _with_attr(prog: IntProgram, op: str, attr: str, value: int) -> tuple[IntProgram, str]:
    i = next(i for i, n in enumerate(prog.nodes) if n.op == op)
    node = prog.nodes[i]
    nodes = list(prog.nodes)
    nodes[i] = Node(node.op, node.name, node.inputs, node.outputs, {**node.attrs, attr: value})
    return dataclasses.replace(prog, nodes=tuple(nodes)), node.name


@pytest.mark.parametrize("op, attr, value", [("Linear", "shift", 63), ("LayerNorm", "shift", -63),
                                             ("InhibitorAttention", "z_shift", 70), ("Add", "la", -1)])
def test_export_rejects_a_shift_outside_its_range(op, attr, value):
    prog = synth_program(SynthConfig(attention="inhibitor" if op == "InhibitorAttention" else "dot"))
    bad, name = _with_attr(prog, op, attr, value)
    with pytest.raises(UserError, match=rf"node '{name}' \({op}\).*{attr}={value}"):
        to_onnx(bad)


def test_plan_loading_rejects_a_shift_outside_its_range():
    model = to_onnx(synth_program(SynthConfig()))
    node = next(n for n in model.graph.node if n.op_type == "Linear")
    next(a for a in node.attribute if a.name == "shift").i = 63
    with pytest.raises(SimError, match=rf"node '{node.name}' \(Linear\): Linear shift=63 is outside -62..62"):
        load_plan(model)

"""Every table of ops is the spec's (`quant.ir.spec`): a new op, or one missing from an executor or
from the cost model, fails here instead of in a user's run; shift ranges and attribute names are
enforced at export and at plan load."""
from __future__ import annotations

import ast
import dataclasses
import inspect
from pathlib import Path

import numpy as np
import onnx
import pytest

from export.functions import BUILDERS as ONNX_FUNCTIONS
from export.onnx_lower import HANDLERS, to_onnx
from hwsim.cost.pricing import UNITS_OF
from hwsim.cost.stages import ACC_BOUND
from hwsim.cost.stages import BUILD as STAGE_BUILD
from hwsim.sim.counting import COUNTERS, ZERO_COST
from hwsim.sim.executor import execute
from hwsim.sim.graph import SimError, load_plan
from hwsim.sim.kernels.registry import BUILDERS as KERNELS
from hwsim.cost.energy import COMPONENT_OF_OP
from models.errors import UserError
from quant import intops
from quant.intops.synth import SynthConfig, synth_program
from quant.ir import contract, spec
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


def test_spec_defaults_are_the_reference_keyword_defaults():
    """What a node may leave out means what the torch reference does without it."""
    for op, fn in intops.OPS.items():
        params = inspect.signature(fn).parameters
        keyword = {a: params[a].default for a in spec.OPS[op].attrs if params[a].default is not inspect.Parameter.empty}
        assert dict(spec.OPS[op].defaults) == keyword, op


def _linear_node(model):
    return next(n for n in model.graph.node if n.op_type == "Linear")


def test_plan_loading_rejects_an_unknown_attribute():
    model = to_onnx(synth_program(SynthConfig()))
    node = _linear_node(model)
    node.attribute.append(onnx.helper.make_attribute("rlu", 1))
    with pytest.raises(SimError, match=rf"node '{node.name}' \(Linear\): attribute \['rlu'\] is not one of "
                                       r"Linear's \['shift', 'bits', 'relu', 'acc_bits'\]"):
        load_plan(model)


def test_plan_loading_rejects_a_missing_attribute_without_default():
    model = to_onnx(synth_program(SynthConfig()))
    node = _linear_node(model)
    keep = [a for a in node.attribute if a.name != "shift"]
    del node.attribute[:]
    node.attribute.extend(keep)
    with pytest.raises(SimError, match=rf"node '{node.name}' \(Linear\): attribute \['shift'\] is missing"):
        load_plan(model)


def test_plan_loading_applies_the_spec_defaults():
    prog = synth_program(SynthConfig(layers=1))
    model = to_onnx(prog)
    for node in model.graph.node:   # leave out every attribute that holds its default
        if node.domain == contract.DOMAIN:
            defaults = spec.OPS[node.op_type].defaults
            keep = [a for a in node.attribute if not (a.name in defaults and a.i == defaults[a.name])]
            del node.attribute[:]
            node.attribute.extend(keep)
    full = load_plan(to_onnx(prog))
    bare = load_plan(model)
    assert sum(len(n.attribute) for n in model.graph.node) < sum(len(n.attrs) for n in bare.nodes)
    assert [n.attrs for n in bare.nodes] == [n.attrs for n in full.nodes]
    ids = np.arange(2 * 7).reshape(2, 7) % prog.meta["vocab_size"]
    a = execute(full, ids, np.ones_like(ids))
    b = execute(bare, ids, np.ones_like(ids))
    assert np.array_equal(a.outputs["logits"], b.outputs["logits"]) and a.counts == b.counts


# ---- the cost model (hwsim/cost) reads what an op costs from the spec alone ----------------------
def test_every_op_declares_its_cost():
    for name, op in spec.OPS.items():
        if op.computes:
            assert op.vector_passes is not None, name
        assert spec.vector_passes(name, {a: 1 for a in op.attrs}) >= 0
    for name in spec.STANDARD_OPS:
        assert spec.op_spec(name).moves == spec.STANDARD_OPS[name] and not spec.op_spec(name).stages


def test_every_declared_stage_has_loop_nests_a_bound_and_units():
    kinds = {tuple(st.kind for st in op.stages) for op in spec.OPS.values() if op.stages}
    assert kinds == set(STAGE_BUILD)
    pairs = {(st.kind, st.arith) for op in spec.OPS.values() for st in op.stages}
    assert pairs == set(ACC_BOUND)
    assert set(UNITS_OF) == set(spec.ARITHMETIC)
    assert all(op.score_bits_attr for op in spec.OPS.values() if "scores" in {st.kind for st in op.stages})


def test_an_op_without_a_cost_declaration_cannot_be_registered():
    with pytest.raises(ValueError, match="'Gelu' declares no cost"):
        spec.register(spec.OpSpec("Gelu", ("bits",)))
    assert "Gelu" not in spec.OPS
    with pytest.raises(ValueError, match="its cost follows from moves"):
        spec.OpSpec("Shuffle", moves="permute", vector_passes=1)
    with pytest.raises(ValueError, match="'Softmax' is not in the op spec"):
        spec.vector_passes("Softmax", {})
    with pytest.raises(ValueError, match="kind is one of"):
        spec.Stage("conv", "mac")


COST = Path(__file__).resolve().parents[1] / "hwsim" / "cost"
VARIANT_COLUMNS = {"table.py"}  # its inhibitor/dot ratio column waits for the variant registry (issue 19 item 3)
# the report's component of each op (COMPONENT_OF_OP), a table of ops held to the spec's compute ops above
OP_COLUMNS = {"energy.py"}


def string_literals(path: Path) -> set[str]:
    """The string literals of a module, docstrings left out."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    docs = {id(n.body[0].value) for n in ast.walk(tree)
            if isinstance(n, (ast.Module, ast.ClassDef, ast.FunctionDef)) and n.body
            and isinstance(n.body[0], ast.Expr) and isinstance(n.body[0].value, ast.Constant)}
    return {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)
            and id(n) not in docs}


@pytest.mark.parametrize("path", sorted(COST.glob("*.py")), ids=lambda p: p.name)
def test_the_cost_model_names_no_op_and_no_variant(path):
    """No table of ops or branch on an op's or a variant's name: what an op costs is its OpSpec."""
    ops = set() if path.name in OP_COLUMNS else set(spec.OPS) | set(spec.STANDARD_OPS)
    variants = set() if path.name in VARIANT_COLUMNS else {"dot", "inhibitor", "symmetric"}
    assert not string_literals(path) & (ops | variants)

"""Differential fuzzing: random small integer programs through quant.intops.reference, onnxruntime and hwsim.

Every example is exported with `export.to_onnx` (and validated), then run by all three executors.
Either intref raises OverflowError and hwsim (overflow='error') raises its documented overflow
SimError, or neither raises and every compared tensor is equal (`==`, same storage dtype) in all three.

Example counts: `HWSIM_FUZZ_PROFILE=ci` (default) runs `strategies.CI_EXAMPLES` per test,
`HWSIM_FUZZ_PROFILE=long` ten times as many. Failures found become `@example`s or tests below.
"""
from __future__ import annotations

import functools
import hashlib

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from hypothesis import assume, given
from hypothesis import strategies as st

from export import to_onnx, validate
from hwsim.sim.executor import execute
from hwsim.sim.graph import SimError, load_plan
from quant.intops.reference import run_program
from quant.intops.synth import synth_program
from tests.strategies import SINGLE_OPS, Case, ProgBuilder, load_profile, single_op_case, synth_configs, token_inputs

PROFILE = load_profile()
OVERFLOW_MESSAGE = r"outside its declared \d+-bit|beyond its \d+-bit accumulator"
_SESSIONS: dict[str, ort.InferenceSession] = {}


def _with_outputs(model: onnx.ModelProto, names: tuple[str, ...]) -> onnx.ModelProto:
    """`model` with the tensors `names` added as graph outputs (types from value_info)."""
    types = {vi.name: vi.type.tensor_type.elem_type for vi in model.graph.value_info}
    have = {o.name for o in model.graph.output}
    extra = onnx.ModelProto()
    extra.CopyFrom(model)
    for name in names:
        if name not in have:
            extra.graph.output.append(onnx.helper.make_tensor_value_info(name, types[name], None))
    return extra


def _session(model: onnx.ModelProto) -> ort.InferenceSession:
    """onnxruntime session of `model`, cached by the model's bytes (sessions take 0.1-5 s)."""
    data = model.SerializeToString()
    key = hashlib.sha1(data).hexdigest()
    if key not in _SESSIONS:
        if len(_SESSIONS) > 64:
            _SESSIONS.clear()
        _SESSIONS[key] = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    return _SESSIONS[key]


def check_three(prog, ids: np.ndarray, mask: np.ndarray, compare: tuple[str, ...], model=None) -> str:
    """Run the three executors; returns 'overflow' or 'equal' (asserting the agreement rule)."""
    model = to_onnx(prog) if model is None else model
    validate(model)
    model = _with_outputs(model, compare)
    plan = load_plan(model)
    try:
        want = run_program(prog, torch.from_numpy(ids), torch.from_numpy(mask), keep_all=True)
    except OverflowError:
        with pytest.raises(SimError, match=OVERFLOW_MESSAGE):
            execute(plan, ids, mask, overflow="error", count=False)
        return "overflow"
    got = execute(plan, ids, mask, overflow="error", count=False).outputs
    sess = _session(model)
    names = [o.name for o in sess.get_outputs()]
    ort_out = dict(zip(names, sess.run(None, {"input_ids": ids, "attention_mask": mask})))
    for name in compare:
        ref = want[name].numpy()
        assert got[name].dtype == ort_out[name].dtype, (name, got[name].dtype, ort_out[name].dtype)
        np.testing.assert_array_equal(got[name].astype(np.int64), ref, err_msg=f"hwsim != intref at {name}")
        np.testing.assert_array_equal(ort_out[name].astype(np.int64), ref, err_msg=f"onnxruntime != intref at {name}")
    return "equal"


@pytest.mark.parametrize("op", SINGLE_OPS)
@given(data=st.data())
def test_single_op(op, data):
    case: Case = data.draw(single_op_case(op), label="case")
    check_three(case.prog, case.ids, case.mask, case.compare)


@functools.lru_cache(maxsize=None)
def _synth(cfg):
    try:
        prog = synth_program(cfg)
    except ValueError:  # e.g. softmax scale too coarse for the integer exponential: not a program
        return None
    return prog, to_onnx(prog)


@given(cfg=synth_configs(), data=st.data())
def test_synth_encoder(cfg, data):
    built = _synth(cfg)
    assume(built is not None)
    prog, model = built
    ids, mask = data.draw(token_inputs(cfg.vocab, cfg.max_position), label="inputs")
    check_three(prog, ids, mask, ("logits",), model)


# ---------------------------------------------------------------- regressions found by the fuzzer

def _linear_program(x_bits: int, x_signed: bool, bias: int, emb_value: int):
    """ids -> Embed -> x = Linear(relu) -> Linear(w = 1, b = bias) -> TakeFirst -> logits, one feature."""
    p = ProgBuilder()
    word = p.param("word", np.array([[emb_value]]), 32)
    pos = p.param("pos", np.zeros((1, 1), np.int64), 2)
    emb = p.node("Embed", "emb", ("input_ids", word, pos), 32, lw=0, lp=0, lt=0)
    one, zero = p.param("x.w", np.ones((1, 1), np.int64), 2), p.param("x.b", np.zeros(1, np.int64), 32)
    x = p.node("Linear", "x", (emb, one, zero), x_bits, x_signed, shift=0, bits=x_bits + (not x_signed), relu=1)
    w, b = p.param("y.w", np.ones((1, 1), np.int64), 2), p.param("y.b", np.array([bias]), 32)
    y = p.node("Linear", "y", (x, w, b), 32, shift=0, bits=32, relu=0)
    p.node("TakeFirst", "logits", (y,), 32)
    return p.program({}), ("emb", "x", "y", "logits")


def test_accumulator_at_int32_min_fits():
    """Found by test_single_op[Linear]: acc = 0 * 1 + (-2**31) = -2**31 fits the int32 accumulator
    (intref and onnxruntime accept it) but hwsim raised 'internal accumulator ... reaches 2147483648,
    beyond the 32-bit accumulator': the executor compares the kernels' max |acc| with 2**31 - 1."""
    prog, compare = _linear_program(8, True, -(2**31), 0)
    ids = np.zeros((1, 1), np.int64)
    assert check_three(prog, ids, np.ones_like(ids), compare) == "equal"


def test_unsigned_16_bit_storage():
    """Found by test_single_op[Add]: an unsigned 16-bit tensor (a ReLU output, range [0, 65535])
    gets int16 storage from `quant.ir.program.storage_dtype`, so 34464 fits its declared width in
    intref but comes back as -31072 from hwsim and onnxruntime."""
    prog, compare = _linear_program(16, False, 0, 34464)
    ids = np.zeros((1, 1), np.int64)
    assert check_three(prog, ids, np.ones_like(ids), compare) == "equal"

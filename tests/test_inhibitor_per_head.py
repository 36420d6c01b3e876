"""InhibitorAttention with per-head `z_shift`, `alpha`, `out_shift` (docs/DESIGN.md, InhibitorAttention):
the reference, the QAT forward values, the ONNX body in onnxruntime and hwsim's kernel agree element
for element; head h equals the op with int attributes run on head h's slice; a list of equal values
equals the int; a list of the wrong length is an error naming the attribute at every consumer; whole
synthetic programs with per-head attributes export, lift, simulate and count."""
from __future__ import annotations

import itertools

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import helper

from export.checks import validate
from export.onnx_lift import from_onnx
from export.onnx_lower import onnx_dtype, op_model, to_onnx
from hwsim.sim.counting import COUNTERS, OpSite, Tally
from hwsim.sim.executor import execute
from hwsim.sim.graph import SimError, load_plan
from hwsim.sim.kernels import inhibitor as kernel
from models.errors import UserError
from quant import intops
from quant.intops.reference import run_program
from quant.intops.synth import SynthConfig, synth_program
from quant.ir import spec, widths
from quant.ir.program import IntProgram, Node
from quant.qat import stvalues
from tests.strategies import padded_batch

RNG = np.random.default_rng(11)
HEADS = 4
# per head: a negative, a zero and positive shifts; alpha 0 (disabled) in one head; out_shift < 0 in one
PER_HEAD = [
    dict(z_shift=[-1, 0, 3, 5], alpha=[0, 5, 40, 2], out_shift=[2, 0, -1, 4]),
    dict(z_shift=[2, 2, -2, 0], alpha=7, out_shift=[0, 3, 1, 1]),   # alpha one int, the others per head
    dict(z_shift=4, alpha=[3, 0, 1, 9], out_shift=1),                # only alpha per head
]


def ints(shape, bits: int) -> np.ndarray:
    """Random signed `bits`-bit values in int8/int16 storage, both ends of the range planted."""
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    a = RNG.integers(lo, hi + 1, size=shape)
    a.reshape(-1)[:2] = [lo, hi]
    return a.astype(np.int8 if bits <= 8 else np.int16)


def inputs(bits: int = 8, n: int = 9, d: int = 6):
    q, k, v = (ints((3, HEADS, n, d), bits) for _ in range(3))
    mask = np.ones((3, n), np.int64)
    mask[1, 5:] = 0  # padding
    mask[2, :] = 0  # an all-padding sequence
    return q, k, v, mask


def reference(q, k, v, mask, **attrs) -> np.ndarray:
    return intops.inhibitor_attention(*(torch.from_numpy(a) for a in (q, k, v, mask)), **attrs).numpy()


def onnxruntime_run(q, k, v, mask, **attrs) -> np.ndarray:
    out_dtype = np.int8 if attrs["bits"] <= 8 else np.int16
    model = op_model("InhibitorAttention", [onnx_dtype(a.dtype) for a in (q, k, v, mask)], onnx_dtype(out_dtype),
                     attrs, [4, 4, 4, 2], 4)
    validate(model)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    (y,) = sess.run(None, dict(zip(("q", "k", "v", "mask"), (q, k, v, mask))))
    return y.astype(np.int64)


def head_slice(attrs: dict, h: int) -> dict:
    """The int attributes of head h."""
    return {name: value[h] if spec.is_per_head(value) else value for name, value in attrs.items()}


@pytest.mark.parametrize("center,signed", list(itertools.product([0, 1], [0, 1])))
@pytest.mark.parametrize("case", range(len(PER_HEAD)))
def test_reference_onnxruntime_hwsim_agree_and_equal_the_op_per_head(center, signed, case):
    q, k, v, mask = inputs()
    attrs = {**PER_HEAD[case], "center": center, "signed": signed, "bits": 8}
    want = reference(q, k, v, mask, **attrs)
    for h in range(HEADS):
        one = reference(*(a[:, h:h + 1] for a in (q, k, v)), mask, **head_slice(attrs, h))
        assert (want[:, h:h + 1] == one).all(), h
    assert (onnxruntime_run(q, k, v, mask, **attrs) == want).all()
    for qk_absmax in (None, 1 << 14):  # int16 lanes (measured) and int64 lanes (declared wide)
        got, _ = kernel.inhibitor_attention(q, k, v, mask, **attrs, qk_absmax=qk_absmax)
        assert (got == want).all(), qk_absmax
    floats = stvalues.inhibitor_attention(*(torch.from_numpy(a.astype(np.float64)) for a in (q, k, v)),
                                          torch.from_numpy(mask), **attrs)
    assert (floats.numpy() == want).all()


@pytest.mark.parametrize("center,signed", [(0, 1), (1, 0)])
def test_wide_values_and_saturation_per_head(center, signed):
    """12-bit q, k, v (int16 storage, int64 kernel lanes); out_shift -3 in one head saturates."""
    q, k, v, mask = inputs(bits=12, n=7, d=5)
    attrs = dict(z_shift=[6, -3, 0, 1], center=center, alpha=[0, 100, 2047, 1], signed=signed,
                 out_shift=[-3, 0, 5, 9], bits=12)
    want = reference(q, k, v, mask, **attrs)
    assert (want[:, 0] == 2047).any() or (want[:, 0] == -2048).any()  # the left shift saturates head 0
    assert (onnxruntime_run(q, k, v, mask, **attrs) == want).all()
    assert (kernel.inhibitor_attention(q, k, v, mask, **attrs)[0] == want).all()
    for h in range(HEADS):
        one = reference(*(a[:, h:h + 1] for a in (q, k, v)), mask, **head_slice(attrs, h))
        assert (want[:, h:h + 1] == one).all(), h


def test_equal_values_per_head_equal_the_int():
    q, k, v, mask = inputs()
    ints_ = dict(z_shift=2, center=1, alpha=6, signed=1, out_shift=1, bits=8)
    lists = {**ints_, "z_shift": [2] * HEADS, "alpha": [6] * HEADS, "out_shift": [1] * HEADS}
    want = reference(q, k, v, mask, **ints_)
    assert (reference(q, k, v, mask, **lists) == want).all()
    assert (onnxruntime_run(q, k, v, mask, **lists) == want).all()
    assert (kernel.inhibitor_attention(q, k, v, mask, **lists)[0] == want).all()


@pytest.mark.parametrize("name,values", [("z_shift", [1, 2, 3]), ("alpha", [4]), ("out_shift", [1, 2, 3, 4, 5])])
def test_wrong_length_is_an_error_naming_the_attribute(name, values):
    """Shorter, one (which must not broadcast) or longer than the heads."""
    q, k, v, mask = inputs()
    attrs = {**dict(z_shift=1, center=1, alpha=3, signed=0, out_shift=2, bits=8), name: values}
    listed = ", ".join(map(str, values)) + ("," if len(values) == 1 else "")
    message = rf"InhibitorAttention {name} has {len(values)} values \({listed}\) for {HEADS} heads"
    with pytest.raises(ValueError, match=message):
        reference(q, k, v, mask, **attrs)
    with pytest.raises(ValueError, match=message):
        kernel.inhibitor_attention(q, k, v, mask, **attrs)
    with pytest.raises(ValueError, match=message):
        stvalues.inhibitor_attention(*(torch.from_numpy(a.astype(np.float64)) for a in (q, k, v)),
                                     torch.from_numpy(mask), **attrs)
    with pytest.raises(Exception, match="out of data bounds"):  # onnxruntime fails the run; no broadcast
        onnxruntime_run(q, k, v, mask, **attrs)


def test_per_head_only_where_the_spec_allows_it():
    with pytest.raises(ValueError, match=r"Linear shift=\(1, 2\) is a sequence"):
        spec.check_head_attrs("Linear", {"shift": (1, 2)})
    with pytest.raises(ValueError, match="InhibitorAttention bits"):
        spec.check_head_attrs("InhibitorAttention", {"bits": (8, 8)})
    with pytest.raises(ValueError, match="non-empty sequence of ints"):
        spec.check_head_attrs("InhibitorAttention", {"alpha": (1.5, 2)})
    with pytest.raises(ValueError, match=r"z_shift=\(1, 63\) is outside -62..62"):
        spec.check_shifts("InhibitorAttention", {"z_shift": (1, 63)})
    assert Node("InhibitorAttention", "a", (), (), {"alpha": [1, 2]}).attrs["alpha"] == (1, 2)


@pytest.fixture(scope="module", params=[dict(), dict(center=True, signed=True)], ids=["plain", "center-signed"])
def per_head_model(request):
    prog = synth_program(SynthConfig(attention="inhibitor", per_head=True, heads=HEADS, hidden=16, layers=2,
                                     seed=5, **request.param))
    model = to_onnx(prog)
    return prog, model, load_plan(model)


def test_synthetic_per_head_program_agrees_everywhere(per_head_model):
    prog, model, plan = per_head_model
    nodes = [node for node in prog.nodes if node.op == "InhibitorAttention"]
    for node in nodes:
        assert spec.per_head_names(node.op, node.attrs) == ("z_shift", "alpha", "out_shift")
        assert len(set(node.attrs["z_shift"])) > 1  # heads differ
    validate(model)
    widths.check(prog)
    assert from_onnx(model).nodes == prog.nodes
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(3)
    for n in (1, 6, 17):
        ids, mask = padded_batch(rng, 50, n, 3)
        want = run_program(prog, torch.from_numpy(ids), torch.from_numpy(mask))
        got = execute(plan, ids, mask)
        assert (got.outputs["logits"] == want["logits"].numpy()).all(), n
        assert (sess.run(None, {"input_ids": ids, "attention_mask": mask})[0] == want["logits"].numpy()).all(), n


def test_int_attributes_keep_the_body_of_before(per_head_model):
    """Only the per-head nodes get the per-head overload; an int attribute is still an INT."""
    prog, model, _ = per_head_model
    scalar = synth_program(SynthConfig(attention="inhibitor", heads=HEADS, hidden=16, seed=5))
    plain = to_onnx(scalar)
    (fn,) = [f for f in plain.functions if f.name == "InhibitorAttention"]
    assert fn.overload == "int8_int8_int8_int64__int8"
    assert not any(a.ref_attr_name and a.type == onnx.AttributeProto.INTS for node in fn.node for a in node.attribute)
    node = next(n for n in plain.graph.node if n.op_type == "InhibitorAttention")
    int_attrs = dict.fromkeys(spec.OPS[node.op_type].attrs, onnx.AttributeProto.INT)
    assert {a.name: a.type for a in node.attribute} == int_attrs
    (fn,) = [f for f in model.functions if f.name == "InhibitorAttention"]
    assert fn.overload == "int8_int8_int8_int64__int8__per_head_z_shift_alpha_out_shift"


def _wrong_length(model: onnx.ModelProto) -> onnx.ModelProto:
    bad = onnx.ModelProto()
    bad.CopyFrom(model)
    node = next(n for n in bad.graph.node if n.op_type == "InhibitorAttention")
    attr = next(a for a in node.attribute if a.name == "out_shift")
    attr.CopyFrom(helper.make_attribute("out_shift", [1, 2, 3]))
    return bad


def test_wrong_length_refused_at_export_and_at_load(per_head_model):
    prog, model, _ = per_head_model
    node = next(n for n in prog.nodes if n.op == "InhibitorAttention")
    short = Node(node.op, node.name, node.inputs, node.outputs, {**node.attrs, "alpha": node.attrs["alpha"][:2]})
    bad = IntProgram(tuple(short if n is node else n for n in prog.nodes), prog.params, prog.tensors,
                     prog.inputs, prog.outputs, prog.meta)
    with pytest.raises(UserError, match=rf"alpha has 2 values .* for {HEADS} heads"):
        to_onnx(bad)
    with pytest.raises(SimError, match=rf"out_shift has 3 values \(1, 2, 3\) for {HEADS} heads"):
        load_plan(_wrong_length(model))


@pytest.mark.parametrize("center,signed", [(0, 0), (1, 1)])
def test_counts_per_head_are_each_heads_counts(center, signed):
    """Arithmetic counts of a per-head site = the sum over heads of one-head sites with that head's
    int attributes, less the valid-key count of centring that runs once per sample; equal values
    per head count as the int."""
    batch, n, d = 2, 5, 8
    per_head = dict(z_shift=(-1, 0, 3, 3), center=center, alpha=(0, 5, 9, 9), signed=signed,
                    out_shift=(2, -1, 0, 0), bits=8)

    def tally(attrs: dict, heads: int) -> Tally:
        site = OpSite("InhibitorAttention", "a", attrs, [(batch, heads, n, d)] * 3 + [(batch, n)],
                      [(batch, heads, n, d)], (8, 8, 8, 64), (8,), (False,) * 4)
        t = Tally()
        COUNTERS["InhibitorAttention"](site, t)
        return t

    want = Tally()
    for h in range(HEADS):
        want.update(tally(head_slice(per_head, h), 1))
    if center:
        n_valid = Tally()
        n_valid.sum_terms((0, 1), n, batch)
        for _ in range(HEADS - 1):
            want.subtract(n_valid)
    assert tally(per_head, HEADS) == +want
    same = {**per_head, "z_shift": (3,) * HEADS, "alpha": (9,) * HEADS, "out_shift": (0,) * HEADS}
    assert tally(same, HEADS) == tally(head_slice(same, 0), HEADS)

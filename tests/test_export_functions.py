"""Each `hwsim.int` function body alone in onnxruntime == the `quant.intops` definition."""
from __future__ import annotations

import itertools
import math

import numpy as np
import onnxruntime as ort
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from export.checks import validate
from export.onnx_lower import onnx_dtype, op_model
from quant import intops
from quant.ir import spec
from quant.ir.program import TensorInfo, storage_dtype

RNG = np.random.default_rng(0)


def run_onnx(op: str, inputs: list[np.ndarray], attrs: dict[str, int], out_dtype) -> np.ndarray:
    out_rank = inputs[0].ndim + (op == "Embed")
    model = op_model(op, [onnx_dtype(a.dtype) for a in inputs], onnx_dtype(out_dtype), attrs, [a.ndim for a in inputs], out_rank)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [i.name for i in sess.get_inputs()]
    (y,) = sess.run(None, dict(zip(names, inputs)))
    assert y.dtype == out_dtype
    return y


def reference(op: str, inputs: list[np.ndarray], attrs: dict[str, int]) -> np.ndarray:
    return intops.OPS[op](*(torch.from_numpy(a) for a in inputs), **attrs).numpy()


def assert_same(op: str, inputs: list[np.ndarray], attrs: dict[str, int], bits: int = 32, signed: bool = True):
    out_dtype = storage_dtype(TensorInfo(bits, signed))
    want = reference(op, inputs, attrs)
    got = run_onnx(op, inputs, attrs, out_dtype)
    np.testing.assert_array_equal(got.astype(np.int64), want, err_msg=f"{op} {attrs}")


def ints(shape, bits: int, dtype=None, signed: bool = True) -> np.ndarray:
    """Random values of a `bits`-wide range with both ends of the range planted."""
    lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
    a = RNG.integers(lo, hi + 1, size=shape, dtype=np.int64)
    flat = a.reshape(-1)
    flat[:2] = [lo, hi][: flat.size]
    return a.astype(dtype or storage_dtype(TensorInfo(bits, signed)))


def test_one_node_models_pass_the_checks():
    cases = [("Linear", [3, 3, 6], [3, 2, 1]), ("InhibitorAttention", [3, 3, 3, 7], [4, 4, 4, 2]), ("LayerNorm", [6, 3, 6], [3, 1, 1])]
    for op, types, ranks in cases:
        validate(op_model(op, types, 3, {a: 1 for a in spec.OPS[op].attrs}, ranks, ranks[0]))


@pytest.mark.parametrize("xbits,xsigned,wbits", [(8, True, 8), (8, False, 8), (16, True, 8), (12, True, 16), (32, True, 8)])
def test_linear(xbits, xsigned, wbits):
    x = ints((2, 5, 12), xbits, signed=xsigned)
    w, b = ints((12, 7), wbits), ints((7,), 20, np.int32)
    if xbits == 32:
        x = (x.astype(np.int64) >> 12).astype(np.int32)  # keep the accumulator in int32
    for shift, bits, relu in itertools.product([-2, 0, 1, 7, 15], [4, 8, 16, 32], [0, 1]):
        assert_same("Linear", [x, w, b], {"shift": shift, "bits": bits, "relu": relu}, bits)


@pytest.mark.parametrize("xbits,xsigned", [(8, True), (4, True), (16, True), (8, False)])
def test_linear_with_channel_shifts(xbits, xsigned):
    """The fourth input s: column j requantised by `shift + s[j]` (a shift vector broadcast in the body)."""
    x, w, b = ints((2, 5, 12), xbits, signed=xsigned), ints((12, 7), 4, np.int8), ints((7,), 20, np.int32)
    s = ints((7,), spec.CHANNEL_SHIFT_BITS, signed=False)
    for shift, bits, relu in itertools.product([-3, 0, 1, 7], [4, 8, 32], [0, 1]):
        assert_same("Linear", [x, w, b, s], {"shift": shift, "bits": bits, "relu": relu}, bits)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(-(2**31), 2**31 - 1), min_size=1, max_size=16),
       st.integers(-(2**15), 2**15 - 1), st.integers(-12, 40), st.integers(1, 33))
def test_scale_channels_requant(xs, c, shift, bits):
    """Requant edges: round half up at every shift, left shifts, saturation at every width."""
    x = np.array(xs, np.int32)
    if shift < 0:
        x = (x.astype(np.int64) >> 14).astype(np.int32)  # |x * c| << -shift stays below 2**62
    assert_same("ScaleChannels", [x, np.full(x.shape[-1:], c, np.int16)], {"shift": shift, "bits": bits}, bits)


def test_add_shifts_and_mixed_types():
    a, b = ints((3, 4, 8), 8), ints((3, 4, 8), 24, np.int32)
    for la, lb in [(0, 0), (3, 0), (0, 5), (7, 6)]:
        assert_same("Add", [a, b], {"la": la, "lb": lb})


@pytest.mark.parametrize("with_type", [False, True])
def test_embed(with_type):
    word, pos, typ = ints((50, 8), 8), ints((12, 8), 8), ints((2, 8), 8)
    ids = RNG.integers(0, 50, size=(3, 7)).astype(np.int64)
    ids[0, 0], ids[1, 1] = 0, 49
    params = [word, pos, typ] if with_type else [word, pos]
    for lw, lp, lt in [(0, 0, 0), (4, 2, 1)]:
        assert_same("Embed", [ids, *params], {"lw": lw, "lp": lp, "lt": lt})


@pytest.mark.parametrize("ids", [[[3, -1]], [[3, 50]], [list(range(13))]], ids=["negative", "past_vocab", "past_positions"])
def test_embed_rejects_what_intops_rejects(ids):
    inputs = [np.array(ids, np.int64), ints((50, 8), 8), ints((12, 8), 8)]
    attrs = {"lw": 0, "lp": 0, "lt": 0}
    with pytest.raises(ValueError):
        reference("Embed", inputs, attrs)
    with pytest.raises(Exception, match="bounds|broadcast"):  # onnxruntime fails the run
        run_onnx("Embed", inputs, attrs, np.int32)


@pytest.mark.parametrize("dim", [1, 16, 33])
def test_layernorm(dim):
    x = RNG.integers(-(2**20), 2**20, size=(2, 6, dim)).astype(np.int32)
    x[0, 0] = 12345  # a constant row: variance 0
    x[0, 1] = np.where(np.arange(dim) % 2, -(2**20), 2**20 - 1)  # extremes
    x[1, 0] = RNG.integers(-3, 4, size=dim)  # tiny values: sd clamps at 1
    gamma, beta = ints((dim,), 8), ints((dim,), 22, np.int32)
    for eps, norm_frac, shift, bits in [(0, 12, 6, 8), (5, 14, 10, 8), (1000, 10, 0, 16), (1, 20, 18, 32)]:
        assert_same("LayerNorm", [x, gamma, beta], {"eps": eps, "norm_frac": norm_frac, "shift": shift, "bits": bits}, bits)


def _attention_inputs(bits=8, n=9, d=6):
    q, k, v = (ints((3, 2, n, d), bits) for _ in range(3))
    mask = np.ones((3, n), np.int64)
    mask[1, 5:] = 0  # padding
    mask[2, :] = 0  # an all-padding sequence
    return [q, k, v, mask]


@pytest.mark.parametrize("prob_bits,scale_exp", [(8, 8), (15, 10), (12, 4)])
def test_dot_attention(prob_bits, scale_exp):
    consts = intops.softmax_constants(2.0 ** -scale_exp / math.sqrt(6))
    for out_shift, bits in [(prob_bits, 8), (prob_bits - 3, 16)]:
        attrs = {**consts, "n_clip": 30, "prob_bits": prob_bits, "out_shift": out_shift, "bits": bits}
        assert_same("DotAttention", _attention_inputs(), attrs, bits)


@pytest.mark.parametrize("scale_exp", [20, 28])
def test_dot_attention_of_16_bit_scores(scale_exp):
    """16-bit q and k: the scores need a 64-bit accumulator and a score shift
    (`intops.dot_attention_attrs`), which the body applies as intops does."""
    attrs = intops.dot_attention_attrs(2.0 ** -scale_exp / math.sqrt(6), 6, 9, 16, 16, 16, 16, 30)
    assert attrs["acc_bits"] == 64 and attrs["score_shift"] > 0
    inputs = _attention_inputs(16)
    assert_same("DotAttention", inputs, {**attrs, "out_shift": 16, "bits": 16}, 16)
    scores = torch.from_numpy(inputs[0]).long() @ torch.from_numpy(inputs[1]).long().transpose(-1, -2)
    assert int(scores.abs().max()) >= 2 ** 31  # the planted extremes overflow 32 bits before the shift


@pytest.mark.parametrize("center,signed", list(itertools.product([0, 1], [0, 1])))
def test_inhibitor_attention(center, signed):
    for bits, z_shift, alpha, out_shift in [(8, 3, 0, 2), (8, 0, 5, 0), (8, -1, 40, 4), (6, 5, 2, -1)]:
        attrs = {"z_shift": z_shift, "center": center, "alpha": alpha, "signed": signed, "out_shift": out_shift, "bits": bits}
        assert_same("InhibitorAttention", _attention_inputs(bits), attrs, bits)


def test_layernorm_isqrt_of_large_variances():
    """Variances up to ~2**60 through the isqrt Loop: every one of its 32 steps matters."""
    x = RNG.integers(-(2**29), 2**29, size=(3, 5, 4)).astype(np.int32)
    x[0, 0] = [-(2**29), 2**29 - 1, -(2**29), 2**29 - 1]
    x[0, 1] = [-(2**29), 2**29 - 1, 0, 0]
    x[1, 0] = [0, 0, 0, 1]  # variance 0 -> isqrt(eps)
    gamma, beta = ints((4,), 8), ints((4,), 22, np.int32)
    for eps, norm_frac in [(0, 12), (2**40 + 3, 14), (1, 20)]:
        assert_same("LayerNorm", [x, gamma, beta], {"eps": eps, "norm_frac": norm_frac, "shift": 6, "bits": 16}, 16)


def test_bodies_stay_small():
    """onnxruntime's session creation grows faster than linearly with the inlined node count: the
    isqrt is one Loop (not 32 unrolled steps) and constants, attribute reads and casts are shared."""
    from export.functions import build_function
    from onnx import TensorProto as T

    fn = build_function("LayerNorm", [T.INT32, T.INT8, T.INT32], T.INT8)
    loops = [n for n in fn.node if n.op_type == "Loop"]
    assert len(loops) == 1 and len(loops[0].attribute[0].g.node) < 20
    assert len(fn.node) < 130
    for node in fn.node:
        if node.op_type == "Constant":
            assert sum(n.attribute == node.attribute for n in fn.node if n.op_type == "Constant") == 1

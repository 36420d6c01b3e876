"""Each Numba kernel == its `quant.intops` definition on random integers, edges included."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from hwsim.sim.kernels import elementwise, inhibitor, layernorm, matmul, requant, softmax
from quant import intops
from quant.ir.spec import int_range

RNG = np.random.default_rng(1234)


def ints(shape, bits, signed=True):
    lo, hi = int_range(bits, signed)
    x = RNG.integers(lo, hi + 1, size=shape, dtype=np.int64)
    flat = x.reshape(-1)
    if flat.size >= 2:  # always include both edges of the range
        flat[0], flat[-1] = lo, hi
    return x


def ref(fn, *args, **kw):
    tens = [torch.from_numpy(np.asarray(a)) if isinstance(a, np.ndarray) else a for a in args]
    return fn(*tens, **kw).numpy()


@pytest.mark.parametrize("shift", [-3, 0, 1, 5, 17])
@pytest.mark.parametrize("bits", [4, 8, 16, 32])
def test_requant(shift, bits):
    x = ints((257,), 40 if shift >= 0 else 24)
    x[:4] = [-(1 << max(shift, 1)), (1 << max(shift - 1, 0)), -(1 << max(shift - 1, 0)), 0]  # halves
    assert np.array_equal(requant.requant(x, shift, bits), ref(intops.requant, x, shift, bits))


def test_requant_unsigned():
    x = ints((300,), 20)
    assert np.array_equal(requant.requant(x, 4, 8, signed=False), ref(intops.requant, x, 4, 8, signed=False))


@pytest.mark.parametrize("xbits,k,relu,shift,bits", [(8, 64, 0, 9, 8), (8, 300, 1, 10, 8), (16, 96, 0, 14, 16),
                                                     (8, 768, 0, 0, 32), (24, 40, 1, 20, 8)])
def test_linear(xbits, k, relu, shift, bits):
    x, w, b = ints((3, 5, k), xbits), ints((k, 33), 8), ints((33,), 20)
    kern = matmul.LinearKernel(w, b, shift, bits, relu, x_absmax=1 << (xbits - 1))
    y, peak = kern(x)
    want = ref(intops.linear, x, w, b, shift=shift, bits=bits, relu=relu)
    assert np.array_equal(y, want)
    assert peak == requant.tc_magnitude(x @ w + b)


@pytest.mark.parametrize("xbits,k,relu,shift,bits", [(4, 64, 0, 2, 4), (8, 300, 1, 10, 8), (8, 96, 0, -1, 16)])
def test_linear_with_channel_shifts(xbits, k, relu, shift, bits):
    """Per-channel weight scales: the kernel's per-column shifts `shift + s` == `quant.intops.linear` with s."""
    x, w, b = ints((3, 5, k), xbits), ints((k, 16), 4), ints((16,), 20)
    s = ints((16,), 4, signed=False)
    kern = matmul.LinearKernel(w, b, shift + s, bits, relu, x_absmax=1 << (xbits - 1))
    y, peak = kern(x)
    assert np.array_equal(y, ref(intops.linear, x, w, b, s, shift=shift, bits=bits, relu=relu))
    assert peak == requant.tc_magnitude(x @ w + b)
    with pytest.raises(ValueError, match="outside -62..62"):
        matmul.LinearKernel(w, b, 50 + s, bits, relu, x_absmax=8)


def test_exact_matmul_int_route():
    x, w = ints((7, 50), 30), ints((50, 9), 30)  # bound above 2**53: exact int64 loop
    assert matmul.exact_float_dtype(50, 1 << 29, 1 << 29) is None
    assert np.array_equal(matmul.exact_matmul(x, w, None), x @ w)


@pytest.mark.parametrize("dim,eps,norm_frac,shift,bits", [(64, 1, 12, 10, 8), (31, 1000, 14, 8, 8), (16, 0, 30, 3, 16),
                                                           (48, 5, 8, -2, 8)])
def test_layernorm(dim, eps, norm_frac, shift, bits):
    x = ints((2, 9, dim), 20)
    x[0, 0] = 7  # constant row: variance 0
    x[0, 1] = -(1 << 19)
    g, b = ints((dim,), 8), ints((dim,), 22)
    got = layernorm.layernorm(x, g, b, eps, norm_frac, shift, bits)
    assert np.array_equal(got, ref(intops.layernorm, x, g, b, eps, norm_frac, shift, bits))


def test_isqrt_exact():
    v = np.array([0, 1, 2, 3, 4, 15, 16, 17, (1 << 52) + 1, (1 << 62) - 1, 10**18], dtype=np.int64)
    import math
    got = [layernorm.isqrt(np.int64(x)) for x in v]
    assert got == [math.isqrt(int(x)) for x in v]


def test_add_embed_scale():
    a, b = ints((2, 5, 8), 20), ints((2, 5, 8), 20)
    assert np.array_equal(elementwise.add(a, b, 3, 0), ref(intops.add, a, b, 3, 0))
    ids = RNG.integers(0, 50, size=(2, 6))
    ids[0, 0], ids[1, 5] = 0, 49
    word, pos, typ = ints((50, 8), 8), ints((10, 8), 8), ints((2, 8), 8)
    assert np.array_equal(elementwise.embed(ids, word, pos, typ, 2, 1, 0),
                          ref(intops.embed, ids, word, pos, typ, 2, 1, 0))
    assert np.array_equal(elementwise.embed(ids, word, pos, None, 0, 3), ref(intops.embed, ids, word, pos, None, 0, 3))
    c = ints((8,), 8)
    assert np.array_equal(elementwise.scale_channels(a, c, 9, 8), ref(intops.scale_channels, a, c, 9, 8))


def test_embed_errors():
    word, pos = ints((50, 8), 8), ints((4, 8), 8)
    with pytest.raises(ValueError, match="token id 50 outside the vocabulary"):
        elementwise.embed(np.array([[1, 50]]), word, pos)
    with pytest.raises(ValueError, match="token id -1"):
        elementwise.embed(np.array([[-1, 2]]), word, pos)
    with pytest.raises(ValueError, match="sequence length 5 exceeds the 4 position"):
        elementwise.embed(np.zeros((1, 5), dtype=np.int64), word, pos)


def masks(bsz, n):
    mask = np.ones((bsz, n), dtype=np.int64)
    if bsz > 1:
        mask[1, n // 2:] = 0  # padded tail
    if bsz > 2:
        mask[2, :] = 0  # all padding: rows with no valid key
    return mask


@pytest.mark.parametrize("n,d,bits,prob_bits", [(7, 8, 8, 8), (33, 16, 8, 8), (5, 4, 12, 10), (1, 8, 8, 8)])
def test_dot_attention(n, d, bits, prob_bits):
    q, k, v = (ints((3, 2, n, d), bits) for _ in range(3))
    consts = intops.softmax_constants(2.0 ** -(2 * (bits - 3)) / d ** 0.5)
    attrs = dict(consts, n_clip=30, prob_bits=prob_bits, out_shift=prob_bits, bits=bits)
    mask = masks(3, n)
    y, peaks = softmax.dot_attention(q, k, v, mask, **attrs)
    assert np.array_equal(y, ref(intops.dot_attention, q, k, v, mask, **attrs))
    assert peaks["scores"] == requant.tc_magnitude(q @ np.swapaxes(k, 2, 3))


@pytest.mark.parametrize("signed", [0, 1])
@pytest.mark.parametrize("center,alpha", [(0, 0), (1, 5), (0, 17)])
@pytest.mark.parametrize("n,d,bits,z_shift", [(9, 8, 8, 3), (40, 16, 8, 5), (6, 4, 16, 2), (3, 8, 8, -1)])
def test_inhibitor_attention(signed, center, alpha, n, d, bits, z_shift):
    q, k, v = (ints((3, 2, n, d), bits) for _ in range(3))
    attrs = dict(z_shift=z_shift, center=center, alpha=alpha, signed=signed, out_shift=2, bits=bits)
    mask = masks(3, n)
    y, peaks = inhibitor.inhibitor_attention(q, k, v, mask, **attrs)
    assert np.array_equal(y, ref(intops.inhibitor_attention, q, k, v, mask, **attrs))
    assert peaks["l1"] == int(ref(intops.l1_scores, q, k).max())
    assert peaks["h"] == requant.tc_magnitude(ref(intops.inhibit, v, _z(q, k, mask, attrs), signed))


def _z(q, k, mask, attrs):
    """Z of inhibitor steps 1-6, from the reference functions (for the H peak)."""
    a = attrs
    z = ref(intops.requant, ref(intops.l1_scores, q, k), a["z_shift"], 32)
    valid = mask[:, None, None, :] != 0
    if a["center"]:
        z = z - np.where(valid, z, 0).sum(-1, keepdims=True) // np.maximum(valid.sum(-1, keepdims=True), 1)
    big = 1 << (a["bits"] - 1)
    return np.where(valid, np.clip(z + a["alpha"], 0, big), big)


def test_accumulator_peaks_count_minus_2_31_as_32_bits():
    """An accumulator of exactly -2**31 fits 32 bits: every kernel reports its two's-complement
    magnitude 2**31 - 1, not |v| = 2**31 (which the executor would reject)."""
    x = np.array([[1, 1, 0]], dtype=np.int64)
    w = np.full((3, 2), -(1 << 30), dtype=np.int64)
    _, peak = matmul.LinearKernel(w, np.zeros(2, np.int64), 30, 8, 0, x_absmax=1)(x)
    assert peak == (1 << 31) - 1
    q = np.full((1, 1, 2, 2), -(1 << 15), dtype=np.int64)  # q . (-q) = -2 * 2**30 = -2**31
    _, peaks = softmax.dot_attention(q, -q, np.ones_like(q), np.ones((1, 2), np.int64),
                                     q_ln2=1000, b_int=1, c_int=1, n_clip=30, prob_bits=8, out_shift=0, bits=8)
    assert peaks["scores"] == (1 << 31) - 1
    v = np.full((1, 1, 2, 1), -(1 << 30), dtype=np.int64)  # two keys of -2**30, Z = 0: H = -2**31
    zeros = np.zeros_like(v)
    _, peaks = inhibitor.inhibitor_attention(zeros, zeros, v, np.ones((1, 2), np.int64), z_shift=0, center=0,
                                             alpha=0, signed=1, out_shift=0, bits=32)
    assert peaks["h"] == (1 << 31) - 1


def test_inhibitor_small_values_use_narrow_lanes_exactly():
    q, k, v = (ints((1, 3, 50, 64), 6) for _ in range(3))
    attrs = dict(z_shift=4, center=1, alpha=3, signed=0, out_shift=3, bits=6)
    mask = masks(1, 50)
    y, _ = inhibitor.inhibitor_attention(q, k, v, mask, qk_absmax=32, **attrs)
    assert np.array_equal(y, ref(intops.inhibitor_attention, q, k, v, mask, **attrs))

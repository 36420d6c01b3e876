"""quant.intops against oracles written from docs/DESIGN.md (big-int Python, direct loops, float)."""
from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from quant import intops as I
from quant.ir import spec
from quant.intops import attention as intops_attention, base as intops_base


# --- requant, saturate, isqrt ------------------------------------------------------------------

def requant_oracle(x: int, shift: int, bits: int, signed: bool) -> int:
    """DESIGN.md sentence: round half towards +inf of x / 2**shift, then saturate."""
    y = math.floor(Fraction(x, 2**shift) + Fraction(1, 2)) if shift > 0 else x * 2**-shift
    lo, hi = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2**bits - 1)
    return min(max(y, lo), hi)


@settings(max_examples=400, deadline=None)
@given(xs=st.lists(st.integers(-2**40, 2**40), min_size=1, max_size=20),
       shift=st.integers(-8, 40), bits=st.integers(2, 32), signed=st.booleans())
def test_requant_matches_oracle(xs, shift, bits, signed):
    got = I.requant(torch.tensor(xs), shift, bits, signed).tolist()
    assert got == [requant_oracle(x, shift, bits, signed) for x in xs]


@pytest.mark.parametrize("shift", [1, 2, 5, 17])
def test_requant_ties_round_up_for_both_signs(shift):
    half = 2 ** (shift - 1)
    xs = [k * 2**shift + half for k in range(-4, 4)]  # exact .5 ties
    got = I.requant(torch.tensor(xs), shift, 32).tolist()
    assert got == [k + 1 for k in range(-4, 4)]


def test_requant_edges_shift_zero_negative_and_saturation():
    x = torch.tensor([-300, -129, -128, 0, 127, 128, 300])
    assert I.requant(x, 0, 8).tolist() == [-128, -128, -128, 0, 127, 127, 127]
    assert I.requant(x, 0, 8, signed=False).tolist() == [0, 0, 0, 0, 127, 128, 255]
    assert I.requant(torch.tensor([-3, 3]), -3, 8).tolist() == [-24, 24]
    assert I.requant(torch.tensor([-(2**31) - 5, 2**31 + 5]), 0, 32).tolist() == [-(2**31), 2**31 - 1]
    with pytest.raises(ValueError):
        I.requant(x, 63, 8)


@settings(max_examples=300, deadline=None)
@given(vs=st.lists(st.one_of(st.integers(0, 2**62 - 1), st.integers(0, 2**62 - 1).map(lambda r: math.isqrt(r) ** 2 - 1).filter(lambda v: v >= 0),
                             st.integers(0, 2**31 - 1).map(lambda r: r * r), st.integers(0, 1000)),
                   min_size=1, max_size=30))
def test_isqrt_exact(vs):
    assert I.isqrt(torch.tensor(vs)).tolist() == [math.isqrt(v) for v in vs]


def test_isqrt_extremes_and_negative():
    vs = [0, 1, 2, 3, 2**62 - 1, (2**31 - 1) ** 2, (2**31 - 1) ** 2 - 1, 2**52 + 1, (2**26 + 1) ** 2 - 1]
    assert I.isqrt(torch.tensor(vs)).tolist() == [math.isqrt(v) for v in vs]
    with pytest.raises(ValueError):
        I.isqrt(torch.tensor([-1]))


# --- layernorm, linear, embed, data movement ---------------------------------------------------

@settings(max_examples=100, deadline=None)
@given(seed=st.integers(0, 2**31), dim=st.sampled_from([8, 16, 32, 64]), amp=st.integers(200, 2**20))
def test_layernorm_close_to_float(seed, dim, amp):
    """Tolerance: 1 output lsb + 2% of |ref| (floor mean, floor sqrt and the 2**30 reciprocal give a
    relative error below 1/sd <= 1/100 here; the output rounding adds half an lsb)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(-amp, amp + 1, (3, dim), generator=g)
    x = x.clamp(min=-(2**29), max=2**29)
    assume(not bool((x.double().std(-1, unbiased=False) < 100).any()))  # the tolerance needs sd >= 100
    gamma = torch.randint(-128, 128, (dim,), generator=g)  # exp 7
    beta = torch.randint(-2**18, 2**18, (dim,), generator=g)  # exp norm_frac + 7 = 19
    y = I.layernorm(x, gamma, beta, eps=1, norm_frac=12, shift=15, bits=8)  # out exp 4
    ref = torch.nn.functional.layer_norm(x.double(), (dim,), gamma.double() / 128, beta.double() / 2**19, eps=0.0)
    ref = ref.clamp(-8, 127 / 16)
    assert ((y.double() / 16 - ref).abs() <= 1 / 16 + 0.02 * ref.abs()).all()


def test_linear_relu_and_classifier():
    x = torch.tensor([[1, -2, 3]], dtype=torch.int8)
    w = torch.tensor([[1, 0], [0, 1], [2, -1]])
    b = torch.tensor([1, -10])
    assert I.linear(x, w, b, shift=0, bits=32).tolist() == [[8, -15]]
    assert I.linear(x, w, b, shift=1, bits=8, relu=1).tolist() == [[4, 0]]  # 8/2 = 4; -7.5 rounds to -7 then relu
    assert I.linear(x, w, b, shift=1, bits=8).tolist() == [[4, -7]]


@settings(max_examples=200, deadline=None)
@given(rows=st.lists(st.lists(st.integers(-2**40, 2**40), min_size=4, max_size=4), min_size=1, max_size=5),
       shifts=st.lists(st.integers(-8, 40), min_size=4, max_size=4), bits=st.integers(2, 32), signed=st.booleans())
def test_requant_channels_is_requant_per_column(rows, shifts, bits, signed):
    got = I.requant_channels(torch.tensor(rows), torch.tensor(shifts), bits, signed).tolist()
    assert got == [[requant_oracle(x, s, bits, signed) for x, s in zip(row, shifts)] for row in rows]


def test_requant_channels_refuses_bad_shifts():
    with pytest.raises(ValueError, match="outside -62..62"):
        I.requant_channels(torch.zeros(2, 3, dtype=torch.int64), torch.tensor([0, 63, 1]), 8)
    with pytest.raises(ValueError, match="give one per channel"):
        I.requant_channels(torch.zeros(2, 3, dtype=torch.int64), torch.tensor([0, 1]), 8)


@pytest.mark.parametrize("shift,bits,relu", [(3, 4, 0), (3, 4, 1), (0, 8, 0), (-2, 8, 1), (9, 16, 0)])
def test_linear_with_channel_shifts_equals_numpy_closed_form(shift, bits, relu):
    """Per-channel shifts: column j of `x @ w + b` requantised by `shift + s[j]`, written in numpy:
    floor((acc + 2**(t-1)) / 2**t) for t > 0, acc * 2**-t otherwise, clipped, then ReLU."""
    rng = np.random.default_rng(shift + 16 * bits + relu)
    x, w = rng.integers(-8, 8, (2, 3, 10)), rng.integers(-7, 8, (10, 6))
    b, s = rng.integers(-2**12, 2**12, 6), np.array([0, 1, 2, 5, 15, 0])
    acc = x @ w + b
    t = shift + s
    half = np.where(t > 0, 2 ** np.maximum(t - 1, 0), 0)
    want = np.where(t > 0, np.floor_divide(acc + half, 2 ** np.maximum(t, 0)), acc * 2 ** np.maximum(-t, 0))
    want = np.clip(want, -2 ** (bits - 1), 2 ** (bits - 1) - 1)
    want = np.maximum(want, 0) if relu else want
    got = I.linear(*(torch.from_numpy(a) for a in (x, w, b, s)), shift=shift, bits=bits, relu=relu)
    assert got.tolist() == want.tolist()
    zero = I.linear(*(torch.from_numpy(a) for a in (x, w, b, np.zeros(6, np.int64))), shift=shift, bits=bits, relu=relu)
    assert torch.equal(zero, I.linear(*(torch.from_numpy(a) for a in (x, w, b)), shift=shift, bits=bits, relu=relu))


def test_embed_and_errors():
    word, pos, typ = torch.arange(12).reshape(6, 2), torch.arange(8).reshape(4, 2) * 10, torch.tensor([[100, 200]])
    y = I.embed(torch.tensor([[5, 0, 1]]), word, pos, typ, lw=1, lp=0, lt=2)
    assert y.tolist() == [[[420, 832], [420, 832], [444, 856]]]
    with pytest.raises(ValueError, match="token id 6"):
        I.embed(torch.tensor([[6]]), word, pos)
    with pytest.raises(ValueError, match="length 5"):
        I.embed(torch.zeros(1, 5, dtype=torch.int64), word, pos)


def test_heads_roundtrip_take_first_add_scale():
    x = torch.arange(2 * 3 * 8).reshape(2, 3, 8)
    h = I.split_heads(x, 2)
    assert h.shape == (2, 2, 3, 4) and h[1, 1, 2].tolist() == x[1, 2, 4:].tolist()
    assert torch.equal(I.merge_heads(h), x)
    assert torch.equal(I.take_first(x), x[:, 0])
    assert I.add(torch.tensor([3]), torch.tensor([-1]), 2, 0).tolist() == [11]
    assert I.scale_channels(torch.tensor([[3, -3]]), torch.tensor([5, 5]), 1, 8).tolist() == [[8, -7]]
    assert set(I.OPS) == set(spec.OPS)


# --- softmax ------------------------------------------------------------------------------------

@settings(max_examples=100, deadline=None)
@given(seed=st.integers(0, 2**31), n=st.integers(1, 12), frac=st.integers(6, 12), prob_bits=st.integers(8, 15))
def test_softmax_close_to_float(seed, n, frac, prob_bits):
    """Tolerance 0.01 absolute on probabilities (i-exp's polynomial error is below 0.5%), rows sum to
    [2**pb - n_valid, 2**pb], masked keys exactly 0."""
    g = torch.Generator().manual_seed(seed)
    scale = 2.0**-frac
    s = torch.randint(-(2**frac) * 6, 2**frac * 6, (2, 1, n, n), generator=g)
    mask = (torch.rand(2, n, generator=g) < 0.7).long()
    mask[:, 0] = 1
    p = I.softmax(s, mask, **I.softmax_constants(scale), n_clip=30, prob_bits=prob_bits)
    ref = torch.softmax((s.double() * scale).masked_fill(mask[:, None, None, :] == 0, -math.inf), -1)
    assert ((p.double() / 2**prob_bits - ref).abs() <= 0.01).all()
    assert (p.masked_select(mask[:, None, None, :].expand_as(p) == 0) == 0).all()
    total, n_valid = p.sum(-1), mask.sum(-1)[:, None, None]
    assert ((total <= 2**prob_bits) & (total >= 2**prob_bits - n_valid)).all()


def test_softmax_all_padding_row_is_zero():
    s = torch.randint(-1000, 1000, (2, 1, 3, 3))
    p = I.softmax(s, torch.tensor([[0, 0, 0], [1, 0, 0]]), **I.softmax_constants(2.0**-8), n_clip=30, prob_bits=8)
    assert p[0].eq(0).all() and p[1, ..., 0].eq(255).all() and p[1, ..., 1:].eq(0).all()


def test_softmax_constants_formulas_and_errors():
    c = I.softmax_constants(0.01)
    assert c == {"q_ln2": math.floor(math.log(2) / 0.01), "b_int": math.floor(1.353 / 0.01),
                 "c_int": math.floor(0.344 / (0.3585 * 0.01**2))}
    with pytest.raises(ValueError):
        I.softmax_constants(1.0)


# --- inhibitor ----------------------------------------------------------------------------------

def inhibitor_loop(q, k, v, mask, z_shift, center, alpha, signed, out_shift, bits):
    """The 8 steps of DESIGN.md, one scalar at a time in Python ints."""
    q, k, v, mask = q.tolist(), k.tolist(), v.tolist(), mask.tolist()
    B, H, n, d = len(q), len(q[0]), len(q[0][0]), len(q[0][0][0])
    big = 2 ** (bits - 1)
    out = [[[[0] * d for _ in range(n)] for _ in range(H)] for _ in range(B)]
    for b in range(B):
        valid = [j for j in range(n) if mask[b][j]]
        for h in range(H):
            for i in range(n):
                z = [requant_oracle(sum(abs(q[b][h][i][f] - k[b][h][j][f]) for f in range(d)), z_shift, 32, True)
                     for j in range(n)]
                if center:
                    z = [zj - sum(z[j] for j in valid) // max(len(valid), 1) for zj in z]
                z = [min(max(zj + alpha, 0), big) for zj in z]
                z = [z[j] if mask[b][j] else big for j in range(n)]
                for f in range(d):
                    acc = 0
                    for j in range(n):
                        x = v[b][h][j][f]
                        if signed:
                            acc += (1 if x > 0 else -1 if x < 0 else 0) * max(abs(x) - z[j], 0)
                        else:
                            acc += max(x - z[j], 0)
                    out[b][h][i][f] = requant_oracle(acc, out_shift, bits, True)
    return out


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**31), n=st.integers(1, 6), d=st.integers(1, 4), bits=st.sampled_from([4, 8]),
       z_shift=st.integers(-1, 4), center=st.integers(0, 1), alpha=st.integers(-3, 20), signed=st.integers(0, 1),
       out_shift=st.integers(0, 4))
def test_inhibitor_equals_direct_loop(seed, n, d, bits, z_shift, center, alpha, signed, out_shift):
    g = torch.Generator().manual_seed(seed)
    lo, hi = -(2 ** (bits - 1)), 2 ** (bits - 1)
    q, k, v = (torch.randint(lo, hi, (2, 2, n, d), generator=g) for _ in range(3))
    mask = (torch.rand(2, n, generator=g) < 0.7).long()
    mask[1] = 0  # an all-padding sequence too
    args = (z_shift, center, alpha, signed, out_shift, bits)
    assert I.inhibitor_attention(q, k, v, mask, *args).tolist() == inhibitor_loop(q, k, v, mask, *args)


@pytest.mark.parametrize("signed", [0, 1])
def test_inhibitor_matches_float_formula(signed):
    """z_shift=0, alpha=0, centring off, out_shift=0: the models-style float formula (gamma/sqrt(d) = 1,
    beta = 1, padded keys scored max|V|+1, ReLU identity) on integer-valued inputs, exactly."""
    g = torch.Generator().manual_seed(3)
    q, k, v = (torch.randint(-128, 128, (2, 3, 7, 5), generator=g) for _ in range(3))
    mask = torch.tensor([[1] * 7, [1, 1, 1, 1, 0, 0, 0]])
    Q, K, V = q.double(), k.double(), v.double()
    Z = (Q[..., :, None, :] - K[..., None, :, :]).abs().sum(-1).relu()  # (B, H, n, n)
    Z = Z.masked_fill(mask[:, None, None, :] == 0, V.abs().max() + 1)[..., None]  # (B, H, n, n, 1)
    Vj = V[..., None, :, :]  # (B, H, 1, n, d)
    if signed:
        H = (Vj + (Z - Vj.relu()).abs() - (Z - (-Vj).relu()).abs()).sum(-2) / 2
    else:
        H = (Vj - Z + (Vj - Z).abs()).sum(-2) / 2
    got = I.inhibitor_attention(q, k, v, mask, 0, 0, 0, signed, 0, 32)
    assert torch.equal(got.double(), H)


def test_inhibitor_check_sees_accumulators():
    seen = {}
    q = torch.randint(-128, 128, (1, 2, 4, 8))
    I.inhibitor_attention(q, q, q, torch.ones(1, 4, dtype=torch.int64), 3, 1, 5, 1, 2, 8,
                          check=lambda label, t, bits: seen.setdefault(label, (tuple(t.shape), bits)))
    assert seen == {"l1": ((1, 2, 4, 4), 32), "h": ((1, 2, 4, 8), 32)}


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), n=st.integers(1, 9), m=st.integers(1, 9), d=st.integers(1, 12),
       bits=st.sampled_from([2, 4, 8, 12, 16]), signed=st.integers(0, 1), edge=st.booleans())
def test_l1_and_inhibit_equal_their_literal_loops(seed, n, m, d, bits, signed, edge):
    """The float64 cdist routes equal the int64 feature loops, also at the ends of each width."""
    g = torch.Generator().manual_seed(seed)
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    if edge:
        pick = lambda *shape: torch.tensor([lo, hi, 0, -1, 1])[torch.randint(5, shape, generator=g)]
    else:
        pick = lambda *shape: torch.randint(lo, hi + 1, shape, generator=g)
    q, k, v = pick(2, 3, n, d), pick(2, 3, m, d), pick(2, 3, m, d)
    z = pick(2, 3, n, m).clamp(min=0)
    assert torch.equal(intops_attention.l1_scores(q, k), intops_attention.l1_scores_literal(q, k))
    assert torch.equal(intops_attention.inhibit(v, z, signed), intops_attention.inhibit_literal(v, z, signed))


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), k=st.integers(1, 40), bits=st.sampled_from([2, 8, 16, 31]))
def test_exact_matmul_equals_int64_matmul_on_both_routes(seed, k, bits):
    """float64 route where the bound holds, int64 route where it does not (31-bit operands, K >= 2)."""
    g = torch.Generator().manual_seed(seed)
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    a = torch.randint(lo, hi + 1, (2, 3, k), generator=g)
    b = torch.randint(lo, hi + 1, (2, k, 5), generator=g)
    a[0, 0, 0], b[0, 0, 0] = lo, lo  # the extreme product
    assert torch.equal(intops_base.exact_matmul(a, b), a @ b)

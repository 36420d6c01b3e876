"""Integer attention ops of docs/DESIGN.md: I-BERT softmax, `DotAttention`, `InhibitorAttention`.

Shapes: q, k, v [B, H, n, d]; mask int64 [B, n] (1 = valid key, 0 = padding); scores [B, H, n, n]
(query i, key j). All arithmetic is exact int64; see each docstring for widths and rounding.

Decisions where DESIGN.md is silent:
- A softmax row with no valid key (all-padding sequence) has `sum e = 0`; its probabilities are
  all 0 (the divisor is taken as max(sum e, 1)). Likewise inhibitor centring divides by
  `max(n_valid, 1)`. Such rows only occur for all-padding sequences.
- Padded *query* rows are computed like any other row (not zeroed); only keys are masked.
- `softmax_constants` raises ValueError when `q_ln2 = floor(ln2 / S) < 1` (scores too coarse
  for the integer exponential).
- Inhibitor step 2 is the literal `requant(L, z_shift, 32)`, including the 32-bit saturation;
  for `z_shift >= 0` it cannot trigger because L already fits 32 bits.
- Internal accumulators passed to `check`: `scores` (`q @ k^T`) and `pv` (`P @ v`) in DotAttention
  (signed `acc_bits`, 32 or 64); `l1` (L) and `h` (H) in InhibitorAttention (signed 32-bit). The
  softmax's own intermediates (`e`, `e * 2**prob_bits`, `sum e`) are int64, proven to fit by the
  width analysis (`quant.ir.widths`) that `dot_attention_attrs` runs when it picks the attributes.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch

from quant.intops.base import (EXACT_F64, Check, acc_bits_for, as_i64, check_acc_bits, exact_matmul, floor_div, requant,
                               requant_heads)
from quant.ir import spec, widths


def softmax_constants(scale: float) -> dict[str, int]:
    """Lowering-time constants of the integer softmax for scores of real scale `S = scale`:
    `q_ln2 = floor(ln2 / S)`, `b_int = floor(1.353 / S)`, `c_int = floor(0.344 / (0.3585 * S**2))`.
    The only float arithmetic of the integer softmax; the op itself gets these as int attrs.

    >>> softmax_constants(2.0 ** -10)
    {'q_ln2': 709, 'b_int': 1385, 'c_int': 1006164}
    """
    if not scale > 0:
        raise ValueError(f"softmax scale {scale} must be positive")
    q_ln2 = math.floor(math.log(2.0) / scale)
    if q_ln2 < 1:
        raise ValueError(f"softmax scale {scale} > ln2: scores too coarse for the integer exponential; keep more fractional bits in q and k")
    return {"q_ln2": q_ln2, "b_int": math.floor(1.353 / scale), "c_int": math.floor(0.344 / (0.3585 * scale * scale))}


def int_exp(x, q_ln2: int, b_int: int, c_int: int, n_clip: int) -> torch.Tensor:
    """I-BERT i-exp of `x <= 0` (scores minus the row maximum), up to the common factor
    `0.3585 * S**2`: `x = max(x, -n_clip * q_ln2)`; `z = floor(-x / q_ln2)`; `p = x + z * q_ln2`
    (in (-q_ln2, 0]); `e = ((p + b_int)**2 + c_int) >> z` (floor shift). Output >= 0, at most
    `b_int**2 + c_int` (about `2.8 / S**2`)."""
    x = as_i64(x).clamp(min=-n_clip * q_ln2)
    z = floor_div(-x, q_ln2)
    p = x + z * q_ln2
    return ((p + b_int) * (p + b_int) + c_int) >> z


def softmax(s, mask, q_ln2: int, b_int: int, c_int: int, n_clip: int, prob_bits: int) -> torch.Tensor:
    """Integer softmax over the last axis (keys) of scores `s` [B, H, n, n] with key mask [B, n]:
    `m = max over valid keys of s`; `e = int_exp(s - m)`; `e = 0` on masked keys;
    `P = min(floor(e * 2**prob_bits / sum e), 2**prob_bits - 1)`: unsigned `prob_bits`, exp
    `prob_bits`. Masked keys get exactly 0; each row sums to at most `2**prob_bits`."""
    s = as_i64(s)
    valid = as_i64(mask)[:, None, None, :] != 0  # (B, 1, 1, n_keys)
    low = torch.iinfo(torch.int64).min
    m = s.masked_fill(~valid, low).amax(-1, keepdim=True)
    m = torch.where(m == low, 0, m)  # rows without a valid key: any m gives e = 0 below
    e = int_exp((s - m).masked_fill(~valid, 0), q_ln2, b_int, c_int, n_clip).masked_fill(~valid, 0)
    total = e.sum(-1, keepdim=True).clamp(min=1)
    return floor_div(e * (1 << prob_bits), total).clamp(max=(1 << prob_bits) - 1)


def dot_attention(q, k, v, mask, q_ln2: int, b_int: int, c_int: int, n_clip: int, prob_bits: int,
                  out_shift: int, bits: int, score_shift: int = 0, acc_bits: int = 32,
                  check: Check | None = None) -> torch.Tensor:
    """DESIGN row `DotAttention`: `s = q @ k^T` (signed `acc_bits`-bit accumulator, 32 or 64; no
    scaling: 1/sqrt(d) lives in the softmax constants); `s = requant(s, score_shift, 32)` (round half
    up, saturating; a lowering picks the shift that proves the saturation never acts,
    `dot_attention_attrs`, so with the default shift 0 and a 32-bit accumulator s is unchanged); `P = softmax(s, mask, ...)` (constants for the
    shifted scores' scale); `y = requant(P @ v, out_shift, bits)` (signed, round half up,
    saturating; P @ v in the same `acc_bits` accumulator), shape [B, H, n, d]."""
    check_acc_bits(acc_bits)
    q, k, v = as_i64(q), as_i64(k), as_i64(v)
    s = exact_matmul(q, k.transpose(-1, -2))  # (B, H, n, n)
    if check is not None:
        check("scores", s, acc_bits)
    s = requant(s, score_shift, 32)
    p = softmax(s, mask, q_ln2, b_int, c_int, n_clip, prob_bits)
    pv = exact_matmul(p, v)  # (B, H, n, d)
    if check is not None:
        check("pv", pv, acc_bits)
    return requant(pv, out_shift, bits)


COARSE_Q_LN2 = 16
"""Scores coarser than ln2 / 16 per step (4-bit q and k of a wide range) are shifted left until the
integer exponential has at least 16 steps per ln2."""


def dot_attention_attrs(scale: float, head_dim: int, max_keys: int, q_bits: int, k_bits: int, v_bits: int,
                        prob_bits: int, n_clip: int) -> dict[str, int]:
    """The width-proven attributes of a DotAttention node whose raw scores `q @ k^T` have real scale
    `scale` (`2**-(exp_q + exp_k) / sqrt(d)`): `acc_bits`, the smallest of 32/64 holding the scores
    and P @ v (`quant.ir.widths.dot_bounds`); `score_shift`, the smallest shift >= 0 after which the
    scores provably fit 32 bits and every softmax intermediate int64, or, for scores coarser than
    the integer exponential takes (`scale > ln2`, where the softmax had no integer form), the fewest
    left shifts (negative) giving `q_ln2 >= COARSE_Q_LN2`; the softmax constants of the shifted scale
    `scale * 2**score_shift`. Up to 12-bit scores of a scale below ln2 the attributes are those of
    before (`score_shift` 0, `acc_bits` 32). `quant.ir.widths.WidthError` when no shift or
    accumulator holds them.

    >>> dot_attention_attrs(2.0 ** -10, 32, 512, 8, 8, 8, 8, 30)
    {'q_ln2': 709, 'b_int': 1385, 'c_int': 1006164, 'n_clip': 30, 'prob_bits': 8, 'score_shift': 0, 'acc_bits': 32}
    >>> dot_attention_attrs(1.0, 16, 64, 4, 4, 4, 4, 30)["score_shift"]
    -5
    """
    bounds = widths.dot_bounds({"q_ln2": 1, "b_int": 0, "c_int": 0, "prob_bits": prob_bits}, head_dim, max_keys,
                               q_bits, k_bits, v_bits)
    top = max(bounds["scores"], bounds["pv"])
    if widths.bits_for(top) > 64:
        raise widths.WidthError(f"DotAttention at q {q_bits}, k {k_bits}, v {v_bits} bits, d {head_dim}: its "
                                f"accumulators need {widths.bits_for(top)} bits, more than 64; lower the attention widths")
    acc = acc_bits_for(-top, top)
    coarse = scale > math.log(2.0)
    shifts = range(-1, -31, -1) if coarse else range(0, 63)
    for shift in shifts:
        try:
            consts = softmax_constants(scale * 2.0 ** shift)
        except ValueError:  # still coarser than ln2 (shifting left), or shifted too far right: no integer exponential
            if coarse:
                continue
            break
        if coarse and consts["q_ln2"] < COARSE_Q_LN2:
            continue
        attrs = {**consts, "n_clip": n_clip, "prob_bits": prob_bits, "score_shift": shift, "acc_bits": acc}
        if widths.dot_softmax_fits(attrs, head_dim, max_keys, q_bits, k_bits, v_bits):
            return attrs
    raise widths.WidthError(f"DotAttention at q {q_bits}, k {k_bits} bits, d {head_dim}, {max_keys} keys, score scale "
                            f"{scale:g}: no score shift keeps the integer softmax within 32-bit scores and 64-bit sums; "
                            f"lower the attention widths")


# Exactness of the float64 routes below: each term |a - b| is a non-negative integer at most
# max|a| + max|b|, so with K terms every partial sum is at most K (max|a| + max|b|); below 2**53 float64
# holds each exactly whatever the summation order. Beyond that bound the literal int64 loops run.


def _exact_cdist(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor | None:
    """`sum_k |a_ik - b_jk|` for int64 a [..., n, K], b [..., m, K] in float64, or None when the
    bound above does not prove it exact."""
    if not a.numel() or not b.numel():
        return None
    if a.shape[-1] * (int(a.abs().max()) + int(b.abs().max())) >= EXACT_F64:
        return None
    return torch.cdist(a.double(), b.double(), p=1).round().long()


def l1_scores(q, k) -> torch.Tensor:
    """Inhibitor step 1: `L_ij = sum_k |q_ik - k_jk|` [B, H, n, n] (needs `bits + 1 + ceil(log2 d)`
    bits). Computed as an exact float64 L1 distance (torch.cdist) where provably exact, else by
    `l1_scores_literal`, the feature loop it is tested equal to. Memory O(n*n) per head."""
    q, k = as_i64(q), as_i64(k)
    out = _exact_cdist(q, k)
    return l1_scores_literal(q, k) if out is None else out


def l1_scores_literal(q, k) -> torch.Tensor:
    """`l1_scores` as written: a loop over the d features, int64 throughout."""
    q, k = as_i64(q), as_i64(k)
    out = torch.zeros(q.shape[:-1] + (k.shape[-2],), dtype=torch.int64)
    for f in range(q.shape[-1]):
        out += (q[..., :, None, f] - k[..., None, :, f]).abs()  # (B, H, n, n)
    return out


def inhibit(v, z, signed: int) -> torch.Tensor:
    """Inhibitor step 7 on v [B, H, n, d] and Z [B, H, n, n] (Z >= 0):
    unsigned `H_ik = sum_j max(v_jk - Z_ij, 0)`; signed `H_ik = sum_j sign(v_jk) * max(|v_jk| - Z_ij, 0)`.
    Computed through the per-term identities (exact in integers, each numerator even):
    `max(v - z, 0) = (v - z + |z - v|) / 2` and, for z >= 0,
    `sign(v) max(|v| - z, 0) = (v + |z - max(v, 0)| - |z - max(-v, 0)|) / 2`,
    whose sums over j are L1 distances between rows of Z and columns of v (`_exact_cdist`;
    `inhibit_literal` where the float64 bound fails).
    `inhibit_literal` is the feature loop it is tested equal to. Memory O(n*n) per head."""
    v, z = as_i64(v), as_i64(z)
    v_sum = v.sum(-2, keepdim=True)  # (B, H, 1, d)
    if signed:
        pos = _exact_cdist(z, v.clamp(min=0).transpose(-1, -2))  # (B, H, n, d)
        neg = _exact_cdist(z, (-v).clamp(min=0).transpose(-1, -2))
        if pos is None or neg is None:
            return inhibit_literal(v, z, signed)
        twice = v_sum + pos - neg
    else:
        dist = _exact_cdist(z, v.transpose(-1, -2))
        if dist is None:
            return inhibit_literal(v, z, signed)
        twice = v_sum - z.sum(-1, keepdim=True) + dist
    return twice // 2  # exact: twice is even


def inhibit_literal(v, z, signed: int) -> torch.Tensor:
    """`inhibit` as written: a loop over the d features, int64 throughout."""
    v, z = as_i64(v), as_i64(z)
    out = torch.empty(v.shape[:-2] + (z.shape[-2], v.shape[-1]), dtype=torch.int64)
    for f in range(v.shape[-1]):
        vf = v[..., None, :, f]  # (B, H, 1, n_keys)
        if signed:
            term = torch.sign(vf) * (vf.abs() - z).clamp(min=0)
        else:
            term = (vf - z).clamp(min=0)
        out[..., f] = term.sum(-1)
    return out


def inhibitor_attention(q, k, v, mask, z_shift: int | Sequence[int], center: int, alpha: int | Sequence[int],
                        signed: int, out_shift: int | Sequence[int], bits: int,
                        check: Check | None = None) -> torch.Tensor:
    """DESIGN row `InhibitorAttention` (the 8 steps of DESIGN.md, in this order):
    1. `L = l1_scores(q, k)` (int32 accumulator); 2. `Z = requant(L, z_shift, 32)`;
    3. if `center`: `Z -= floor(sum_{j valid} Z_ij / n_valid)` per row;  4. `Z += alpha`;
    5. `Z = clamp(Z, 0, 2**(bits-1))`;  6. `Z = 2**(bits-1)` on masked keys;
    7. `H = inhibit(v, Z, signed)` (int32 accumulator);  8. `y = requant(H, out_shift, bits)`.
    q, k share one format, Z and v another (`bits` wide); output [B, H, n, d].

    `z_shift`, `alpha` and `out_shift` are each one int for every head or a sequence of H ints
    (H = q.shape[1]): head h then runs the 8 steps with `z_shift[h]`, `alpha[h]`, `out_shift[h]`
    (`requant_heads`: the same rounding and saturation per head). ValueError naming the attribute
    when a sequence does not hold one value per head."""
    heads = as_i64(q).shape[1]
    for name, value in (("z_shift", z_shift), ("alpha", alpha), ("out_shift", out_shift)):
        spec.head_values("InhibitorAttention", name, value, heads)  # raises unless one per head
    valid = as_i64(mask)[:, None, None, :] != 0  # (B, 1, 1, n_keys)
    big = 1 << (bits - 1)
    lsum = l1_scores(q, k)
    if check is not None:
        check("l1", lsum, 32)
    z = requant_heads(lsum, z_shift, 32)
    if center:
        n_valid = valid.sum(-1, keepdim=True).clamp(min=1)
        z = z - floor_div(z.masked_fill(~valid, 0).sum(-1, keepdim=True), n_valid)
    if spec.is_per_head(alpha):
        alpha = torch.tensor(alpha, dtype=torch.int64).view(1, heads, 1, 1)  # (1, H, 1, 1)
    z = (z + alpha).clamp(min=0, max=big).masked_fill(~valid, big)
    h = inhibit(v, z, signed)
    if check is not None:
        check("h", h, 32)
    return requant_heads(h, out_shift, bits)

"""Forward values of the straight-through integer ops in training (docs/QUANT.md), computed in
floating point: the same integers as `quant.intops`, without int64 chains or (n, n, d) loops.

Every function takes float tensors holding integers and returns a float64 tensor holding exactly the
integers the `quant.intops` op of the same name returns. Exactness: integers and their sums and
products are exact in floating point while below 2**24 (float32) or 2**53 (float64), multiplying by a
power of two is always exact, and for integers |a| < 2**53, b >= 1, `floor(a / b)` of the rounded
quotient is the floor division (the rounding error, below |a/b| * 2**-53, is smaller than 1/b, the
distance from a non-integer quotient to the nearest integer). Each function picks float32 only where
its bound, derived from the declared widths, holds; where even float64 is not exact (LayerNorm of a
very wide input, softmax constants of 16-bit scores) it calls the `quant.intops` op itself.

Used in training only: in eval mode `quant.qat.modules` calls `quant.intops`, so the eval forward (and
`lower`'s exactness, docs/QUANT.md) does not depend on this module.
"""
from __future__ import annotations

from typing import Sequence

import torch

from quant import intops
from quant.ir import spec

F32, F64 = 2 ** 24, 2 ** 53


def exact_dtype(bound: int) -> torch.dtype:
    """float32 when every integer of a computation stays below `bound` < 2**24, else float64."""
    return torch.float32 if bound < F32 else torch.float64


def requant(x: torch.Tensor, shift: int, bits: int) -> torch.Tensor:
    """`intops.requant` (round half up, saturate to signed `bits`) on a float tensor of integers
    with |x| + 2**(shift-1) below 2**53 (float64) or 2**24 (float32). Returns float64."""
    lo, hi = intops.int_range(bits)
    y = x.to(torch.float64, copy=True)
    if shift > 0:
        y.add_(2.0 ** (shift - 1)).mul_(2.0 ** -shift).floor_()
    elif shift < 0:
        y.mul_(2.0 ** -shift)
    return y.clamp_(lo, hi)


def requant_heads(x: torch.Tensor, shifts: int | Sequence[int], bits: int) -> torch.Tensor:
    """`intops.requant_heads` on a float tensor of integers x [B, H, ...]: an int shift is `requant`;
    a sequence of H ints requantises head h by `shifts[h]` with the same rounding (add `2**(shift-1)`,
    multiply by `2**-shift`, floor; exact below 2**53) and saturation to signed `bits`. Returns float64."""
    if not isinstance(shifts, (list, tuple)):
        return requant(x, shifts, bits)
    lo, hi = intops.int_range(bits)
    s = torch.tensor(shifts, dtype=torch.float64).view(1, len(shifts), *([1] * (x.dim() - 2)))  # (1, H, 1, ...)
    half = torch.where(s > 0, torch.exp2(s - 1), 0.0)  # 2**(shift-1), 0 for shift <= 0 (x * 2**-shift is whole)
    return (x.double() + half).mul_(torch.exp2(-s)).floor_().clamp_(lo, hi)


def layernorm(x: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor, eps: int, norm_frac: int, shift: int,
              bits: int) -> torch.Tensor:
    """`intops.layernorm` on float64 integers x [..., D]. Exact while every row's `sum c**2 < 2**52`
    (checked; else the int64 op runs): then each `c**2` and partial sum is exact; `|c * inv|` stays
    below `sqrt(2 D) * 2**31`; per-row steps (v, isqrt, inv) run in int64 on [..., 1]."""
    dim = x.shape[-1]
    m = torch.floor(x.sum(-1, keepdim=True) / dim)  # |sum x| < D * 2**31 < 2**53
    c = x - m
    sq = torch.linalg.vecdot(c, c).unsqueeze(-1)  # (..., 1)
    if sq.numel() and float(sq.amax()) >= 2 ** 52:
        return intops.layernorm(x.long(), gamma, beta, eps, norm_frac, shift, bits).double()
    v = intops.floor_div(sq.long(), dim)
    sd = intops.isqrt(v + eps).clamp(min=1)
    inv = intops.floor_div(torch.full_like(sd, 1 << 30), sd).double()
    nrm = requant(c.mul_(inv), 30 - norm_frac, 32)
    return requant(nrm.mul_(gamma.double()).add_(beta.double()), shift, bits)


def scale_channels(x: torch.Tensor, c: torch.Tensor, shift: int, bits: int) -> torch.Tensor:
    """`intops.scale_channels`: |x * c| < 2**31 (two 16-bit operands at most), exact in float64."""
    return requant(x.double() * c.double(), shift, bits)


def softmax(s: torch.Tensor, mask: torch.Tensor, q_ln2: int, b_int: int, c_int: int, n_clip: int,
            prob_bits: int) -> torch.Tensor:
    """`intops.softmax` on float integer scores [B, H, n, n]. i-exp values are at most
    `e_max = b_int**2 + c_int` (p + b_int in (0, b_int]); exact in float64 while
    `max(n, 2**prob_bits) * e_max < 2**53`, else the int64 op runs."""
    n = s.shape[-1]
    if max(n, 1 << prob_bits) * (b_int * b_int + c_int) >= F64:
        return intops.softmax(s.long(), mask, q_ln2, b_int, c_int, n_clip, prob_bits).double()
    s = s.double()
    masked = mask[:, None, None, :] == 0  # (B, 1, 1, n_keys)
    m = s.masked_fill(masked, float("-inf")).amax(-1, keepdim=True)
    m = torch.where(torch.isinf(m), 0.0, m)  # rows without a valid key: any m gives e = 0
    x = (s - m).masked_fill_(masked, 0.0).clamp_(min=-n_clip * q_ln2)
    z = torch.floor(x / -q_ln2)
    p = x.addcmul_(z, torch.tensor(float(q_ln2), dtype=torch.float64)).add_(b_int)  # p + b_int
    e = p.mul_(p).add_(c_int).mul_(torch.exp2(z.neg_())).floor_().masked_fill_(masked, 0.0)
    total = e.sum(-1, keepdim=True).clamp_(min=1)
    return e.mul_(2.0 ** prob_bits).div_(total).floor_().clamp_(max=(1 << prob_bits) - 1)


def dot_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor, q_ln2: int,
                  b_int: int, c_int: int, n_clip: int, prob_bits: int, out_shift: int, bits: int,
                  score_shift: int = 0, acc_bits: int = 32, scores: torch.Tensor | None = None) -> torch.Tensor:
    """`intops.dot_attention` on float integers q, k, v [B, H, n, d] (signed `bits` wide). `scores`:
    `q @ k^T` when the caller already has it exactly. Products run in float32 where
    `d * 2**(2 bits - 2)` (scores) and `n * 2**(prob_bits + bits - 1)` (P @ v) stay below 2**24, else
    float64 (exact below 2**53: the scores of two 16-bit operands over d <= 2**22 terms); the score
    shift is `requant(., score_shift, 32)` as in `intops` (skipped where the declared 32-bit
    accumulator already holds the scores, so it is the identity)."""
    n, d = k.shape[-2], k.shape[-1]
    if scores is None:
        dt = exact_dtype(d << (2 * bits - 2))
        scores = q.to(dt) @ k.to(dt).transpose(-1, -2)  # (B, H, n, n)
    if score_shift or acc_bits > 32:  # else the 32-bit accumulator already holds the scores
        scores = requant(scores, score_shift, 32)
    p = softmax(scores, mask, q_ln2, b_int, c_int, n_clip, prob_bits)
    dt = exact_dtype(n << (prob_bits + bits - 1))
    return requant(p.to(dt) @ v.to(dt), out_shift, bits)  # (B, H, n, d)


def inhibitor_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor,
                        z_shift: int | Sequence[int], center: int, alpha: int | Sequence[int], signed: int,
                        out_shift: int | Sequence[int], bits: int) -> torch.Tensor:
    """`intops.inhibitor_attention` on float integers q, k, v [B, H, n, d] (signed `bits` wide);
    `z_shift`, `alpha`, `out_shift` one int or H ints, one per head, as there (`requant_heads`).

    L = cdist(q, k, p=1) (at most `d * 2**bits`). With Z in [0, 2**(bits-1)], max(a, 0) = (a + |a|) / 2
    turns step 7 into L1 distances between rows of Z and columns of v (no (n, n, d) tensor):
    unsigned `H = (sum_j v - sum_j Z + cdist(Z, v^T)) / 2`; signed, with v+ = max(v, 0), v- = max(-v, 0),
    `H = (sum_j v + cdist(Z, v+^T) - cdist(Z, v-^T)) / 2`; every term is at most `n * 2**bits`."""
    n, d, heads = k.shape[-2], k.shape[-1], q.shape[1]
    for name, value in (("z_shift", z_shift), ("alpha", alpha), ("out_shift", out_shift)):
        spec.head_values("InhibitorAttention", name, value, heads)  # raises unless one per head
    dt = exact_dtype(d << bits)
    l1 = torch.cdist(q.to(dt), k.to(dt), p=1)  # (B, H, n, n)
    z = requant_heads(l1, z_shift, 32)
    valid = (mask[:, None, None, :] != 0).double()  # (B, 1, 1, n_keys)
    if center:
        n_valid = valid.sum(-1, keepdim=True).clamp_(min=1)
        z.sub_(torch.floor((z * valid).sum(-1, keepdim=True) / n_valid))
    if spec.is_per_head(alpha):
        alpha = torch.tensor(alpha, dtype=torch.float64).view(1, heads, 1, 1)  # (1, H, 1, 1)
    big = float(1 << (bits - 1))
    z = z.add_(alpha).clamp_(0, big).masked_fill_(valid == 0, big)
    dt = exact_dtype(n << (bits + 1))
    z, v = z.to(dt), v.to(dt)
    if signed:
        h = v.sum(-2, keepdim=True) + torch.cdist(z, v.clamp(min=0).transpose(-1, -2), p=1) \
            - torch.cdist(z, v.neg().clamp_(min=0).transpose(-1, -2), p=1)  # (B, H, n, d)
    else:
        h = v.sum(-2, keepdim=True) - z.sum(-1, keepdim=True) + torch.cdist(z, v.transpose(-1, -2), p=1)
    return requant_heads(h.double().mul_(0.5), out_shift, bits)

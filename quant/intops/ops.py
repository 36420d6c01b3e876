"""THE integer op definitions (docs/DESIGN.md, "The op set"): pure functions on torch int64.

Every function accepts any integer dtype, computes in int64 and returns int64. Each docstring
states widths, rounding and saturation; the ONNX function bodies (`export/functions.py`) and the
Numba kernels (`hwsim/sim/kernels/`) cite these definitions and are tested `==` against them.

Conventions (DESIGN.md "Rounding and saturation"):
- `requant`: round half towards +inf (add `2**(shift-1)`, arithmetic right shift), left shift for
  negative shifts, then saturate. Division by a run-time value is floor division.
- Accumulators never saturate here; `quant.intops.reference` checks them against their declared widths.
  Ops that hold an internal accumulator (Linear, DotAttention, InhibitorAttention) accept an
  optional `check(label, tensor, bits)` callback that is called on it before requantisation.
  `Linear` declares its accumulator width in the attribute `acc_bits` (32 or 64, default 32:
  programs written before the attribute existed keep their meaning); `linear_acc_bits` is the
  choice a lowering makes from declared widths. DotAttention declares `acc_bits` too
  (`quant.intops.dot_attention_attrs`); the inhibitor's accumulators are 32 bits.
- int64 headroom: every intermediate below stays under 2**62 for inputs within the declared
  widths; `requant` requires `|x| * 2**max(-shift, 0) < 2**62` and `-62 <= shift <= 62`.

Decisions where DESIGN.md is silent:
- `Embed`, `Add`: shifts `lw, lp, lt, la, lb` must be >= 0 (ValueError otherwise).
- `LayerNorm`: `eps` is an integer in the variance's units (exp `2 * exp_x`).
- `requant`, `saturate`, `floor_div`, `isqrt` live in `quant.intops.base`, the attention ops in
  `quant.intops.attention` (softmax of a row with no valid key is all 0; centring with no valid key
  divides by 1); the package `quant.intops` exports all of them: import from there.
- Names, attributes, defaults, shift ranges and accumulators of the ops are `quant.ir.spec`'s.
"""
from __future__ import annotations

from typing import Callable

import torch

from quant.intops.attention import dot_attention, inhibitor_attention
from quant.intops.base import (Check, acc_bits_for, as_i64, check_acc_bits, exact_matmul, floor_div, int_range, isqrt,
                               requant, requant_channels)
from quant.ir import spec


def embed(ids, word, pos, type=None, lw: int = 0, lp: int = 0, lt: int = 0) -> torch.Tensor:
    """DESIGN row `Embed`: `(word[ids] << lw) + (pos[arange(n)] << lp) + (type[0] << lt)`.

    ids [B, n] in [0, V); word [V, D], pos [P, D], type [T, D] (optional; row 0 is used for every
    token). Exact sum, int32 accumulator (width checked by intref). Raises ValueError naming the
    offending id for ids outside [0, V) and the length for n > P.
    """
    ids, word, pos = as_i64(ids), as_i64(word), as_i64(pos)
    spec.check_shifts("Embed", {"lw": lw, "lp": lp, "lt": lt})
    vocab, positions, n = word.shape[0], pos.shape[0], ids.shape[-1]
    bad = (ids < 0) | (ids >= vocab)
    if bool(bad.any()):
        raise ValueError(f"Embed: token id {int(ids[bad][0])} outside the vocabulary [0, {vocab})")
    if n > positions:
        raise ValueError(f"Embed: sequence length {n} exceeds the {positions} position embeddings; truncate the input")
    y = word[ids] * (1 << lw) + pos[:n] * (1 << lp)  # (B, n, D)
    if type is not None:
        y = y + as_i64(type)[0] * (1 << lt)
    return y


def linear(x, w, b, s=None, *, shift: int, bits: int, relu: int = 0, acc_bits: int = 32,
           check: Check | None = None) -> torch.Tensor:
    """DESIGN row `Linear`: `acc = x @ w + b` (exact, signed `acc_bits`-bit accumulator, 32 or 64);
    `y = requant(acc, shift, bits)` (signed, round half up, saturating); if `relu`, `y = max(y, 0)`
    after requant.

    x [..., K], w [K, N], b [N] at exp `exp_x + exp_w`. The classifier uses `shift=0, bits=32`.
    With per-channel weight scales (w's column j at exp `exp_w + s[j]`, b[j] at `exp_x + exp_w + s[j]`)
    the optional s [N] (unsigned `quant.ir.spec.CHANNEL_SHIFT_BITS`-bit offsets) gives column j the
    shift `shift + s[j]`: `y = requant_channels(acc, shift + s, bits)`, same rounding and saturation.
    The product is `exact_matmul` (float64 BLAS where provably exact, else int64).
    """
    check_acc_bits(acc_bits)
    acc = exact_matmul(x, w) + as_i64(b)
    if check is not None:
        check("acc", acc, acc_bits)
    y = requant(acc, shift, bits) if s is None else requant_channels(acc, shift + as_i64(s), bits)
    return y.clamp(min=0) if relu else y


def linear_acc_bits(w, b, x_bits: int) -> int:
    """`acc_bits` of a Linear with weights w [K, N], bias b [N] and signed `x_bits`-bit inputs: the
    smallest of 32/64 that holds the worst case over every input of the declared range,
    `sum_t min/max(x_lo * w_tj, x_hi * w_tj) + b_j` (exact, from the params a lowering knows).

    >>> w, b = torch.full((16, 2), -2**15), torch.zeros(2, dtype=torch.int64)
    >>> linear_acc_bits(w, b, 8), linear_acc_bits(w, b, 16)
    (32, 64)
    """
    w, b = as_i64(w), as_i64(b)
    lo, hi = int_range(x_bits)
    low = torch.minimum(lo * w, hi * w).sum(0) + b  # (N,)
    high = torch.maximum(lo * w, hi * w).sum(0) + b
    return acc_bits_for(int(low.min()), int(high.max())) if b.numel() else 32


def add(a, b, la: int = 0, lb: int = 0) -> torch.Tensor:
    """DESIGN row `Add`: `(a << la) + (b << lb)`, exact (int32; width checked by intref)."""
    spec.check_shifts("Add", {"la": la, "lb": lb})
    return as_i64(a) * (1 << la) + as_i64(b) * (1 << lb)


def layernorm(x, gamma, beta, eps: int, norm_frac: int, shift: int, bits: int) -> torch.Tensor:
    """DESIGN row `LayerNorm` over the last axis (D), all steps exact in int64:

    `m = floor(sum x / D)`; `c = x - m`; `v = floor(sum c**2 / D)`; `sd = max(isqrt(v + eps), 1)`;
    `inv = floor(2**30 / sd)`; `nrm = requant(c * inv, 30 - norm_frac, 32)` (exp `norm_frac`);
    `y = requant(nrm * gamma + beta, shift, bits)`. x is int32, gamma [D] (exp_gamma), beta [D] at
    exp `norm_frac + exp_gamma`; `eps` is an integer at the variance's exp (`2 * exp_x`).
    Needs `|x| < 2**30` so that `sum c**2 < 2**62`.
    """
    x = as_i64(x)
    dim = x.shape[-1]
    m = floor_div(x.sum(-1, keepdim=True), dim)
    c = x - m
    v = floor_div((c * c).sum(-1, keepdim=True), dim)
    sd = isqrt(v + eps).clamp(min=1)
    inv = floor_div(torch.full_like(sd, 1 << 30), sd)
    nrm = requant(c * inv, 30 - norm_frac, 32)
    return requant(nrm * as_i64(gamma) + as_i64(beta), shift, bits)


def scale_channels(x, c, shift: int, bits: int) -> torch.Tensor:
    """DESIGN row `ScaleChannels`: `requant(x * c, shift, bits)`, c [d'] broadcast over the last
    axis (symmetric attention's per-dimension pairwise coefficient)."""
    return requant(as_i64(x) * as_i64(c), shift, bits)


def split_heads(x, heads: int) -> torch.Tensor:
    """DESIGN row `SplitHeads`: [B, n, D] -> [B, H, n, d] with d = D / H (head h = columns h*d..)."""
    x = as_i64(x)
    bsz, n, dim = x.shape
    if dim % heads:
        raise ValueError(f"SplitHeads: hidden size {dim} is not divisible by heads={heads}")
    return x.reshape(bsz, n, heads, dim // heads).transpose(1, 2)  # (B, H, n, d)


def merge_heads(x) -> torch.Tensor:
    """DESIGN row `MergeHeads`: [B, H, n, d] -> [B, n, H*d], inverse of `split_heads`."""
    x = as_i64(x)
    bsz, heads, n, d = x.shape
    return x.transpose(1, 2).reshape(bsz, n, heads * d)  # (B, n, D)


def take_first(x) -> torch.Tensor:
    """DESIGN row `TakeFirst`: [B, n, D] -> x[:, 0, :] of shape [B, D] (the [CLS] token)."""
    return as_i64(x)[:, 0, :]


OPS: dict[str, Callable[..., torch.Tensor]] = {
    "Embed": embed,
    "Linear": linear,
    "Add": add,
    "LayerNorm": layernorm,
    "ScaleChannels": scale_channels,
    "SplitHeads": split_heads,
    "MergeHeads": merge_heads,
    "TakeFirst": take_first,
    "DotAttention": dot_attention,
    "InhibitorAttention": inhibitor_attention,
}
"""Op name (IntProgram `Node.op`, ONNX op_type in domain `hwsim.int`) -> function(*inputs, **attrs)."""

"""Integer helpers shared by every op of `quant.intops`: requant (per tensor, per channel, per head), saturate,
floor_div, isqrt.

DESIGN.md "Rounding and saturation". All functions take any integer dtype and return int64.
Import them from `quant.intops` (this module exists only to avoid an import cycle with
`quant.intops.attention`).
"""
from __future__ import annotations

from typing import Callable

import torch

from quant.ir.spec import (  # noqa: F401  (re-exported: the number formats of the spec)
    ACC_BITS,
    SHIFT_MAX,
    SHIFT_MIN,
    acc_bits_for,
    check_acc_bits,
    int_range,
)

Check = Callable[[str, torch.Tensor, int], None]
"""`check(label, tensor, bits)`: called by ops on internal accumulators (signed `bits` wide)."""


def as_i64(x) -> torch.Tensor:
    """`x` as an int64 tensor; raises TypeError for floating or boolean inputs."""
    x = torch.as_tensor(x)
    if x.is_floating_point() or x.is_complex() or x.dtype == torch.bool:
        raise TypeError(f"integer op got a {x.dtype} tensor; integer ops take integer tensors only")
    return x.to(torch.int64)


def saturate(x, bits: int, signed: bool = True) -> torch.Tensor:
    """Clamp to the `bits`-bit range (see `int_range`); never wraps.

    >>> saturate(torch.tensor([-200, -128, 127, 300]), 8).tolist()
    [-128, -128, 127, 127]
    >>> saturate(torch.tensor([-1, 256]), 8, signed=False).tolist()
    [0, 255]
    """
    lo, hi = int_range(bits, signed)
    return as_i64(x).clamp(min=lo, max=hi)


def requant(x, shift: int, bits: int, signed: bool = True) -> torch.Tensor:
    """DESIGN.md requantisation: `shift > 0`: `floor((x + 2**(shift-1)) / 2**shift)` (round half
    towards +inf; one add and an arithmetic right shift); `shift == 0`: `x`; `shift < 0`:
    `x * 2**-shift`. Then `saturate(., bits, signed)`.

    Requires `-62 <= shift <= 62` and `|x| * 2**max(-shift, 0) < 2**62` (int64 headroom).

    >>> requant(torch.tensor([-3, -2, -1, 1, 2, 3]), 1, 8).tolist()  # -1.5 -> -1, 1.5 -> 2
    [-1, -1, 0, 1, 1, 2]
    >>> requant(torch.tensor([3, -3, 100]), -2, 8).tolist()
    [12, -12, 127]
    """
    if not SHIFT_MIN <= shift <= SHIFT_MAX:
        raise ValueError(f"requant shift {shift} outside {SHIFT_MIN}..{SHIFT_MAX}")
    x = as_i64(x)
    if shift > 0:
        x = (x + (1 << (shift - 1))) >> shift  # arithmetic shift = floor division by 2**shift
    elif shift < 0:
        x = x * (1 << -shift)
    return saturate(x, bits, signed)


def requant_channels(x, shifts, bits: int, signed: bool = True) -> torch.Tensor:
    """`requant` with one shift per channel of the last axis: column j of x [..., N] is
    `requant(x[..., j], shifts[j], bits, signed)` (shifts [N], integers). Same rounding (round half
    towards +inf for `shift > 0`: add `2**(shift-1)`, arithmetic right shift; left shift for
    `shift < 0`) and saturation (to the `bits`-bit range, never wraps), int64 throughout.

    Requires every shift in `SHIFT_MIN..SHIFT_MAX` and `|x| * 2**max(-shift, 0) < 2**62`.

    >>> requant_channels(torch.tensor([[3, 3, 3], [-3, -3, 100]]), torch.tensor([0, 1, -2]), 8).tolist()
    [[3, 2, 12], [-3, -1, 127]]
    """
    x, shifts = as_i64(x), as_i64(shifts)
    if shifts.dim() != 1 or shifts.shape[0] != x.shape[-1]:
        raise ValueError(f"requant_channels: {tuple(shifts.shape)} shifts for {x.shape[-1]} channels; give one per channel")
    if shifts.numel() and not SHIFT_MIN <= int(shifts.min()) <= int(shifts.max()) <= SHIFT_MAX:
        raise ValueError(f"requant shifts {int(shifts.min())}..{int(shifts.max())} outside {SHIFT_MIN}..{SHIFT_MAX}")
    right, left = shifts.clamp(min=0), (-shifts).clamp(min=0)
    half = (torch.ones_like(right) << right) >> 1  # 2**(shift-1), 0 for shift <= 0
    y = ((x + half) >> right) * (torch.ones_like(left) << left)  # arithmetic shift = floor division
    return saturate(y, bits, signed)


def requant_heads(x, shifts, bits: int, signed: bool = True) -> torch.Tensor:
    """`requant` with one shift per head, axis 1 of x [B, H, ...]: an int shift is `requant(x, shifts,
    bits, signed)` itself; a sequence of H ints requantises head h by `shifts[h]` with the rounding and
    saturation of `requant_channels` (round half towards +inf for `shift > 0`, left shift for
    `shift < 0`, saturate to the `bits`-bit range, never wrap), int64 throughout. ValueError when the
    sequence does not hold one shift per head.

    >>> requant_heads(torch.tensor([[[3, -3], [3, -3], [3, 100]]]), [0, 1, -2], 8).tolist()
    [[[3, -3], [2, -1], [12, 127]]]
    """
    if not isinstance(shifts, (list, tuple)):
        return requant(x, shifts, bits, signed)
    x = as_i64(x)
    return requant_channels(x.movedim(1, -1), list(shifts), bits, signed).movedim(-1, 1)


EXACT_F64 = 1 << 53  # float64 holds every integer of smaller magnitude exactly


def exact_matmul(a, b) -> torch.Tensor:
    """The exact int64 product `a @ b` of integer tensors a [..., K], b [..., K, N].

    Computed in float64 (BLAS) when `max|a| * max_j sum_k |b_kj| < 2**53`: that bounds every
    partial sum of every output, so any summation order gives the exact integer; otherwise in int64
    as written (torch's int64 matmul has no BLAS and is about 50x slower). Same result either way.

    >>> exact_matmul(torch.tensor([[3, -2]]), torch.tensor([[1], [4]])).tolist()
    [[-5]]
    """
    a, b = as_i64(a), as_i64(b)
    if a.numel() and b.numel() and int(a.abs().max()) * int(b.abs().sum(-2).max()) < EXACT_F64:
        return (a.double() @ b.double()).to(torch.int64)
    return a @ b


def floor_div(a, b) -> torch.Tensor:
    """`floor(a / b)` for integers (rounds towards -inf, like Python `//`); b must be non-zero.

    >>> floor_div(torch.tensor([7, -7]), 2).tolist()
    [3, -4]
    """
    b = b if isinstance(b, int) else as_i64(b)
    return torch.div(as_i64(a), b, rounding_mode="floor")


def isqrt(v) -> torch.Tensor:
    """Exact floor square root `floor(sqrt(v))` elementwise, for integers `0 <= v < 2**62`.

    A float64 estimate is within 1 of the answer for this range; two integer correction steps in
    each direction make it exact (same result as `math.isqrt`). Raises ValueError for v < 0.

    >>> isqrt(torch.tensor([0, 1, 3, 4, 2**62 - 1])).tolist()
    [0, 1, 1, 2, 2147483647]
    """
    v = as_i64(v)
    if v.numel() and int(v.min()) < 0:
        raise ValueError(f"isqrt of negative value {int(v.min())}")
    s = torch.sqrt(v.to(torch.float64)).floor().to(torch.int64).clamp(max=(1 << 31) - 1)
    for _ in range(2):
        s = s - (s * s > v).to(torch.int64)
        s = s + ((s + 1) * (s + 1) <= v).to(torch.int64)
    return s

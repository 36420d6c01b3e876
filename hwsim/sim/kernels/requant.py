"""Requantisation, the one rounding rule of the project (DESIGN.md "Rounding and saturation";
`quant.intops.requant`).

`requant(x, shift, bits)`: `shift > 0`: `floor((x + 2**(shift-1)) / 2**shift)` (round half towards
+inf: one add and an arithmetic right shift); `shift == 0`: `x`; `shift < 0`: `x * 2**-shift`; then
saturate to the signed `bits` range `[-2**(bits-1), 2**(bits-1) - 1]` (unsigned: `[0, 2**bits - 1]`).
All arithmetic in int64.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from quant.ir.spec import int_range


def tc_magnitude(x: np.ndarray) -> int:
    """Two's-complement magnitude `max(v, -v - 1)` over `x` (0 when empty): `x` fits the signed
    `bits`-bit range exactly when `tc_magnitude(x) <= 2**(bits-1) - 1`, and needs
    `tc_magnitude(x).bit_length() + 1` signed bits. Unlike max |v| it does not count -2**(bits-1)
    as overflow.

    >>> tc_magnitude(np.array([-2**31, 5])), tc_magnitude(np.array([3, -1])), tc_magnitude(np.array([], np.int64))
    (2147483647, 3, 0)
    """
    if x.size == 0:
        return 0
    return max(int(x.max()), -int(x.min()) - 1, 0)


@njit(inline="always", cache=True)
def rq(x, shift, lo, hi):
    """Scalar requant of an int64 `x` (see module docstring); `lo, hi` from `quant.ir.spec.int_range`."""
    if shift > 0:
        y = (x + (np.int64(1) << (shift - 1))) >> shift
    elif shift < 0:
        y = x << (-shift)
    else:
        y = x
    if y < lo:
        return lo
    if y > hi:
        return hi
    return y


@njit(cache=True)
def _requant_flat(x, shift, lo, hi, out):
    for i in range(x.size):
        out[i] = rq(np.int64(x[i]), shift, lo, hi)


def requant(x: np.ndarray, shift: int, bits: int, signed: bool = True, dtype=np.int64) -> np.ndarray:
    """`quant.intops.requant` on a numpy integer array; returns a new array of `dtype`."""
    lo, hi = int_range(bits, signed)
    x = np.ascontiguousarray(x)
    out = np.empty(x.shape, dtype=dtype)
    _requant_flat(x.reshape(-1), np.int64(shift), np.int64(lo), np.int64(hi), out.reshape(-1))
    return out

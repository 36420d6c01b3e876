"""Exact integer matrix products and the fused `Linear` kernel (DESIGN.md row `Linear`;
`quant.intops.linear`): `acc = x @ w + b`, `y = requant(acc, shift, bits)` (with per-channel
weight scales `requant(acc[:, j], shift + s[j], bits)`, `quant.intops.requant_channels`), then
`max(y, 0)` if `relu`. `acc` is computed exactly in int64; the declared accumulator is the node's `acc_bits` (32 or
64), and the executor checks the returned peak magnitude of `acc` against that width.

Route (REFERENCE.md section 6): a float BLAS product is exact when every partial sum is an integer
the float type represents, i.e. when `K * max|x| * max|w| <= 2**24` (float32) or `< 2**53`
(float64). The bounds come from declared widths, so they hold for every input that passed the
width check. Otherwise an exact int64 Numba loop runs.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from hwsim.sim.kernels.requant import rq
from quant.ir.spec import SHIFT_MAX, SHIFT_MIN, int_range


def exact_float_dtype(k: int, x_absmax: int, w_absmax: int):
    """The cheapest float dtype whose BLAS product of a `[., k] x [k, .]` pair is exact, or None.

    >>> exact_float_dtype(768, 128, 128), exact_float_dtype(3072, 128, 128), exact_float_dtype(1, 2**40, 2**20)
    (<class 'numpy.float32'>, <class 'numpy.float64'>, None)
    """
    bound = k * x_absmax * w_absmax
    if bound <= 2**24:
        return np.float32
    if bound < 2**53:
        return np.float64
    return None


@njit(cache=True)
def matmul_i64(x, w):
    """Exact `x @ w` for 2-D integer arrays, int64 accumulation (i-k-j order)."""
    m, k = x.shape
    n = w.shape[1]
    out = np.zeros((m, n), dtype=np.int64)
    for i in range(m):
        for t in range(k):
            a = np.int64(x[i, t])
            for j in range(n):
                out[i, j] += a * w[t, j]
    return out


def exact_matmul(x: np.ndarray, w: np.ndarray, fdt) -> np.ndarray:
    """`x @ w` exactly: float BLAS of dtype `fdt` (caller proved the bound) or the int64 loop."""
    if fdt is None:
        return matmul_i64(np.ascontiguousarray(x), np.ascontiguousarray(w))
    return x.astype(fdt) @ (w if w.dtype == fdt else w.astype(fdt))


@njit(cache=True)
def bias_requant(acc, b, shifts, lo, hi, relu, out):
    """`out[:, j] = requant(acc[:, j] + b[j], shifts[j])` saturated to [lo, hi], then ReLU; returns the
    two's-complement magnitude `max(a, -a - 1)` of `a = acc + b` (see `requant.tc_magnitude`)."""
    m, n = acc.shape
    peaks = np.zeros(m, dtype=np.int64)
    for i in range(m):
        peak = np.int64(0)
        for j in range(n):
            a = np.int64(acc[i, j]) + b[j]
            peak = max(peak, a, -a - 1)
            y = rq(a, shifts[j], lo, hi)
            if relu and y < 0:
                y = 0
            out[i, j] = y
        peaks[i] = peak
    return peaks.max() if m else np.int64(0)


class LinearKernel:
    """Fused Linear with its weight prepared once (float copy when a float product is exact). `shift`
    is the layer's shift, or one per output column (per-channel weight scales)."""

    def __init__(self, w: np.ndarray, b: np.ndarray, shift, bits: int, relu: int,
                 x_absmax: int, out_dtype=np.int32):
        k, self.n = w.shape
        self.fdt = exact_float_dtype(k, x_absmax, int(np.abs(w.astype(np.int64)).max(initial=0)))
        self.w = np.ascontiguousarray(w.astype(self.fdt) if self.fdt is not None else w.astype(np.int64))
        self.b = np.ascontiguousarray(b.astype(np.int64))
        self.shifts = np.ascontiguousarray(np.broadcast_to(np.asarray(shift, np.int64), (self.n,)))
        if self.n and not SHIFT_MIN <= int(self.shifts.min()) <= int(self.shifts.max()) <= SHIFT_MAX:
            raise ValueError(f"Linear shifts {int(self.shifts.min())}..{int(self.shifts.max())} outside "
                             f"{SHIFT_MIN}..{SHIFT_MAX}")
        self.relu = bool(relu)
        self.lo, self.hi = (np.int64(v) for v in int_range(bits))
        self.out_dtype = out_dtype

    def __call__(self, x: np.ndarray) -> tuple[np.ndarray, int]:
        """`(y, peak)` for x [..., K]: y [..., N] of `out_dtype`, peak the two's-complement magnitude
        of the accumulator (`requant.tc_magnitude`)."""
        lead = x.shape[:-1]
        x2 = x.reshape(-1, x.shape[-1])  # (rows, K)
        if x2.shape[1] != self.w.shape[0]:
            raise ValueError(f"x has {x2.shape[1]} features but w has {self.w.shape[0]} rows")
        acc = exact_matmul(x2, self.w, self.fdt)  # (rows, N)
        out = np.empty((x2.shape[0], self.n), dtype=self.out_dtype)
        peak = int(bias_requant(acc, self.b, self.shifts, self.lo, self.hi, self.relu, out))
        return out.reshape(*lead, self.n), peak

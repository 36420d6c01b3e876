"""Integer LayerNorm over the last axis (DESIGN.md row `LayerNorm`; `quant.intops.layernorm`).

Per row of D values, all exact in int64: `m = floor(sum x / D)`; `c = x - m`;
`v = floor(sum c**2 / D)`; `sd = max(isqrt(v + eps), 1)` (floor square root, exact);
`inv = floor(2**30 / sd)` (one division per row); `nrm = requant(c * inv, 30 - norm_frac, 32)`;
`y = requant(nrm * gamma + beta, shift, bits)`.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from hwsim.sim.kernels.requant import rq
from quant.ir.spec import int_range


@njit(inline="always", cache=True)
def isqrt(v):
    """Exact floor square root of an int64 `v >= 0` (float guess, then integer correction)."""
    r = np.int64(np.sqrt(np.float64(v)))
    while r * r > v:
        r -= 1
    while (r + 1) * (r + 1) <= v:
        r += 1
    return r


@njit(cache=True)
def _layernorm_rows(x, gamma, beta, eps, norm_frac, shift, lo, hi, out):
    rows, dim = x.shape
    lo32, hi32 = -(np.int64(1) << 31), (np.int64(1) << 31) - 1
    for r in range(rows):
        s = np.int64(0)
        for j in range(dim):
            s += x[r, j]
        m = s // dim  # floor division (Python semantics in Numba)
        ss = np.int64(0)
        for j in range(dim):
            c = np.int64(x[r, j]) - m
            ss += c * c
        sd = isqrt(ss // dim + eps)
        if sd < 1:
            sd = 1
        inv = (np.int64(1) << 30) // sd
        for j in range(dim):
            nrm = rq((np.int64(x[r, j]) - m) * inv, 30 - norm_frac, lo32, hi32)
            out[r, j] = rq(nrm * gamma[j] + beta[j], shift, lo, hi)


def layernorm(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, eps: int, norm_frac: int,
              shift: int, bits: int, out_dtype=np.int64) -> np.ndarray:
    """`quant.intops.layernorm` for x [..., D]; returns an array of `out_dtype` (saturated to `bits`)."""
    lo, hi = int_range(bits)
    x2 = np.ascontiguousarray(x).reshape(-1, x.shape[-1])  # (rows, D)
    out = np.empty(x2.shape, dtype=out_dtype)
    _layernorm_rows(x2, gamma.astype(np.int64), beta.astype(np.int64), np.int64(eps), np.int64(norm_frac),
                    np.int64(shift), np.int64(lo), np.int64(hi), out)
    return out.reshape(x.shape)

"""Integer dot-product attention with the I-BERT softmax (DESIGN.md row `DotAttention` and
"Integer softmax (I-BERT i-exp)"; `quant.intops.dot_attention / softmax / int_exp`).

`s = q @ k^T` (exact), `s = requant(s, score_shift, 32)` when `score_shift > 0`; per row over valid keys: `m = max s`; `x = max(s - m, -n_clip * q_ln2)`;
`z = floor(-x / q_ln2)`; `p = x + z * q_ln2`; `e = ((p + b_int)**2 + c_int) >> z`; `e = 0` on
masked keys; `P = min(floor(e * 2**prob_bits / max(sum e, 1)), 2**prob_bits - 1)`;
`y = requant(P @ v, out_shift, bits)`. The two products run as float BLAS when exact (bound from
the operands' magnitudes, see `matmul.exact_float_dtype`), else as exact int64 loops.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from hwsim.sim.kernels.matmul import exact_float_dtype
from hwsim.sim.kernels.requant import requant, tc_magnitude


@njit(cache=True)
def _softmax_rows(s, mask, heads, q_ln2, b_int, c_int, n_clip, prob_bits, out):
    """s [B*H*n, n] (any numeric dtype holding exact integers) -> out P of the same layout."""
    rows, n = s.shape
    nq = rows // (mask.shape[0] * heads)
    top = (np.int64(1) << prob_bits) - 1
    e = np.empty(n, dtype=np.int64)
    for r in range(rows):
        b = r // (heads * nq)
        m = np.int64(0)
        found = False
        for j in range(n):
            if mask[b, j] != 0:
                sj = np.int64(s[r, j])
                if not found or sj > m:
                    m = sj
                    found = True
        total = np.int64(0)
        for j in range(n):
            if mask[b, j] == 0:
                e[j] = 0
                continue
            x = max(np.int64(s[r, j]) - m, -n_clip * q_ln2)
            z = (-x) // q_ln2
            p = x + z * q_ln2
            e[j] = ((p + b_int) * (p + b_int) + c_int) >> z
            total += e[j]
        total = max(total, 1)
        for j in range(n):
            out[r, j] = min((e[j] << prob_bits) // total, top)


def _bmm(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, int]:
    """Exact batched `a @ b` (…, m, k) x (…, k, n) and its `tc_magnitude` (float BLAS when exact)."""
    a_max = int(np.abs(a.astype(np.int64)).max(initial=0))
    b_max = int(np.abs(b.astype(np.int64)).max(initial=0))
    fdt = exact_float_dtype(a.shape[-1], a_max, b_max)
    if fdt is None:
        out = np.matmul(a.astype(np.int64), b.astype(np.int64))
    else:
        out = np.matmul(a.astype(fdt), b.astype(fdt))
    return out, tc_magnitude(out)


def dot_attention(q, k, v, mask, q_ln2: int, b_int: int, c_int: int, n_clip: int, prob_bits: int,
                  out_shift: int, bits: int, score_shift: int = 0, acc_bits: int = 32, out_dtype=np.int64
                  ) -> tuple[np.ndarray, dict[str, int]]:
    """`quant.intops.dot_attention` for q, k, v [B, H, n, d], mask [B, n] (the scores requantised:
    `requant(s, score_shift, 32)`); returns
    `(y [B, H, n, d], {"scores": peak of q k^T, "pv": peak of P v})`, peaks as `requant.tc_magnitude`
    (checked by the executor against the node's `acc_bits`)."""
    bsz, heads, n, d = q.shape
    if k.shape != q.shape or v.shape != q.shape:
        raise ValueError(f"q {q.shape}, k {k.shape}, v {v.shape} must have one shape [B, H, n, d]")
    if mask.shape != (bsz, n):
        raise ValueError(f"mask {mask.shape} does not match q {q.shape}: expected {(bsz, n)}")
    s, s_peak = _bmm(q, np.swapaxes(k, 2, 3))  # (B, H, n, n)
    if score_shift or acc_bits > 32:  # else the declared 32-bit accumulator holds s: requant is the identity
        s = requant(s.astype(np.int64), score_shift, 32)
    s2 = np.ascontiguousarray(s).reshape(-1, n)
    p = np.empty(s2.shape, dtype=np.float32 if prob_bits <= 24 else np.int64)
    _softmax_rows(s2, np.ascontiguousarray(mask, dtype=np.int64), heads, np.int64(q_ln2), np.int64(b_int),
                  np.int64(c_int), np.int64(n_clip), np.int64(prob_bits), p)
    pv, pv_peak = _bmm(p.reshape(bsz, heads, n, n), v)  # (B, H, n, d)
    y = requant(pv.astype(np.int64), out_shift, bits, dtype=out_dtype)
    return y, {"scores": s_peak, "pv": pv_peak}

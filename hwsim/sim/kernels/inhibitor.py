"""Fused integer inhibitor attention (DESIGN.md "Inhibitor attention (REFERENCE.md section 1, in
integers)"; `quant.intops.inhibitor_attention`). Per batch b, head h, query i, over keys j:

1. `L_ij = sum_k |q_ik - k_jk|`; 2. `Z_ij = requant(L_ij, z_shift, 32)`;
3. if `center`: `Z_ij -= floor(sum_{j valid} Z_ij / n_valid)` (n_valid 0 divides by 1);
4. `Z_ij += alpha`; 5. `Z_ij = clamp(Z_ij, 0, 2**(bits-1))`; 6. masked keys: `Z_ij = 2**(bits-1)`;
7. unsigned `H_ik = sum_j max(v_jk - Z_ij, 0)`, signed `H_ik = sum_j sign(v_jk) max(|v_jk| - Z_ij, 0)`;
8. `y = requant(H, out_shift, bits)`.
`z_shift`, `alpha` and `out_shift` are per head (head h uses its own; one int means every head).

Layout (REFERENCE.md section 6): keys are transposed to [d, n] so the score loop runs over keys
innermost in narrow (int16 when the bound allows) lanes; one query row of scores lives at a time,
so nothing of size n*n*d (or even n*n) is materialised. Keys whose Z is at least max|v| of the head
contribute exactly 0 and are skipped (masked keys always are).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
from numba import njit

from hwsim.sim.kernels.requant import rq
from quant.ir.spec import head_values, int_range


@njit(inline="always", cache=True)
def _l1_row16(qrow, kt, L):
    """L[j] = sum_t |qrow[t] - kt[t, j]| in int16 lanes (caller proved the bound)."""
    d, n = kt.shape
    for j in range(n):
        L[j] = 0
    for t in range(d):
        qv = qrow[t]
        for j in range(n):
            x = np.int16(qv - kt[t, j])
            L[j] = np.int16(L[j] + np.int16(x if x >= 0 else -x))


@njit(inline="always", cache=True)
def _l1_row64(qrow, kt, L):
    d, n = kt.shape
    for j in range(n):
        L[j] = 0
    for t in range(d):
        qv = np.int64(qrow[t])
        for j in range(n):
            L[j] += abs(qv - kt[t, j])


@njit(inline="always", cache=True)
def _mix16(v, Z, vpeak, signed, H):
    """H[t] = sum_j (sign v) max(|v[j, t]| - Z[j], 0): int16 differences, int32 sums."""
    n, d = v.shape
    for t in range(d):
        H[t] = 0
    for j in range(n):
        if Z[j] >= vpeak:
            continue  # every term is max(<= 0, 0) = 0 (masked keys always)
        z = np.int16(Z[j])
        if signed:
            for t in range(d):  # sign(x) max(|x| - z, 0) = max(x - z, 0) - max(-x - z, 0)
                a = np.int16(v[j, t] - z)
                b = np.int16(-v[j, t] - z)
                a = a if a > 0 else np.int16(0)
                b = b if b > 0 else np.int16(0)
                H[t] = np.int32(H[t] + np.int32(a) - np.int32(b))
        else:
            for t in range(d):
                m = np.int16(v[j, t] - z)
                H[t] = np.int32(H[t] + np.int32(m if m > 0 else np.int16(0)))


@njit(inline="always", cache=True)
def _mix64(v, Z, vpeak, signed, H):
    n, d = v.shape
    for t in range(d):
        H[t] = 0
    for j in range(n):
        z = Z[j]
        if z >= vpeak:
            continue
        for t in range(d):
            x = np.int64(v[j, t])
            if signed:
                m = max(abs(x) - z, 0)
                H[t] += m if x >= 0 else -m
            else:
                H[t] += max(x - z, 0)


@njit(cache=True)
def _inhibitor_head(q, kt, v, mask, z_shift, center, alpha, signed, zmax, out_shift, lo, hi, narrow, out):
    """One head: q [n, d], kt [d, n], v [n, d], mask [n]; writes out [n, d]; returns the peaks of L
    and H as two's-complement magnitudes `max(x, -x - 1)` (`requant.tc_magnitude`; L >= 0)."""
    n, d = q.shape
    lo32, hi32 = -(np.int64(1) << 31), (np.int64(1) << 31) - 1
    L16 = np.zeros(n, dtype=np.int16)
    L64 = np.zeros(n, dtype=np.int64)
    Z = np.empty(n, dtype=np.int64)
    H = np.empty(d, dtype=np.int64)
    H32 = np.empty(d, dtype=np.int32)
    vpeak = np.int64(0)
    for j in range(n):
        for t in range(d):
            vpeak = max(vpeak, abs(np.int64(v[j, t])))
    n_valid = np.int64(0)
    for j in range(n):
        n_valid += mask[j] != 0
    lpeak = np.int64(0)
    hpeak = np.int64(0)
    for i in range(n):
        if narrow:
            _l1_row16(q[i], kt, L16)
        else:
            _l1_row64(q[i], kt, L64)
        zsum = np.int64(0)
        for j in range(n):
            lj = np.int64(L16[j]) if narrow else L64[j]
            lpeak = max(lpeak, lj)
            z = rq(lj, z_shift, lo32, hi32)
            Z[j] = z
            if mask[j] != 0:
                zsum += z
        mean = zsum // max(n_valid, 1) if center else np.int64(0)
        for j in range(n):
            z = min(max(Z[j] - mean + alpha, 0), zmax)
            Z[j] = z if mask[j] != 0 else zmax
        if narrow:
            _mix16(v, Z, vpeak, signed, H32)
            for t in range(d):
                H[t] = H32[t]
        else:
            _mix64(v, Z, vpeak, signed, H)
        for t in range(d):
            hpeak = max(hpeak, H[t], -H[t] - 1)
            out[i, t] = rq(H[t], out_shift, lo, hi)
    return lpeak, hpeak


@njit(cache=True)
def _inhibitor(q, kt, v, mask, z_shift, center, alpha, signed, zmax, out_shift, lo, hi, narrow, out, peaks):
    """Every (b, h); z_shift, alpha, out_shift are int64 [H], head h's values at h."""
    bsz, heads = q.shape[0], q.shape[1]
    for b in range(bsz):
        for h in range(heads):
            lp, hp = _inhibitor_head(q[b, h], kt[b, h], v[b, h], mask[b], z_shift[h], center, alpha[h], signed,
                                     zmax, out_shift[h], lo, hi, narrow, out[b, h])
            peaks[b * heads + h, 0] = lp
            peaks[b * heads + h, 1] = hp


def inhibitor_attention(q, k, v, mask, z_shift: int | Sequence[int], center: int, alpha: int | Sequence[int],
                        signed: int, out_shift: int | Sequence[int], bits: int, qk_absmax: int | None = None,
                        out_dtype=np.int64) -> tuple[np.ndarray, dict[str, int]]:
    """`quant.intops.inhibitor_attention` for q, k, v [B, H, n, d], mask [B, n] (1 token, 0 pad).
    `z_shift`, `alpha`, `out_shift`: one int for every head or a sequence of H ints, head h running
    with element h (ValueError naming the attribute when a sequence is not one per head).

    Returns `(y, {"l1": peak of L, "h": peak of H})` (labels as `quant.intops`; peaks as
    `requant.tc_magnitude`). `qk_absmax` (from declared widths) picks
    int16 score lanes when `d * 2 * qk_absmax < 2**15`; default: measured from q and k.
    """
    bsz, heads, n, d = q.shape
    if k.shape != q.shape or v.shape != q.shape:
        raise ValueError(f"q {q.shape}, k {k.shape}, v {v.shape} must have one shape [B, H, n, d]")
    if mask.shape != (bsz, n):
        raise ValueError(f"mask {mask.shape} does not match q {q.shape}: expected {(bsz, n)}")
    per_head = {name: np.array(head_values("InhibitorAttention", name, value, heads), dtype=np.int64)  # (H,)
                for name, value in (("z_shift", z_shift), ("alpha", alpha), ("out_shift", out_shift))}
    if qk_absmax is None:
        qk_absmax = max(int(np.abs(q.astype(np.int64)).max(initial=0)), int(np.abs(k.astype(np.int64)).max(initial=0)))
    v_absmax = int(np.abs(v.astype(np.int64)).max(initial=0))
    # int16 score lanes need d * max|q - k| < 2**15; int16 mixing lanes |v|, Z <= 2**14 and int32
    # sums n * 2 * 2**14 < 2**31.
    narrow = d * 2 * qk_absmax < 2**15 and v_absmax <= 2**14 and bits <= 15 and n < 2**16
    lane = np.int16 if narrow else np.int64
    zmax = 1 << (bits - 1)
    lo, hi = int_range(bits)
    out = np.empty(q.shape, dtype=out_dtype)
    peaks = np.zeros((bsz * heads, 2), dtype=np.int64)
    qq = np.ascontiguousarray(q, dtype=lane)
    kt = np.ascontiguousarray(np.swapaxes(k, 2, 3), dtype=lane)  # (B, H, d, n)
    vv = np.ascontiguousarray(v, dtype=lane)
    _inhibitor(qq, kt, vv, np.ascontiguousarray(mask, dtype=np.int64), per_head["z_shift"], bool(center),
               per_head["alpha"], bool(signed), np.int64(zmax), per_head["out_shift"], np.int64(lo), np.int64(hi),
               narrow, out, peaks)
    return out, {"l1": int(peaks[:, 0].max(initial=0)), "h": int(peaks[:, 1].max(initial=0))}

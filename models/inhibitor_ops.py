"""The two pairwise sums of inhibitor attention as CPU kernels with their own backward.

`l1_distance(q, k)`: `L_ij = sum_c |q_ic - k_jc|` (what `torch.cdist(q, k, p=1)` computes).
`inhibit_mix(z, v, signed)`: signed `H_ic = sum_j sign(v_jc) max(|v_jc| - z_ij, 0)`, unsigned
`H_ic = sum_j max(v_jc - z_ij, 0)` (REFERENCE.md section 1), summed directly: no identity that
cancels large sums, so it is closer to the exact value than the cdist form of `inhibit_fast`.

Gradients (sign(0) = 0 and a ReLU's slope 0 at its kink, as autograd of `inhibit_reference` has them):
    dL/dq_ic = sum_j G_ij sign(q_ic - k_jc),  dL/dk_jc = -sum_i G_ij sign(q_ic - k_jc);
    with m_ijc = [a_jc > z_ij] (a = |v| signed, v unsigned) and s = sign(v) (1 unsigned):
    dH/dz_ij = -sum_c g_ic s_jc m_ijc,  dH/dv_jc = s_jc^2 sum_i g_ic m_ijc.

Why: on 2 CPU cores `torch.cdist(p=1)` and above all its backward take most of an inhibitor
student's attention time (docs/QUANT.md "Training throughput"). These Numba loops run the innermost
loop over a contiguous axis that is not summed (keys or channels), so it vectorises without
reordering any sum: every sum runs in one fixed order, and the result does not depend on the thread
count: `torch.get_num_threads()` Python threads split the (batch, head) pairs, each running a
kernel that releases the GIL (no second OpenMP runtime next to torch's, whose spinning threads
would fight torch's for the cores). A key whose z_ij is at least max_c a_jc adds exactly 0 and is
skipped (padded keys always are). Tensors on other devices take the torch route.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache

import numpy as np
import torch
from numba import njit


@njit(nogil=True, cache=True)
def _l1_forward(q, kt, out, lo, hi):
    """out[g, i, j] = sum_c |q[g, i, c] - kt[g, c, j]|, summed over c in order."""
    G, n, d = q.shape
    m = kt.shape[2]
    for g in range(lo, hi):
        for i in range(n):
            row = out[g, i]
            row[:] = 0
            for c in range(d):
                qv = q[g, i, c]
                for j in range(m):
                    row[j] += abs(qv - kt[g, c, j])


@njit(nogil=True, cache=True)
def _l1_backward(grad, q, k, gq, gk, lo, hi):
    """gq[g, i] = sum_j grad[g, i, j] sign(q_i - k_j); gk[g, j] = -sum_i (the same terms), in order of i, j."""
    G, n, d = q.shape
    m = k.shape[1]
    for g in range(lo, hi):
        gq[g] = 0
        gk[g] = 0
        for i in range(n):
            for j in range(m):
                w = grad[g, i, j]
                if w == 0:
                    continue
                for c in range(d):
                    x = q[g, i, c] - k[g, j, c]
                    s = w if x > 0 else (-w if x < 0 else 0.0 * w)
                    gq[g, i, c] += s
                    gk[g, j, c] -= s


@njit(nogil=True, cache=True)
def _mix_forward(z, a, s, peak, out, lo, hi):
    """out[g, i, c] = sum_j s[g, j, c] max(a[g, j, c] - z[g, i, j], 0), summed over j in order;
    keys with z >= peak (= max_c a) add 0 and are skipped."""
    G, n, m = z.shape
    d = a.shape[2]
    for g in range(lo, hi):
        for i in range(n):
            h = out[g, i]
            h[:] = 0
            for j in range(m):
                zz = z[g, i, j]
                if zz >= peak[g, j]:
                    continue
                for c in range(d):
                    t = a[g, j, c] - zz
                    if t > 0:
                        h[c] += s[g, j, c] * t


@njit(nogil=True, cache=True)
def _mix_backward(grad, z, at, st, gz, kt, lo, hi):
    """gz[g, i, j] = -sum_c grad[g, i, c] st[g, c, j] [at > z]; kt[g, c, j] = sum_i grad[g, i, c] [at > z]."""
    G, n, m = z.shape
    d = at.shape[1]
    for g in range(lo, hi):
        kt[g] = 0
        for i in range(n):
            row = gz[g, i]
            row[:] = 0
            zi = z[g, i]
            for c in range(d):
                w = grad[g, i, c]
                if w == 0:
                    continue
                for j in range(m):
                    if at[g, c, j] > zi[j]:
                        row[j] -= w * st[g, c, j]
                        kt[g, c, j] += w


def _groups(x: torch.Tensor) -> np.ndarray:
    """x (..., r, c) as a C-contiguous (G, r, c) array sharing memory where it can."""
    return x.detach().reshape(-1, *x.shape[-2:]).contiguous().numpy()


@lru_cache(maxsize=None)
def _pool(workers: int) -> ThreadPoolExecutor:
    return ThreadPoolExecutor(workers, thread_name_prefix="inhibitor")


def _run(kernel, *arrays: np.ndarray) -> None:
    """`kernel(*arrays, lo, hi)` over the groups (first axis of `arrays[0]`) split into
    `torch.get_num_threads()` contiguous ranges, one per thread."""
    groups = arrays[0].shape[0]
    threads = max(1, min(torch.get_num_threads(), groups))
    if threads == 1:
        kernel(*arrays, 0, groups)
        return
    bounds = np.linspace(0, groups, threads + 1).astype(np.int64)
    jobs = [_pool(threads).submit(kernel, *arrays, int(lo), int(hi)) for lo, hi in zip(bounds[:-1], bounds[1:])]
    for job in jobs:
        job.result()


class L1Distance(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        out = torch.empty(*q.shape[:-1], k.shape[-2], dtype=q.dtype)  # (..., n, m)
        _run(_l1_forward, _groups(q), _groups(k.transpose(-2, -1)), out.view(-1, *out.shape[-2:]).numpy())
        ctx.save_for_backward(q, k)
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        q, k = ctx.saved_tensors
        gq, gk = torch.empty_like(q, memory_format=torch.contiguous_format), torch.empty_like(
            k, memory_format=torch.contiguous_format)
        _run(_l1_backward, _groups(grad), _groups(q), _groups(k), gq.view(-1, *q.shape[-2:]).numpy(),
                     gk.view(-1, *k.shape[-2:]).numpy())
        return gq, gk


class InhibitMix(torch.autograd.Function):
    @staticmethod
    def forward(ctx, z: torch.Tensor, v: torch.Tensor, signed: bool) -> torch.Tensor:
        a, s = (v.abs(), v.sign()) if signed else (v, torch.ones_like(v))
        out = torch.empty(*z.shape[:-1], v.shape[-1], dtype=v.dtype)  # (..., n, d)
        _run(_mix_forward, _groups(z), _groups(a), _groups(s), a.amax(-1).reshape(-1, a.shape[-2]).contiguous().numpy(),
                     out.view(-1, *out.shape[-2:]).numpy())
        ctx.save_for_backward(z, v)
        ctx.signed = signed
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        z, v = ctx.saved_tensors
        vt = v.transpose(-2, -1)
        at, st = (vt.abs(), vt.sign()) if ctx.signed else (vt, torch.ones_like(vt))
        gz = torch.empty(z.shape, dtype=z.dtype)
        kt = torch.empty(vt.shape, dtype=v.dtype)  # (..., d, m)
        _run(_mix_backward, _groups(grad), _groups(z), _groups(at), _groups(st), gz.view(-1, *z.shape[-2:]).numpy(),
                      kt.view(-1, *kt.shape[-2:]).numpy())
        gv = kt.transpose(-2, -1)
        if ctx.signed:
            gv = gv * (v != 0)  # s^2
        return gz, gv, None


def l1_distance(q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """sum_c |q_ic - k_jc| over the last axis: (..., n, d), (..., m, d) -> (..., n, m)."""
    return L1Distance.apply(q, k)


def inhibit_mix(z: torch.Tensor, v: torch.Tensor, signed: bool) -> torch.Tensor:
    """H (..., n, d) from scores z (..., n, m) >= 0 and values v (..., m, d) (module docstring)."""
    return InhibitMix.apply(z, v, signed)

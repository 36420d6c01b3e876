"""The inhibitor's CPU kernels (`models.inhibitor_ops`): values and gradients against autograd of the
literal `inhibit_reference` (float64, including ties at sign(0) and ReLU kinks, padded keys), and the
same bits whatever the thread count."""
from __future__ import annotations

import itertools

import pytest
import torch

from models.attention import inhibit_fast, inhibit_reference


def inputs(seed: int, integer: bool):
    """q, k, v (B, H, n, d), a mask with padded keys, and scalars with gradients, in float64.
    `integer`: small integers, d = 4 and gamma = 1 (gamma / sqrt(d) = 1/2), alpha = 1, so that
    q_ic = k_jc, v = 0 and (uncentred) z = |v| occur: ties of sign(0) and ReLU kinks."""
    g = torch.Generator().manual_seed(seed)
    B, H, n, d = 3, 2, 9, 4 if integer else 6
    if integer:
        q, k, v = (torch.randint(-2, 3, (B, H, n, d), generator=g).double() for _ in range(3))
    else:
        q, k, v = torch.randn(3, B, H, n, d, generator=g, dtype=torch.float64).unbind(0)
    mask = (torch.rand(B, n, generator=g) > 0.3).long()
    mask[:, 0] = 1
    mask[1] = 0
    mask[1, :2] = 1
    scalars = [torch.tensor(x, dtype=torch.float64) for x in ((1.0, 1.0, 1.5) if integer else (0.8, 0.3, 0.7))]
    return [t.requires_grad_() for t in (q, k, v, *scalars)], mask


@pytest.mark.parametrize("signed, center, integer", list(itertools.product((False, True), repeat=3)))
def test_values_and_gradients_equal_autograd_of_the_reference(signed, center, integer):
    (q, k, v, gamma, alpha, beta), mask = inputs(int(signed) * 4 + int(center) * 2 + int(integer), integer)
    weights = torch.randn(q.shape, generator=torch.Generator().manual_seed(9), dtype=torch.float64)
    results = []
    for fn in (inhibit_reference, inhibit_fast):
        h = fn(q, k, v, mask, gamma, alpha, beta, center, signed)
        results.append((h, *torch.autograd.grad((h * weights).sum(), (q, k, v, gamma, alpha, beta))))
    names = ("h", "q", "k", "v", "gamma", "alpha", "beta")
    for name, ref, ours in zip(names, *results):
        assert torch.allclose(ours, ref, rtol=1e-12, atol=1e-12), (name, (ours - ref).abs().max())


def test_the_thread_count_does_not_change_a_bit():
    (q, k, v, gamma, alpha, beta), mask = inputs(5, integer=False)
    q, k, v = (t.detach().float().requires_grad_() for t in (q, k, v))
    before = torch.get_num_threads()
    results = []
    try:
        for threads in (1, 2, 3):
            torch.set_num_threads(threads)
            h = inhibit_fast(q, k, v, mask, 0.8, 0.3, 0.7, True, True)
            results.append((h, *torch.autograd.grad(h.square().sum(), (q, k, v))))
    finally:
        torch.set_num_threads(before)
    assert all(torch.equal(a, b) for other in results[1:] for a, b in zip(results[0], other))

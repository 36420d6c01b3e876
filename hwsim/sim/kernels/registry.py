"""Op type -> kernel builder. A builder turns one graph node (its int attributes, constant inputs
and declared widths, a `KernelSpec`) into a callable `kernel(*inputs) -> (outputs, peaks)`, where
`peaks` maps an internal accumulator label (as in `quant.intops`) to its two's-complement
magnitude `max(v, -v - 1)` (`requant.tc_magnitude`) for the accumulator width check. Weight preparation happens once, in the builder.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping

import numpy as np

from hwsim.sim.kernels import elementwise, inhibitor, layernorm, matmul, softmax
from quant.ir.spec import acc_width, int_range

Kernel = Callable[..., tuple[tuple[np.ndarray, ...], dict[str, int]]]


@dataclass(frozen=True)
class KernelSpec:
    """What a builder may know ahead of time: attributes, constant inputs (None = run-time),
    declared widths of inputs (None = undeclared) and the storage dtype of the output."""

    op_type: str
    attrs: Mapping[str, object]
    consts: tuple[np.ndarray | None, ...]
    in_bits: tuple[int | None, ...]
    in_signed: tuple[bool, ...]
    out_dtype: np.dtype
    out_bits: int | None

    def absmax(self, i: int) -> int | None:
        """Largest |value| input i may hold by its declared width (None when undeclared)."""
        if self.in_bits[i] is None:
            return None
        lo, hi = int_range(self.in_bits[i], self.in_signed[i])
        return max(-lo, hi)

    def saturated_dtype(self) -> np.dtype:
        """The output storage dtype when the op saturates to `attrs['bits']` within the declared
        width; int64 otherwise, so that the executor's width check sees the true values."""
        bits = self.attrs.get("bits")
        if bits is not None and self.out_bits is not None and bits <= self.out_bits:
            return self.out_dtype
        return np.dtype(np.int64)


BUILDERS: dict[str, Callable[[KernelSpec], Kernel]] = {}

def register(op_type: str) -> Callable:
    def add(fn: Callable[[KernelSpec], Kernel]) -> Callable[[KernelSpec], Kernel]:
        if op_type in BUILDERS:
            raise ValueError(f"kernel for {op_type!r} is already registered")
        BUILDERS[op_type] = fn
        return fn
    return add


@register("Linear")
def _linear(spec: KernelSpec) -> Kernel:
    w, b = spec.consts[1], spec.consts[2]
    if w is None or b is None:
        raise ValueError("Linear needs w and b as initializers")
    a = spec.attrs
    acc_width("Linear", a)  # raises for a width other than 32 or 64
    x_absmax = spec.absmax(0) if spec.absmax(0) is not None else 1 << 62
    s = spec.consts[3] if len(spec.consts) > 3 else None  # per-channel shift offsets
    if len(spec.consts) > 3 and s is None:
        raise ValueError("Linear needs its per-channel shifts s as an initializer")
    shift = a["shift"] if s is None else a["shift"] + s.astype(np.int64)
    kern = matmul.LinearKernel(w, b, shift, a["bits"], a["relu"], x_absmax, spec.saturated_dtype())

    def run(x, w_, b_, s_=None):
        y, peak = kern(x)
        return (y,), {"acc": peak}
    return run


@register("LayerNorm")
def _layernorm(spec: KernelSpec) -> Kernel:
    a, dt = spec.attrs, spec.saturated_dtype()

    def run(x, gamma, beta):
        if gamma.shape[-1] != x.shape[-1] or beta.shape[-1] != x.shape[-1]:
            raise ValueError(f"x {x.shape}, gamma {gamma.shape}, beta {beta.shape}: last dimensions differ")
        return (layernorm.layernorm(x, gamma, beta, a["eps"], a["norm_frac"], a["shift"], a["bits"], dt),), {}
    return run


@register("Add")
def _add(spec: KernelSpec) -> Kernel:
    a = spec.attrs

    def run(x, y):
        if x.shape != y.shape:
            raise ValueError(f"operands of shapes {x.shape} and {y.shape} differ")
        return (elementwise.add(x, y, a["la"], a["lb"]),), {}
    return run


@register("Embed")
def _embed(spec: KernelSpec) -> Kernel:
    a = spec.attrs

    def run(ids, word, pos, type_=None):
        return (elementwise.embed(ids, word, pos, type_, a["lw"], a["lp"], a["lt"]),), {}
    return run


@register("ScaleChannels")
def _scale(spec: KernelSpec) -> Kernel:
    a, dt = spec.attrs, spec.saturated_dtype()

    def run(x, c):
        return (elementwise.scale_channels(x, c, a["shift"], a["bits"], dt),), {}
    return run


@register("DotAttention")
def _dot(spec: KernelSpec) -> Kernel:
    a, dt = dict(spec.attrs), spec.saturated_dtype()
    acc_width("DotAttention", a)  # raises for a width other than 32 or 64

    def run(q, k, v, mask):
        y, peaks = softmax.dot_attention(q, k, v, mask, a["q_ln2"], a["b_int"], a["c_int"], a["n_clip"],
                                         a["prob_bits"], a["out_shift"], a["bits"], a["score_shift"],
                                         a["acc_bits"], dt)
        return (y,), peaks
    return run


@register("InhibitorAttention")
def _inhibitor(spec: KernelSpec) -> Kernel:
    a, dt = dict(spec.attrs), spec.saturated_dtype()
    qk = [spec.absmax(i) for i in (0, 1)]
    qk_absmax = max(qk) if None not in qk else None

    def run(q, k, v, mask):
        y, peaks = inhibitor.inhibitor_attention(q, k, v, mask, a["z_shift"], a["center"], a["alpha"], a["signed"],
                                                 a["out_shift"], a["bits"], qk_absmax, dt)
        return (y,), peaks
    return run


# ---- standard ONNX data movement (no arithmetic; `quant.ir.spec.STANDARD_OPS`) -------------------
def _reshape_target(shape_in: tuple[int, ...], shape: np.ndarray, allowzero: int) -> tuple[int, ...]:
    out = [int(s) for s in shape]
    if not allowzero:
        out = [shape_in[i] if s == 0 else s for i, s in enumerate(out)]
    return tuple(out)


@register("Reshape")
def _reshape(spec: KernelSpec) -> Kernel:
    allowzero = int(spec.attrs.get("allowzero", 0))

    def run(x, shape):
        target = _reshape_target(x.shape, shape, allowzero)
        try:
            return (x.reshape(target),), {}
        except ValueError:
            raise ValueError(f"cannot reshape {x.shape} to {target}") from None
    return run


@register("Transpose")
def _transpose(spec: KernelSpec) -> Kernel:
    perm = spec.attrs.get("perm")

    def run(x):
        return (np.transpose(x, perm),), {}
    return run


@register("Gather")
def _gather(spec: KernelSpec) -> Kernel:
    axis = int(spec.attrs.get("axis", 0))

    def run(x, idx):
        size = x.shape[axis]
        if np.any((idx < -size) | (idx >= size)):
            raise ValueError(f"index {idx.tolist()} outside axis {axis} of size {size}")
        return (np.take(x, np.where(idx < 0, idx + size, idx), axis=axis),), {}
    return run


@register("Identity")
def _identity(spec: KernelSpec) -> Kernel:
    return lambda x: ((x,), {})


@register("Unsqueeze")
def _unsqueeze(spec: KernelSpec) -> Kernel:
    def run(x, axes):
        out = x
        for ax in sorted(int(a) % (x.ndim + len(axes)) for a in axes):
            out = np.expand_dims(out, ax)
        return (out,), {}
    return run


@register("Squeeze")
def _squeeze(spec: KernelSpec) -> Kernel:
    def run(x, axes=None):
        return (np.squeeze(x, axis=None if axes is None else tuple(int(a) for a in axes)),), {}
    return run

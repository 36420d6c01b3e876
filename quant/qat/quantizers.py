"""Brevitas quantizers for power-of-two fixed point (DESIGN.md "Number format"), composed from small
orthogonal pieces and named for what they are.

Every quantizer here rounds with `RoundHalfUpSte` (`floor(x + 0.5)`, straight-through gradient), the
rounding of DESIGN.md `requant`, so a fake-quantized value equals the integer pipeline's value
exactly. Scales are restricted to powers of two with the exponent rounded up (`CeilSte`: the range
never shrinks below the statistic), one per tensor, or for Linear weights optionally one per output
channel (`FixedPointWeightPerChannel`). Bit widths are set with `.let(bit_width=b)` via the helpers
at the bottom (`weight_quant`, `act_quant`, `bias_quant`, `const_act_quant`).
"""
from __future__ import annotations

import math

import torch
from brevitas.core.function_wrapper import CeilSte
from brevitas.core.quant import IntQuant as BrevitasIntQuant
from brevitas.core.restrict_val import RestrictValueType
from brevitas.core.scaling import ScalingImplType, ScalingPerOutputType
from brevitas.core.stats.stats_op import AbsMax
from brevitas.inject import ExtendedInjector
from brevitas.quant.base import IntQuant, MaxStatsScaling, NarrowIntQuant, ParamFromRuntimePercentileScaling
from brevitas.quant.scaled_int import IntBias
from brevitas.quant.solver import ActQuantSolver, WeightQuantSolver
from torch import nn

from quant.ir.spec import CHANNEL_SHIFT_BITS


def round_half_up(x: torch.Tensor) -> torch.Tensor:
    """`floor(x + 0.5)` forward, identity gradient (straight-through).

    >>> round_half_up(torch.tensor([-1.5, -0.5, 0.5, 1.5, 2.49])).tolist()
    [-1.0, 0.0, 1.0, 2.0, 2.0]
    """
    return x + (torch.floor(x + 0.5) - x).detach()


class RoundHalfUpSte(nn.Module):
    """Brevitas `float_to_int_impl`: round half towards +inf with a straight-through gradient."""

    def __init__(self) -> None:  # explicit: Brevitas' injector rejects *args/**kwargs constructors
        super().__init__()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return round_half_up(x)


class _FakeQuant(torch.autograd.Function):
    """`clamp(floor(x / scale + 0.5), lo, hi) * scale` in one op, with the gradients of that expression
    composed from torch ops with a straight-through floor: d/dx = 1 where `lo <= floor(.) <= hi`, else
    0; d/dscale = `q - inside * x / scale` summed (q the clamped integers). Per-tensor scale."""

    @staticmethod
    def forward(ctx, x, scale, lo: float, hi: float):
        q = (x / scale).add_(0.5).floor_()
        y = q.clamp(lo, hi)
        inside = y == q
        y = y.mul_(scale)
        ctx.save_for_backward(x, scale, inside, y)
        return y

    @staticmethod
    def backward(ctx, grad):
        x, scale, inside, y = ctx.saved_tensors
        grad_x = grad * inside
        grad_scale = None
        if ctx.needs_input_grad[1]:  # sum grad * (q - inside * x / scale); y - x is exact (Sterbenz)
            resid = torch.where(inside, y - x, y).reshape(-1)
            dot = torch.dot(grad.reshape(-1).to(resid.dtype), resid)
            grad_scale = (dot / scale.reshape(())).reshape(scale.shape).to(scale.dtype)
        return grad_x.to(x.dtype), grad_scale, None, None


def fake_quant(x: torch.Tensor, scale, lo: float, hi: float) -> torch.Tensor:
    """`x` on the grid `scale` (a per-tensor tensor, or a number: no gradient), round half up,
    saturated to [lo, hi] integers; straight-through. Same values, bit for bit, as
    `clamp(round_half_up(x / scale), lo, hi) * scale`.

    >>> fake_quant(torch.tensor([-9.0, -0.25, 0.25, 0.75, 9.0]), 0.5, -4, 3).tolist()
    [-2.0, 0.0, 0.5, 1.0, 1.5]
    """
    if not torch.is_tensor(scale):
        scale = torch.tensor(float(scale), dtype=x.dtype)
    return _FakeQuant.apply(x, scale, float(lo), float(hi))


class RoundHalfUpIntQuant(BrevitasIntQuant):
    """Brevitas `IntQuant` with `RoundHalfUpSte` rounding fused into one autograd op (`fake_quant`):
    same values and gradients as the composed Brevitas chain (divide, add zero point, round, two
    `torch.where` clamps, subtract, multiply), in a third of the passes over the tensor. A non-zero
    or learned zero point or a non-scalar scale takes the Brevitas chain."""

    def forward(self, scale: torch.Tensor, zero_point: torch.Tensor, bit_width: torch.Tensor,
                x: torch.Tensor) -> torch.Tensor:
        if zero_point.requires_grad or scale.numel() != 1 or bool(zero_point.any()):
            return super().forward(scale, zero_point, bit_width, x)
        x = self.input_view_impl(x)
        return fake_quant(x, scale, float(self.min_int(bit_width)), float(self.max_int(bit_width)))


# ---------------------------------------------------------------- pieces

class RoundHalfUp(ExtendedInjector):
    """Rounding of DESIGN.md requant (overrides Brevitas' round-half-even `RoundSte`), fused with
    the integer quantization itself (`RoundHalfUpIntQuant`)."""
    float_to_int_impl = RoundHalfUpSte
    int_quant = RoundHalfUpIntQuant


class PerTensorPowerOfTwo(ExtendedInjector):
    """One power-of-two scale per tensor; log2 of the scale rounded up (range is never cut short)."""
    scaling_per_output_type = ScalingPerOutputType.TENSOR
    restrict_scaling_type = RestrictValueType.POWER_OF_TWO
    restrict_value_float_to_int_impl = CeilSte


class FlooredAbsMax(AbsMax):
    """Per-channel max |w| (Brevitas `AbsMax` over each output channel), floored at the layer's max |w|
    times `2**-(2**CHANNEL_SHIFT_BITS - 1)`: with the power-of-two ceil, every channel's exponent lies
    within `2**CHANNEL_SHIFT_BITS - 1` of the per-tensor one, so the Linear's per-channel shift offsets
    fit `CHANNEL_SHIFT_BITS` unsigned bits (`quant.ir.spec`). A channel that far below the layer's
    largest rounds on the floor's grid instead of its own."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        peak = super().forward(x)
        return torch.maximum(peak, peak.max() * 2.0 ** -((1 << CHANNEL_SHIFT_BITS) - 1))


class PerChannelPowerOfTwo(ExtendedInjector):
    """One power-of-two scale per output channel (exponent rounded up), from `FlooredAbsMax`."""
    scaling_per_output_type = ScalingPerOutputType.CHANNEL
    restrict_scaling_type = RestrictValueType.POWER_OF_TWO
    restrict_value_float_to_int_impl = CeilSte
    scaling_stats_impl = FlooredAbsMax


class RuntimeCalibratedScale(ParamFromRuntimePercentileScaling):
    """Scale initialised from a true average (momentum None) of per-batch |x| percentiles over the
    first `collect_stats_steps` training-mode batches (see `quant.qat.model.calibrate`), then learned."""
    high_percentile_q = 99.99
    collect_stats_steps = 2 ** 30  # ended explicitly by `calibrate` (init_scale)
    scaling_stats_momentum = None
    scaling_min_val = 2.0 ** -24  # a power of two, so that a never-active tensor still has an exponent


class ConstantScale(ExtendedInjector):
    """A fixed scale (`scaling_init` = threshold); used where the format is a design decision."""
    scaling_impl_type = ScalingImplType.CONST


# ---------------------------------------------------------------- quantizers

class FixedPointWeightPerTensor(RoundHalfUp, NarrowIntQuant, MaxStatsScaling, PerTensorPowerOfTwo,
                                WeightQuantSolver):
    """Signed narrow-range (+-(2**(b-1)-1)) weights, power-of-two scale from max |w|."""
    bit_width = 8


class FixedPointWeightPerChannel(RoundHalfUp, NarrowIntQuant, MaxStatsScaling, PerChannelPowerOfTwo,
                                 WeightQuantSolver):
    """Signed narrow-range weights, one power-of-two scale per output channel from its max |w| (floored,
    `FlooredAbsMax`). Its scale is not a scalar, so it takes Brevitas' composed chain (same rounding)."""
    bit_width = 8


class FixedPointActPerTensor(RoundHalfUp, IntQuant, RuntimeCalibratedScale, PerTensorPowerOfTwo,
                             ActQuantSolver):
    """Signed activations in [-2**(b-1), 2**(b-1)-1], power-of-two scale calibrated then learned."""
    bit_width = 8


class FixedPointActConstant(RoundHalfUp, IntQuant, ConstantScale, PerTensorPowerOfTwo, ActQuantSolver):
    """Signed activations with a constant power-of-two range (`scaling_init`)."""
    bit_width = 8
    scaling_init = 1.0


class AccumulatorBias(RoundHalfUp, IntBias):
    """Bias at the accumulator's scale `scale_x * scale_w`, `bit_width` wide (32 by default)."""
    bit_width = 32


def weight_quant(bits: int, per_channel: bool = False):
    return (FixedPointWeightPerChannel if per_channel else FixedPointWeightPerTensor).let(bit_width=bits)


def act_quant(bits: int, percentile: float = 99.99):
    return FixedPointActPerTensor.let(bit_width=bits, high_percentile_q=percentile)


def const_act_quant(bits: int, threshold: float):
    """Activations saturating at +-`threshold` (a power of two): exp = bits - 1 - log2(threshold)."""
    if threshold <= 0 or math.log2(threshold) != round(math.log2(threshold)):
        raise ValueError(f"constant range {threshold} must be a positive power of two")
    return FixedPointActConstant.let(bit_width=bits, scaling_init=threshold)


def bias_quant(bits: int):
    return AccumulatorBias.let(bit_width=bits)


def fixed_point_weight(w: torch.Tensor, bits: int) -> tuple[torch.Tensor, int]:
    """`FixedPointWeightPerTensor` as a plain function, for parameters that are not Linear weights
    (LayerNorm gamma, symmetric attention's c): exp = -ceil(log2(max|w| / 2**(bits-1))) (Brevitas'
    threshold division for signed widths),
    integers `clamp(round_half_up(w * 2**exp), +-(2**(bits-1)-1))`. Returns (fake-quant w, exp)."""
    top = (1 << (bits - 1)) - 1
    exp = weight_exp(w, bits)
    return fake_quant(w, 2.0 ** -exp, -top, top), exp


def weight_exp(w: torch.Tensor, bits: int) -> int:
    """The exponent of `fixed_point_weight`: `-ceil(log2(max|w| / 2**(bits-1)))` (max|w| at least 1e-10)."""
    peak = max(float(torch.linalg.vector_norm(w.detach(), float("inf"))), 1e-10)
    return -math.ceil(math.log2(peak / 2 ** (bits - 1)))


def fixed_point_value(x: torch.Tensor, exp: int, bits: int) -> torch.Tensor:
    """`x` on the grid `2**-exp`, round half up, saturated to signed `bits` (gradient straight through)."""
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    return fake_quant(x, 2.0 ** -exp, lo, hi)


def scale_exps(scale: torch.Tensor) -> torch.Tensor:
    """The exponents `exp` of power-of-two scales `2**-exp` (any shape, flattened: one per channel);
    raises if one is not a power of two.

    >>> scale_exps(torch.tensor([[0.25], [2.0]])).tolist()
    [2, -1]
    """
    e = -torch.log2(scale.detach().double().reshape(-1))
    if not bool((e == e.round()).all()):
        raise ValueError(f"scales {scale.reshape(-1).tolist()[:4]}... are not all powers of two")
    return e.round().to(torch.int64)


def scale_to_exp(scale) -> int:
    """The exponent `exp` of a power-of-two scale `2**-exp` (raises if not a power of two)."""
    value = float(scale.detach().reshape(-1)[0]) if torch.is_tensor(scale) else float(scale)
    exp = -math.log2(value)
    if exp != round(exp):
        raise ValueError(f"scale {value} is not a power of two")
    return int(round(exp))

"""Brevitas quantizers for power-of-two fixed point (DESIGN.md "Number format"), composed from small
orthogonal pieces and named for what they are.

Every quantizer here rounds with `RoundHalfUpSte` (`floor(x + 0.5)`, straight-through gradient), the
rounding of DESIGN.md `requant`, so a fake-quantized value equals the integer pipeline's value
exactly. Scales are restricted to powers of two with the exponent rounded up (`CeilSte`: the range
never shrinks below the statistic). Bit widths are set with `.let(bit_width=b)` via the helpers
at the bottom (`weight_quant`, `act_quant`, `bias_quant`, `const_act_quant`).
"""
from __future__ import annotations

import math

import torch
from brevitas.core.function_wrapper import CeilSte
from brevitas.core.restrict_val import RestrictValueType
from brevitas.core.scaling import ScalingImplType, ScalingPerOutputType
from brevitas.inject import ExtendedInjector
from brevitas.quant.base import IntQuant, MaxStatsScaling, NarrowIntQuant, ParamFromRuntimePercentileScaling
from brevitas.quant.scaled_int import IntBias
from brevitas.quant.solver import ActQuantSolver, WeightQuantSolver
from torch import nn


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


# ---------------------------------------------------------------- pieces

class RoundHalfUp(ExtendedInjector):
    """Rounding of DESIGN.md requant (overrides Brevitas' round-half-even `RoundSte`)."""
    float_to_int_impl = RoundHalfUpSte


class PerTensorPowerOfTwo(ExtendedInjector):
    """One power-of-two scale per tensor; log2 of the scale rounded up (range is never cut short)."""
    scaling_per_output_type = ScalingPerOutputType.TENSOR
    restrict_scaling_type = RestrictValueType.POWER_OF_TWO
    restrict_value_float_to_int_impl = CeilSte


class RuntimeCalibratedScale(ParamFromRuntimePercentileScaling):
    """Scale initialised from a true average (momentum None) of per-batch |x| percentiles over the
    first `collect_stats_steps` training-mode batches (see `quant.qmodel.calibrate`), then learned."""
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


def weight_quant(bits: int):
    return FixedPointWeightPerTensor.let(bit_width=bits)


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
    peak = max(float(w.detach().abs().max()), 1e-10)
    exp = -math.ceil(math.log2(peak / 2 ** (bits - 1)))
    q = torch.clamp(round_half_up(w * 2.0 ** exp), -top, top)
    return q * 2.0 ** -exp, exp


def fixed_point_value(x: torch.Tensor, exp: int, bits: int) -> torch.Tensor:
    """`x` on the grid `2**-exp`, round half up, saturated to signed `bits` (gradient straight through)."""
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    return torch.clamp(round_half_up(x * 2.0 ** exp), lo, hi) * 2.0 ** -exp


def scale_to_exp(scale) -> int:
    """The exponent `exp` of a power-of-two scale `2**-exp` (raises if not a power of two)."""
    value = float(scale.detach().reshape(-1)[0]) if torch.is_tensor(scale) else float(scale)
    exp = -math.log2(value)
    if exp != round(exp):
        raise ValueError(f"scale {value} is not a power of two")
    return int(round(exp))

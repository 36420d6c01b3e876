"""Quantized building blocks of the encoder (docs/QUANT.md), top-down like `models/encoder.py`.

Tensors flow between modules as `Fx` (real values on a power-of-two grid + the scale). Linear layers
are Brevitas `QuantLinear`s; activations are quantized by Brevitas `QuantIdentity` (calibrated, then
learned power-of-two scale). Ops whose integer form differs from the float one (LayerNorm, softmax,
inhibitor scores, ScaleChannels) are straight-through: forward value = the exact `quant.intops` op
on the integer tensors times the output scale, gradient = that of the float op (fake-quantized).
Before calibration a scale is not yet a power of two and the float route alone is used.
The attention variants built from these are in `quant.qat.attention`.

In eval mode accumulations (Linear, residual sums) run in float64, so fake-quant values equal the
integer program's exactly (sums stay far below 2**53); in training they run in the model's dtype, and
the straight-through forward values come from `quant.qat.stvalues` (the same integers, computed in
floating point; the graph is that of the float op only).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from brevitas.nn import QuantIdentity, QuantLinear
from brevitas.quant_tensor import IntQuantTensor, QuantTensor
from torch import nn

from models.config import EncoderConfig
from quant import intops
from quant.qat import stvalues
from quant.qat.config import QuantConfig
from quant.qat.quantizers import (act_quant, bias_quant, const_act_quant, fake_quant, fixed_point_value,
                              fixed_point_weight, round_half_up, scale_exps, weight_exp, weight_quant)


def _pot_exp(scale: torch.Tensor) -> int | None:
    """exp of a power-of-two scale `2**-exp`, None while calibrating (scale not a power of two)."""
    e = -math.log2(float(scale.detach().reshape(-1)[0]))
    return int(round(e)) if e == round(e) else None


@dataclass
class Fx:
    """A fixed-point tensor: `value` = integers * `scale` (scale = 2**-exp), declared `bits` wide."""
    value: torch.Tensor
    scale: torch.Tensor
    bits: int

    @property
    def exp(self) -> int | None:
        return _pot_exp(self.scale)

    def int(self) -> torch.Tensor:
        return torch.round(self.value.detach().double() / self.scale.detach().double()).to(torch.int64)

    def ints(self, dtype: torch.dtype | None = None) -> torch.Tensor:
        """`int()` as a float tensor of integers (`dtype`, default the value's; exact: power-of-two scale)."""
        return torch.round(self.value.detach().to(dtype or self.value.dtype) * 2.0 ** self.exp)

    def map(self, fn) -> "Fx":
        """Same format, `fn` applied to the values (reshapes)."""
        return Fx(fn(self.value), self.scale, self.bits)


def acc_dtype(module: nn.Module, x: torch.Tensor) -> torch.dtype:
    return x.dtype if module.training else torch.float64


class _ForwardValue(torch.autograd.Function):
    """Forward `value` as it is; the gradient goes to `graph` unchanged (no arithmetic on either)."""

    @staticmethod
    def forward(ctx, graph: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
        return value

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return grad, None


def exact(fq: Fx, y_int: torch.Tensor) -> Fx:
    """Straight-through: forward value `y_int * scale`, gradient that of the fake-quant `fq`."""
    if fq.value.requires_grad:  # training: y_int is a fresh float64 tensor of stvalues
        target = y_int.to(fq.value.dtype).mul_(2.0 ** -fq.exp)
        return Fx(_ForwardValue.apply(fq.value, target), fq.scale, fq.bits)
    target = y_int.to(fq.value.dtype) * fq.scale.detach().to(fq.value.dtype)
    return Fx(fq.value + (target - fq.value).detach(), fq.scale, fq.bits)


class ActQuant(nn.Module):
    """Signed `bits`-bit activation quantizer (Brevitas QuantIdentity, power-of-two scale); `bits`
    defaults to `qcfg.act_bits` (attention's tensors pass `qcfg.attention_bits`)."""

    def __init__(self, qcfg: QuantConfig, const_range: float | None = None, bits: int | None = None):
        super().__init__()
        self.bits = qcfg.act_bits if bits is None else bits
        quant = act_quant(self.bits, qcfg.act_percentile) if const_range is None \
            else const_act_quant(self.bits, const_range)
        self.quant = QuantIdentity(act_quant=quant, return_quant_tensor=True)

    def forward(self, x: torch.Tensor, dtype: torch.dtype | None = None) -> Fx:
        q = self.quant(x)
        return Fx(q.value.to(dtype or x.dtype), q.scale, self.bits)

    @property
    def exp(self) -> int:
        return _pot_exp(self.quant.act_quant.scale())


class QLinear(QuantLinear):
    """`act(x @ W^T + b)` with W, b fixed point (b at scale_x * scale_w, `bias_bits`), the accumulator
    requantised by the output quantizer `act` (shared between layers when given the same module), then
    ReLU if `relu`. `act=None` keeps the accumulator (the classifier: shift 0, 32 bits).
    `qcfg.per_channel`: W has one power-of-two scale per output channel (so has b), which the
    requantisation absorbs; the classifier keeps one scale (its logits share one exponent)."""

    def __init__(self, n_in: int, n_out: int, qcfg: QuantConfig, act: ActQuant | None, relu: bool = False):
        per_channel = qcfg.per_channel and act is not None
        super().__init__(n_in, n_out, bias=True, weight_quant=weight_quant(qcfg.weight_bits, per_channel),
                         bias_quant=bias_quant(qcfg.bias_bits), return_quant_tensor=False)
        self.act, self.relu, self.per_channel = act, relu, per_channel

    def inner_forward_impl(self, x, quant_weight, quant_bias):
        x = x.value if isinstance(x, QuantTensor) else x
        unwrap = (lambda t: t.value if isinstance(t, QuantTensor) else t)
        bias = None if quant_bias is None else unwrap(quant_bias).to(x.dtype)
        return F.linear(x, unwrap(quant_weight).to(x.dtype), bias)

    def forward(self, x: Fx) -> Fx:
        dtype = acc_dtype(self, x.value)
        inp = IntQuantTensor(x.value.to(dtype), x.scale, torch.zeros(()), torch.tensor(float(x.bits)),
                             True, self.training)
        acc = super().forward(inp)  # (..., n_out) float64 in eval: exact integer sums
        if self.act is None:
            return Fx(acc.to(x.value.dtype), x.scale * self.quant_weight().scale, 32)
        y = self.act(acc, x.value.dtype)
        return Fx(F.relu(y.value), y.scale, y.bits) if self.relu else y

    def integer_params(self, exp_x: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(w [K, N] int64, b [N] int64, exp_w [N] int64) as the lowering writes them: column j of w at
        exp_w[j], b[j] at exp_x + exp_w[j] (one exponent repeated unless `per_channel`)."""
        qw = self.quant_weight()
        scale_x = torch.tensor(2.0 ** -exp_x)
        inp = IntQuantTensor(torch.zeros(1, self.in_features), scale_x, torch.zeros(()), torch.tensor(8.0), True, False)
        qb = self.bias_quant(self.bias, inp, qw)
        exps = scale_exps(qw.scale).expand(self.out_features)
        return qw.int().to(torch.int64).t().contiguous(), qb.int().to(torch.int64).reshape(-1), exps


class QLayerNorm(nn.Module):
    """DESIGN.md integer LayerNorm: gamma fixed point (`weight_bits`), beta at exp norm_frac + exp_gamma
    (`bias_bits`), output quantized by a calibrated `act_bits` quantizer."""

    def __init__(self, dim: int, eps: float, qcfg: QuantConfig):
        super().__init__()
        self.weight, self.bias = nn.Parameter(torch.ones(dim)), nn.Parameter(torch.zeros(dim))
        self.eps, self.qcfg = eps, qcfg
        self.act = ActQuant(qcfg)

    def gamma_beta(self) -> tuple[torch.Tensor, int, torch.Tensor, int]:
        """(fake-quant gamma, exp_gamma, fake-quant beta, exp_beta)."""
        gamma, eg = fixed_point_weight(self.weight, self.qcfg.weight_bits)
        eb = self.qcfg.norm_frac + eg
        return gamma, eg, fixed_point_value(self.bias, eb, self.qcfg.bias_bits), eb

    def int_eps(self, exp_x: int) -> int:
        """eps at the variance's exp (2 * exp_x), at least 1."""
        return max(1, math.floor(self.eps * 4.0 ** exp_x + 0.5))

    def forward(self, x: Fx, dtype: torch.dtype) -> Fx:
        gamma, eg, beta, eb = self.gamma_beta()
        v = x.value
        # the integer op's eps (at least one input step squared): a row that quantization made constant
        # (common at 4 bits) has variance 0, where the float model's eps (1e-12) gives 1/sqrt(eps) = 1e6
        # in the backward pass and, compounded over layers, inf and NaN gradients
        eps = self.eps if x.exp is None else self.int_eps(x.exp) * 4.0 ** -x.exp
        fq = self.act(F.layer_norm(v, v.shape[-1:], gamma.to(v.dtype), beta.to(v.dtype), eps), dtype)
        if x.exp is None or fq.exp is None:
            return fq
        g_int, b_int = round_half_up(gamma * 2.0 ** eg).long(), round_half_up(beta * 2.0 ** eb).long()
        args = (self.int_eps(x.exp), self.qcfg.norm_frac, eb - fq.exp, fq.bits)
        if self.training:
            return exact(fq, stvalues.layernorm(x.ints(torch.float64), g_int, b_int, *args))
        return exact(fq, intops.layernorm(x.int(), g_int, b_int, *args))


def residual_add(a: Fx, b: Fx, module: nn.Module) -> Fx:
    """DESIGN.md Add: exact sum at the finer of the two exps (int32, no requantisation)."""
    dtype = acc_dtype(module, a.value)
    return Fx(a.value.to(dtype) + b.value.to(dtype), torch.minimum(a.scale, b.scale), 32)


class QEmbeddings(nn.Module):
    """word + position [+ type 0] tables (each `weight_bits`, own power-of-two scale; the Embed op aligns
    them by left shifts), then the integer LayerNorm."""

    def __init__(self, cfg: EncoderConfig, qcfg: QuantConfig):
        super().__init__()
        self.word = QLinearTable(cfg.vocab_size, cfg.hidden, qcfg)
        self.position = QLinearTable(cfg.max_position, cfg.hidden, qcfg)
        self.token_type = QLinearTable(cfg.type_vocab_size, cfg.hidden, qcfg) if cfg.type_vocab_size else None
        self.norm = QLayerNorm(cfg.hidden, cfg.layer_norm_eps, qcfg)
        self.drop = nn.Dropout(cfg.dropout)

    def tables(self) -> list[tuple[str, "QLinearTable"]]:
        named = [("word", self.word), ("pos", self.position)]
        return named + ([("type", self.token_type)] if self.token_type is not None else [])

    def forward(self, input_ids: torch.Tensor, dtype: torch.dtype) -> Fx:
        n = input_ids.shape[1]
        rows = {"word": lambda w: w[input_ids], "pos": lambda w: w[:n], "type": lambda w: w[0]}
        acc, scale = 0.0, None
        for name, table in self.tables():
            w, s = table.lookup(rows[name])
            acc = acc + w.to(torch.float64 if not self.training else dtype)  # (B, n, D)
            scale = s if scale is None else torch.minimum(scale, s)
        y = self.norm(Fx(acc, scale, 32), dtype)
        return y.map(self.drop)


class QLinearTable(nn.Module):
    """An embedding table with a per-tensor power-of-two scale (`weight_bits`)."""

    def __init__(self, rows: int, dim: int, qcfg: QuantConfig):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(rows, dim))
        self.bits = qcfg.weight_bits

    def quantized(self) -> tuple[torch.Tensor, torch.Tensor]:
        w, exp = fixed_point_weight(self.weight, self.bits)
        return w, torch.tensor(2.0 ** -exp)

    def lookup(self, select) -> tuple[torch.Tensor, torch.Tensor]:
        """`select(w)` of the fake-quant table `quantized()` (elementwise, so the rows selected first
        are quantized alone: same values and gradients without a pass over the whole table)."""
        exp, top = weight_exp(self.weight, self.bits), (1 << (self.bits - 1)) - 1
        return fake_quant(select(self.weight), 2.0 ** -exp, -top, top), torch.tensor(2.0 ** -exp)

"""Quantized building blocks of the encoder (docs/QUANT.md), top-down like `models/encoder.py`.

Tensors flow between modules as `Fx` (real values on a power-of-two grid + the scale). Linear layers
are Brevitas `QuantLinear`s; activations are quantized by Brevitas `QuantIdentity` (calibrated, then
learned power-of-two scale). Ops whose integer form differs from the float one (LayerNorm, softmax,
inhibitor scores, ScaleChannels) are straight-through: forward value = the exact `quant.intops` op
on the integer tensors times the output scale, gradient = that of the float op (fake-quantized).
Before calibration a scale is not yet a power of two and the float route alone is used.

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

from models.attention import inhibit_fast, merge_heads, split_heads
from models.config import EncoderConfig
from quant import intops
from quant.qat import stvalues
from quant.qat.config import QuantConfig
from quant.qat.quantizers import (act_quant, bias_quant, const_act_quant, fake_quant, fixed_point_value,
                              fixed_point_weight, round_half_up, weight_exp, weight_quant)


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
    """Signed `bits`-bit activation quantizer (Brevitas QuantIdentity, power-of-two scale)."""

    def __init__(self, qcfg: QuantConfig, const_range: float | None = None):
        super().__init__()
        self.bits = qcfg.act_bits
        quant = act_quant(qcfg.act_bits, qcfg.act_percentile) if const_range is None \
            else const_act_quant(qcfg.act_bits, const_range)
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
    ReLU if `relu`. `act=None` keeps the accumulator (the classifier: shift 0, 32 bits)."""

    def __init__(self, n_in: int, n_out: int, qcfg: QuantConfig, act: ActQuant | None, relu: bool = False):
        super().__init__(n_in, n_out, bias=True, weight_quant=weight_quant(qcfg.weight_bits),
                         bias_quant=bias_quant(qcfg.bias_bits), return_quant_tensor=False)
        self.act, self.relu = act, relu

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

    def integer_params(self, exp_x: int) -> tuple[torch.Tensor, torch.Tensor, int]:
        """(w [K, N] int64, b [N] int64 at exp_x + exp_w, exp_w) as the lowering writes them."""
        qw = self.quant_weight()
        scale_x = torch.tensor(2.0 ** -exp_x)
        inp = IntQuantTensor(torch.zeros(1, self.in_features), scale_x, torch.zeros(()), torch.tensor(8.0), True, False)
        qb = self.bias_quant(self.bias, inp, qw)
        return qw.int().to(torch.int64).t().contiguous(), qb.int().to(torch.int64).reshape(-1), _pot_exp(qw.scale)


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
        fq = self.act(F.layer_norm(v, v.shape[-1:], gamma.to(v.dtype), beta.to(v.dtype), self.eps), dtype)
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


# ---------------------------------------------------------------- attention

class QDotCore(nn.Module):
    """DESIGN.md DotAttention: float route softmax(q k^T / sqrt(d)) v; integer route I-BERT softmax with
    `prob_bits` probabilities. The output keeps v's format (a convex mixture of v: out_shift = prob_bits)."""

    def __init__(self, head_dim: int, qcfg: QuantConfig):
        super().__init__()
        self.head_dim, self.qcfg = head_dim, qcfg

    def softmax_attrs(self, exp_q: int, exp_k: int, exp_v: int, exp_out: int) -> dict[str, int]:
        scale = 2.0 ** -(exp_q + exp_k) / math.sqrt(self.head_dim)
        return {**intops.softmax_constants(scale), "n_clip": self.qcfg.n_clip, "prob_bits": self.qcfg.softmax_bits,
                "out_shift": self.qcfg.softmax_bits + exp_v - exp_out, "bits": self.qcfg.act_bits}

    def forward(self, q: Fx, k: Fx, v: Fx, mask: torch.Tensor) -> Fx:
        qk = q.value @ k.value.transpose(-2, -1)  # (B, H, n, n)
        keep = mask[:, None, None, :].bool()
        p = (qk / math.sqrt(self.head_dim)).masked_fill(~keep, torch.finfo(qk.dtype).min).softmax(-1)
        lo, hi = intops.int_range(v.bits)
        fq = Fx(fake_quant(p @ v.value, v.scale, lo, hi), v.scale, v.bits)  # (B, H, n, d)
        if None in (q.exp, k.exp, v.exp):
            return fq
        attrs = self.softmax_attrs(q.exp, k.exp, v.exp, v.exp)
        if not self.training:
            return exact(fq, intops.dot_attention(q.int(), k.int(), v.int(), mask, **attrs))
        # q, k are quantizer outputs: qk holds the integer scores times 2**-(exp_q + exp_k) exactly
        # when its dtype holds them (stvalues.exact_dtype)
        bound = self.head_dim << (2 * max(q.bits, k.bits) - 2)
        reuse = stvalues.exact_dtype(bound) == torch.float32 or qk.dtype == torch.float64
        scores = qk.detach() * 2.0 ** (q.exp + k.exp) if reuse else None
        return exact(fq, stvalues.dot_attention(q.ints(), k.ints(), v.ints(), mask, **attrs, scores=scores))


class QInhibitorCore(nn.Module):
    """DESIGN.md InhibitorAttention. gamma/sqrt(d) = 2**g and beta = 2**b with g, b learned in the log2
    domain (straight-through rounding); alpha in v's format; output quantized by its own quantizer."""

    def __init__(self, cfg: EncoderConfig, qcfg: QuantConfig):
        super().__init__()
        self.head_dim, self.center, self.signed = cfg.head_dim, cfg.inhibitor_center, cfg.inhibitor_signed
        self.log2_gamma = nn.Parameter(torch.tensor(math.log2(max(cfg.gamma_init, 1e-6) / math.sqrt(cfg.head_dim))))
        self.log2_beta = nn.Parameter(torch.tensor(math.log2(max(cfg.beta_init, 1e-6))))
        self.alpha = nn.Parameter(torch.tensor(float(cfg.alpha_init))) if cfg.alpha_init > 0 else None
        self.act = ActQuant(qcfg)

    def powers(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(g, b): the integer log2 of gamma/sqrt(d) and beta, straight-through rounded."""
        return round_half_up(self.log2_gamma), round_half_up(self.log2_beta)

    def alpha_int(self, exp_v: int, bits: int) -> int:
        if self.alpha is None:
            return 0
        return int(round(float(fixed_point_value(self.alpha.detach(), exp_v, bits)) * 2.0 ** exp_v))

    def inhibitor_attrs(self, exp_qk: int, exp_v: int, exp_out: int, bits: int) -> dict[str, int]:
        g, b = (int(t) for t in self.powers())
        return {"z_shift": exp_qk - exp_v - g, "center": int(self.center), "alpha": self.alpha_int(exp_v, bits),
                "signed": int(self.signed), "out_shift": exp_v - b - exp_out, "bits": bits}

    def forward(self, q: Fx, k: Fx, v: Fx, mask: torch.Tensor) -> Fx:
        g, b = self.powers()
        alpha = None
        if self.alpha is not None:
            alpha = fixed_point_value(self.alpha / v.scale, 0, v.bits) * v.scale
        gamma = 2.0 ** g * math.sqrt(self.head_dim)  # inhibit_fast divides by sqrt(d)
        h = inhibit_fast(q.value, k.value, v.value, mask, gamma, alpha, 2.0 ** b, self.center, self.signed)
        fq = self.act(h)  # (B, H, n, d)
        if None in (q.exp, k.exp, v.exp, fq.exp):
            return fq
        attrs = self.inhibitor_attrs(q.exp, v.exp, fq.exp, fq.bits)
        ops = stvalues if self.training else intops
        args = (q.ints(), k.ints(), v.ints()) if self.training else (q.int(), k.int(), v.int())
        return exact(fq, ops.inhibitor_attention(*args, mask, **attrs))


class QScaleChannels(nn.Module):
    """DESIGN.md ScaleChannels for symmetric attention: q = u * c, c (H*d,) fixed point (`weight_bits`)."""

    def __init__(self, heads: int, head_dim: int, qcfg: QuantConfig):
        super().__init__()
        self.c = nn.Parameter(torch.ones(heads, head_dim))  # (H, d), the float model's shape
        self.bits = qcfg.weight_bits
        self.act = ActQuant(qcfg)

    def quantized(self) -> tuple[torch.Tensor, int]:
        return fixed_point_weight(self.c.reshape(-1), self.bits)  # (D,)

    def forward(self, u: Fx) -> Fx:
        c, ec = self.quantized()
        fq = self.act(u.value * c.to(u.value.dtype))  # (B, n, D)
        if u.exp is None or fq.exp is None:
            return fq
        ops = stvalues if self.training else intops
        u_int = u.ints() if self.training else u.int()
        return exact(fq, ops.scale_channels(u_int, round_half_up(c * 2.0 ** ec).long(), u.exp + ec - fq.exp, fq.bits))


class QAttention(nn.Module):
    """Shared plumbing of the three variants: `context(x, mask)` (merged heads, before `out_lin`)."""

    def __init__(self, cfg: EncoderConfig, qcfg: QuantConfig):
        super().__init__()
        self.heads = cfg.heads
        self.v_lin = QLinear(cfg.hidden, cfg.hidden, qcfg, ActQuant(qcfg))
        self.out_lin = QLinear(cfg.hidden, cfg.hidden, qcfg, ActQuant(qcfg))

    def qkv(self, x: Fx) -> tuple[Fx, Fx, Fx]:
        raise NotImplementedError

    def context(self, x: Fx, mask: torch.Tensor) -> Fx:
        q, k, v = (t.map(lambda z: split_heads(z, self.heads)) for t in self.qkv(x))  # (B, H, n, d)
        return self.core(q, k, v, mask).map(merge_heads)  # (B, n, D)


class QDotAttention(QAttention):
    def __init__(self, cfg: EncoderConfig, qcfg: QuantConfig):
        super().__init__(cfg, qcfg)
        self.q_lin = QLinear(cfg.hidden, cfg.hidden, qcfg, ActQuant(qcfg))
        self.k_lin = QLinear(cfg.hidden, cfg.hidden, qcfg, ActQuant(qcfg))
        self.core = QDotCore(cfg.head_dim, qcfg)

    def qkv(self, x: Fx) -> tuple[Fx, Fx, Fx]:
        return self.q_lin(x), self.k_lin(x), self.v_lin(x)


class QInhibitorAttention(QAttention):
    """q and k share one output quantizer (one format), as the Manhattan score needs."""

    def __init__(self, cfg: EncoderConfig, qcfg: QuantConfig):
        super().__init__(cfg, qcfg)
        shared = ActQuant(qcfg)
        self.q_lin = QLinear(cfg.hidden, cfg.hidden, qcfg, shared)
        self.k_lin = QLinear(cfg.hidden, cfg.hidden, qcfg, shared)
        self.core = QInhibitorCore(cfg, qcfg)

    def qkv(self, x: Fx) -> tuple[Fx, Fx, Fx]:
        return self.q_lin(x), self.k_lin(x), self.v_lin(x)


class QSymmetricAttention(QAttention):
    """u = qk_lin(x); q = ScaleChannels(u, c); k = u; then integer dot attention."""

    def __init__(self, cfg: EncoderConfig, qcfg: QuantConfig):
        super().__init__(cfg, qcfg)
        self.qk_lin = QLinear(cfg.hidden, cfg.hidden, qcfg, ActQuant(qcfg))
        self.scale_c = QScaleChannels(cfg.heads, cfg.head_dim, qcfg)
        self.core = QDotCore(cfg.head_dim, qcfg)

    def qkv(self, x: Fx) -> tuple[Fx, Fx, Fx]:
        u = self.qk_lin(x)
        return self.scale_c(u), u, self.v_lin(x)


Q_ATTENTIONS: dict[str, type[QAttention]] = {
    "dot": QDotAttention, "inhibitor": QInhibitorAttention, "symmetric": QSymmetricAttention}

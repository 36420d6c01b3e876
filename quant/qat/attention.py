"""Quantized attention variants: the `quantized_module` facet of each `models.variants` entry.

A variant is a `QAttention`: the quantized module (`qkv` + a `QCore` on the heads), its part of the
lowering to IntProgram nodes (`lower_qk` and `core.lower`; the rest is `quant.ir.encoder`), the mapping
of its float twin's parameters to its own (`quant_state`, where the inhibitor moves gamma/beta into the
log2 domain and folds their power-of-two remainders into the projections) and its scalars
(`scalar_parameters`). `quantized_class` rejects a class that lacks one of these hooks (docs/QUANT.md
"Attention variants").
"""
from __future__ import annotations

import inspect
import math
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING

import torch
from torch import nn

from models import variants
from models.attention import inhibit_fast, merge_heads, split_heads
from models.config import EncoderConfig
from models.errors import UserError
from quant import intops
from quant.ir.widths import WidthError
from quant.qat import stvalues
from quant.qat.config import QuantConfig
from quant.qat.modules import ActQuant, Fx, QLinear, exact
from quant.qat.quantizers import fake_quant, fixed_point_value, fixed_point_weight, round_half_up

if TYPE_CHECKING:
    from quant.qat.lower import Builder


class QCore(nn.Module, ABC):
    """The attention op on split heads: `forward(q, k, v, mask)` (B, H, n, d) each, and its one node."""

    @abstractmethod
    def forward(self, q: Fx, k: Fx, v: Fx, mask: torch.Tensor) -> Fx: ...

    @abstractmethod
    def lower(self, bld: Builder, name: str, inputs: tuple[str, str, str, str]) -> str:
        """Append the node `name` on (qh, kh, vh, attention_mask); returns its output tensor."""


class QDotCore(QCore):
    """DESIGN.md DotAttention: float route softmax(q k^T / sqrt(d)) v; integer route I-BERT softmax with
    `prob_bits` probabilities. The output keeps v's format (a convex mixture of v: out_shift = prob_bits)."""

    def __init__(self, head_dim: int, qcfg: QuantConfig, max_keys: int = 512):
        super().__init__()
        self.head_dim, self.qcfg, self.max_keys = head_dim, qcfg, max_keys

    def softmax_attrs(self, q: tuple[int, int], k: tuple[int, int], v: tuple[int, int], exp_out: int
                      ) -> dict[str, int]:
        """The node's attributes for q, k, v given as (exp, bits): softmax constants, score shift and
        accumulator width proven for up to `max_keys` keys (`intops.dot_attention_attrs`); the output
        keeps v's format."""
        scale = 2.0 ** -(q[0] + k[0]) / math.sqrt(self.head_dim)
        prob_bits = self.qcfg.softmax_bits
        try:
            attrs = intops.dot_attention_attrs(scale, self.head_dim, self.max_keys, q[1], k[1], v[1], prob_bits,
                                               self.qcfg.n_clip)
        except WidthError as err:
            raise UserError(str(err)) from err
        return {**attrs, "out_shift": prob_bits + v[0] - exp_out, "bits": v[1]}

    def forward(self, q: Fx, k: Fx, v: Fx, mask: torch.Tensor) -> Fx:
        qk = q.value @ k.value.transpose(-2, -1)  # (B, H, n, n)
        keep = mask[:, None, None, :].bool()
        p = (qk / math.sqrt(self.head_dim)).masked_fill(~keep, torch.finfo(qk.dtype).min).softmax(-1)
        lo, hi = intops.int_range(v.bits)
        fq = Fx(fake_quant(p @ v.value, v.scale, lo, hi), v.scale, v.bits)  # (B, H, n, d)
        if None in (q.exp, k.exp, v.exp):
            return fq
        attrs = self.softmax_attrs((q.exp, q.bits), (k.exp, k.bits), (v.exp, v.bits), v.exp)
        if not self.training:
            return exact(fq, intops.dot_attention(q.int(), k.int(), v.int(), mask, **attrs))
        # q, k are quantizer outputs: qk holds the integer scores times 2**-(exp_q + exp_k) exactly
        # when its dtype holds them (stvalues.exact_dtype)
        bound = self.head_dim << (2 * max(q.bits, k.bits) - 2)
        reuse = stvalues.exact_dtype(bound) == torch.float32 or qk.dtype == torch.float64
        scores = qk.detach() * 2.0 ** (q.exp + k.exp) if reuse else None
        return exact(fq, stvalues.dot_attention(q.ints(), k.ints(), v.ints(), mask, **attrs, scores=scores))

    def lower(self, bld: Builder, name: str, inputs: tuple[str, str, str, str]) -> str:
        qh, kh, vh, _ = inputs
        fmt = [(bld.exp(t), bld.tensors[t].bits) for t in (qh, kh, vh)]
        attrs = self.softmax_attrs(*fmt, bld.exp(vh))
        return bld.node("DotAttention", name, inputs, attrs["bits"], bld.exp(vh), **attrs)


class QInhibitorCore(QCore):
    """DESIGN.md InhibitorAttention. gamma/sqrt(d) = 2**g and beta = 2**b with g, b learned in the log2
    domain (straight-through rounding); alpha in v's format; output quantized by its own quantizer.
    With per-head scalars (`InhibitorOptions.per_head`) g, b and alpha are (H, 1, 1), as the float
    twin's, and the node's z_shift, alpha and out_shift are lists of one int per head."""

    def __init__(self, cfg: EncoderConfig, qcfg: QuantConfig):
        super().__init__()
        opts = cfg.attention_options  # models.variants.InhibitorOptions
        self.head_dim, self.center, self.signed = cfg.head_dim, opts.center, opts.signed
        shape = (cfg.heads, 1, 1) if opts.per_head else ()
        self.log2_gamma = nn.Parameter(torch.full(shape, math.log2(max(opts.gamma_init, 1e-6) / math.sqrt(cfg.head_dim))))
        self.log2_beta = nn.Parameter(torch.full(shape, math.log2(max(opts.beta_init, 1e-6))))
        self.alpha = nn.Parameter(torch.full(shape, float(opts.alpha_init))) if opts.alpha_init > 0 else None
        self.act = ActQuant(qcfg, bits=qcfg.attention_bits)  # the context
        self.log_scalars = opts.scalars == "log"  # its float twin trained log gamma, log beta

    def powers(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(g, b): the integer log2 of gamma/sqrt(d) and beta, straight-through rounded."""
        return round_half_up(self.log2_gamma), round_half_up(self.log2_beta)

    def alpha_int(self, exp_v: int, bits: int) -> int | list[int]:
        """alpha in v's integer format (one per head with per-head scalars; 0 without alpha)."""
        if self.alpha is None:
            return 0 if self.log2_gamma.dim() == 0 else [0] * self.log2_gamma.numel()
        ints = [int(round(float(a) * 2.0 ** exp_v)) for a in fixed_point_value(self.alpha.detach(), exp_v, bits).flatten()]
        return ints[0] if self.alpha.dim() == 0 else ints

    def inhibitor_attrs(self, exp_qk: int, exp_v: int, exp_out: int, bits: int) -> dict[str, int | list[int]]:
        g, b = ([int(x) for x in t.flatten()] for t in self.powers())
        z_shift, out_shift = [exp_qk - exp_v - x for x in g], [exp_v - x - exp_out for x in b]
        if self.log2_gamma.dim() == 0:  # one per layer: plain ints, as the nodes always had
            z_shift, out_shift = z_shift[0], out_shift[0]
        return {"z_shift": z_shift, "center": int(self.center), "alpha": self.alpha_int(exp_v, bits),
                "signed": int(self.signed), "out_shift": out_shift, "bits": bits}

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

    def lower(self, bld: Builder, name: str, inputs: tuple[str, str, str, str]) -> str:
        qh, _, vh, _ = inputs
        attrs = self.inhibitor_attrs(bld.exp(qh), bld.exp(vh), self.act.exp, self.act.bits)
        return bld.node("InhibitorAttention", name, inputs, self.act.bits, self.act.exp, **attrs)


class QScaleChannels(nn.Module):
    """DESIGN.md ScaleChannels for symmetric attention: q = u * c, c (H*d,) fixed point (`weight_bits`)."""

    def __init__(self, heads: int, head_dim: int, qcfg: QuantConfig):
        super().__init__()
        self.c = nn.Parameter(torch.ones(heads, head_dim))  # (H, d), the float model's shape
        self.bits = qcfg.weight_bits
        self.act = ActQuant(qcfg, bits=qcfg.attention_bits)  # q

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

    def lower(self, bld: Builder, name: str, u: str) -> str:
        """ScaleChannels node `name` on `u`, its coefficients the param `name.c`."""
        c, ec = self.quantized()
        c = bld.param(name + ".c", round_half_up(c * 2.0 ** ec), self.bits, ec)
        exp_q = self.act.exp
        return bld.node("ScaleChannels", name, (u, c), self.act.bits, exp_q, shift=bld.exp(u) + ec - exp_q,
                        bits=self.act.bits)


# ---------------------------------------------------------------- the variants

class QAttention(nn.Module, ABC):
    """Shared plumbing of the variants: `context(x, mask)` (merged heads, before `out_lin`); a variant
    supplies `qkv`, `lower_qk`, `quant_state` and its `core` (a `QCore`). The lowering of the rest (v,
    heads, out_lin) is the encoder's (`quant.ir.encoder.attention`)."""

    core: QCore

    def __init__(self, cfg: EncoderConfig, qcfg: QuantConfig):
        super().__init__()
        self.heads = cfg.heads
        self.v_lin = QLinear(cfg.hidden, cfg.hidden, qcfg, ActQuant(qcfg, bits=qcfg.attention_bits))
        self.out_lin = QLinear(cfg.hidden, cfg.hidden, qcfg, ActQuant(qcfg))

    @abstractmethod
    def qkv(self, x: Fx) -> tuple[Fx, Fx, Fx]:
        """Queries, keys and values (B, n, D) of the block input `x`."""

    @abstractmethod
    def lower_qk(self, bld: Builder, p: str, x: str, bias_bits: int) -> tuple[str, str]:
        """Append the nodes of the queries and keys of `x` (names `p`q, `p`k...); returns (q, k)."""

    @classmethod
    @abstractmethod
    def quant_state(cls, attn: str, state: dict[str, torch.Tensor], cfg: EncoderConfig) -> dict[str, torch.Tensor]:
        """The float attention module `attn`'s state (names relative to it) under this variant's names."""

    def scalar_parameters(self) -> list[nn.Parameter]:
        """The parameters that train at their own learning rate (`TrainConfig.scalar_lr`); none by default."""
        return []

    def lower_meta(self) -> dict[str, bool]:
        """The model facts `quant.ir.contract.ModelMeta` declares for the inhibitor's options (center,
        signed); false for a variant without them."""
        return {"center": False, "signed": False}

    def context(self, x: Fx, mask: torch.Tensor) -> Fx:
        q, k, v = (t.map(lambda z: split_heads(z, self.heads)) for t in self.qkv(x))  # (B, H, n, d)
        return self.core(q, k, v, mask).map(merge_heads)  # (B, n, D)


class QProjectedAttention(QAttention):
    """Queries and keys from their own projections `q_lin`, `k_lin`."""

    q_lin: QLinear
    k_lin: QLinear

    def qkv(self, x: Fx) -> tuple[Fx, Fx, Fx]:
        return self.q_lin(x), self.k_lin(x), self.v_lin(x)

    def lower_qk(self, bld: Builder, p: str, x: str, bias_bits: int) -> tuple[str, str]:
        return bld.linear(p + "q", x, self.q_lin, bias_bits), bld.linear(p + "k", x, self.k_lin, bias_bits)


def quantized_class(name: str) -> type[QAttention]:
    """The quantized module of the variant registered as `name`; TypeError for a class that is not a
    `QAttention` or leaves one of its hooks abstract."""
    cls = variants.get(name).facet("quantized_module")
    if not (isinstance(cls, type) and issubclass(cls, QAttention)):
        raise TypeError(f"quantized attention {name!r} ({cls!r}) is not a QAttention subclass")
    if inspect.isabstract(cls):
        raise TypeError(f"quantized attention {name!r} ({cls.__name__}) lacks the hooks "
                        f"{', '.join(sorted(cls.__abstractmethods__))}: define them (see QAttention)")
    return cls


class QDotAttention(QProjectedAttention):
    def __init__(self, cfg: EncoderConfig, qcfg: QuantConfig):
        super().__init__(cfg, qcfg)
        self.q_lin = QLinear(cfg.hidden, cfg.hidden, qcfg, ActQuant(qcfg, bits=qcfg.attention_bits))
        self.k_lin = QLinear(cfg.hidden, cfg.hidden, qcfg, ActQuant(qcfg, bits=qcfg.attention_bits))
        self.core = QDotCore(cfg.head_dim, qcfg, cfg.max_position)

    @classmethod
    def quant_state(cls, attn: str, state: dict[str, torch.Tensor], cfg: EncoderConfig) -> dict[str, torch.Tensor]:
        return dict(state)  # same names


class QInhibitorAttention(QProjectedAttention):
    """q and k share one output quantizer (one format), as the Manhattan score needs."""

    def __init__(self, cfg: EncoderConfig, qcfg: QuantConfig):
        super().__init__(cfg, qcfg)
        shared = ActQuant(qcfg, bits=qcfg.attention_bits)
        self.q_lin = QLinear(cfg.hidden, cfg.hidden, qcfg, shared)
        self.k_lin = QLinear(cfg.hidden, cfg.hidden, qcfg, shared)
        self.core = QInhibitorCore(cfg, qcfg)

    def scalar_parameters(self) -> list[nn.Parameter]:
        core = self.core
        return [p for p in (core.log2_gamma, core.log2_beta, core.alpha) if p is not None]

    def rounded_parameters(self) -> list[nn.Parameter]:
        """The log2 scalars, straight-through rounded, that train at a rate able to cross a rounding
        boundary in an epoch (`quant.train.state.rounded_lr`): only under the log parametrisation
        (`InhibitorOptions.scalars`), else they stay at `scalar_lr` as before."""
        core = self.core
        return [core.log2_gamma, core.log2_beta] if core.log_scalars else []

    def lower_meta(self) -> dict[str, bool]:
        return {"center": self.core.center, "signed": self.core.signed}

    @classmethod
    def quant_state(cls, attn: str, state: dict[str, torch.Tensor], cfg: EncoderConfig) -> dict[str, torch.Tensor]:
        """gamma, beta -> core.log2_gamma = log2(gamma/sqrt(d)), core.log2_beta = log2(beta), made exact
        powers of two without changing the float function or the attention context:
        gamma/sqrt(d) = 2**g * r_g with g = round_half_up(log2(.)) and r_g in [2**-0.5, 2**0.5) goes into
        q_lin and k_lin (weights and biases times r_g: the L1 distance is homogeneous,
        |r q - r k| = r |q - k|); beta = 2**b * r_b goes into q_lin, k_lin, v_lin and alpha, all times
        r_b (H is homogeneous of degree one in them together: Z, its centring and ReLU scale by r_b,
        padded keys stay fully inhibited), so the context 2**b H' equals the float beta H that the
        context-alignment loss compares with the teacher's. Otherwise the quantized model would round
        them, scaling Z or the context by up to 2**0.5 (measured on the RT inhibitor student: log2 beta
        -4.54 rounds to -5, 27 % smaller). alpha -> core.alpha. A float twin of the log parametrisation
        holds log_gamma and log_beta: gamma = exp(log_gamma), beta = exp(log_beta). Per-head scalars
        (H, 1, 1) fold head by head: head h's remainders scale head h's rows of the projections and its
        alpha, so each head gets its own power of two (the node's per-head z_shift and out_shift)."""
        state = dict(state)
        for leaf in ("gamma", "beta"):
            if "log_" + leaf in state:
                state[leaf] = state.pop("log_" + leaf).exp()
        qk = ("q_lin.weight", "q_lin.bias", "k_lin.weight", "k_lin.bias")
        folds = (("gamma", math.sqrt(cfg.head_dim), qk),
                 ("beta", 1.0, qk + ("v_lin.weight", "v_lin.bias") + (("alpha",) if "alpha" in state else ())))
        for leaf, scale, targets in folds:
            value = state.pop(leaf)
            if float(value.min()) <= 0:
                raise UserError(f"{attn}.{leaf} = {value.flatten().tolist()} is not positive: it cannot become a "
                                f"power of two")
            log2 = torch.log2(value / scale)
            rounded = torch.floor(log2 + 0.5)
            for target in targets:
                state[target] = state[target] * _per_row(2.0 ** (log2 - rounded), state[target], cfg.head_dim)
            state[f"core.log2_{leaf}"] = rounded
        if "alpha" in state:
            state["core.alpha"] = state.pop("alpha")
        return state


def _per_row(factor: torch.Tensor, target: torch.Tensor, head_dim: int) -> torch.Tensor:
    """`factor` shaped to multiply `target`: a 0-d factor as it is (one per layer); per head (H, 1, 1)
    it scales head h's output rows of a projection's weight (D, D_in) or bias (D), rows h*d..(h+1)*d - 1,
    and alpha (H, 1, 1) elementwise."""
    if factor.dim() == 0 or target.shape == factor.shape:
        return factor
    rows = factor.flatten().repeat_interleave(head_dim)  # (D,)
    return rows[:, None] if target.dim() == 2 else rows


class QSymmetricAttention(QAttention):
    """u = qk_lin(x); q = ScaleChannels(u, c); k = u; then integer dot attention."""

    def __init__(self, cfg: EncoderConfig, qcfg: QuantConfig):
        super().__init__(cfg, qcfg)
        self.qk_lin = QLinear(cfg.hidden, cfg.hidden, qcfg, ActQuant(qcfg, bits=qcfg.attention_bits))
        self.scale_c = QScaleChannels(cfg.heads, cfg.head_dim, qcfg)
        self.core = QDotCore(cfg.head_dim, qcfg, cfg.max_position)

    def qkv(self, x: Fx) -> tuple[Fx, Fx, Fx]:
        u = self.qk_lin(x)
        return self.scale_c(u), u, self.v_lin(x)

    def lower_qk(self, bld: Builder, p: str, x: str, bias_bits: int) -> tuple[str, str]:
        qk = bld.linear(p + "qk", x, self.qk_lin, bias_bits)
        return self.scale_c.lower(bld, p + "q", qk), qk

    @classmethod
    def quant_state(cls, attn: str, state: dict[str, torch.Tensor], cfg: EncoderConfig) -> dict[str, torch.Tensor]:
        return {("scale_c.c" if name == "c" else name): value for name, value in state.items()}

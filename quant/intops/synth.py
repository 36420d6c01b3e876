"""Synthetic integer encoder classifiers: complete `IntProgram`s with random integer parameters.

For tests of the exporter, the simulator and fuzzing; no training needed. The layout is the
encoder's (`quant.ir.encoder`, the one the lowering of a trained model produces too); a variant's
queries and keys and attention node are the `synthesis` facet of its `models.variants` entry: a
`Synthesis` (`DOT`, `INHIBITOR`, `SYMMETRIC` below, built from the pieces `qk_separate`...).

Params are named `<node>.w`, `<node>.b` (Linear), `<node>.gamma`, `<node>.beta` (LayerNorm),
`<node>.c` (ScaleChannels), `emb.word`, `emb.pos`, `emb.type`. Widths: weights, gamma, c and
embeddings `bits` (drawn uniformly over the full signed range, exp `bits - 1`); biases and beta
32 bits at a realistic magnitude; activations `bits`; Embed/Add outputs and logits 32 bits;
`input_ids`, `attention_mask` 64 bits. Every Linear declares the smallest accumulator (`acc_bits`
32 or 64) that holds the worst case over inputs of its declared width (`quant.intops.linear_acc_bits`).

Shifts are chosen by calibration: while building, each node runs (with `quant.intops`) on a random
calibration batch, and a requant shift maps the 99th percentile of |accumulator| to `2**(bits-2)`,
so activations neither vanish nor mostly saturate. Inhibitor `z_shift` (and `alpha` when centring)
are chosen so typical scores are comparable to typical |v|; with `per_head`, they and `out_shift`
are calibrated head by head and z_shift is moved by `h % 3 - 1` in head h, so that heads differ as a
per-head student's do (docs/DESIGN.md, InhibitorAttention); DotAttention uses
`out_shift = prob_bits = bits` (output keeps v's format).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, NamedTuple

import numpy as np
import torch

from models import variants
from quant.intops import OPS, dot_attention_attrs, l1_scores, linear_acc_bits
from quant.ir.encoder import Part, build_encoder
from quant.ir.program import IntProgram, Node, TensorInfo, storage_dtype

NORM_FRAC = 12


@dataclass(frozen=True)
class SynthConfig:
    """Shape and randomness of a synthetic encoder classifier (see module docstring)."""

    vocab: int = 50
    max_position: int = 64
    hidden: int = 16
    heads: int = 2
    ffn: int = 32
    layers: int = 1
    num_labels: int = 2
    attention: str = "dot"
    bits: int = 8
    center: bool = False
    signed: bool = False
    per_head: bool = False
    seed: int = 0

    def __post_init__(self) -> None:
        if self.attention not in variants.VARIANTS:
            raise ValueError(f"attention {self.attention!r} unknown; choose one of {variants.names()}")
        if self.hidden % self.heads:
            raise ValueError(f"hidden {self.hidden} is not divisible by heads {self.heads}")
        if self.per_head and self.attention != "inhibitor":
            raise ValueError(f"per_head applies to attention 'inhibitor', not {self.attention!r}")


class _Builder:
    """Accumulates nodes, params and formats while running each node on the calibration batch; the
    `quant.ir.encoder.EncoderParts` of a synthetic program."""

    def __init__(self, cfg: SynthConfig) -> None:
        self.cfg, self.rng = cfg, np.random.default_rng(cfg.seed)
        self.bits, self.heads = cfg.bits, cfg.heads
        self.nodes: list[Node] = []
        self.params: dict[str, np.ndarray] = {}
        self.tensors = {"input_ids": TensorInfo(64), "attention_mask": TensorInfo(64)}
        n = min(16, cfg.max_position)
        ids = self.rng.integers(0, cfg.vocab, (4, n))
        mask = np.ones((4, n), dtype=np.int64)
        mask[1, n // 2:], mask[3, 1:] = 0, 0  # padding, down to a single valid token
        self.env = {"input_ids": torch.from_numpy(ids), "attention_mask": torch.from_numpy(mask)}

    def exp(self, name: str) -> int:
        return self.tensors[name].exp

    def width(self, name: str) -> int:
        return self.tensors[name].bits

    def param(self, name: str, arr: np.ndarray, bits: int, exp: int | None) -> str:
        info = TensorInfo(bits, True, exp)
        self.params[name] = arr.astype(storage_dtype(info))
        self.tensors[name] = info
        self.env[name] = torch.from_numpy(arr.astype(np.int64))
        return name

    def full_width(self, name: str, shape: tuple[int, ...]) -> str:
        half = 1 << (self.cfg.bits - 1)
        return self.param(name, self.rng.integers(-half, half, shape), self.cfg.bits, self.cfg.bits - 1)

    def node(self, op: str, name: str, inputs: tuple[str, ...], width: int, exp: int | None, **attrs: int) -> str:
        """Append `name = op(*inputs, **attrs)`, declared signed `width` bits at `exp`."""
        self.env[name] = OPS[op](*(self.env[t] for t in inputs), **attrs)
        self.nodes.append(Node(op, name, inputs, (name,), attrs))
        self.tensors[name] = TensorInfo(width, True, exp)
        return name

    def shift_for(self, acc: torch.Tensor) -> int:
        """Requant shift mapping the 99th percentile of |acc| to about 2**(bits-2), at least 0."""
        top = float(torch.quantile(acc.abs().double().flatten(), 0.99))
        return max(0, math.ceil(math.log2(top / 2 ** (self.cfg.bits - 2)))) if top > 0 else 0

    def linear_params(self, name: str, x: str, n_out: int) -> tuple[str, str, torch.Tensor]:
        w = self.full_width(f"{name}.w", (self.env[x].shape[-1], n_out))
        acc = self.env[x] @ self.env[w]
        amp = max(1, int(acc.double().std()) // 4)
        b = self.param(f"{name}.b", self.rng.integers(-amp, amp + 1, n_out), 32, self.exp(x) + self.exp(w))
        return w, b, acc + self.env[b]

    def acc_bits(self, x: str, w: str, b: str) -> int:
        """The Linear accumulator width that holds every input of x's declared width."""
        return linear_acc_bits(self.env[w], self.env[b], self.tensors[x].bits)

    def linear(self, name: str, x: str, n_out: int, relu: int = 0, shift: int | None = None,
               bits: int | None = None) -> str:
        w, b, acc = self.linear_params(name, x, n_out)
        shift = self.shift_for(acc) if shift is None else shift
        bits = self.cfg.bits if bits is None else bits
        exp = self.exp(x) + self.exp(w) - shift
        return self.node("Linear", name, (x, w, b), bits, exp, shift=shift, bits=bits, relu=relu,
                         acc_bits=self.acc_bits(x, w, b))

    def layernorm(self, name: str, x: str) -> str:
        dim, bits = self.env[x].shape[-1], self.cfg.bits
        gamma = self.full_width(f"{name}.gamma", (dim,))
        beta_exp = NORM_FRAC + self.exp(gamma)
        amp = 1 << (beta_exp - 2)  # |beta| <= 0.25
        beta = self.param(f"{name}.beta", self.rng.integers(-amp, amp + 1, dim), 32, beta_exp)
        eps = max(1, round(1e-5 * 4.0 ** self.exp(x)))
        probe = OPS["LayerNorm"](self.env[x], self.env[gamma], self.env[beta], eps, NORM_FRAC, 0, 62)
        shift = self.shift_for(probe)
        return self.node("LayerNorm", name, (x, gamma, beta), bits, beta_exp - shift,
                         eps=eps, norm_frac=NORM_FRAC, shift=shift, bits=bits)

    def add(self, name: str, a: str, b: str) -> str:
        top = max(self.exp(a), self.exp(b))
        return self.node("Add", name, (a, b), 32, top, la=top - self.exp(a), lb=top - self.exp(b))

    # the encoder's parts (quant.ir.encoder.EncoderParts)

    def embed(self, name: str) -> str:
        cfg = self.cfg
        tables = (self.full_width(f"{name}.word", (cfg.vocab, cfg.hidden)),
                  self.full_width(f"{name}.pos", (cfg.max_position, cfg.hidden)),
                  self.full_width(f"{name}.type", (2, cfg.hidden)))
        return self.node("Embed", name, ("input_ids", *tables), 32, cfg.bits - 1, lw=0, lp=0, lt=0)

    def layernorm_at(self, part: Part, x: str) -> str:
        return self.layernorm(part.name, x)

    def linear_at(self, part: Part, x: str) -> str:
        """v, o, ffn2: hidden outputs; ffn1 (ffn outputs) and pre with ReLU; logits: the accumulator."""
        cfg = self.cfg
        n_out, kw = {"v": (cfg.hidden, {}), "o": (cfg.hidden, {}), "ffn1": (cfg.ffn, {"relu": 1}),
                     "ffn2": (cfg.hidden, {}), "pre": (cfg.hidden, {"relu": 1}),
                     "logits": (cfg.num_labels, {"shift": 0, "bits": 32})}[part.role]
        return self.linear(part.name, x, n_out, **kw)

    def synthesis(self) -> "Synthesis":
        return variants.get(self.cfg.attention).facet("synthesis")

    def queries_keys(self, layer: int, prefix: str, x: str) -> tuple[str, str]:
        return self.synthesis().queries_keys(self, prefix, x)

    def attention_core(self, layer: int, name: str, inputs: tuple[str, str, str, str]) -> str:
        return self.synthesis().attention_core(self, name, inputs)


def qk_separate(bld: _Builder, p: str, x: str) -> tuple[str, str]:
    """dot: q and k from their own Linears, each with its own format."""
    return bld.linear(p + "q", x, bld.cfg.hidden), bld.linear(p + "k", x, bld.cfg.hidden)


def qk_shared_format(bld: _Builder, p: str, x: str) -> tuple[str, str]:
    """inhibitor: q and k from their own Linears, in one format (one shift for both)."""
    cfg = bld.cfg
    wq, bq, acc_q = bld.linear_params(p + "q", x, cfg.hidden)
    wk, bk, acc_k = bld.linear_params(p + "k", x, cfg.hidden)
    shift = max(bld.shift_for(acc_q), bld.shift_for(acc_k))
    exp = bld.exp(x) + bld.exp(wq) - shift
    q = bld.node("Linear", p + "q", (x, wq, bq), cfg.bits, exp, shift=shift, bits=cfg.bits, relu=0,
                 acc_bits=bld.acc_bits(x, wq, bq))
    k = bld.node("Linear", p + "k", (x, wk, bk), cfg.bits, exp, shift=shift, bits=cfg.bits, relu=0,
                 acc_bits=bld.acc_bits(x, wk, bk))
    return q, k


def qk_shared_projection(bld: _Builder, p: str, x: str) -> tuple[str, str]:
    """symmetric: one Linear qk; q = ScaleChannels(qk, c), k = qk."""
    cfg = bld.cfg
    qk = bld.linear(p + "qk", x, cfg.hidden)
    c = bld.full_width(p + "q.c", (cfg.hidden,))
    shift = bld.shift_for(bld.env[qk] * bld.env[c])
    q = bld.node("ScaleChannels", p + "q", (qk, c), cfg.bits, bld.exp(qk) + bld.exp(c) - shift,
                 shift=shift, bits=cfg.bits)
    return q, qk


def dot_core(bld: _Builder, name: str, inputs: tuple[str, str, str, str]) -> str:
    """DotAttention with out_shift = prob_bits = bits (output in v's format)."""
    cfg, (qh, kh, vh, _) = bld.cfg, inputs
    d = cfg.hidden // cfg.heads
    scale = 2.0 ** -(bld.exp(qh) + bld.exp(kh)) / math.sqrt(d)
    attrs = dot_attention_attrs(scale, d, cfg.max_position, cfg.bits, cfg.bits, cfg.bits, cfg.bits, 30)
    return bld.node("DotAttention", name, inputs, cfg.bits, bld.exp(vh), **attrs, out_shift=cfg.bits, bits=cfg.bits)


def inhibitor_core(bld: _Builder, name: str, inputs: tuple[str, str, str, str]) -> str:
    """InhibitorAttention with `_inhibitor_attrs` and a calibrated out_shift; with `cfg.per_head`,
    z_shift, alpha and out_shift are per head (tuples of H ints; the output's exp is head 0's)."""
    cfg, (qh, kh, vh, _) = bld.cfg, inputs
    if cfg.per_head:
        heads = range(cfg.heads)
        attrs = [_inhibitor_attrs(bld, qh, kh, vh, h) for h in heads]
        z_shift = tuple(a["z_shift"] + h % 3 - 1 for h, a in zip(heads, attrs))  # heads apart, as a per-head student's
        attrs = {**attrs[0], "z_shift": z_shift, "alpha": tuple(a["alpha"] for a in attrs)}
    else:
        attrs = _inhibitor_attrs(bld, qh, kh, vh)
    probe = OPS["InhibitorAttention"](*(bld.env[t] for t in inputs), **{**attrs, "out_shift": 0, "bits": 62})
    shift = tuple(bld.shift_for(probe[:, h]) for h in range(cfg.heads)) if cfg.per_head else bld.shift_for(probe)
    first = shift[0] if cfg.per_head else shift
    return bld.node("InhibitorAttention", name, inputs, cfg.bits, bld.exp(vh) - first,
                    **attrs, out_shift=shift, bits=cfg.bits)


def _inhibitor_attrs(bld: _Builder, qh: str, kh: str, vh: str, head: int | None = None) -> dict[str, int]:
    """z_shift so that typical Z (spread of centred scores, or raw scores) is about median |v|;
    alpha = median |v| when centring (else 0, disabled); over every head, or over head `head` only."""
    cfg = bld.cfg
    q, k, v = (bld.env[t] if head is None else bld.env[t][:, head] for t in (qh, kh, vh))
    lsum = l1_scores(q, k).double()
    vmed = max(1.0, float(v.abs().double().median()))
    typical = lsum.std(-1).mean() if cfg.center else lsum.median()
    z_shift = round(math.log2(max(float(typical), 1.0) / vmed))
    return {"z_shift": z_shift, "center": int(cfg.center), "alpha": int(vmed) if cfg.center else 0,
            "signed": int(cfg.signed)}


class Synthesis(NamedTuple):
    """A variant's part of a synthetic program: its queries and keys of the layer input, its attention node."""

    queries_keys: Callable[[_Builder, str, str], tuple[str, str]]
    attention_core: Callable[[_Builder, str, tuple[str, str, str, str]], str]


DOT = Synthesis(qk_separate, dot_core)
INHIBITOR = Synthesis(qk_shared_format, inhibitor_core)
SYMMETRIC = Synthesis(qk_shared_projection, dot_core)


def synth_program(cfg: SynthConfig) -> IntProgram:
    """A complete encoder classifier in the layout of `quant.ir.encoder`, deterministic in
    `cfg.seed`; `meta` carries {vocab_size, max_position, hidden, heads, layers, ffn, attention,
    bits, num_labels, logits_exp, center, signed}."""
    bld = _Builder(cfg)
    logits = build_encoder(bld, cfg.layers)
    meta = {"vocab_size": cfg.vocab, "max_position": cfg.max_position, "hidden": cfg.hidden, "heads": cfg.heads,
            "layers": cfg.layers, "ffn": cfg.ffn, "attention": cfg.attention, "bits": cfg.bits,
            "num_labels": cfg.num_labels, "logits_exp": bld.exp(logits), "center": cfg.center, "signed": cfg.signed}
    return IntProgram(nodes=tuple(bld.nodes), params=bld.params, tensors=bld.tensors, meta=meta)

"""`QuantConfig`: the one frozen description of how the encoder is quantized (docs/QUANT.md).

Widths are declared bits of the integer tensors of the lowered `IntProgram`; every scale is a power
of two (DESIGN.md "Number format"), so one integer exponent per tensor format is all the lowering needs.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from models.errors import UserError

MIN_BITS, MAX_BITS = 4, 16
"""Widths a QuantConfig may declare: 4 is the floor (the narrowest width whose export and simulation
are tested bit-exact, and the narrowest the width settings name), 16 the ceiling (int16 storage; W16A16
accumulators are proven to fit 64 bits, `quant.ir.widths`)."""
FFN_ACTIVATIONS = ("relu",)
LAYERNORMS = ("integer",)
SOFTMAXES = ("integer",)


@dataclass(frozen=True)
class QuantConfig:
    weight_bits: int = 8          # Linear weights, embedding tables, LayerNorm gamma, symmetric c
    act_bits: int = 8             # every activation between ops (Linear / LayerNorm / attention outputs)
    bias_bits: int = 32           # Linear biases (at exp_x + exp_w) and LayerNorm beta
    per_channel: bool = False     # Linear weights (not the classifier's) with one power-of-two scale per output
                                  # channel: the Linear's per-channel shift offsets (quant.intops.linear)
    ffn_activation: str = "relu"  # I-BERT GELU is not implemented; the float GELU is replaced by ReLU
    layernorm: str = "integer"    # DESIGN.md LayerNorm (integer mean/variance, isqrt)
    softmax: str = "integer"      # DESIGN.md I-BERT softmax inside DotAttention
    norm_frac: int = 12           # fractional bits of the normalised value inside LayerNorm
    prob_bits: int | None = None  # softmax probability width (unsigned, exp = prob_bits); None = attention width
    attn_bits: int | None = None  # attention's tensors: q, k, v, the context (and the inhibitor's Z, in v's
                                  # format); None = act_bits
    n_clip: int = 30              # integer softmax clips x at -n_clip * ln2
    act_percentile: float = 99.99  # calibration statistic of activation ranges (percentile of |x|)

    def __post_init__(self) -> None:
        for name in ("weight_bits", "act_bits", "attn_bits", "prob_bits"):
            value = getattr(self, name)
            if value is None and name in ("attn_bits", "prob_bits"):
                continue
            if not isinstance(value, int) or not MIN_BITS <= value <= MAX_BITS:
                raise UserError(f"QuantConfig.{name}={value!r} is not a width the hardware holds: use an integer in "
                                f"{MIN_BITS}..{MAX_BITS} (below {MIN_BITS} bits nothing is exported or simulated "
                                f"exactly, docs/QUANT.md \"Widths\")")
        if self.bias_bits not in (16, 24, 32):
            raise UserError(f"QuantConfig.bias_bits must be 16, 24 or 32, got {self.bias_bits!r}")
        if not isinstance(self.per_channel, bool):
            raise UserError(f"QuantConfig.per_channel={self.per_channel!r} is not a flag: use True (one weight scale "
                            f"per output channel of every Linear but the classifier) or False (one per Linear)")
        for name, allowed in (("ffn_activation", FFN_ACTIVATIONS), ("layernorm", LAYERNORMS),
                              ("softmax", SOFTMAXES)):
            if getattr(self, name) not in allowed:
                raise UserError(f"QuantConfig.{name}={getattr(self, name)!r} is not implemented; use one of "
                                f"{', '.join(allowed)}")
        if not 4 <= self.norm_frac <= 20:
            raise UserError(f"QuantConfig.norm_frac must be in 4..20, got {self.norm_frac}")
        if not 50.0 < self.act_percentile <= 100.0:
            raise UserError(f"QuantConfig.act_percentile must be in (50, 100], got {self.act_percentile}")

    @property
    def softmax_bits(self) -> int:
        return self.attention_bits if self.prob_bits is None else self.prob_bits

    @property
    def attention_bits(self) -> int:
        """Width of q, k, v and the attention context (`attn_bits`, else `act_bits`)."""
        return self.act_bits if self.attn_bits is None else self.attn_bits

    def replace(self, **changes: Any) -> "QuantConfig":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "QuantConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise UserError(f"unknown QuantConfig field(s) {sorted(unknown)}")
        return cls(**data)

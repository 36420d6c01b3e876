"""Width settings as data: the named widths a student can be quantized at (docs/QUANT.md "Widths").

A `WidthSetting` names the widths of the Linears (weights, activations) and, set apart, those of
attention: its tensors (q, k, v and the context it hands to the output projection; the inhibitor's Z
lives in v's format, so it has v's width) and the dot product's softmax probabilities. `WIDTHS` is the
table `hwsim train --widths NAME` picks from; `--bits N` stays W`N`A`N` (`uniform(N)`). Torch-free.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Mapping

from models.errors import UserError
from models.settings import LATER
from quant.qat.config import QuantConfig


@dataclass(frozen=True)
class WidthSetting:
    """Widths of one quantized student: Linear weights (and embedding tables, LayerNorm gamma, symmetric
    c) `weight_bits`; activations between ops `act_bits`; attention's q, k, v and context `attn_bits`;
    the dot product's probabilities `prob_bits` (None: as `attn_bits`); `per_channel`: the Linears'
    weights (not the classifier's) with one power-of-two scale per output channel (`QuantConfig`)."""

    name: str
    weight_bits: int
    act_bits: int
    attn_bits: int
    prob_bits: int | None = None
    per_channel: bool = field(default=False, metadata={LATER: True})

    def __post_init__(self) -> None:
        self.quant_config()  # refuses a width the hardware cannot hold

    @property
    def probabilities(self) -> int:
        return self.attn_bits if self.prob_bits is None else self.prob_bits

    def quant_config(self, base: QuantConfig | None = None) -> QuantConfig:
        """`base` (default `QuantConfig()`) at these widths; attention and probability widths equal to the
        activations' (probabilities equal to the attention width) are left at None (as `QuantConfig(weight_bits=N, act_bits=N)` has them)."""
        base = base or QuantConfig()
        attn = None if self.attn_bits == self.act_bits else self.attn_bits
        prob = None if self.probabilities == self.attn_bits else self.probabilities
        return base.replace(weight_bits=self.weight_bits, act_bits=self.act_bits, attn_bits=attn, prob_bits=prob,
                            per_channel=self.per_channel)


def uniform(bits: int) -> WidthSetting:
    """W`bits`A`bits` with attention at `bits` too: what `--bits N` means."""
    return WidthSetting(f"w{bits}a{bits}", bits, bits, bits)


def _table(*settings: WidthSetting) -> Mapping[str, WidthSetting]:
    names = [s.name for s in settings]
    if len(set(names)) != len(names):
        raise ValueError(f"duplicate width setting names in {names}")
    return MappingProxyType({s.name: s for s in settings})


WIDTHS: Mapping[str, WidthSetting] = _table(
    uniform(8),
    uniform(6),
    WidthSetting("w4a8", 4, 8, 8),
    uniform(4),
    WidthSetting("w8a8-att6", 8, 8, 6),
    WidthSetting("w8a8-att4", 8, 8, 4),
    uniform(16),
    WidthSetting("w4a8-pc", 4, 8, 8, per_channel=True),
    WidthSetting("w4a4-pc", 4, 4, 4, per_channel=True),
)
"""The named settings: W8A8, W6A6, W4A8 (4-bit weights), W4A4, Linears at W8A8 with attention at 6
or 4 bits (q, k, v, context, probabilities), W16A16, and W4A8 and W4A4 with per-channel weight
scales (`-pc`)."""


def width_setting(name: str) -> WidthSetting:
    """The setting named `name`; UserError listing the names otherwise."""
    if name not in WIDTHS:
        raise UserError(f"unknown width setting {name!r}: use one of {', '.join(WIDTHS)} (or --bits N for WNAN)")
    return WIDTHS[name]

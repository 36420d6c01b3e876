"""The integer encoder classifier's node sequence, written once.

Tensor names in brackets; a node's name is its output tensor's:

    Embed [emb] -> LayerNorm [emb_ln]
    per layer i (x = the previous LayerNorm's output, p = "l{i}."):
      the variant's queries and keys of x (dot, inhibitor: Linear [p q], [p k]; symmetric: Linear [p qk],
      ScaleChannels [p q], and k is p qk), Linear [p v]
      SplitHeads [p qh], [p kh], [p vh] -> the variant's attention op [p ctxh] -> MergeHeads [p ctx]
      -> Linear [p o] -> Add(o, x) [p res1] -> LayerNorm [p ln1]
      -> Linear relu [p ffn1] -> Linear [p ffn2] -> Add(ffn2, ln1) [p res2] -> LayerNorm [p ln2]
    TakeFirst [cls] -> Linear relu [pre] -> Linear [logits] (the 32-bit accumulator: shift 0, bits 32)

`build_encoder` appends these nodes in this order through an `EncoderParts`, which supplies each
part's parameters and formats: random and calibrated for synthetic programs (`quant.intops.synth`),
from the quantizers of a trained model when lowering it (`quant.qat.lower`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class Part:
    """A parametrised node of the encoder: its role (`emb_ln`, `ln1`, `ln2` for LayerNorms; `v`, `o`,
    `ffn1`, `ffn2`, `pre`, `logits` for Linears) and its layer (None outside the layers)."""

    role: str
    layer: int | None = None

    @property
    def name(self) -> str:
        """The node's (and its output tensor's) name: `l{layer}.{role}`, or the role outside the layers."""
        return self.role if self.layer is None else f"l{self.layer}.{self.role}"


class EncoderParts(Protocol):
    """What `build_encoder` asks of a program builder."""

    bits: int    # activation width
    heads: int

    def exp(self, name: str) -> int: ...

    def width(self, name: str) -> int:
        """The declared bits of tensor `name` (data movement keeps its input's width)."""

    def node(self, op: str, name: str, inputs: tuple[str, ...], width: int, exp: int | None,
             **attrs: int) -> str: ...

    def add(self, name: str, a: str, b: str) -> str: ...

    def embed(self, name: str) -> str:
        """The Embed node `name` on `input_ids`."""

    def layernorm_at(self, part: Part, x: str) -> str: ...

    def linear_at(self, part: Part, x: str) -> str: ...

    def queries_keys(self, layer: int, prefix: str, x: str) -> tuple[str, str]:
        """The variant's nodes from the layer input `x` to its queries and keys (names `prefix` + ...)."""

    def attention_core(self, layer: int, name: str, inputs: tuple[str, str, str, str]) -> str:
        """The variant's attention node `name` on (qh, kh, vh, attention_mask)."""


def build_encoder(parts: EncoderParts, layers: int) -> str:
    """Append the whole encoder classifier (module docstring) in order; returns the logits tensor."""
    x = parts.layernorm_at(Part("emb_ln"), parts.embed("emb"))
    for i in range(layers):
        res1 = parts.add(f"l{i}.res1", attention(parts, i, x), x)
        ln1 = parts.layernorm_at(Part("ln1", i), res1)
        ffn2 = parts.linear_at(Part("ffn2", i), parts.linear_at(Part("ffn1", i), ln1))
        x = parts.layernorm_at(Part("ln2", i), parts.add(f"l{i}.res2", ffn2, ln1))
    cls = parts.node("TakeFirst", "cls", (x,), parts.width(x), parts.exp(x))
    return parts.linear_at(Part("logits"), parts.linear_at(Part("pre"), cls))


def attention(parts: EncoderParts, i: int, x: str) -> str:
    """Layer `i`'s attention from its input `x` to the output projection [l{i}.o]."""
    p = f"l{i}."
    q, k = parts.queries_keys(i, p, x)
    v = parts.linear_at(Part("v", i), x)
    qh, kh, vh = (parts.node("SplitHeads", p + s + "h", (t,), parts.width(t), parts.exp(t), heads=parts.heads)
                  for s, t in (("q", q), ("k", k), ("v", v)))
    ctxh = parts.attention_core(i, p + "ctxh", (qh, kh, vh, "attention_mask"))
    ctx = parts.node("MergeHeads", p + "ctx", (ctxh,), parts.width(ctxh), parts.exp(ctxh))
    return parts.linear_at(Part("o", i), ctx)

"""The GEMM-shaped stages of a graph: what a processing-element array computes, as loop nests.

Which stages a node runs, and the arithmetic of each, is the op spec's (`quant.ir.spec.OpSpec.stages`);
this module builds the loop nests of each stage kind (`BUILD`) and bounds the partial sums of each
(kind, arithmetic) pair (`ACC_BOUND`).

Every stage is a grouped matrix product `O[g][b][k] += I[g][b][c] (op) W[g][c][k]` over four loop
dimensions (ZigZag sees the rows split in tiles, `hwsim.cost.zigzag_map.ROW_TILE`), whatever its arithmetic: the array moves the same operands in the same amounts whether
a processing element multiplies (dot-product) or subtracts, takes an absolute value and adds
(inhibitor), so the mapping engine sees one loop nest and hwsim prices the arithmetic it counted.

| node               | stage     | G          | B (rows)   | K (cols) | C (reduced) | I      | W          |
|--------------------|-----------|------------|------------|----------|-------------|--------|------------|
| Linear             | linear    | 1          | batch * n  | N out    | K in        | x      | weight     |
| DotAttention       | scores    | batch * H  | n queries  | m keys   | d           | q      | k          |
|                    | mixing    | batch * H  | n          | d        | m           | P      | v          |
| InhibitorAttention | scores    | batch * H  | n          | m        | d           | q      | k          |
|                    | mixing    | batch * H  | n          | d        | m           | Z      | v          |

Operand precisions are the declared widths: I and W from the input tensors (P and Z at the op's
score-matrix width attribute, `quant.ir.spec.OpSpec.score_bits_attr`), O_final at the output's
declared width (for scores, the score-matrix width) and O (the partial sums) at the width the
accumulator provably needs (`proven_acc_bits`), never above the op's declared accumulator width
(`spec.acc_width`): registers, links and accumulator buffers hold that many bits. Every other op (LayerNorm, Add, Embed, ScaleChannels, the row-wise steps
inside attention) is vector work (`hwsim.cost.vector`).
"""
from __future__ import annotations

from dataclasses import dataclass
from math import prod
from typing import Callable, Mapping

from quant.ir import spec


@dataclass(frozen=True)
class GemmStage:
    """One loop nest `O[G][B][K] += I[G][B][C] * W[G][C][K]` with its operand widths.

    `w_param`: W is a parameter (weights live where the scenario keeps them), else an activation.
    `mac_sites` = G * B * K * C: the processing-element actions one pass performs.
    """

    node: str
    kind: str
    groups: int
    rows: int
    cols: int
    reduce: int
    bits_i: int
    bits_w: int
    bits_o: int
    bits_final: int
    w_param: bool

    @property
    def mac_sites(self) -> int:
        return self.groups * self.rows * self.cols * self.reduce

    def operand_elems(self) -> dict[str, int]:
        """Elements of each operand (I, W, O) over the whole stage."""
        g = self.groups
        return {"I": g * self.rows * self.reduce, "W": g * self.reduce * self.cols, "O": g * self.rows * self.cols}

    def shape_key(self) -> tuple:
        """What the mapping depends on (the node name does not)."""
        return (self.kind, self.groups, self.rows, self.cols, self.reduce,
                self.bits_i, self.bits_w, self.bits_o, self.bits_final, self.w_param)


def magnitude(bits: int, signed: bool = True) -> int:
    """The largest |value| a `bits`-bit integer holds (two's complement when signed).

    >>> magnitude(8), magnitude(8, signed=False), magnitude(9)
    (128, 255, 256)
    """
    return 2 ** (bits - 1) if signed else 2 ** bits - 1


def bits_for(bound: int, signed: bool = True) -> int:
    """Bits of an accumulator that holds every integer in [-bound, bound] (or [0, bound] unsigned).

    >>> bits_for(127), bits_for(128), bits_for(8160, signed=False)
    (8, 9, 13)
    """
    return max(1, int(bound).bit_length()) + (1 if signed else 0)


def _linear_mac(site, mags: tuple[int, ...], weight_bound: int | None) -> int:
    """`weight_bound` = max over output columns of (max|x| x sum_c |W[c, k]| + |b[k]|) when the
    weights are known, else K x max|x| x max|W| + max|b|."""
    k = site.in_shapes[1][0]
    bound = weight_bound if weight_bound is not None else k * mags[0] * mags[1] + (mags[2] if len(mags) > 2 else 0)
    return bits_for(bound)


def _scores_mac(site, mags: tuple[int, ...], weight_bound: int | None) -> int:
    """d x max|q| x max|k| (a dot product over the head dimension)."""
    return bits_for(site.in_shapes[0][3] * mags[0] * mags[1])


def _mixing_mac(site, mags: tuple[int, ...], weight_bound: int | None) -> int:
    """m x max P x max|v|, P unsigned at the score-matrix width."""
    p = magnitude(site.attrs[spec.OPS[site.op_type].score_bits_attr], signed=False)
    return bits_for(site.in_shapes[1][2] * p * mags[2])


def _scores_l1(site, mags: tuple[int, ...], weight_bound: int | None) -> int:
    """d x (max|q| + max|k|): a Manhattan distance, non-negative."""
    return bits_for(site.in_shapes[0][3] * (mags[0] + mags[1]), signed=False)


def _mixing_inhibit(site, mags: tuple[int, ...], weight_bound: int | None) -> int:
    """m x max|v|: m terms of ReLU(v - z) or sign(v) ReLU(|v| - z), each at most max|v| in magnitude."""
    return bits_for(site.in_shapes[1][2] * mags[2])


ACC_BOUND: Mapping[tuple[str, str], Callable[..., int]] = {
    ("linear", "mac"): _linear_mac, ("scores", "mac"): _scores_mac, ("mixing", "mac"): _mixing_mac,
    ("scores", "l1"): _scores_l1, ("mixing", "inhibit"): _mixing_inhibit}
"""(stage kind, arithmetic) of `quant.ir.spec.Stage` -> bits of its largest partial sum, from the
op site, the magnitudes of its inputs and (a Linear's) weight bound."""


def proven_acc_bits(site, mags: tuple[int, ...], weight_bound: int | None = None) -> dict[str, int]:
    """Stage kind -> accumulator bits that provably hold every partial sum of `site`, from the
    magnitudes of its inputs (`mags`, e.g. `magnitude(bits, signed)` per input) and interval
    arithmetic over the reduction (`ACC_BOUND` of each of the op's stages); capped at the op's
    declared accumulator width. `weight_bound`: a linear stage's bound from the real weights."""
    cap = spec.acc_width(site.op_type, site.attrs)
    return {st.kind: min(cap, ACC_BOUND[(st.kind, st.arith)](site, mags, weight_bound))
            for st in spec.op_spec(site.op_type).stages}


def _declared(site) -> dict[str, int]:
    acc = spec.acc_width(site.op_type, site.attrs)
    return {"linear": acc, "scores": acc, "mixing": acc}


def _linear(site, acc: dict[str, int]) -> list[GemmStage]:
    rows, (k, n) = prod(site.in_shapes[0][:-1]), site.in_shapes[1]
    return [GemmStage(site.name, "linear", 1, rows, n, k, site.in_bits[0], site.in_bits[1],
                      acc["linear"], site.out_bits[0], bool(site.in_is_param[1]))]


def _attention(site, acc: dict[str, int]) -> list[GemmStage]:
    batch, heads, n, d = site.in_shapes[0]
    m = site.in_shapes[1][2]
    score_bits = site.attrs[spec.OPS[site.op_type].score_bits_attr]
    g = batch * heads
    return [GemmStage(site.name, "scores", g, n, m, d, site.in_bits[0], site.in_bits[1], acc["scores"], score_bits,
                      False),
            GemmStage(site.name, "mixing", g, n, d, m, score_bits, site.in_bits[2], acc["mixing"], site.out_bits[0],
                      False)]


BUILD: Mapping[tuple[str, ...], Callable[[object, dict[str, int]], list[GemmStage]]] = {
    ("linear",): _linear, ("scores", "mixing"): _attention}
"""The stage kinds an op declares (`quant.ir.spec.OpSpec.stages`) -> the builder of their loop nests."""


def stage_kinds(op: str) -> tuple[str, ...]:
    """The kinds of the GEMM-shaped stages of `op`, in order (() for vector and data-movement ops)."""
    return tuple(st.kind for st in spec.op_spec(op).stages)


def gemm_stages(site, acc_bits: Mapping[str, int] | None = None) -> list[GemmStage]:
    """The GEMM-shaped stages of one `hwsim.sim.counting.OpSite` ([] for vector and data-movement ops);
    partial sums at `acc_bits` (stage kind -> bits, e.g. `proven_acc_bits`), else the declared width."""
    kinds = stage_kinds(site.op_type)
    return BUILD[kinds](site, dict(acc_bits) if acc_bits else _declared(site)) if kinds else []

"""The GEMM-shaped stages of a graph: what a processing-element array computes, as loop nests.

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
score-matrix width attribute, `quant.ir.spec.OpSpec.score_bits_attr`), O (the partial sums) at the
op's accumulator width (`spec.acc_width`) and O_final at the output's declared width (for scores,
the score-matrix width). Every other op (LayerNorm, Add, Embed, ScaleChannels, the row-wise steps
inside attention) is vector work (`hwsim.cost.vector`).
"""
from __future__ import annotations

from dataclasses import dataclass
from math import prod

from quant.ir import spec

STAGE_KINDS = ("linear", "scores", "mixing")


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


def _linear(site) -> list[GemmStage]:
    rows, (k, n) = prod(site.in_shapes[0][:-1]), site.in_shapes[1]
    return [GemmStage(site.name, "linear", 1, rows, n, k, site.in_bits[0], site.in_bits[1],
                      spec.acc_width("Linear", site.attrs), site.out_bits[0], bool(site.in_is_param[1]))]


def _attention(site) -> list[GemmStage]:
    batch, heads, n, d = site.in_shapes[0]
    m = site.in_shapes[1][2]
    score_bits = site.attrs[spec.OPS[site.op_type].score_bits_attr]
    acc = spec.acc_width(site.op_type, site.attrs)
    g = batch * heads
    return [GemmStage(site.name, "scores", g, n, m, d, site.in_bits[0], site.in_bits[1], acc, score_bits, False),
            GemmStage(site.name, "mixing", g, n, d, m, score_bits, site.in_bits[2], acc, site.out_bits[0], False)]


STAGES_OF = {"Linear": _linear, "DotAttention": _attention, "InhibitorAttention": _attention}
"""op type -> its GEMM-shaped stages; ops not listed run on the vector unit."""


def gemm_stages(site) -> list[GemmStage]:
    """The GEMM-shaped stages of one `hwsim.counting.OpSite` ([] for vector and data-movement ops)."""
    build = STAGES_OF.get(site.op_type)
    return build(site) if build else []

"""Action counts of one integer op, from its shapes, declared widths and attributes only.

`count_op(site, hw) -> {"action@width": count}` over the whole batch of the site's shapes: the
arithmetic of the op's DESIGN.md steps plus its memory accesses (`hwsim.sim.memory`). Counts are
data-independent (padded keys are computed like valid ones; masks are selects, not arithmetic), so
an executor may cache them per shape.

Actions, as hardware builds them:
- `add` (addition and subtraction); `mul@AxB` (A >= B operand widths); `abs`.
- `cmp`: max, min, and each side of a clamp or saturation whose bound is not 0 (a comparator).
- `relu`: max(x, 0) (Linear's relu, the inhibitor's ReLU(v - Z), the lower side of clamp(Z, 0, .)):
  a w-bit row of AND gates gated by the sign bit, no comparator.
- `shiftc`: a shift by an amount fixed by an attribute or constant (requant, alignment, the
  digit-by-digit square root, a power-of-two divisor, the reciprocal's shift): wiring, counted
  so reports can show it and priced at 0.
- `shift`: a data-dependent shift (softmax's `e >> z`, a per-channel Linear's `shift + s_j`): a barrel
  shifter.
- `div`: integer floor division by a run-time value (LayerNorm's 2**30 / sd, softmax's
  normalisation per score, the inhibitor's centring mean per row).
- Floor division by a constant d that is not a power of two (LayerNorm's D, softmax's q_ln2) is
  a multiply by a precomputed reciprocal and a constant shift (Granlund & Montgomery 1994,
  `div_magic`): `mul@AxB` + `shiftc`, plus one `add` of a constant when the dividend can be
  negative; exact for the dividend range at hand.
Softmax's normalisation stays one division per score: an exact reciprocal-multiply without a
correction step needs a reciprocal of about width(e * 2**prob_bits) + width(sum e) bits, and with
a correction step a second multiply (quotient times sum) per score, neither cheaper than the
divider under the table's rules.

Widths: every value is tracked as an exact integer range (lo, hi) derived from declared tensor
widths and the op's steps; an action's width is the two's-complement width that holds its operands
and result (unsigned values count one sign bit), capped at 64 because the specification computes
in int64 (`quant.intops`). So the L1 subtraction of two b-bit values is `add@(b+1)` and its sum over
d terms is `add@(b+1+ceil(log2 d))`. `isqrt` is counted as a digit-by-digit exact floor square
root: ceil(W/2) iterations of one trial subtraction, one compare and two constant shifts at width
W (the software reference uses a float estimate plus corrections; the integer result is the same).
A Linear's adders are as wide as its worst-case accumulator (above 32 bits at W16A16, where the
lowering declares `acc_bits=64`), never a fixed int32.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from math import isqrt, prod
from types import MappingProxyType
from typing import Callable, Iterable, Mapping

from hwsim.sim.actions import ActionKey
from hwsim.sim.hwconfig import HwConfig
from hwsim.sim.memory import MemoryPlan, default_plan, op_traffic, plan_memory
from models.errors import UserError
from quant.ir import spec
from quant.ir.spec import int_range

W_MAX = 64
Range = tuple[int, int]


@dataclass(frozen=True)
class OpSite:
    """One node as the counter sees it: op type, node name, int attributes (a tuple of ints for one
    given per head, `spec.OpSpec.head_attrs`), the shapes and declared bits of its inputs and outputs,
    and which inputs are params (initializers)."""

    op_type: str
    name: str
    attrs: Mapping[str, int]
    in_shapes: tuple[tuple[int, ...], ...]
    out_shapes: tuple[tuple[int, ...], ...]
    in_bits: tuple[int, ...]
    out_bits: tuple[int, ...]
    in_is_param: tuple[bool, ...]

    def __post_init__(self) -> None:
        norm = lambda shapes: tuple(tuple(int(v) for v in s) for s in shapes)  # noqa: E731
        attr = lambda v: tuple(int(x) for x in v) if spec.is_per_head(v) else int(v)  # noqa: E731
        object.__setattr__(self, "attrs", MappingProxyType({k: attr(v) for k, v in self.attrs.items()}))
        object.__setattr__(self, "in_shapes", norm(self.in_shapes))
        object.__setattr__(self, "out_shapes", norm(self.out_shapes))
        object.__setattr__(self, "in_bits", tuple(int(b) for b in self.in_bits))
        object.__setattr__(self, "out_bits", tuple(int(b) for b in self.out_bits))
        object.__setattr__(self, "in_is_param", tuple(bool(p) for p in self.in_is_param))
        if not len(self.in_shapes) == len(self.in_bits) == len(self.in_is_param):
            raise ValueError(f"OpSite {self.name!r}: in_shapes, in_bits, in_is_param differ in length")
        if len(self.out_shapes) != len(self.out_bits):
            raise ValueError(f"OpSite {self.name!r}: out_shapes and out_bits differ in length")

    def __hash__(self) -> int:
        return hash((self.op_type, self.name, tuple(sorted(self.attrs.items())), self.in_shapes,
                     self.out_shapes, self.in_bits, self.out_bits, self.in_is_param))


# ---- widths -------------------------------------------------------------------------------------
def clog2(x: int) -> int:
    """ceil(log2 x) for x >= 1."""
    return (x - 1).bit_length()


def width(r: Range) -> int:
    """Two's-complement width holding the range, capped at 64."""
    lo, hi = r
    w = 1
    while lo < -(1 << (w - 1)) or hi > (1 << (w - 1)) - 1:
        w += 1
    return min(w, W_MAX)


def div_magic(divisor: int, lo: int, hi: int) -> tuple[int, int, int]:
    """(m, c, s) with floor(x / divisor) == (x * m + c) >> s for every integer lo <= x <= hi
    (Granlund & Montgomery 1994; `>>` is an arithmetic floor shift). divisor >= 1.

    m = ceil(2**s / divisor) and e = m * divisor - 2**s in [0, divisor); K = ceil(-lo / divisor)
    (0 when lo >= 0) moves the range onto y = x + K * divisor >= 0, and c = K * e. Then
    (x * m + c) >> s = floor(y * m / 2**s) - K, exact when (hi + K * divisor) * e < 2**s; s is the
    smallest shift meeting that.

    >>> div_magic(384, 0, 2**20)
    (699051, 0, 28)
    >>> m, c, s = div_magic(90, -1000, 1000); [(x * m + c) >> s for x in (-181, -180, 179, 180)]
    [-3, -2, 1, 2]
    """
    k = max(0, -(lo // divisor))
    top = hi + k * divisor
    s = 0
    while True:
        m = -(-(1 << s) // divisor)
        e = m * divisor - (1 << s)
        if top * e < (1 << s):
            return m, k * e, s
        s += 1


def _sum(a: Range, b: Range) -> Range:
    return a[0] + b[0], a[1] + b[1]


def _diff(a: Range, b: Range) -> Range:
    return a[0] - b[1], a[1] - b[0]


def _prod(a: Range, b: Range) -> Range:
    ends = [x * y for x in a for y in b]
    return min(ends), max(ends)


def _times(r: Range, k: int) -> Range:
    return r[0] * k, r[1] * k


class Tally(Counter):
    """Counter of `action@width` keys with helpers that take ranges."""

    def op(self, action: str, r: Range, count: int) -> None:
        if count > 0:
            self[ActionKey.of(action, width(r)).format()] += count

    def mul(self, a: Range, b: Range, count: int) -> Range:
        wa, wb = sorted((width(a), width(b)), reverse=True)
        if count > 0:
            self[ActionKey.of("mul", wa, wb).format()] += count
        return _prod(a, b)

    def sum_terms(self, term: Range, terms: int, groups: int) -> Range:
        """`groups` sums of `terms` terms each: groups*(terms-1) additions at the final width."""
        total = _times(term, terms)
        self.op("add", total, groups * (terms - 1))
        return total

    def relu(self, r: Range, count: int) -> Range:
        """max(x, 0): AND gates gated by the sign bit, at the width of x."""
        self.op("relu", r, count)
        return max(r[0], 0), max(r[1], 0)

    def div_const(self, r: Range, divisor: int, count: int) -> Range:
        """floor(x / divisor) for a constant divisor: a constant shift when it is a power of two,
        else `div_magic`'s multiply (x by m), constant add (only when x can be negative) and
        constant shift, at the product's width."""
        if divisor & (divisor - 1) == 0:
            self.op("shiftc", r, count)
        else:
            m, c, _ = div_magic(divisor, *r)
            y = _sum(self.mul(r, (m, m), count), (c, c))
            if c:
                self.op("add", y, count)
            self.op("shiftc", y, count)
        return r[0] // divisor, r[1] // divisor

    def requant(self, r: Range, shift: int, bits: int, count: int) -> Range:
        """DESIGN.md requant: round-add and shift (shift > 0), shift (< 0), then one compare per
        side of the `bits` range that the input range can cross."""
        if shift > 0:
            r = _sum(r, (1 << (shift - 1),) * 2)
            self.op("add", r, count)
            self.op("shiftc", r, count)
            r = r[0] >> shift, r[1] >> shift
        elif shift < 0:
            r = r[0] << -shift, r[1] << -shift
            self.op("shiftc", r, count)
        lo, hi = int_range(bits)
        sides = (r[0] < lo) + (r[1] > hi)
        self.op("cmp", r, sides * count)
        return max(r[0], lo), min(r[1], hi)

    def requant_channels(self, r: Range, shift: int, offset_bits: int, bits: int, count: int) -> Range:
        """requant by `shift + s_j` per output, `s_j` an unsigned `offset_bits`-bit offset known only by
        its declared width: the round-add (when some shift may be positive; its constant differs per
        column) and one data-dependent shift per output (`shift`, a barrel shifter), then the
        saturation compares that the widest output range (the smallest shift) can need."""
        top = shift + (1 << offset_bits) - 1
        if top > 0:
            r_up = _sum(r, (1 << (top - 1),) * 2)
            self.op("add", r_up, count)
            r = r_up if shift > 0 else r
        if top != 0 or shift != 0:
            self.op("shift", r, count)
        r = (r[0] >> shift, r[1] >> shift) if shift > 0 else (r[0] << -shift, r[1] << -shift)
        lo, hi = int_range(bits)
        sides = (r[0] < lo) + (r[1] > hi)
        self.op("cmp", r, sides * count)
        return max(r[0], lo), min(r[1], hi)

    def isqrt(self, r: Range, count: int) -> Range:
        """Digit-by-digit floor sqrt of a non-negative W-bit value: ceil(W/2) iterations of
        trial subtract + compare + two constant shifts."""
        steps = (width(r) + 1) // 2
        self.op("add", r, steps * count)
        self.op("cmp", r, steps * count)
        self.op("shiftc", r, 2 * steps * count)
        return 0, isqrt(max(r[1], 0))


# ---- one counting function per op type ----------------------------------------------------------
def _linear(s: OpSite, t: Tally) -> None:
    """acc = x @ w + b; y = requant(acc, shift, bits) (per channel: shift + s_j); optional ReLU.
    x [..., K], w [K, N], s [N]."""
    rows, (k, n) = prod(s.in_shapes[0][:-1]), s.in_shapes[1]
    p = t.mul(int_range(s.in_bits[0]), int_range(s.in_bits[1]), rows * k * n)
    acc = t.sum_terms(p, k, rows * n)
    if len(s.in_shapes) > 2:
        acc = _sum(acc, int_range(s.in_bits[2]))
        t.op("add", acc, rows * n)
    if len(s.in_shapes) > 3:  # per-channel shift offsets
        y = t.requant_channels(acc, s.attrs["shift"], s.in_bits[3], s.attrs["bits"], rows * n)
    else:
        y = t.requant(acc, s.attrs["shift"], s.attrs["bits"], rows * n)
    if s.attrs["relu"]:
        t.relu(y, rows * n)


def _add(s: OpSite, t: Tally) -> None:
    """(a << la) + (b << lb)."""
    n = prod(s.out_shapes[0])
    terms = []
    for bits, left in ((s.in_bits[0], s.attrs["la"]), (s.in_bits[1], s.attrs["lb"])):
        r = int_range(bits)
        if left:
            r = r[0] << left, r[1] << left
            t.op("shiftc", r, n)
        terms.append(r)
    t.op("add", _sum(*terms), n)


def _embed(s: OpSite, t: Tally) -> None:
    """(word[ids] << lw) + (pos[arange(n)] << lp) + (type[0] << lt); the type row is shifted once
    per sample (it is the same row for every token)."""
    batch, n, dim = s.out_shapes[0]
    tokens = batch * n * dim
    shifts = [("lw", tokens), ("lp", tokens), ("lt", batch * dim)]
    acc = None
    for bits, (attr, count) in zip(s.in_bits[1:], shifts):
        r, left = int_range(bits), s.attrs[attr]
        if left:
            r = r[0] << left, r[1] << left
            t.op("shiftc", r, count)
        if acc is not None:
            acc = _sum(acc, r)
            t.op("add", acc, tokens)
        else:
            acc = r


def _layernorm(s: OpSite, t: Tally) -> None:
    """DESIGN.md LayerNorm, row by row over the last axis D."""
    x = s.in_shapes[0]
    rows, dim = prod(x[:-1]), x[-1]
    a, eps = s.attrs, s.attrs["eps"]
    xr = int_range(s.in_bits[0])
    mean = t.div_const(t.sum_terms(xr, dim, rows), dim, rows)   # m = floor(sum x / D)
    c = _diff(xr, mean)
    t.op("add", c, rows * dim)                                   # c = x - m
    sq = t.mul(c, c, rows * dim)
    sq = (0, sq[1])                                              # c^2 >= 0
    var = t.div_const(t.sum_terms(sq, dim, rows), dim, rows)     # v = floor(sum c^2 / D)
    if eps:
        var = _sum(var, (eps, eps))
        t.op("add", var, rows)
    sd = t.isqrt(var, rows)
    t.op("cmp", sd, rows)                                        # max(., 1)
    t.op("div", (0, 1 << 30), rows)                              # inv = floor(2**30 / sd)
    nrm = t.requant(t.mul(c, (0, 1 << 30), rows * dim), 30 - a["norm_frac"], 32, rows * dim)
    y = _sum(t.mul(nrm, int_range(s.in_bits[1]), rows * dim), int_range(s.in_bits[2]))
    t.op("add", y, rows * dim)                                   # + beta
    t.requant(y, a["shift"], a["bits"], rows * dim)


def _scale_channels(s: OpSite, t: Tally) -> None:
    """requant(x * c, shift, bits), c broadcast over the last axis."""
    n = prod(s.in_shapes[0])
    t.requant(t.mul(int_range(s.in_bits[0]), int_range(s.in_bits[1]), n), s.attrs["shift"], s.attrs["bits"], n)


def _heads(s: OpSite) -> tuple[int, int, int, int, int]:
    """(batch, groups = batch*heads, n queries, m keys, d) of an attention site."""
    batch, heads, n, d = s.in_shapes[0]
    return batch, batch * heads, n, s.in_shapes[1][2], d


def _dot_attention(s: OpSite, t: Tally) -> None:
    """s = q k^T, requantised by score_shift to 32 bits (the identity, uncounted, for a 32-bit accumulator);
    I-BERT integer softmax per row (DESIGN.md); y = requant(P @ v, out_shift, bits)."""
    _, g, n, m, d = _heads(s)
    a, scores = spec.with_defaults("DotAttention", s.attrs), g * n * m
    sc = t.sum_terms(t.mul(int_range(s.in_bits[0]), int_range(s.in_bits[1]), scores * d), d, scores)
    if a["score_shift"] or a["acc_bits"] > 32:                   # requant(s, score_shift, 32)
        sc = t.requant(sc, a["score_shift"], 32, scores)
    t.op("cmp", sc, g * n * (m - 1))                             # row max
    q_ln2, clip = max(a["q_ln2"], 1), a["n_clip"] * max(a["q_ln2"], 1)
    t.op("add", _diff(sc, sc), scores)                           # x = s - max
    x = (-clip, 0)
    t.op("cmp", _diff(sc, sc), scores)                           # max(x, -n_clip*q_ln2)
    t.op("add", x, scores)                                       # -x
    t.div_const((0, clip), q_ln2, scores)                        # z = floor(-x / q_ln2)
    t.mul((0, a["n_clip"]), (q_ln2, q_ln2), scores)              # z * q_ln2
    t.op("add", x, scores)                                       # p = x + z*q_ln2
    pb = _sum((-q_ln2, 0), (a["b_int"], a["b_int"]))
    t.op("add", pb, scores)                                      # p + b_int
    sq = t.mul(pb, pb, scores)
    e = _sum((0, max(sq[1], 0)), (a["c_int"], a["c_int"]))
    t.op("add", e, scores)                                       # + c_int
    t.op("shift", e, scores)                                     # >> z
    t.sum_terms(e, m, g * n)                                     # sum e
    scaled = e[0] << a["prob_bits"], e[1] << a["prob_bits"]
    t.op("shiftc", scaled, scores)                               # e * 2**prob_bits
    t.op("div", scaled, scores)                                  # floor(. / sum e)
    p = (0, (1 << a["prob_bits"]) - 1)
    t.op("cmp", (0, 1 << a["prob_bits"]), scores)                # min(., 2**prob_bits - 1)
    h = t.sum_terms(t.mul(p, int_range(s.in_bits[2]), g * n * d * m), m, g * n * d)
    t.requant(h, a["out_shift"], a["bits"], g * n * d)


def _inhibitor_attention(s: OpSite, t: Tally) -> None:
    """DESIGN.md inhibitor steps 1-8 (no multiplications). With per-head `z_shift`, `alpha` or
    `out_shift`, the heads that share all three are counted together (`_inhibitor_heads`): the same
    actions per element, their widths from each head's own values (a head with alpha 0 skips step 4)."""
    batch, heads = s.in_shapes[0][:2]
    values = zip(*(spec.head_values("InhibitorAttention", name, s.attrs[name], heads)
                   for name in ("z_shift", "alpha", "out_shift")))
    for i, ((z_shift, alpha, out_shift), count) in enumerate(Counter(values).items()):
        _inhibitor_heads(s, t, batch * count, z_shift, alpha, out_shift, first=i == 0)


def _inhibitor_heads(s: OpSite, t: Tally, g: int, z_shift: int, alpha: int, out_shift: int, first: bool) -> None:
    """Steps 1-8 over `g` (batch x head) groups that run with these three values; the count of
    valid keys, once per sample whatever the heads, with the `first` group."""
    batch, _, n, m, d = _heads(s)
    a, scores = s.attrs, g * n * m
    diff = _diff(int_range(s.in_bits[0]), int_range(s.in_bits[1]))
    t.op("add", diff, scores * d)                                # 1. q_ik - k_jk
    t.op("abs", diff, scores * d)                                #    |.|
    l1 = t.sum_terms((0, max(-diff[0], diff[1])), d, scores)     #    sum over d
    z = t.requant(l1, z_shift, 32, scores)                       # 2.
    if a["center"]:                                              # 3.
        if first:
            t.sum_terms((0, 1), m, batch)                        #    n_valid = sum(mask), per sample
        total = t.sum_terms(z, m, g * n)
        t.op("div", total, g * n)
        z = _diff(z, z)
        t.op("add", z, scores)
    if alpha:                                                    # 4.
        z = _sum(z, (alpha, alpha))
        t.op("add", z, scores)
    top = 1 << (a["bits"] - 1)                                   # 5. clamp(Z, 0, 2**(bits-1))
    t.op("relu", z, scores * (z[0] < 0))                         #    lower side: ReLU
    t.op("cmp", z, scores * (z[1] > top))                        #    upper side
    z = (0, top)
    v = int_range(s.in_bits[2])
    if a["signed"]:                                              # 7. signed
        mag = (0, -v[0])
        t.op("abs", v, g * m * d)                                #    |v_jk| once per key
        r = _diff(mag, z)
        t.op("add", r, scores * d)                               #    |v| - Z
        t.relu(r, scores * d)                                    #    ReLU
        h = (-m * mag[1], m * mag[1])
        t.op("add", (-mag[1], 0), g * n * d)                     #    negate the first term if v < 0
        t.op("add", h, g * n * (m - 1) * d)                      #    add or subtract by sign(v)
    else:                                                        # 7. unsigned
        r = _diff(v, z)
        t.op("add", r, scores * d)                               #    v - Z
        t.relu(r, scores * d)                                    #    ReLU
        h = t.sum_terms((0, max(r[1], 0)), m, g * n * d)
    t.requant(h, out_shift, a["bits"], g * n * d)                # 8.


COUNTERS: dict[str, Callable[[OpSite, Tally], None]] = {
    "Linear": _linear,
    "Add": _add,
    "Embed": _embed,
    "LayerNorm": _layernorm,
    "ScaleChannels": _scale_channels,
    "DotAttention": _dot_attention,
    "InhibitorAttention": _inhibitor_attention,
}

ZERO_COST = frozenset(op for op in (*spec.OPS, *spec.STANDARD_OPS) if spec.moves(op) is not None)
"""Pure data movement (`quant.ir.spec`): no arithmetic; memory traffic still counted by `hwsim.sim.memory`."""


def count_op(site: OpSite, hw: HwConfig, plan: MemoryPlan | None = None) -> dict[str, int]:
    """`{action@width: count}` of one op over its batch: arithmetic plus memory accesses.

    `plan` places the params (`hwsim.sim.memory.plan_memory` over the whole graph); without it params
    stream from DRAM, which is only valid when `hw.weights_on_chip` is false. Raises `UserError`
    for an op type that has no counting function.
    """
    tally = Tally()
    if site.op_type in COUNTERS:
        COUNTERS[site.op_type](site, tally)
    elif site.op_type not in ZERO_COST:
        raise UserError(f"unsupported op {site.op_type!r} in node {site.name!r}: hwsim counts "
                        f"{sorted(COUNTERS)} and data movement {sorted(ZERO_COST)}; "
                        f"add a counting function to hwsim/sim/counting.py")
    tally.update(op_traffic(site, hw, plan if plan is not None else default_plan(hw)))
    return dict(sorted(tally.items()))


def count_graph(sites: Iterable[OpSite], hw: HwConfig) -> dict[str, dict[str, int]]:
    """Counts of every site keyed by node name, with one memory plan for the whole graph."""
    sites = list(sites)
    plan = plan_memory(sites, hw)
    return {site.name: count_op(site, hw, plan) for site in sites}

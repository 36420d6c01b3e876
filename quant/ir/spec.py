"""The op specification: the one table of the integer op set (docs/DESIGN.md, "The op set").

Torch-free, so that the exporter and the simulator read it without the training stack. Every other
table of ops is derived from `OPS` or checked against it by `tests/test_spec.py`: the torch
definitions (`quant.intops.OPS`), the ONNX function builders (`export.functions.BUILDERS`), the
hwsim kernels, counters and memory rules, and the report's components.

What the spec says of an op: its attribute names in DESIGN order and the defaults of those a node
may leave out; which attributes are left shifts (>= 0) and which are requantisation shifts
(`SHIFT_MIN..SHIFT_MAX`); which may be given per head (`head_attrs`: an int for every head, or a
sequence of H ints, H = q.shape[1], head h using element h); its internal accumulators (labels,
and the attribute that declares their width, else 32 bits); the attribute holding the width of the
n x m score matrix an attention op hands from its score stage to its mixing stage; and, for the
three IR ops that are pure data movement, how they move data (`SplitHeads`/`MergeHeads` permute,
`TakeFirst` gathers).

It also says what an op costs on an accelerator, which `hwsim.cost` reads and nothing else: the
GEMM-shaped stages a processing-element array runs (`Stage`: which loop nest, and the arithmetic a
processing element performs in it), the passes the vector unit makes over the op's elements, the
inputs it reads whole (all rows of a sample, which cuts the schedule into segments) and whether its
params are lookup tables it gathers rows from. A computing op without `vector_passes` cannot be
registered; a data-movement op's cost follows from how it moves data (`MOVE_PASSES`).

It also fixes the number formats every executor shares: `int_range` (signed and unsigned widths),
the numpy storage type of a declared width (`storage_dtype`), the memory word it takes in hardware
(`word_bytes`) and the accumulator widths (`ACC_BITS`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Mapping

import numpy as np

SHIFT_MIN, SHIFT_MAX = -62, 62
"""Requantisation shifts keep int64 headroom: `requant` needs `|x| * 2**max(-shift, 0) < 2**62`."""

ACC_BITS = (32, 64)
"""The accumulator widths an op may declare (signed)."""

CHANNEL_SHIFT_BITS = 4
"""Width (unsigned) of a Linear's per-output-channel shift offsets `s` (its optional fourth input):
output column j is requantised by `shift + s[j]`, `0 <= s[j] <= 2**CHANNEL_SHIFT_BITS - 1`. Per-channel
weight scales are floored at `2**-(2**CHANNEL_SHIFT_BITS - 1)` times the layer's largest one
(`quant.qat.quantizers.FlooredAbsMax`) so that every offset fits."""

MOVES = ("view", "permute", "gather")
"""How a data-movement op moves data: `view` reinterprets the buffer (no access), `permute` copies
every element (reads and writes), `gather` reads only the selected elements."""

MOVE_PASSES: Mapping[str, int] = MappingProxyType({"view": 0, "permute": 0, "gather": 1})
"""Vector-unit passes of a data-movement op, by how it moves data: views and permutations are address
patterns of the accelerator (no pass), a gather copies the selected elements once."""

STAGE_KINDS = ("linear", "scores", "mixing")
"""GEMM-shaped stages (`hwsim.cost.stages`): a Linear's product with its weights; attention's scores
(queries against keys) and mixing (the score matrix against the values)."""

ARITHMETIC = ("mac", "l1", "inhibit")
"""What a processing element does per step of a stage: `mac` multiply-accumulate; `l1` subtract,
absolute value, accumulate (a Manhattan distance); `inhibit` subtract, ReLU, accumulate."""


@dataclass(frozen=True)
class Stage:
    """One GEMM-shaped stage of an op: its loop nest (`STAGE_KINDS`) and its arithmetic (`ARITHMETIC`)."""

    kind: str
    arith: str

    def __post_init__(self) -> None:
        if self.kind not in STAGE_KINDS or self.arith not in ARITHMETIC:
            raise ValueError(f"stage ({self.kind}, {self.arith}): kind is one of {STAGE_KINDS}, "
                             f"arithmetic one of {ARITHMETIC}")


@dataclass(frozen=True)
class OpSpec:
    """One op of the IR (docs/DESIGN.md). `moves` is None for ops that compute.

    `head_attrs`: attributes a node may give per head, as a tuple of H ints (head h of q [B, H, n, d]
    uses element h) instead of one int for every head (`head_values`, `check_head_attrs`).

    Cost (`hwsim.cost`): `stages` the GEMM-shaped stages it runs on a processing-element array;
    `vector_passes` the passes the vector unit makes over its elements (over the score matrix for an
    op with `score_bits_attr`, else over its output; 0 for an op that is only GEMM stages), plus one
    per attribute of `pass_attrs` that is non-zero; `whole_inputs` the inputs it reads whole (all
    rows of a sample) rather than row tile by row tile; `table_params` its params are lookup tables
    it gathers rows from (kept in DRAM). Data-movement ops declare none of these (`MOVE_PASSES`).
    """

    name: str
    attrs: tuple[str, ...] = ()
    defaults: Mapping[str, int] = field(default_factory=dict)
    left_shifts: tuple[str, ...] = ()
    shifts: tuple[str, ...] = ()
    head_attrs: tuple[str, ...] = ()
    accumulators: tuple[str, ...] = ()
    acc_attr: str | None = None
    score_bits_attr: str | None = None
    moves: str | None = None
    stages: tuple[Stage, ...] = ()
    vector_passes: int | None = None
    pass_attrs: tuple[str, ...] = ()
    whole_inputs: tuple[int, ...] = ()
    table_params: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "defaults", MappingProxyType(dict(self.defaults)))
        named = (set(self.defaults) | set(self.left_shifts) | set(self.shifts) | set(self.pass_attrs)
                 | set(self.head_attrs))
        unknown = named - set(self.attrs)
        if unknown:
            raise ValueError(f"op {self.name}: {sorted(unknown)} are not among its attributes {self.attrs}")
        if self.moves is not None and self.moves not in MOVES:
            raise ValueError(f"op {self.name}: moves={self.moves!r} is not one of {MOVES}")
        if self.moves is not None and (self.stages or self.vector_passes is not None or self.pass_attrs
                                       or self.whole_inputs or self.table_params):
            raise ValueError(f"op {self.name} moves data: its cost follows from moves={self.moves!r} (MOVE_PASSES); "
                             f"declare no stages, passes, whole inputs or tables")
        if self.vector_passes is not None and self.vector_passes < 0:
            raise ValueError(f"op {self.name}: vector_passes={self.vector_passes} is negative")

    @property
    def computes(self) -> bool:
        """True for ops with arithmetic (exported as `hwsim.int` functions, run by hwsim kernels)."""
        return self.moves is None


OPS: dict[str, OpSpec] = {}
"""Op name (IntProgram `Node.op`, ONNX op_type in domain `hwsim.int`) -> its spec."""


def register(spec: OpSpec) -> OpSpec:
    """Add `spec` to `OPS`; ValueError when the name is taken, or when an op that computes declares
    no cost (`vector_passes`)."""
    if spec.name in OPS:
        raise ValueError(f"op {spec.name!r} is already specified")
    if spec.computes and spec.vector_passes is None:
        raise ValueError(f"op {spec.name!r} declares no cost: give its vector_passes (0 when it is only GEMM "
                         f"stages) and its stages, so that hwsim.cost can price it")
    OPS[spec.name] = spec
    return spec


_KEYS_VALUES_MASK = (1, 2, 3)   # attention's inputs after q

register(OpSpec("Embed", ("lw", "lp", "lt"), defaults={"lw": 0, "lp": 0, "lt": 0}, left_shifts=("lw", "lp", "lt"),
                vector_passes=1, table_params=True))
register(OpSpec("Linear", ("shift", "bits", "relu", "acc_bits"), defaults={"relu": 0, "acc_bits": 32},
                shifts=("shift",), accumulators=("acc",), acc_attr="acc_bits",
                stages=(Stage("linear", "mac"),), vector_passes=0))
register(OpSpec("Add", ("la", "lb"), defaults={"la": 0, "lb": 0}, left_shifts=("la", "lb"), vector_passes=1))
register(OpSpec("LayerNorm", ("eps", "norm_frac", "shift", "bits"), shifts=("shift",),
                vector_passes=2))   # statistics, then normalisation
register(OpSpec("ScaleChannels", ("shift", "bits"), shifts=("shift",), vector_passes=1))
register(OpSpec("SplitHeads", ("heads",), moves="permute"))
register(OpSpec("MergeHeads", moves="permute"))
register(OpSpec("TakeFirst", moves="gather"))
register(OpSpec("DotAttention", ("q_ln2", "b_int", "c_int", "n_clip", "prob_bits", "out_shift", "bits",
                                 "score_shift", "acc_bits"), defaults={"score_shift": 0, "acc_bits": 32},
                shifts=("out_shift", "score_shift"), accumulators=("scores", "pv"), acc_attr="acc_bits",
                score_bits_attr="prob_bits",
                stages=(Stage("scores", "mac"), Stage("mixing", "mac")),
                vector_passes=2,   # softmax: row max and exp-sum, then normalise
                whole_inputs=_KEYS_VALUES_MASK))
register(OpSpec("InhibitorAttention", ("z_shift", "center", "alpha", "signed", "out_shift", "bits"),
                shifts=("z_shift", "out_shift"), head_attrs=("z_shift", "alpha", "out_shift"),
                accumulators=("l1", "h"), score_bits_attr="bits",
                stages=(Stage("scores", "l1"), Stage("mixing", "inhibit")),
                vector_passes=1, pass_attrs=("center",),   # clamp; centring adds a pass (the row mean)
                whole_inputs=_KEYS_VALUES_MASK))

COMPUTE_OPS = frozenset(name for name, spec in OPS.items() if spec.computes)
"""Ops with arithmetic: one `hwsim.int` function and one hwsim kernel each."""
IR_DATA_MOVEMENT = frozenset(OPS) - COMPUTE_OPS
"""IR ops the exporter writes as standard ONNX data movement (Reshape/Transpose/Gather patterns)."""

STANDARD_OPS: Mapping[str, str] = MappingProxyType({
    "Reshape": "view", "Squeeze": "view", "Unsqueeze": "view", "Identity": "view",
    "Transpose": "permute", "Gather": "gather"})
"""Standard ONNX ops (domain "") that hwsim runs, all pure data movement -> how they move data.
Their outputs hold values of their first input, so they inherit its declared width."""
_STANDARD_SPECS = {name: OpSpec(name, moves=how) for name, how in STANDARD_OPS.items()}


def moves(op: str) -> str | None:
    """How `op` (an IR op or a standard ONNX op) moves data; None for ops that compute or are unknown."""
    if op in STANDARD_OPS:
        return STANDARD_OPS[op]
    return OPS[op].moves if op in OPS else None


def op_spec(op: str) -> OpSpec:
    """The spec of an op a plan can hold: an IR op's, or for a standard ONNX op (`STANDARD_OPS`) the
    spec of its data movement (no attributes declared, no cost but its `MOVE_PASSES`); ValueError for
    any other op (the cost model has nothing to price it by).

    >>> op_spec("Transpose").moves, op_spec("Linear").stages[0].kind
    ('permute', 'linear')
    """
    if op in OPS:
        return OPS[op]
    if op in _STANDARD_SPECS:
        return _STANDARD_SPECS[op]
    raise ValueError(f"op {op!r} is not in the op spec (quant.ir.spec); add an OpSpec with its cost")


def vector_passes(op: str, attrs: Mapping[str, int]) -> int:
    """Passes the vector unit makes over the elements of a node of `op` with attributes `attrs`
    (the spec's defaults applied): the declared passes plus one per non-zero attribute of
    `pass_attrs`; a data-movement op's `MOVE_PASSES`.

    >>> vector_passes("InhibitorAttention", {"center": 1}), vector_passes("Gather", {}), vector_passes("Linear", {})
    (2, 1, 0)
    """
    spec = op_spec(op)
    if spec.moves is not None:
        return MOVE_PASSES[spec.moves]
    return spec.vector_passes + sum(1 for name in spec.pass_attrs if attrs[name])


# ---- number formats -------------------------------------------------------------------------------
def int_range(bits: int, signed: bool = True) -> tuple[int, int]:
    """Inclusive range of a `bits`-bit integer: signed `[-2**(bits-1), 2**(bits-1)-1]`, unsigned
    `[0, 2**bits-1]`. ValueError outside signed 1..64 / unsigned 1..63 (int64 holds every value).

    >>> int_range(8), int_range(8, signed=False), int_range(2), int_range(64)[0] == -2**63
    ((-128, 127), (0, 255), (-2, 1), True)
    """
    if signed:
        if not 1 <= bits <= 64:
            raise ValueError(f"signed width {bits} outside 1..64")
        return -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    if not 1 <= bits <= 63:
        raise ValueError(f"unsigned width {bits} outside 1..63 (int64 holds the result)")
    return 0, (1 << bits) - 1


def storage_dtype(bits: int, signed: bool = True) -> np.dtype:
    """The narrowest numpy integer type holding every `bits`-bit value: uint8 for unsigned up to 8
    bits, else the signed int8/16/32/64 that holds the range (an unsigned b-bit tensor needs b+1
    signed bits, so unsigned 16-bit is stored in int32).

    >>> [str(storage_dtype(b, s)) for b, s in ((8, True), (8, False), (16, True), (16, False), (33, True))]
    ['int8', 'uint8', 'int16', 'int32', 'int64']
    """
    if not signed and bits <= 8:
        return np.dtype(np.uint8)
    need = bits if signed else bits + 1
    for width, dt in ((8, np.int8), (16, np.int16), (32, np.int32), (64, np.int64)):
        if need <= width:
            return np.dtype(dt)
    raise ValueError(f"no integer storage type for {bits} {'signed' if signed else 'unsigned'} bits")


def word_bytes(bits: int) -> int:
    """Bytes of the hardware word that holds one `bits`-bit value, signed or unsigned alike: 1, 2, 4
    or 8 (what hwsim's memory model moves). It differs from `storage_dtype` for unsigned values above
    8 bits, which numpy can only hold in a wider signed type, while a memory stores their `bits` bits.

    >>> [word_bytes(b) for b in (1, 8, 9, 16, 17, 33)]
    [1, 1, 2, 2, 4, 8]
    """
    for size in (1, 2, 4, 8):
        if bits <= 8 * size:
            return size
    raise ValueError(f"no memory word holds {bits} bits")


def acc_bits_for(lo: int, hi: int) -> int:
    """The smallest width of `ACC_BITS` whose signed range holds `[lo, hi]` (a worst case derived
    from declared widths); ValueError when not even 64 bits do.

    >>> acc_bits_for(-2**31, 2**31 - 1), acc_bits_for(0, 2**31)
    (32, 64)
    """
    for bits in ACC_BITS:
        if -(1 << (bits - 1)) <= lo and hi <= (1 << (bits - 1)) - 1:
            return bits
    raise ValueError(f"accumulator range [{lo}, {hi}] exceeds 64 bits; lower the input widths")


def check_acc_bits(acc_bits: int) -> int:
    """`acc_bits` itself, after checking that it is one of `ACC_BITS` (ValueError otherwise)."""
    if acc_bits not in ACC_BITS:
        raise ValueError(f"acc_bits={acc_bits} is not an accumulator width; use one of {ACC_BITS}")
    return acc_bits


def acc_width(op: str, attrs: Mapping[str, int]) -> int:
    """Declared width of `op`'s internal accumulators: its width attribute (Linear and DotAttention
    `acc_bits`, default 32) or 32; ValueError unless one of `ACC_BITS`.

    >>> acc_width("Linear", {"acc_bits": 64}), acc_width("Linear", {}), acc_width("InhibitorAttention", {})
    (64, 32, 32)
    """
    spec = OPS[op]
    if spec.acc_attr is None:
        return 32
    return check_acc_bits(int(attrs.get(spec.acc_attr, spec.defaults.get(spec.acc_attr, 32))))


def with_defaults(op: str, attrs: Mapping[str, int]) -> dict[str, int]:
    """`attrs` completed by the op's defaults (what a node that leaves them out means)."""
    return {**OPS[op].defaults, **attrs}


def check_attr_names(op: str, names) -> None:
    """ValueError naming the attributes when `names` holds one that `op` does not have, or lacks one
    without a default.

    >>> check_attr_names("Add", ["la", "lb", "lc"])
    Traceback (most recent call last):
    ...
    ValueError: attribute ['lc'] is not one of Add's ['la', 'lb']
    """
    spec = OPS[op]
    unknown = sorted(set(names) - set(spec.attrs))
    if unknown:
        raise ValueError(f"attribute {unknown} is not one of {op}'s {list(spec.attrs)}")
    needed = [a for a in spec.attrs if a not in spec.defaults]
    missing = [a for a in needed if a not in names]
    if missing:
        raise ValueError(f"attribute {missing} is missing; {op} needs {needed}")


def check_shifts(op: str, attrs: Mapping[str, int]) -> None:
    """ValueError naming the attribute when a left shift of `op` is negative or a requantisation
    shift lies outside `SHIFT_MIN..SHIFT_MAX`.

    >>> check_shifts("Linear", {"shift": 63})
    Traceback (most recent call last):
    ...
    ValueError: Linear shift=63 is outside -62..62; lower the widths feeding it or rescale the layer
    """
    spec = OPS[op]
    for name in spec.left_shifts:
        if attrs.get(name, 0) < 0:
            raise ValueError(f"left shift {name}={attrs[name]} is negative; fold the scale into the other operand")
    for name in spec.shifts:
        values = attrs[name] if is_per_head(attrs.get(name)) else (attrs.get(name, 0),)
        if not all(SHIFT_MIN <= s <= SHIFT_MAX for s in values):
            raise ValueError(f"{op} {name}={attrs[name]} is outside {SHIFT_MIN}..{SHIFT_MAX}; "
                             f"lower the widths feeding it or rescale the layer")


def is_per_head(value) -> bool:
    """True for an attribute value given per head (a list or tuple), False for one int.

    >>> is_per_head(3), is_per_head((3, -1)), is_per_head([0])
    (False, True, True)
    """
    return isinstance(value, (list, tuple))


def per_head_names(op: str, attrs: Mapping[str, object]) -> tuple[str, ...]:
    """The attributes of `attrs` given per head, in the op's attribute order.

    >>> per_head_names("InhibitorAttention", {"z_shift": (1, 2), "alpha": 0, "out_shift": [3, 3]})
    ('z_shift', 'out_shift')
    """
    return tuple(name for name in OPS[op].attrs if is_per_head(attrs.get(name)))


def check_head_attrs(op: str, attrs: Mapping[str, object], heads: int | None = None) -> None:
    """ValueError naming the attribute when a sequence is given for an attribute that `op` takes as
    one int only (not in `head_attrs`), when a per-head value is empty or holds a non-integer, or,
    with `heads` known, when its length is not `heads`.

    >>> check_head_attrs("Linear", {"shift": (1, 2)})
    Traceback (most recent call last):
    ...
    ValueError: Linear shift=(1, 2) is a sequence; Linear takes one int for it (per head only: none)
    """
    spec = OPS[op]
    for name in per_head_names(op, attrs):
        value = attrs[name]
        if name not in spec.head_attrs:
            raise ValueError(f"{op} {name}={value} is a sequence; {op} takes one int for it "
                             f"(per head only: {', '.join(spec.head_attrs) or 'none'})")
        if not value or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in value):
            raise ValueError(f"{op} {name}={value}: a per-head value is a non-empty sequence of ints, one per head")
        if heads is not None:
            head_values(op, name, value, heads)


def head_values(op: str, name: str, value, heads: int) -> tuple[int, ...]:
    """The value of attribute `name` for each of `heads` heads: one int repeated, or a sequence of
    exactly `heads` ints; ValueError naming the attribute, its length and the heads otherwise.

    >>> head_values("InhibitorAttention", "alpha", 5, 3), head_values("InhibitorAttention", "alpha", [1, 0, 2], 3)
    ((5, 5, 5), (1, 0, 2))
    >>> head_values("InhibitorAttention", "z_shift", (1, 2), 3)
    Traceback (most recent call last):
    ...
    ValueError: InhibitorAttention z_shift has 2 values (1, 2) for 3 heads; give one int or one value per head
    """
    if not is_per_head(value):
        return (int(value),) * heads
    if len(value) != heads:
        raise ValueError(f"{op} {name} has {len(value)} values {tuple(value)} for {heads} heads; "
                         f"give one int or one value per head")
    return tuple(int(v) for v in value)

"""ONNX model-local functions (domain `hwsim.int`), one builder per semantic integer op.

Each body computes exactly the op's definition in `quant.intops` (docs/DESIGN.md, "The op set"),
in standard ONNX ops on integer types only: no float tensor, no Cast to or from float. The node's
attributes are the op's attributes; the body reads them through attribute references
(`Constant(value_int=@shift)`), so one function serves every attribute value. An attribute given
per head (`quant.ir.spec.OpSpec.head_attrs`) is an ints attribute read as `Constant(value_ints=@name)`
and gathered into [1, H, 1, 1] (`_Body.head_attr`), in an overload of its own (`overload_name`).

Storage types are not attributes, so a body is built per *type signature* (the storage dtypes of
the inputs and of the output) and registered as an ONNX IR-10 function **overload** of the same
op_type: `Linear` with int8 x and int8 w uses MatMulInteger, `Linear` with int16 x uses MatMul on
int64, and the last Cast goes to the output's storage dtype. Consumers that key on op_type
(hwsim) can ignore the overload name.

Integer building blocks used by every body (all int64 unless noted):
- `_shr(x, s, round_half_up)`: arithmetic right shift `floor((x + [2**(s-1)]) / 2**s)` as
  `Cast(uint64, x + half + 2**62) >> s` then `- (2**62 >> s)` (BitShift takes unsigned types only);
  exact for |x| < 2**62.
- `_shl(x, s)`: `x * 2**s` as a BitShift LEFT of |x| on uint64 and a sign restore by Where/Neg.
- `_floor_div(a, b)`: `Div(a - Mod(a, b), b)` (Mod with fmod=0 follows the divisor's sign, so the
  numerator is an exact multiple and ONNX's truncating Div gives the floor).
- `_isqrt(v)`: floor square root, digit by digit over 32 bit pairs (v < 2**63), one ONNX `Loop`
  of 32 iterations on integer loop-carried values.
- `_requant(x, shift, bits)`: `_shl(_shr(x, max(shift, 0), True), max(-shift, 0))`, then saturate
  to the signed `bits` range with `_clamp` (Where/Less: onnxruntime's int64 Max/Min/Clip are wrong
  beyond the int32 range, see `_max`).

Where an attribute switches behaviour (`relu`, `center`, `signed`) the body derives a bool from it
and selects with Where; no Mul stands in for a switch or a shift.
"""
from __future__ import annotations

from typing import Callable, Sequence

from onnx import AttributeProto, FunctionProto, TensorProto, helper

from quant.ir import spec
from quant.ir.contract import DOMAIN

OPSETS = (helper.make_opsetid("", 18),)
I64, U64, BOOL = TensorProto.INT64, TensorProto.UINT64, TensorProto.BOOL
# MatMulInteger type pairs that onnxruntime computes exactly. uint8 x int8 is left out: on AVX2 without
# VNNI its kernel adds pairs of products in saturating int16 (measured: 255*127 rows come out wrong).
EXACT_MATMUL_INTEGER = frozenset({(TensorProto.INT8, TensorProto.INT8), (TensorProto.INT8, TensorProto.UINT8),
                                  (TensorProto.UINT8, TensorProto.UINT8)})
OFFSET = 2**62  # keeps values positive for the unsigned right shift


class _Body:
    """Accumulates the nodes of one graph (a function body or a Loop body); every node and tensor gets
    a fresh name starting with `prefix`. Constants, attribute reads and casts are emitted once and
    shared: onnxruntime's session creation grows faster than linearly with the inlined node count."""

    def __init__(self, prefix: str = "t") -> None:
        self.prefix = prefix
        self.nodes: list = []
        self._memo: dict[tuple, str] = {}

    def op(self, op_type: str, *inputs: str, **attrs) -> str:
        out = f"{self.prefix}{len(self.nodes)}"
        self.nodes.append(helper.make_node(op_type, list(inputs), [out], name=f"{self.prefix}{op_type}_{len(self.nodes)}", **attrs))
        return out

    def _once(self, key: tuple, make: Callable[[], str]) -> str:
        if key not in self._memo:
            self._memo[key] = make()
        return self._memo[key]

    def const(self, value: int | Sequence[int], dtype: int = I64) -> str:
        dims = [] if isinstance(value, int) else [len(value)]
        vals = [value] if isinstance(value, int) else list(value)
        return self._once(("const", dtype, tuple(dims), tuple(vals)),
                          lambda: self.op("Constant", value=helper.make_tensor("value", dtype, dims, vals)))

    def attr(self, name: str) -> str:
        """The int attribute `name` of the calling node as an int64 scalar."""
        def make() -> str:
            out = self.op("Constant")
            self.nodes[-1].attribute.append(helper.make_attribute_ref("value_int", AttributeProto.INT, ref_attr_name=name))
            return out
        return self._once(("attr", name), make)

    def head_attr(self, name: str, like: str) -> str:
        """The ints attribute `name` of the calling node (one value per head) as an int64 [1, H, 1, 1]
        tensor, H = dimension 1 of tensor `like` [B, H, n, d]. A list of L != H values must fail the
        run, not broadcast: element h is gathered at index `h + (0 if L == H else L)`, out of bounds
        for every h when L != H (a Reshape to [1, H, 1, 1] would not do: onnxruntime's optimiser
        turns its one run-time dimension into -1, measured to broadcast a list of one)."""
        def make() -> str:
            values = self.op("Constant")
            self.nodes[-1].attribute.append(helper.make_attribute_ref("value_ints", AttributeProto.INTS, ref_attr_name=name))
            heads = self.op("Shape", like, start=1, end=2)  # (1,) = H
            count = self.op("Shape", values)  # (1,) = L
            offset = self.op("Where", self.op("Equal", count, heads), self.const([0]), count)
            index = self.op("Add", self.op("Range", self.const(0), self.op("Squeeze", heads), self.const(1)), offset)
            return self.op("Unsqueeze", self.op("Gather", values, index), self.const([0, 2, 3]))  # (1, H, 1, 1)
        return self._once(("head_attr", name, like), make)

    def flag(self, name: str) -> str:
        """The int attribute `name` as a bool scalar (nonzero = true)."""
        return self._once(("flag", name), lambda: self.op("Cast", self.attr(name), to=BOOL))

    def i64(self, x: str) -> str:
        return self._once(("cast", x, I64), lambda: self.op("Cast", x, to=I64))

    def u64(self, x: str) -> str:
        return self._once(("cast", x, U64), lambda: self.op("Cast", x, to=U64))


def _shr(b: _Body, x: str, s: str, round_half_up: bool) -> str:
    """Arithmetic right shift of int64 `x` by `s >= 0` (broadcastable): floor, or round half up."""
    s_u = b.u64(s)
    biased = b.op("Add", x, b.const(OFFSET))
    if round_half_up:  # half = (1 << s) >> 1, which is 0 for s == 0
        half = b.op("BitShift", b.op("BitShift", b.const(1, U64), s_u, direction="LEFT"), b.const(1, U64), direction="RIGHT")
        biased = b.op("Add", biased, b.i64(half))
    shifted = b.i64(b.op("BitShift", b.u64(biased), s_u, direction="RIGHT"))
    offset = b.i64(b.op("BitShift", b.const(OFFSET, U64), s_u, direction="RIGHT"))
    return b.op("Sub", shifted, offset)


def _shl(b: _Body, x: str, s: str) -> str:
    """`x * 2**s` for int64 `x` and `s >= 0`: shift |x| on uint64, restore the sign."""
    mag = b.i64(b.op("BitShift", b.u64(b.op("Abs", x)), b.u64(s), direction="LEFT"))
    return b.op("Where", b.op("Less", x, b.const(0)), b.op("Neg", mag), mag)


def _floor_div(b: _Body, a: str, d: str) -> str:
    """floor(a / d) for int64 tensors (d != 0)."""
    return b.op("Div", b.op("Sub", a, b.op("Mod", a, d, fmod=0)), d)


def _max(b: _Body, x: str, y: str) -> str:
    """max(x, y) as Where(x < y, y, x). Not Max/Min/Clip: onnxruntime 1.31.1 (CPU, AVX2) gets int64
    Max, Min, Clip and ReduceMax wrong for values beyond the int32 range in multi-element tensors
    (measured); Less and Where are exact."""
    return b.op("Where", b.op("Less", x, y), y, x)


def _min(b: _Body, x: str, y: str) -> str:
    return b.op("Where", b.op("Less", y, x), y, x)


def _clamp(b: _Body, x: str, lo: str, hi: str) -> str:
    return _min(b, _max(b, x, lo), hi)


def _saturate(b: _Body, x: str, bits: str) -> str:
    """Clip int64 `x` to the signed range of `bits` (an int64 scalar tensor, 1..64)."""
    top = b.op("BitShift", b.const(1, U64), b.u64(b.op("Sub", bits, b.const(1))), direction="LEFT")
    hi = b.i64(b.op("Sub", top, b.const(1, U64)))
    lo = b.op("Sub", b.op("Neg", hi), b.const(1))
    return _clamp(b, x, lo, hi)


def _requant(b: _Body, x: str, shift: str, bits: str) -> str:
    """DESIGN.md requant: round half up for shift > 0, left shift for shift < 0, saturate."""
    zero = b.const(0)
    right = _shr(b, x, _max(b, shift, zero), round_half_up=True)
    return _saturate(b, _shl(b, right, _max(b, b.op("Neg", shift), zero)), bits)


ISQRT_STEPS = 32  # bit pairs of an operand below 2**64


def _isqrt(b: _Body, v: str) -> str:
    """floor(sqrt(v)) for 0 <= v < 2**63, digit by digit: one `Loop` of 32 compare/subtract/shift
    steps over int64 values (not unrolled: 32 copies of the step made the LayerNorm body 478 nodes,
    and onnxruntime's session creation grew with every inlined copy).

    Loop-carried (rem, res, bit) start at (v, 0, 4**31); each step with trial = res + bit:
    take = rem >= trial; rem -= trial if take; res = (res >> 1) + (bit if take else 0); bit >>= 2."""
    loop = _Body(prefix="isqrt_")
    one, two = loop.const(1, U64), loop.const(2, U64)
    trial = loop.op("Add", "isqrt_res", "isqrt_bit")
    take = loop.op("GreaterOrEqual", "isqrt_rem", trial)
    rem = loop.op("Where", take, loop.op("Sub", "isqrt_rem", trial), "isqrt_rem")
    half = loop.i64(loop.op("BitShift", loop.u64("isqrt_res"), one, direction="RIGHT"))
    res = loop.op("Where", take, loop.op("Add", half, "isqrt_bit"), half)
    bit = loop.i64(loop.op("BitShift", loop.u64("isqrt_bit"), two, direction="RIGHT"))
    outs = {"isqrt_cond_out": "isqrt_cond", "isqrt_rem_out": rem, "isqrt_res_out": res,
            "isqrt_bit_out": bit}
    loop.nodes.extend(helper.make_node("Identity", [src], [dst], name=f"{dst}_id") for dst, src in outs.items())
    scalar = lambda name, t: helper.make_tensor_value_info(name, t, [])  # noqa: E731
    graph = helper.make_graph(
        loop.nodes, "isqrt_step",
        [scalar("isqrt_i", I64), scalar("isqrt_cond", BOOL), helper.make_tensor_value_info("isqrt_rem", I64, None),
         helper.make_tensor_value_info("isqrt_res", I64, None), scalar("isqrt_bit", I64)],
        [scalar("isqrt_cond_out", BOOL), helper.make_tensor_value_info("isqrt_rem_out", I64, None),
         helper.make_tensor_value_info("isqrt_res_out", I64, None), scalar("isqrt_bit_out", I64)])
    res0 = b.op("Sub", v, v)  # zeros of v's shape
    out = [f"{b.prefix}{len(b.nodes)}_{k}" for k in ("rem", "res", "bit")]
    b.nodes.append(helper.make_node("Loop", [b.const(ISQRT_STEPS), b.const(1, BOOL), v, res0, b.const(1 << 62)], out,
                                    name=f"Loop_{len(b.nodes)}", body=graph))
    return out[1]


def _finish(b: _Body, op_type: str, inputs: Sequence[str], y: str, out_type: int, attrs: Sequence[str],
            in_types: Sequence[int], per_head: Sequence[str] = ()) -> FunctionProto:
    b.nodes.append(helper.make_node("Cast", [y], ["y"], name=f"Cast_{len(b.nodes)}", to=out_type))
    return helper.make_function(DOMAIN, op_type, list(inputs), ["y"], b.nodes, list(OPSETS),
                                attributes=list(attrs), overload=overload_name(in_types, out_type, per_head),
                                doc_string=f"quant.intops.{op_type}; see docs/DESIGN.md")


def overload_name(in_types: Sequence[int], out_type: int, per_head: Sequence[str] = ()) -> str:
    """`int8_int8_int32__int8`: the input storage types, then the output storage type; with
    attributes given per head (`quant.ir.spec.per_head_names`, read as ints lists by the body),
    `__per_head_` and their names, e.g. `int8_int8_int8_int64__int8__per_head_z_shift_out_shift`."""
    name = lambda t: TensorProto.DataType.Name(t).lower()  # noqa: E731
    base = "_".join(name(t) for t in in_types) + "__" + name(out_type)
    return base + "__per_head_" + "_".join(per_head) if per_head else base


def embed(in_types: Sequence[int], out_type: int) -> FunctionProto:
    """`(word[ids] << lw) + (pos[:n] << lp) [+ (type[0] << lt)]`; shifts >= 0. A negative id is sent
    out of range so that Gather fails as intops raises (ONNX Gather would wrap it); so does n > P."""
    b = _Body()
    names = ["ids", "word", "pos", "type"][: len(in_types)]
    vocab = b.op("Shape", "word", start=0, end=1)
    ids = b.op("Where", b.op("Less", "ids", b.const(0)), vocab, "ids")
    acc = _shl(b, b.i64(b.op("Gather", "word", ids)), b.attr("lw"))  # (B, n, D)
    n = b.op("Squeeze", b.op("Shape", "ids", start=1, end=2))
    pos = b.op("Gather", "pos", b.op("Range", b.const(0), n, b.const(1)))  # (n, D); fails for n > P
    acc = b.op("Add", acc, _shl(b, b.i64(pos), b.attr("lp")))
    if len(in_types) == 4:
        acc = b.op("Add", acc, _shl(b, b.i64(b.op("Gather", "type", b.const(0))), b.attr("lt")))
    return _finish(b, "Embed", names, acc, out_type, ["lw", "lp", "lt"], in_types)


def linear(in_types: Sequence[int], out_type: int) -> FunctionProto:
    """`requant(x @ w + b, shift, bits)`, then max(., 0) if `relu`. MatMulInteger for 8-bit x and w
    (except uint8 x with int8 w, see EXACT_MATMUL_INTEGER), else MatMul on int64. With a fourth
    input s [N] (per-channel weight scales), column j is requantised by `shift + s[j]`
    (`quant.intops.requant_channels`): `_requant` broadcasts the shift vector over the last axis.

    `acc_bits` (32 or 64) is declared, not read: the body's accumulator is at least as wide as any
    accumulator intref accepts. MatMulInteger's int32 output is exact for 8-bit storage
    (|x @ w| <= K * 2**14 < 2**31 for K < 2**17), and the int64 MatMul holds every 64-bit
    accumulator; intref and hwsim check the value against `acc_bits`."""
    b = _Body()
    if (in_types[0], in_types[1]) in EXACT_MATMUL_INTEGER:
        acc = b.i64(b.op("MatMulInteger", "x", "w"))
    else:
        acc = b.op("MatMul", b.i64("x"), b.i64("w"))
    names = ["x", "w", "b", "s"][: len(in_types)]
    acc = b.op("Add", acc, b.i64("b"))
    shift = b.attr("shift") if len(in_types) == 3 else b.op("Add", b.attr("shift"), b.i64("s"))  # (N,)
    y = _requant(b, acc, shift, b.attr("bits"))
    y = b.op("Where", b.flag("relu"), _max(b, y, b.const(0)), y)
    return _finish(b, "Linear", names, y, out_type, ["shift", "bits", "relu", "acc_bits"], in_types)


def add(in_types: Sequence[int], out_type: int) -> FunctionProto:
    """`(a << la) + (b << lb)`, exact."""
    b = _Body()
    y = b.op("Add", _shl(b, b.i64("a"), b.attr("la")), _shl(b, b.i64("b"), b.attr("lb")))
    return _finish(b, "Add", ["a", "b"], y, out_type, ["la", "lb"], in_types)


def layer_norm(in_types: Sequence[int], out_type: int) -> FunctionProto:
    """Integer LayerNorm of DESIGN.md: floor mean and variance, exact isqrt, one division per row."""
    b = _Body()
    x = b.i64("x")
    width = b.op("Shape", "x", start=-1)  # (1,) = D
    axes = b.const([-1])
    c = b.op("Sub", x, _floor_div(b, b.op("ReduceSum", x, axes, keepdims=1), width))
    var = _floor_div(b, b.op("ReduceSum", b.op("Mul", c, c), axes, keepdims=1), width)
    sd = _max(b, _isqrt(b, b.op("Add", var, b.attr("eps"))), b.const(1))
    inv = b.op("Div", b.const(1 << 30), sd)  # both positive: truncation is floor
    nrm = _requant(b, b.op("Mul", c, inv), b.op("Sub", b.const(30), b.attr("norm_frac")), b.const(32))
    y = b.op("Add", b.op("Mul", nrm, b.i64("gamma")), b.i64("beta"))
    y = _requant(b, y, b.attr("shift"), b.attr("bits"))
    return _finish(b, "LayerNorm", ["x", "gamma", "beta"], y, out_type, ["eps", "norm_frac", "shift", "bits"], in_types)


def scale_channels(in_types: Sequence[int], out_type: int) -> FunctionProto:
    """`requant(x * c, shift, bits)` (per-channel coefficient of symmetric attention)."""
    b = _Body()
    y = _requant(b, b.op("Mul", b.i64("x"), b.i64("c")), b.attr("shift"), b.attr("bits"))
    return _finish(b, "ScaleChannels", ["x", "c"], y, out_type, ["shift", "bits"], in_types)


def _key_mask(b: _Body) -> str:
    """attention_mask (B, n) -> bool (B, 1, 1, n): nonzero = valid key."""
    return b.op("Cast", b.op("Unsqueeze", "mask", b.const([1, 2])), to=BOOL)


def dot_attention(in_types: Sequence[int], out_type: int) -> FunctionProto:
    """`requant(P @ v, out_shift, bits)` with P the I-BERT integer softmax of `requant(q @ k^T, score_shift, 32)`
    over valid keys (`quant.intops.dot_attention`; `acc_bits` is declared for the executors' checks, int64 here)."""
    b = _Body()
    valid = _key_mask(b)  # (B, 1, 1, n)
    s = b.op("MatMul", b.i64("q"), b.op("Transpose", b.i64("k"), perm=[0, 1, 3, 2]))  # (B, H, n, n)
    s = _requant(b, s, b.attr("score_shift"), b.const(32))
    # ReduceMax is exact on int64 only within the int32 range (see _max): the requantised scores are
    # 32-bit, so masked keys are filled with the int32 minimum
    row_max = b.op("ReduceMax", b.op("Where", valid, s, b.const(-(2**31))), b.const([-1]), keepdims=1)
    q_ln2 = b.attr("q_ln2")
    floor = b.op("Neg", b.op("Mul", b.attr("n_clip"), q_ln2))
    x = _max(b, b.op("Where", valid, b.op("Sub", s, row_max), b.const(0)), floor)  # masked keys: 0
    z = _floor_div(b, b.op("Neg", x), q_ln2)
    p = b.op("Add", b.op("Add", x, b.op("Mul", z, q_ln2)), b.attr("b_int"))
    e = _shr(b, b.op("Add", b.op("Mul", p, p), b.attr("c_int")), z, round_half_up=False)
    e = b.op("Where", valid, e, b.const(0))
    prob_bits = b.attr("prob_bits")
    total = _max(b, b.op("ReduceSum", e, b.const([-1]), keepdims=1), b.const(1))  # (B, H, n, 1)
    probs = _floor_div(b, _shl(b, e, prob_bits), total)
    top = b.op("Sub", _shl(b, b.const(1), prob_bits), b.const(1))
    probs = _min(b, probs, top)
    y = _requant(b, b.op("MatMul", probs, b.i64("v")), b.attr("out_shift"), b.attr("bits"))
    return _finish(b, "DotAttention", ["q", "k", "v", "mask"], y, out_type,
                   ["q_ln2", "b_int", "c_int", "n_clip", "prob_bits", "out_shift", "bits", "score_shift", "acc_bits"],
                   in_types)


def inhibitor_attention(in_types: Sequence[int], out_type: int, per_head: Sequence[str] = ()) -> FunctionProto:
    """Inhibitor attention of DESIGN.md, steps 1-8; per score only Sub/Abs/Add/shifts/compare/Where.

    `per_head`: the attributes among `z_shift`, `alpha`, `out_shift` that the calling node gives as
    ints lists, one value per head; the body reads them as [1, H, 1, 1] tensors that broadcast over
    each head's scores and outputs (`_Body.head_attr`), the others as int scalars, so a node without
    per-head attributes gets the body of before. The requantisations are the same `_requant`.

    For onnxruntime the L1 score and the inhibition materialise a (B, H, n, n, d) int64 tensor:
    fine up to moderate n, memory-bound beyond (hwsim streams it instead)."""
    b = _Body()
    unknown = set(per_head) - set(spec.OPS["InhibitorAttention"].head_attrs)
    if unknown:
        raise ValueError(f"InhibitorAttention takes only z_shift, alpha, out_shift per head, not {sorted(unknown)}")
    attr = lambda name: b.head_attr(name, "q") if name in per_head else b.attr(name)  # noqa: E731
    valid = _key_mask(b)  # (B, 1, 1, n)
    bits = b.attr("bits")
    q = b.op("Unsqueeze", b.i64("q"), b.const([3]))  # (B, H, n, 1, d)
    k = b.op("Unsqueeze", b.i64("k"), b.const([2]))  # (B, H, 1, n, d)
    dist = b.op("ReduceSum", b.op("Abs", b.op("Sub", q, k)), b.const([-1]), keepdims=0)  # (B, H, n, n)
    z = _requant(b, dist, attr("z_shift"), b.const(32))
    zero = b.const(0)
    n_valid = b.op("ReduceSum", b.op("Cast", valid, to=I64), b.const([-1]), keepdims=1)  # (B, 1, 1, 1)
    n_valid = _max(b, n_valid, b.const(1))  # a row with no valid key divides by 1 (intops)
    row_sum = b.op("ReduceSum", b.op("Where", valid, z, zero), b.const([-1]), keepdims=1)  # (B, H, n, 1)
    mean = b.op("Where", b.flag("center"), _floor_div(b, row_sum, n_valid), zero)  # per row
    z = b.op("Add", b.op("Sub", z, mean), attr("alpha"))
    full = _shl(b, b.const(1), b.op("Sub", bits, b.const(1)))  # 2**(bits-1)
    z = b.op("Where", valid, _clamp(b, z, zero, full), full)
    z = b.op("Unsqueeze", z, b.const([4]))  # (B, H, n, n, 1)
    v = b.op("Unsqueeze", b.i64("v"), b.const([2]))  # (B, H, 1, n, d)
    signed = b.flag("signed")
    v_in = b.op("Where", signed, b.op("Abs", v), v)  # per token: |v| when signed
    negative = b.op("And", signed, b.op("Less", v, zero))  # per token
    term = _max(b, b.op("Sub", v_in, z), zero)  # (B, H, n, n, d)
    term = b.op("Where", negative, b.op("Neg", term), term)
    h = b.op("ReduceSum", term, b.const([3]), keepdims=0)  # (B, H, n, d)
    y = _requant(b, h, attr("out_shift"), bits)
    return _finish(b, "InhibitorAttention", ["q", "k", "v", "mask"], y, out_type,
                   ["z_shift", "center", "alpha", "signed", "out_shift", "bits"], in_types, per_head)


BUILDERS: dict[str, Callable[[Sequence[int], int], FunctionProto]] = {
    "Embed": embed,
    "Linear": linear,
    "Add": add,
    "LayerNorm": layer_norm,
    "ScaleChannels": scale_channels,
    "DotAttention": dot_attention,
    "InhibitorAttention": inhibitor_attention,
}


def build_function(op_type: str, in_types: Sequence[int], out_type: int, per_head: Sequence[str] = ()) -> FunctionProto:
    """The FunctionProto of `op_type` for these input/output storage types (ONNX TensorProto enums)
    and, for an op with per-head attributes, the names of those its node gives per head
    (`quant.ir.spec.per_head_names`; only then is the builder asked for them)."""
    if per_head:
        return BUILDERS[op_type](tuple(in_types), out_type, per_head=tuple(per_head))
    return BUILDERS[op_type](tuple(in_types), out_type)

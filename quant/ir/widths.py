"""Width analysis: the bits every internal accumulator of a program needs, proven before it runs.

Each bound is interval arithmetic over the declared widths of a node's inputs, its attributes and
the largest shapes the program admits (`d` = hidden / heads from the program's meta, `n` at most the
position table's rows: `Embed` refuses longer inputs); never a measurement. `prove(prog)` returns
{"node/label": bits} (signed two's-complement bits, as `bits_for`) and `check(prog)` refuses, with a
`WidthError` (a ValueError) naming the node, any accumulator wider than its declared width (Linear `acc_bits`,
DotAttention `acc_bits`; 32 for the inhibitor's) or than the 64 bits of the executors (the
softmax and LayerNorm internals, which every executor computes in int64).

Bounds (B(t) = the largest magnitude of tensor t's declared range, `2**(bits-1)` signed):
- Linear `acc`: `sum_k min/max(x_lo w_kj, x_hi w_kj) + b_j` over x's range, from the real weights
  (as `quant.intops.linear_acc_bits`, which picks the declared `acc_bits`). The bound is per output
  column j from the integers the program holds, so it covers per-channel weight scales as written
  (column j's integers at its own exponent; the shift offsets act after the accumulator).
- DotAttention `scores` (q @ k^T): `d B(q) B(k)`; `shifted` (after `requant(., score_shift, 32)`):
  ceil of that over 2**score_shift (times 2**-score_shift for a left shift); softmax `exp` (e <= b_int**2 + c_int: p + b_int lies in
  (b_int - q_ln2, b_int]), `scaled` (`e * 2**prob_bits`), `exp_sum` (n e); `pv` (P @ v):
  `2**prob_bits B(v)` because each row of P sums to at most 2**prob_bits.
- InhibitorAttention `l1`: `d (B(q) + B(k))`; `h`: `n B(v)` (each term at most |v| in magnitude).
- LayerNorm `sum` (sum x): `D B(x)`; `sq_sum` (sum c**2, |c| <= 2 B(x)): `D (2 B(x))**2`;
  `norm` (c * 2**30 / sd, sd >= 1): `2 B(x) 2**30`. B(x) of an `Add` output is `B(a) 2**la + B(b) 2**lb`
  and of an `Embed` output the sum of its shifted tables, tighter than the declared 32 bits.
Torch-free: export and hwsim read it as they read `quant.ir.spec`.
"""
from __future__ import annotations

import numpy as np

from quant.ir import spec
from quant.ir.program import IntProgram


class WidthError(ValueError):
    """An accumulator wider than its node declares or than the executors hold; the message names the
    node and the way out (quant.ir raises ValueErrors; the exporter and the lowering make them user errors)."""


EXEC_BITS = 64
"""The executors compute every intermediate in int64 (`quant.intops`, the ONNX bodies, hwsim)."""


def bits_for(magnitude: int) -> int:
    """Signed bits holding every integer in `[-magnitude, magnitude]`.

    >>> bits_for(0), bits_for(1), bits_for(127), bits_for(128), bits_for(2**31 - 1)
    (1, 2, 8, 9, 32)
    """
    return max(int(magnitude).bit_length() + 1, 1)


def range_bits(lo: int, hi: int) -> int:
    """Signed bits holding every integer in `[lo, hi]` (lo <= 0 <= hi), as `spec.acc_bits_for` counts.

    >>> range_bits(-2**31, 2**31 - 1), range_bits(0, 2**31)
    (32, 33)
    """
    return max((-lo - 1).bit_length() + 1 if lo < 0 else 1, hi.bit_length() + 1)


def magnitude(bits: int, signed: bool = True) -> int:
    """Largest |value| of a declared width: `2**(bits-1)` signed, `2**bits - 1` unsigned."""
    lo, hi = spec.int_range(bits, signed)
    return max(-lo, hi)


def softmax_exp_max(b_int: int, c_int: int) -> int:
    """Largest i-exp value `e = ((p + b_int)**2 + c_int) >> z`: `b_int**2 + c_int` (z >= 0, p <= 0)."""
    return b_int * b_int + c_int


def dot_bounds(attrs, d: int, n: int, q_bits: int, k_bits: int, v_bits: int) -> dict[str, int]:
    """Largest magnitude of each DotAttention accumulator (module docstring), attributes with defaults."""
    a = spec.with_defaults("DotAttention", attrs)
    scores = d * magnitude(q_bits) * magnitude(k_bits)
    shift = a["score_shift"]
    e = softmax_exp_max(a["b_int"], a["c_int"])
    shifted = -(-scores >> shift) if shift > 0 else scores << -shift  # round half up: at most the ceiling
    return {"scores": scores, "shifted": shifted,
            "exp": e, "scaled": e << a["prob_bits"], "exp_sum": n * e,
            "pv": (1 << a["prob_bits"]) * magnitude(v_bits)}


def dot_softmax_fits(attrs, d: int, n: int, q_bits: int, k_bits: int, v_bits: int) -> bool:
    """True when the shifted scores fit 32 bits and every softmax intermediate fits int64."""
    b = dot_bounds(attrs, d, n, q_bits, k_bits, v_bits)
    return bits_for(b["shifted"]) <= 32 and max(bits_for(b[k]) for k in ("scaled", "exp_sum")) <= EXEC_BITS


def _declared_acc(node) -> dict[str, int]:
    """label -> the width the node declares for it (what the executors check at run time)."""
    acc = spec.acc_width(node.op, node.attrs)
    widths = {label: acc for label in spec.OPS[node.op].accumulators}
    if node.op == "DotAttention":
        widths.update(shifted=32, exp=EXEC_BITS, scaled=EXEC_BITS, exp_sum=EXEC_BITS)
    if node.op == "LayerNorm":
        widths.update({"sum": EXEC_BITS, "sq_sum": EXEC_BITS, "norm": EXEC_BITS})
    return widths


def _value_bound(prog: IntProgram, bound: dict[str, int], node) -> int:
    """Largest |value| of `node`'s output: from its inputs for Add and Embed, else its declared width."""
    out = prog.tensors[node.outputs[0]]
    declared = magnitude(out.bits, out.signed)
    a = spec.with_defaults(node.op, node.attrs)
    if node.op == "Add":
        return min(declared, (bound[node.inputs[0]] << a["la"]) + (bound[node.inputs[1]] << a["lb"]))
    if node.op == "Embed":
        tables = node.inputs[1:]
        shifts = (a["lw"], a["lp"], a["lt"])
        return min(declared, sum(bound[t] << s for t, s in zip(tables, shifts)))
    return declared


def prove(prog: IntProgram) -> dict[str, int]:
    """{"node/label": proven signed bits} for every internal accumulator of `prog` (module docstring)."""
    heads, hidden = prog.meta.get("heads"), prog.meta.get("hidden")
    d = hidden // heads if heads and hidden else None
    n = max((prog.params[node.inputs[2]].shape[0] for node in prog.nodes if node.op == "Embed"), default=None)
    bound: dict[str, int] = {name: magnitude(info.bits, info.signed) for name, info in prog.tensors.items()}
    for name, arr in prog.params.items():
        bound[name] = int(abs(arr.astype("int64")).max(initial=0)) if arr.size else 0
    proven: dict[str, int] = {}
    for node in prog.nodes:
        bits = [prog.tensors[t].bits for t in node.inputs]
        if node.op == "Linear":
            w, b = prog.params.get(node.inputs[1]), prog.params.get(node.inputs[2])
            if w is not None and b is not None and w.size:
                lo, hi = spec.int_range(bits[0], prog.tensors[node.inputs[0]].signed)
                lo, hi = max(lo, -bound[node.inputs[0]]), min(hi, bound[node.inputs[0]])
                w64, b64 = w.astype("int64"), b.astype("int64")
                low = (np.minimum(lo * w64, hi * w64).sum(0) + b64).min()  # as quant.intops.linear_acc_bits
                high = (np.maximum(lo * w64, hi * w64).sum(0) + b64).max()
                proven[f"{node.name}/acc"] = range_bits(min(int(low), 0), max(int(high), 0))
        elif node.op == "DotAttention" and d and n:
            for label, m in dot_bounds(node.attrs, d, n, *bits[:3]).items():
                proven[f"{node.name}/{label}"] = bits_for(m)
        elif node.op == "InhibitorAttention" and d and n:
            proven[f"{node.name}/l1"] = bits_for(d * (bound[node.inputs[0]] + bound[node.inputs[1]]))
            proven[f"{node.name}/h"] = bits_for(n * bound[node.inputs[2]])
        elif node.op == "LayerNorm":
            x, dim = bound[node.inputs[0]], len(prog.params[node.inputs[1]]) if node.inputs[1] in prog.params else 0
            if dim:
                proven[f"{node.name}/sum"] = bits_for(dim * x)
                proven[f"{node.name}/sq_sum"] = bits_for(dim * (2 * x) ** 2)
                proven[f"{node.name}/norm"] = bits_for(2 * x << 30)
        if node.op in spec.OPS and not spec.OPS[node.op].moves:
            bound[node.outputs[0]] = _value_bound(prog, bound, node)
        else:  # data movement: the values of its first input
            bound[node.outputs[0]] = bound[node.inputs[0]]
    return proven


def check(prog: IntProgram) -> dict[str, int]:
    """`prove(prog)`, after refusing (WidthError naming the node and the way out) any accumulator whose
    proven width exceeds what the node declares or what the executors hold."""
    proven = prove(prog)
    nodes = {node.name: node for node in prog.nodes}
    for key, bits in proven.items():
        name, label = key.rsplit("/", 1)
        node = nodes[name]
        declared = _declared_acc(node).get(label, EXEC_BITS)
        if bits > declared:
            if declared >= EXEC_BITS:
                way = "no accumulator is wider than 64 bits: lower the widths feeding it (--bits or --widths)"
            elif label == "shifted":
                way = "raise score_shift (quant.intops.dot_attention_attrs picks it) or lower the widths of q and k"
            else:
                way = "declare a wider accumulator (acc_bits=64) or lower the widths feeding it (--bits or --widths)"
            raise WidthError(f"node {name!r} ({node.op}): accumulator {label!r} needs {bits} bits, more than its "
                            f"{declared}; {way}")
    return proven


def widest(proven: dict[str, int]) -> dict[str, int]:
    """label -> the widest proven width of that label over all nodes (for reports)."""
    out: dict[str, int] = {}
    for key, bits in proven.items():
        label = key.rsplit("/", 1)[1]
        out[label] = max(out.get(label, 0), bits)
    return out


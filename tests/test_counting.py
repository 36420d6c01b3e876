"""Closed-form op counts: per-op formulas asserted explicitly, scaling with n, golden whole-encoder
counts (tests/golden/encoder_*.json; regenerate with HWSIM_REGEN_GOLDEN=1 after a deliberate change).
"""
from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path

import pytest

from hypothesis import given, settings
from hypothesis import strategies as st

from hwsim.sim.actions import ActionKey
from hwsim.sim.counting import ZERO_COST, OpSite, count_graph, count_op, div_magic
from hwsim.sim.hwconfig import HwConfig, load_hw
from hwsim.sim.memory import plan_memory
from models.errors import UserError

GOLDEN = Path(__file__).parent / "golden"
HW = HwConfig()


def totals(counts: dict[str, int]) -> Counter:
    """Count per action, summed over widths (memory and traffic keys left out)."""
    out: Counter = Counter()
    for key, c in counts.items():
        action = ActionKey.parse(key)
        if action.is_priced and not action.is_memory:
            out[action.action] += c
    return out


def attention(kind: str, b=1, h=2, n=6, m=None, d=16, bits=8, **attrs) -> OpSite:
    m = n if m is None else m
    base = (dict(q_ln2=90, b_int=175, c_int=700, n_clip=30, prob_bits=8, out_shift=8, bits=bits)
            if kind == "DotAttention" else dict(z_shift=0, center=0, alpha=0, signed=0, out_shift=0, bits=bits))
    base.update(attrs)
    return OpSite(kind, "attn", base, [(b, h, n, d), (b, h, m, d), (b, h, m, d), (b, m)], [(b, h, n, d)],
                  (bits, bits, bits, 64), (bits,), (False,) * 4)


def linear(name, rows, k, n, relu=0, shift=7, bits=8, lead=(2,)) -> OpSite:
    return OpSite("Linear", name, dict(shift=shift, bits=bits, relu=relu), [(*lead, rows, k), (k, n), (n,)],
                  [(*lead, rows, n)], (8, 8, 32), (bits,), (False, True, True))


# ---- inhibitor attention ------------------------------------------------------------------------
def test_inhibitor_unsigned_closed_form():
    n, m, d, g = 6, 6, 16, 2
    c = count_op(attention("InhibitorAttention", n=n, d=d), HW)
    t = totals(c)
    assert c["abs@9"] == g * n * m * d                      # |q - k| on bits+1
    assert c["add@13"] == g * n * m * (d - 1)               # L1 sum grows to bits+1+ceil(log2 d)
    assert c["add@9"] == 2 * g * n * m * d                  # q - k and v - Z (both 9 bits)
    assert c["relu@9"] == g * n * m * d                     # ReLU of v - Z: AND gates, no comparator
    assert c["add@11"] == g * n * (m - 1) * d               # sum_j of 6 values <= 127: 11 bits
    assert t["mul"] == 0 and t["div"] == 0 and t["shift"] == 0
    assert t["add"] == g * (n * m * d + n * m * (d - 1) + n * m * d + n * (m - 1) * d)
    # clamp: Z >= 0 without centring, so only the upper side; requant of H: upper side only
    assert t["cmp"] == g * (n * m + n * d)
    assert t["relu"] == g * n * m * d


def test_inhibitor_centre_alpha_signed():
    n, m, d, g, b = 4, 4, 8, 2, 1
    plain = totals(count_op(attention("InhibitorAttention", n=n, d=d), HW))
    full = totals(count_op(attention("InhibitorAttention", n=n, d=d, center=1, alpha=5, signed=1, z_shift=3), HW))
    centre = g * (n * (m - 1) + n * m) + b * (m - 1)        # row sums, subtractions, n_valid
    alpha, z_requant = g * n * m, g * n * m                 # alpha add; rounding add of z_shift
    signed = g * n * d                                      # negate first term when v < 0
    assert full["add"] - plain["add"] == centre + alpha + z_requant + signed
    assert full["div"] == g * n                             # one division per row
    assert full["abs"] - plain["abs"] == g * m * d          # |v| once per key
    assert full["shiftc"] == g * n * m and full["shift"] == 0   # z_shift: a constant shift
    # the clamp's lower side after centring is a ReLU; signed H can also saturate below
    assert full["relu"] - plain["relu"] == g * n * m
    assert full["cmp"] - plain["cmp"] == g * n * d


def test_inhibitor_scales_quadratically_with_n():
    small = count_op(attention("InhibitorAttention", n=8), HW)
    big = count_op(attention("InhibitorAttention", n=16), HW)
    assert big["abs@9"] == 4 * small["abs@9"]
    assert big["add@9"] == 4 * small["add@9"]


# ---- dot-product attention ----------------------------------------------------------------------
def test_dot_attention_closed_form():
    n, m, d, g = 6, 6, 16, 2
    c = count_op(attention("DotAttention", n=n, d=d), HW)
    t = totals(c)
    assert c["mul@8x8"] == g * n * m * d                    # q k^T
    # products reach 2**14, their sum over 16 terms 2**18: 20 bits; s - max stays within 20 bits
    assert c["add@20"] == g * n * m * (d - 1) + g * n * m
    assert c["mul@9x8"] == g * n * m * d                    # P (8-bit unsigned) @ v
    assert c["mul@8x6"] == g * n * m and c["mul@9x9"] == g * n * m   # z*q_ln2, (p + b)^2
    assert c["mul@13x13"] == g * n * m                      # z = floor(-x / 90), -x <= 2700: reciprocal
    assert t["mul"] == 2 * g * n * m * d + 3 * g * n * m
    assert t["div"] == g * n * m                            # the normalisation only
    assert c["shift@16"] == t["shift"] == g * n * m         # e >> z: the one barrel shift
    assert t["shiftc"] == 2 * g * n * m + g * n * d         # reciprocal shift, e * 2**prob_bits; out_shift
    assert c["cmp@20"] == g * n * (m - 1) + g * n * m       # row max; clamp at -n_clip*q_ln2
    n_add = g * (n * m * (d - 1) + 5 * n * m + n * (m - 1) + n * d * (m - 1) + n * d)
    assert t["add"] == n_add                                # qk sum, 5 per score, sum e, PV sum, round


def test_dot_attention_scales_quadratically_with_n():
    small = totals(count_op(attention("DotAttention", n=8), HW))
    big = totals(count_op(attention("DotAttention", n=16), HW))
    assert big["mul"] == 4 * small["mul"] and big["div"] == 4 * small["div"]


# ---- the other ops ------------------------------------------------------------------------------
def test_linear_closed_form_and_linear_in_rows():
    rows, k, n = 5, 16, 12
    c = count_op(linear("fc", rows, k, n, relu=1), HW)
    t = totals(c)
    assert c["mul@8x8"] == 2 * rows * k * n
    assert c["add@20"] == 2 * rows * (k - 1) * n            # 16 bits + ceil(log2 16)
    assert t["add"] == 2 * rows * ((k - 1) * n + n + n)     # accumulate, bias, rounding add
    assert t["cmp"] == 2 * rows * n * 2                     # saturate both sides
    assert c["relu@8"] == t["relu"] == 2 * rows * n         # ReLU on the 8-bit output
    double = count_op(linear("fc", 2 * rows, k, n, relu=1), HW)
    assert totals(double) == Counter({a: 2 * v for a, v in t.items()})


def test_per_channel_linear_counts_a_barrel_shift_per_output():
    """Per-channel shifts (4-bit offsets s): the same products, sums and compares as one shift, and a
    data-dependent shift per output instead of the constant one (rounding constant up to 2**(7+15-1))."""
    rows, k, n = 5, 16, 12
    tensor = count_op(linear("fc", rows, k, n, relu=1), HW)
    site = OpSite("Linear", "fc", dict(shift=7, bits=8, relu=1), [(2, rows, k), (k, n), (n,), (n,)],
                  [(2, rows, n)], (8, 8, 32, 4), (8,), (False, True, True, True))
    c = count_op(site, HW)
    t, t_tensor = totals(c), totals(tensor)
    assert c["shift@33"] == t["shift"] == 2 * rows * n and t_tensor["shift"] == 0
    assert c["add@33"] == tensor["add@33"] == 2 * 2 * rows * n  # bias add and rounding add (32-bit bias)
    assert t["shiftc"] == t_tensor["shiftc"] - 2 * rows * n  # no constant shift left in the requant
    assert (t["mul"], t["add"], t["cmp"], t["relu"]) == (t_tensor["mul"], t_tensor["add"], t_tensor["cmp"], t_tensor["relu"])


def test_layernorm_counts_isqrt_and_divisions():
    rows, dim = 3, 12
    site = OpSite("LayerNorm", "ln", dict(eps=1, norm_frac=12, shift=10, bits=8),
                  [(1, rows, dim), (dim,), (dim,)], [(1, rows, dim)], (16, 8, 24), (8,), (False, True, True))
    c = count_op(site, HW)
    t = totals(c)
    assert t["div"] == rows                                 # 2**30 / sd; D = 12: reciprocal multiplies
    assert t["mul"] == 3 * rows * dim + 2 * rows            # c^2, c * inv, nrm * gamma; 2 reciprocals
    assert c["mul@17x17"] == rows * dim                     # c^2, c = x - m on 17 bits
    assert c["mul@32x17"] == rows * dim                     # c * inv
    # v = floor(sum c^2 / D) <= 65535**2 (+ eps): 33 bits, so isqrt runs 17 iterations per row
    assert c["cmp@33"] == 17 * rows and c["shiftc@33"] == 2 * 17 * rows and t["shift"] == 0
    assert c["add@20"] == rows * (dim - 1)                  # sum x
    assert c["add@37"] == rows * (dim - 1) + 2 * rows * dim  # sum c^2; + beta and its rounding add
    pow2 = OpSite("LayerNorm", "ln", dict(eps=0, norm_frac=12, shift=10, bits=8),
                  [(1, rows, 16), (16,), (16,)], [(1, rows, 16)], (16, 8, 24), (8,), (False, True, True))
    pow2_t = totals(count_op(pow2, HW))
    assert pow2_t["div"] == rows and pow2_t["mul"] == 3 * rows * 16   # D = 16: the means are constant shifts


# ---- division by a constant: reciprocal multiply (Granlund & Montgomery) --------------------------
# (divisor, lo, hi) the counter feeds `div_magic`: LayerNorm's mean and variance over D = 384 int32
# values (c = x - m below 2**32 in magnitude), softmax's z = floor(-x / q_ln2) for n_clip = 30 and
# q_ln2 of scales 2**-4 (44) and 2**-10 (709), and the test sites' 12-wide LayerNorm and q_ln2 = 90.
COUNTED = [(384, -384 * 2**31, 384 * (2**31 - 1)), (384, 0, 384 * 2**64), (12, -12 * 2**15, 12 * (2**15 - 1)),
           (12, 0, 12 * 2**32), (90, 0, 30 * 90), (44, 0, 30 * 44), (709, 0, 30 * 709)]


@pytest.mark.parametrize("divisor", [3, 5, 7, 12, 90, 384, 709, 1000])
def test_div_magic_exhaustive_small_range(divisor):
    lo, hi = -5000, 5000
    m, c, s = div_magic(divisor, lo, hi)
    assert all((x * m + c) >> s == x // divisor for x in range(lo, hi + 1))


@pytest.mark.parametrize("divisor,lo,hi", COUNTED)
@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_div_magic_over_the_counted_range(divisor, lo, hi, data):
    m, c, s = div_magic(divisor, lo, hi)
    x = data.draw(st.one_of(st.integers(lo, hi), st.sampled_from([lo, hi, 0 if lo <= 0 else lo])))
    assert (x * m + c) >> s == x // divisor
    edge = data.draw(st.integers(lo // divisor, hi // divisor)) * divisor   # exact multiples and neighbours
    for y in (edge - 1, edge, edge + divisor - 1):
        if lo <= y <= hi:
            assert (y * m + c) >> s == y // divisor


@settings(max_examples=500, deadline=None)
@given(divisor=st.integers(1, 10**6), lo=st.integers(-2**70, 2**70), span=st.integers(0, 2**70), data=st.data())
def test_div_magic_any_divisor_and_range(divisor, lo, span, data):
    m, c, s = div_magic(divisor, lo, lo + span)
    x = data.draw(st.integers(lo, lo + span))
    assert (x * m + c) >> s == x // divisor


def test_add_embed_scale_channels():
    add = OpSite("Add", "res", dict(la=2, lb=0), [(2, 3, 4), (2, 3, 4)], [(2, 3, 4)], (8, 12), (16,), (False, False))
    c = count_op(add, HW)
    assert c["shiftc@10"] == 24 and c["add@13"] == 24         # alignment shift: constant
    emb = OpSite("Embed", "emb", dict(lw=0, lp=1, lt=0), [(2, 5), (20, 8), (16, 8), (2, 8)], [(2, 5, 8)],
                 (32, 8, 8, 8), (12,), (False, True, True, True))
    c = count_op(emb, HW)
    assert totals(c) == Counter({"shiftc": 80, "add": 160})
    sc = OpSite("ScaleChannels", "sc", dict(shift=6, bits=8), [(1, 2, 3, 4), (4,)], [(1, 2, 3, 4)], (8, 8), (8,),
                (False, True))
    assert count_op(sc, HW)["mul@8x8"] == 24


def test_data_movement_is_memory_only_and_unsupported_is_named():
    tr = OpSite("Transpose", "t", {}, [(2, 6, 2, 4)], [(2, 2, 6, 4)], (8,), (8,), (False,))
    c = count_op(tr, HW)
    assert "Transpose" in ZERO_COST and totals(c) == Counter()
    assert c["read.sram@64"] == 2 * 6 and c["write.sram@64"] == 2 * 6  # 48 bytes per sample each
    rs = OpSite("Reshape", "r", {}, [(2, 6, 8), (4,)], [(2, 6, 2, 4)], (8, 64), (8,), (False, True))
    assert count_op(rs, HW) == {}
    with pytest.raises(UserError, match="unsupported op 'Softmax' in node 'attn3/softmax'"):
        count_op(OpSite("Softmax", "attn3/softmax", {}, [(1, 4)], [(1, 4)], (8,), (8,), (False,)), HW)


# ---- memory model -------------------------------------------------------------------------------
def test_memory_levels():
    site = linear("fc", 4, 16, 16)
    dram = count_op(site, HW)                               # default: weights stream from DRAM
    assert dram["bytes.read.dram@8"] == 2 * (16 * 16 + 16 * 4)   # per sample: w int8, b int32
    assert dram["read.dram@64"] == 2 * (32 + 8)
    on_chip = HwConfig(weights_on_chip=True)
    sram = count_op(site, on_chip, plan_memory([site], on_chip))
    assert "read.dram@64" not in sram and sram["read.sram@64"] == 2 * (32 + 8 + 8)
    tiny = HwConfig(sram_bytes=32)                          # 64-byte activation rows spill to DRAM
    spill = count_op(site, tiny)
    assert spill["write.dram@64"] == 2 * 8
    with pytest.raises(ValueError, match="plan_memory"):
        count_op(site, on_chip)
    big = attention("InhibitorAttention", n=64)             # 64*64 uint8 scores > 1 KiB register file
    c = count_op(big, HW)
    assert c["bytes.write.sram@8"] == 2 * 64 * 64 + 2 * 64 * 16


def test_hw_config_rejects_unknown_keys(tmp_path):
    assert load_hw() == HwConfig()
    bad = tmp_path / "hw.json"
    bad.write_text(json.dumps({"sram_bytes": 1024, "l3_bytes": 5}))
    with pytest.raises(UserError, match="l3_bytes"):
        load_hw(bad)
    bad.write_text(json.dumps({"sram_word_bits": 12}))
    with pytest.raises(UserError, match="multiple of 8"):
        load_hw(bad)


# ---- golden whole encoder -----------------------------------------------------------------------
def encoder_sites(kind: str, b=2, n=6, dim=8, heads=2, ffn=16) -> list[tuple[OpSite, str]]:
    """A one-layer encoder classifier as (site, layer) pairs, in the exported graph's op types."""
    d, act = dim // heads, (False,)
    split = lambda nm: [  # noqa: E731
        (OpSite("Reshape", f"{nm}/reshape", {}, [(b, n, dim), (4,)], [(b, n, heads, d)], (8, 64), (8,), (False, True)), "layer0"),
        (OpSite("Transpose", f"{nm}/transpose", {}, [(b, n, heads, d)], [(b, heads, n, d)], (8,), (8,), act), "layer0")]
    ln = lambda nm, layer: (OpSite("LayerNorm", nm, dict(eps=1, norm_frac=12, shift=10, bits=8),  # noqa: E731
                                   [(b, n, dim), (dim,), (dim,)], [(b, n, dim)], (16, 8, 24), (8,), (False, True, True)), layer)
    attn_attrs = (dict(q_ln2=90, b_int=175, c_int=700, n_clip=30, prob_bits=8, out_shift=8, bits=8)
                  if kind == "DotAttention" else dict(z_shift=2, center=1, alpha=3, signed=0, out_shift=1, bits=8))
    sites = [
        (OpSite("Embed", "embed", dict(lw=0, lp=0, lt=0), [(b, n), (20, dim), (16, dim), (2, dim)], [(b, n, dim)],
                (32, 8, 8, 8), (16,), (False, True, True, True)), "embed"),
        ln("embed/ln", "embed"),
        *[(linear(f"l0/{p}", n, dim, dim), "layer0") for p in "qkv"],
        *split("l0/q"), *split("l0/k"), *split("l0/v"),
        (OpSite(kind, "l0/attn", attn_attrs, [(b, heads, n, d)] * 3 + [(b, n)], [(b, heads, n, d)],
                (8, 8, 8, 64), (8,), act * 4), "layer0"),
        (OpSite("Transpose", "l0/merge/transpose", {}, [(b, heads, n, d)], [(b, n, heads, d)], (8,), (8,), act), "layer0"),
        (OpSite("Reshape", "l0/merge/reshape", {}, [(b, n, heads, d), (3,)], [(b, n, dim)], (8, 64), (8,), (False, True)), "layer0"),
        (linear("l0/o", n, dim, dim), "layer0"),
        (OpSite("Add", "l0/res1", dict(la=0, lb=1), [(b, n, dim)] * 2, [(b, n, dim)], (8, 8), (16,), act * 2), "layer0"),
        ln("l0/ln1", "layer0"),
        (linear("l0/ffn1", n, dim, ffn, relu=1), "layer0"),
        (linear("l0/ffn2", n, ffn, dim), "layer0"),
        (OpSite("Add", "l0/res2", dict(la=0, lb=0), [(b, n, dim)] * 2, [(b, n, dim)], (8, 8), (16,), act * 2), "layer0"),
        ln("l0/ln2", "layer0"),
        (OpSite("Gather", "head/take", {}, [(b, n, dim), ()], [(b, dim)], (8, 64), (8,), (False, True)), "head"),
        (OpSite("Linear", "head/cls", dict(shift=0, bits=32, relu=0), [(b, dim), (dim, 2), (2,)], [(b, 2)],
                (8, 8, 32), (32,), (False, True, True)), "head"),
    ]
    return sites


@pytest.mark.parametrize("kind", ["InhibitorAttention", "DotAttention"])
def test_golden_encoder(kind):
    pairs = encoder_sites(kind)
    sites = [s for s, _ in pairs]
    got = {"per_node": count_graph(sites, HW), "node_op": {s.name: s.op_type for s in sites},
           "node_layer": {s.name: layer for s, layer in pairs}, "batch": 2}
    path = GOLDEN / f"encoder_{kind}.json"
    if os.environ.get("HWSIM_REGEN_GOLDEN") == "1":
        path.write_text(json.dumps(got, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    assert got == json.loads(path.read_text(encoding="utf-8"))
    attn = totals(got["per_node"]["l0/attn"])
    g, n, d = 2 * 2, 6, 4
    if kind == "InhibitorAttention":
        assert attn["abs"] == g * n * n * d and attn["mul"] == 0
    else:
        assert attn["mul"] == 2 * g * n * n * d + 3 * g * n * n and attn["abs"] == 0   # z: reciprocal multiply


def test_w16a16_linear_adders_are_wider_than_32_bits():
    """At W16A16 the accumulator (declared acc_bits=64) needs more than 32 bits: the counted
    multiplier and adder widths follow the exact ranges, not a fixed int32."""
    site = OpSite("Linear", "fc", dict(shift=20, bits=16, relu=0, acc_bits=64), [(4, 768), (768, 32), (32,)],
                  [(4, 32)], (16, 16, 32), (16,), (False, True, True))
    counts = count_op(site, load_hw(None))
    assert counts["mul@16x16"] == 4 * 768 * 32
    widest = max(a.bits[0] for a in map(ActionKey.parse, counts) if a.action == "add")
    assert widest == 41  # |acc| <= 768 * 2**30 + 2**31 < 2**40: 41 signed bits

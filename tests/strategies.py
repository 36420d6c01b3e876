"""Hypothesis strategies for differential fuzzing: random small `IntProgram`s and random inputs.

Profiles (select with `HWSIM_FUZZ_PROFILE=ci|long`, default ci): `ci` runs `CI_EXAMPLES` examples per
fuzz test, `long` ten times as many. `load_profile()` registers both and loads the selected one.

A single-op program puts one op of the supported set between a fixed front end and a fixed back end,
all inside the ONNX contract (inputs `input_ids`/`attention_mask`, int32 `logits`):

    input_ids -> Embed(word, pos[, type]; lw, lp, lt) [emb, 32 bits]
      -> ScaleChannels(c, shift, bits=w) [x*, w-bit signed]            (one per operand the op needs)
         or Linear(identity, relu) [x*, w-bit unsigned]                  (unsigned operands)
      -> SplitHeads (attention ops)
      -> OP under test [y]
      -> MergeHeads (attention ops) -> Add(y, y) [wide, 32 bits] -> TakeFirst [logits]

Table values are drawn at the edges of their widths, so activations hit the saturation bounds.
`Case.compare` lists the tensors whose every element all three executors must agree on (the harness
adds them as graph outputs).
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass

import numpy as np
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from quant.intops import softmax_constants
from quant.ir.program import IntProgram, Node, TensorInfo, storage_dtype
from quant.ir import spec
from quant.ir.spec import int_range
from quant.intops.synth import SynthConfig

CI_EXAMPLES = 75
PROFILES = {"ci": CI_EXAMPLES, "long": 10 * CI_EXAMPLES}
ENCODERS = (9, 60)  # encoder models in the pool: ci, long
UNSIGNED_MAX = 16  # unsigned operands up to 16 bits (storage fixed: test_fuzz.test_unsigned_16_bit_storage)
SINGLE_OPS = tuple(op for op, s in spec.OPS.items() if s.computes)  # every op that computes, DESIGN order


def load_profile() -> str:
    """Register the `ci` and `long` profiles and load the one named by HWSIM_FUZZ_PROFILE."""
    for name, count in PROFILES.items():
        settings.register_profile(name, max_examples=count, deadline=None, print_blob=True,
                                  suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    name = os.environ.get("HWSIM_FUZZ_PROFILE", "ci")
    if name not in PROFILES:
        raise ValueError(f"HWSIM_FUZZ_PROFILE={name!r}: use one of {', '.join(PROFILES)}")
    settings.load_profile(name)
    return name


@dataclass(frozen=True)
class Case:
    prog: IntProgram
    ids: np.ndarray     # int64 [B, n]
    mask: np.ndarray    # int64 [B, n]
    compare: tuple[str, ...]


@st.composite
def edge_array(draw, shape: tuple[int, ...], bits: int, signed: bool = True) -> np.ndarray:
    """Integers of a `bits`-wide range, most at or next to its edges, some at 0 and +-1."""
    lo, hi = int_range(bits, signed)
    edges = sorted({v for v in (lo, lo + 1, hi - 1, hi, 0, 1, -1) if lo <= v <= hi})
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    size = int(np.prod(shape))
    out = rng.integers(lo, hi + 1, size=size)
    pick = rng.random(size) < draw(st.sampled_from([0.0, 0.3, 0.7, 1.0]))
    out[pick] = rng.choice(edges, size=int(pick.sum()))
    return out.reshape(shape).astype(np.int64)


@st.composite
def token_inputs(draw, vocab: int, max_len: int, batch: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """ids [B, n] in [0, vocab) and a mask with random right padding (rows may be all padding)."""
    bsz = batch or draw(st.integers(1, 3))
    n = draw(st.integers(1, max_len))
    ids = np.array(draw(st.lists(st.integers(0, vocab - 1), min_size=bsz * n, max_size=bsz * n)),
                   np.int64).reshape(bsz, n)
    lengths = draw(st.lists(st.integers(0, n), min_size=bsz, max_size=bsz))
    lengths[0] = max(lengths[0], 1)
    mask = (np.arange(n)[None, :] < np.array(lengths)[:, None]).astype(np.int64)
    return ids, mask


class ProgBuilder:
    """Collects nodes, params and declared formats of a small program."""

    def __init__(self) -> None:
        self.nodes: list[Node] = []
        self.params: dict[str, np.ndarray] = {}
        self.tensors = {"input_ids": TensorInfo(64), "attention_mask": TensorInfo(64)}

    def param(self, name: str, arr: np.ndarray, bits: int, signed: bool = True) -> str:
        info = TensorInfo(bits, signed)
        self.params[name], self.tensors[name] = arr.astype(storage_dtype(info)), info
        return name

    def node(self, op: str, name: str, inputs: tuple[str, ...], width: int, out_signed: bool = True,
             **attrs: int) -> str:
        """Append `name = op(*inputs, **attrs)`, declared `width` bits (signed unless `out_signed`)."""
        self.nodes.append(Node(op, name, inputs, (name,), attrs))
        self.tensors[name] = TensorInfo(width, out_signed)
        return name

    def program(self, meta: dict) -> IntProgram:
        return IntProgram(tuple(self.nodes), self.params, self.tensors, meta=meta)


@st.composite
def _front(draw, p: ProgBuilder, vocab: int, max_len: int, dim: int, table_bits: int, emb_bits: int = 32) -> str:
    """Embed with random tables (edges of `table_bits`), shifts and optional type table."""
    word = p.param("word", draw(edge_array((vocab, dim), table_bits)), table_bits)
    pos = p.param("pos", draw(edge_array((max_len, dim), table_bits)), table_bits)
    inputs = ("input_ids", word, pos)
    if draw(st.booleans()):
        inputs += (p.param("type", draw(edge_array((2, dim), table_bits)), table_bits),)
    shifts = st.integers(0, 3)
    return p.node("Embed", "emb", inputs, emb_bits, lw=draw(shifts), lp=draw(shifts), lt=draw(shifts))


@st.composite
def _operand(draw, p: ProgBuilder, name: str, emb: str, dim: int, bits: int, signed: bool = True) -> str:
    """A `bits`-wide activation [B, n, dim] from the embedding: ScaleChannels (signed) or an
    identity Linear with ReLU declared unsigned."""
    if signed:
        c = p.param(f"{name}.c", draw(edge_array((dim,), draw(st.integers(2, 8)))), 8)
        return p.node("ScaleChannels", name, (emb, c), bits, shift=draw(st.integers(0, 6)), bits=bits)
    w = p.param(f"{name}.w", np.eye(dim, dtype=np.int64), 2)
    b = p.param(f"{name}.b", np.zeros(dim, np.int64), 32)
    return p.node("Linear", name, (emb, w, b), bits, False, shift=draw(st.integers(0, 4)), bits=bits + 1,
                  relu=1)


def _back(p: ProgBuilder, y: str, rank4: bool) -> None:
    if rank4:
        y = p.node("MergeHeads", "y.merged", (y,), p.tensors[y].bits, p.tensors[y].signed)
    if p.tensors[y].bits <= 16:
        y = p.node("Add", "wide", (y, y), 32, la=0, lb=0)
    p.node("TakeFirst", "logits", (y,), 32)


def _declared(draw, bits: int) -> int:
    """The declared output width: usually the op's `bits`, sometimes narrower (overflow cases)."""
    return draw(st.sampled_from([bits] * 4 + [max(2, bits - 1), max(2, bits // 2)]))


@st.composite
def single_op_case(draw, op: str) -> Case:
    """One op with random shapes, widths (2..16, accumulators 32), edge values and attributes."""
    p = ProgBuilder()
    vocab, max_len = draw(st.integers(1, 6)), draw(st.integers(1, 8))
    heads, d = draw(st.integers(1, 2)), draw(st.integers(1, 5))
    dim = heads * d
    w = draw(st.integers(2, 16))
    rank4 = op in ("DotAttention", "InhibitorAttention")
    if op == "LayerNorm":
        emb = draw(_front(p, vocab, max_len, dim, draw(st.integers(2, 21))))
    else:
        emb = draw(_front(p, vocab, max_len, dim, draw(st.integers(2, 16)), 32 if op != "Embed" else
                          draw(st.sampled_from([32, 32, 16, 12]))))
    if op == "Embed":
        y = emb
    elif op == "Linear":
        x = draw(_operand(p, "x", emb, dim, w, signed=w > UNSIGNED_MAX or draw(st.booleans())))
        n_out, wbits, bits = draw(st.integers(1, 6)), draw(st.integers(2, 16)), draw(st.sampled_from([*range(2, 17), 32]))
        wt = p.param("lin.w", draw(edge_array((dim, n_out), wbits)), wbits)
        b = p.param("lin.b", draw(edge_array((n_out,), draw(st.integers(2, 32)))), 32)
        y = p.node("Linear", "y", (x, wt, b), _declared(draw, bits), shift=draw(st.integers(-3, 24)), bits=bits,
                   relu=int(draw(st.booleans())))
    elif op == "ScaleChannels":
        x = draw(_operand(p, "x", emb, dim, w))
        cbits, bits = draw(st.integers(2, 16)), draw(st.sampled_from([*range(2, 17), 32]))
        c = p.param("sc.c", draw(edge_array((dim,), cbits)), cbits)
        y = p.node("ScaleChannels", "y", (x, c), _declared(draw, bits), shift=draw(st.integers(-3, 24)), bits=bits)
    elif op == "Add":
        a = draw(_operand(p, "a", emb, dim, w, signed=w > UNSIGNED_MAX or draw(st.booleans())))
        b = draw(_operand(p, "b", emb, dim, draw(st.integers(2, 16))))
        y = p.node("Add", "y", (a, b), draw(st.sampled_from([32, 32, 32, 16, w + 1])),
                   la=draw(st.integers(0, 6)), lb=draw(st.integers(0, 6)))
    elif op == "LayerNorm":
        gbits, bits = draw(st.integers(2, 16)), draw(st.integers(2, 16))
        gamma = p.param("ln.gamma", draw(edge_array((dim,), gbits)), gbits)
        beta = p.param("ln.beta", draw(edge_array((dim,), draw(st.integers(2, 30)))), 32)
        y = p.node("LayerNorm", "y", (emb, gamma, beta), _declared(draw, bits), eps=draw(st.integers(0, 1000)),
                   norm_frac=draw(st.integers(4, 20)), shift=draw(st.integers(0, 30)), bits=bits)
    else:
        qkv = [draw(_operand(p, t, emb, dim, w)) for t in ("q", "k", "v")]
        qh, kh, vh = (p.node("SplitHeads", f"{t}h", (t,), w, heads=heads) for t in qkv)
        inputs = (qh, kh, vh, "attention_mask")
        if op == "DotAttention":
            prob_bits = draw(st.integers(2, 16))
            consts = softmax_constants(2.0 ** -draw(st.integers(1, 16)) / math.sqrt(d))
            y = p.node(op, "y", inputs, _declared(draw, w), **consts, n_clip=draw(st.sampled_from([30, 30, 1, 5])),
                       prob_bits=prob_bits, out_shift=draw(st.integers(0, prob_bits + 4)), bits=w)
        else:
            y = p.node(op, "y", inputs, _declared(draw, w), z_shift=draw(st.integers(-4, 12)),
                       center=int(draw(st.booleans())), alpha=draw(st.integers(-4, 1 << (w - 1))),
                       signed=int(draw(st.booleans())), out_shift=draw(st.integers(-2, 12)), bits=w)
    _back(p, y, rank4)
    ids, mask = draw(token_inputs(vocab, max_len))
    compare = tuple(n.outputs[0] for n in p.nodes if n.outputs[0] != "logits") + ("logits",)
    return Case(p.program({"vocab_size": vocab, "max_position": max_len}), ids, mask, compare)


def encoder_pool(size: int, seed: int = 0) -> list[SynthConfig]:
    """`size` random small encoder configurations (every attention variant, widths 2..12, 1-2
    layers, centred/signed inhibitors). A pool rather than free draws: building an onnxruntime
    session of a whole encoder takes seconds, so examples share models and vary the inputs."""
    rng = np.random.default_rng(seed)
    pool = []
    for i in range(size):
        heads = int(rng.integers(1, 4))
        pool.append(SynthConfig(
            vocab=int(rng.integers(2, 41)), max_position=int(rng.integers(2, 21)), hidden=heads * int(rng.integers(1, 7)),
            heads=heads, ffn=int(rng.integers(1, 25)), layers=int(rng.integers(1, 3)), num_labels=int(rng.integers(1, 4)),
            attention=("dot", "inhibitor", "symmetric")[i % 3], bits=int(rng.integers(2, 13)),
            center=bool(rng.integers(2)), signed=bool(rng.integers(2)), seed=int(rng.integers(0, 4))))
    return pool


def synth_configs() -> st.SearchStrategy[SynthConfig]:
    """Encoder configurations from the pool of the loaded profile (ci: 9 models, long: 60)."""
    return st.sampled_from(encoder_pool(ENCODERS[settings().max_examples > CI_EXAMPLES]))


def padded_batch(rng, vocab: int, n: int, batch: int = 3):
    """Seeded token ids [batch, n] whose rows after the first are right-padded to a random length
    (down to one valid token); padded positions hold id 0 and mask 0."""
    ids = rng.integers(0, vocab, (batch, n)).astype(np.int64)
    mask = np.ones((batch, n), np.int64)
    for b in range(1, batch):
        valid = int(rng.integers(1, n + 1))
        mask[b, valid:] = 0
        ids[b, valid:] = 0
    return ids, mask


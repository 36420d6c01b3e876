"""Whole programs: synth IntProgram -> export -> hwsim == quant.intops.reference == onnxruntime; counts
against the golden whole-encoder counts; overflow modes; bad models and bad inputs raise SimError with a
clear message."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import helper, numpy_helper

from export.onnx_lower import to_onnx
from hwsim import simulate
from hwsim.sim.executor import execute
from hwsim.sim.graph import SimError, load_plan
from models.errors import UserError
from quant.intops.reference import run_program
from quant.intops.synth import SynthConfig, synth_program
from tests.strategies import padded_batch
from tests.test_counting import totals

VARIANTS = [dict(attention="dot"), dict(attention="inhibitor"), dict(attention="inhibitor", center=True, signed=True),
            dict(attention="symmetric")]


@pytest.fixture(scope="module", params=VARIANTS, ids=lambda v: "-".join(f"{k}={x}" for k, x in v.items()))
def model(request):
    prog = synth_program(SynthConfig(layers=2, seed=3, **request.param))
    onnx_model = to_onnx(prog)
    return prog, onnx_model, load_plan(onnx_model)


def test_equals_intref_and_onnxruntime(model):
    prog, onnx_model, plan = model
    sess = ort.InferenceSession(onnx_model.SerializeToString())
    rng = np.random.default_rng(7)
    for n in (1, 2, 5, 17, 40):
        ids, mask = padded_batch(rng, 50, n, 3)
        got = execute(plan, ids, mask)
        want = run_program(prog, torch.from_numpy(ids), torch.from_numpy(mask))["logits"].numpy()
        assert np.array_equal(got.outputs["logits"], want), n
        assert np.array_equal(got.outputs["logits"], sess.run(None, {"input_ids": ids, "attention_mask": mask})[0])
        assert got.outputs["logits"].dtype == np.int32


def test_counts_and_widths(model):
    _, _, plan = model
    rng = np.random.default_rng(0)
    ids, mask = padded_batch(rng, 50, 12, 1)
    res = execute(plan, ids, mask)
    assert set(res.counts) == {node.name for node in plan.nodes}
    assert all("@" in action for counts in res.counts.values() for action in counts)
    assert res.counts is execute(plan, ids + 1, mask).counts  # cached per input shape
    assert all(res.max_abs[t] <= 2 ** (plan.formats[t].bits - 1) for t in res.max_abs if t in plan.formats)
    assert {f"{node.name}/acc" for node in plan.nodes if node.op_type == "Linear"} <= set(res.max_abs)


def test_simulate_api(tmp_path, model):
    _, onnx_model, plan = model
    path = tmp_path / "m.onnx"
    onnx.save(onnx_model, path)
    ids, mask = padded_batch(np.random.default_rng(1), 50, 6, 2)
    res = simulate(path, ids, mask)
    assert np.array_equal(res.outputs["logits"], execute(plan, ids, mask).outputs["logits"])
    want = execute(plan, ids, mask)
    assert res.counts == want.counts and res.max_abs == want.max_abs


@pytest.mark.parametrize("kind, variant", [("DotAttention", dict(attention="dot")),
                                           ("InhibitorAttention", dict(attention="inhibitor", center=True))])
def test_counts_match_the_golden_encoder(kind, variant):
    """The executor on a synth encoder of the golden's shapes (batch 2, 6 tokens, hidden 8, 2 heads,
    ffn 16) counts the same actions as tests/golden/encoder_*.json for the nodes both graphs share.
    Widths differ (synth declares its own), so actions are compared summed over widths; LayerNorm (its
    compare and shift counts follow those widths) and the second residual (the golden's aligns
    neither operand, synth's shifts one) are left out."""
    golden = json.loads((Path(__file__).parent / "golden" / f"encoder_{kind}.json").read_text())["per_node"]
    cfg = SynthConfig(vocab=20, max_position=16, hidden=8, heads=2, ffn=16, layers=1, **variant)
    ids = np.random.default_rng(0).integers(0, 20, (2, 6))
    counts = execute(load_plan(to_onnx(synth_program(cfg))), ids, np.ones_like(ids)).counts
    same = {"emb": "embed", "l0.q": "l0/q", "l0.k": "l0/k", "l0.v": "l0/v", "l0.ctxh": "l0/attn", "l0.o": "l0/o",
            "l0.res1": "l0/res1", "l0.ffn1": "l0/ffn1", "l0.ffn2": "l0/ffn2"}
    for ours, theirs in same.items():
        assert totals(counts[ours]) == totals(golden[theirs]), ours


def narrowed(onnx_model, tensor, bits):
    m = onnx.ModelProto()
    m.CopyFrom(onnx_model)
    for p in m.metadata_props:
        if p.key == "hwsim.tensor_bits":
            table = json.loads(p.value)
            table[tensor] = bits
            p.value = json.dumps(table)
    return m


def test_overflow_modes():
    prog = synth_program(SynthConfig(layers=1, seed=1))
    base = to_onnx(prog)
    ids, mask = padded_batch(np.random.default_rng(2), 50, 8, 2)
    emb = execute(load_plan(base), ids, mask, count=False, track_widths=True).max_abs["emb"]
    plan = load_plan(narrowed(base, "emb", 6))
    assert emb > 31
    with pytest.raises(SimError, match=r"node 'emb': tensor 'emb' holds -?\d+, outside its declared 6-bit signed"):
        execute(plan, ids, mask)
    seen = {}
    for mode in ("saturate", "wrap"):
        env_plan = load_plan(narrowed(base, "emb", 6))
        env_plan.nodes = env_plan.nodes[:1]
        env_plan.outputs = ("emb",)
        seen[mode] = execute(env_plan, ids, mask, overflow=mode, count=False).outputs["emb"].astype(np.int64)
    full = load_plan(base)
    full.nodes, full.outputs = full.nodes[:1], ("emb",)
    exact = execute(full, ids, mask, count=False).outputs["emb"].astype(np.int64)
    assert np.array_equal(seen["saturate"], np.clip(exact, -32, 31))
    assert np.array_equal(seen["wrap"], ((exact + 32) % 64) - 32)
    with pytest.raises(SimError, match="unknown overflow mode"):
        execute(full, ids, mask, overflow="clip")


def test_bad_inputs():
    prog = synth_program(SynthConfig(layers=1, vocab=50, max_position=16))
    plan = load_plan(to_onnx(prog))
    with pytest.raises(SimError, match=r"node 'emb' \(Embed\): token id 50 outside the vocabulary \[0, 50\)"):
        execute(plan, np.array([[1, 50]]))
    with pytest.raises(SimError, match="sequence length 17 exceeds the 16 position embeddings"):
        execute(plan, np.zeros((1, 17), dtype=np.int64))
    with pytest.raises(SimError, match="must be integer arrays of one shape"):
        execute(plan, np.zeros((1, 4), dtype=np.int64), np.ones((1, 5), dtype=np.int64))
    assert issubclass(SimError, UserError)


def test_bad_models(tmp_path):
    base = to_onnx(synth_program(SynthConfig(layers=1)))
    m = onnx.ModelProto()
    m.CopyFrom(base)
    w = m.graph.initializer[0]
    w.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(w).astype(np.float32), w.name))
    with pytest.raises(SimError, match=f"initializer '{w.name}' is FLOAT: hwsim runs integer-only"):
        load_plan(m)
    m.CopyFrom(base)
    m.graph.node[1].op_type = "Softmax"
    m.graph.node[1].domain = ""
    with pytest.raises(SimError, match=f"unsupported op Softmax in node '{m.graph.node[1].name}'.*add a kernel"):
        load_plan(m)
    m.CopyFrom(base)
    del m.metadata_props[:]
    with pytest.raises(SimError, match="no hwsim.tensor_bits metadata"):
        load_plan(m)
    with pytest.raises(SimError, match="not found"):
        load_plan(tmp_path / "missing.onnx")


def test_shape_mismatch_names_node():
    prog = synth_program(SynthConfig(layers=1))
    m = to_onnx(prog)
    for t in m.graph.initializer:  # a LayerNorm gamma one element short
        if t.name.endswith(".gamma"):
            arr = numpy_helper.to_array(t)[:-1]
            t.CopyFrom(numpy_helper.from_array(arr, t.name))
            node = t.name[: -len(".gamma")]
            break
    plan = load_plan(m)
    with pytest.raises(SimError, match=rf"node '{node}' \(LayerNorm\): .*last dimensions differ \(inputs: "):
        execute(plan, np.array([[1, 2, 3]]))


def test_external_data_must_stay_in_folder(tmp_path):
    m = to_onnx(synth_program(SynthConfig(layers=1)))
    path = tmp_path / "sub" / "m.onnx"
    path.parent.mkdir()
    onnx.save(m, path, save_as_external_data=True, all_tensors_to_one_file=True, location="w.bin", size_threshold=0)
    assert load_plan(path).nodes
    ext = onnx.load(str(path), load_external_data=False)
    for t in ext.graph.initializer:
        for e in t.external_data:
            if e.key == "location":
                e.value = "../../outside.bin"
    onnx.save(ext, path)
    with pytest.raises(SimError, match="does not resolve to a file inside"):
        load_plan(path)


def _one_linear(weight: int):
    """logits = x @ w with w [4, 2] all `weight`, x = input_ids (an int32 accumulator at the edge)."""
    from quant.ir.program import IntProgram, Node, TensorInfo
    params = {"w": np.full((4, 2), weight, dtype=np.int32), "b": np.zeros(2, dtype=np.int32)}
    tensors = {"input_ids": TensorInfo(64), "attention_mask": TensorInfo(64), "w": TensorInfo(32),
               "b": TensorInfo(32), "logits": TensorInfo(32)}
    node = Node("Linear", "fc", ("input_ids", "w", "b"), ("logits",), {"shift": 0, "bits": 32, "relu": 0})
    return IntProgram(nodes=(node,), params=params, tensors=tensors)


def test_accumulator_at_minus_2_31_accepted_like_intref():
    """-2**31 lies in the signed 32-bit range: hwsim accepts it exactly where quant.intops.reference does."""
    prog = _one_linear(-(1 << 30))
    plan = load_plan(to_onnx(prog))
    ids = np.array([[1, 1, 0, 0]])  # acc = -2**31
    want = run_program(prog, torch.from_numpy(ids))["logits"].numpy()
    res = execute(plan, ids)
    assert np.array_equal(res.outputs["logits"], want) and int(want.min()) == -(1 << 31)
    assert res.max_abs["fc/acc"] == (1 << 31) - 1  # needs bit_length + 1 = 32 signed bits
    assert res.max_abs["logits"] == (1 << 31) - 1
    over = np.array([[1, 1, 1, 0]])  # acc = -3 * 2**30: both reject
    with pytest.raises(OverflowError):
        run_program(prog, torch.from_numpy(over))
    with pytest.raises(SimError, match="fc/acc"):
        execute(plan, over)
    plus = _one_linear(1 << 30)  # acc = +2**31: both reject
    with pytest.raises(OverflowError):
        run_program(plus, torch.from_numpy(ids))
    with pytest.raises(SimError, match="fc/acc"):
        execute(load_plan(to_onnx(plus)), ids)


def _three_way(prog, ids, mask):
    """logits of quant.intops.reference, onnxruntime and hwsim on one batch (asserted ==), and hwsim's max_abs."""
    onnx_model = to_onnx(prog)
    want = run_program(prog, torch.from_numpy(ids), torch.from_numpy(mask))["logits"].numpy()
    got = execute(load_plan(onnx_model), ids, mask, count=False)
    sess = ort.InferenceSession(onnx_model.SerializeToString())
    assert np.array_equal(got.outputs["logits"], want)
    assert np.array_equal(sess.run(None, {"input_ids": ids, "attention_mask": mask})[0], want)
    return got.max_abs


def _with_acc_bits(prog, acc_bits):
    from dataclasses import replace
    from quant.ir.program import Node
    nodes = tuple(Node(n.op, n.name, n.inputs, n.outputs, {**n.attrs, "acc_bits": acc_bits}) if n.op == "Linear" else n
                  for n in prog.nodes)
    return replace(prog, nodes=nodes)


@pytest.mark.parametrize("attention", ["dot", "inhibitor", "symmetric"])
def test_w16a16_synth_uses_64_bit_accumulators(attention):
    """W16A16: Linear accumulators exceed 32 bits; the lowering declares acc_bits=64 and all three
    executors agree. Declaring 32 instead is rejected by intref and hwsim alike."""
    prog = synth_program(SynthConfig(attention=attention, bits=16, seed=3, hidden=64, heads=4, ffn=128))
    assert {n.attrs["acc_bits"] for n in prog.nodes if n.op == "Linear"} == {64}
    ids, mask = padded_batch(np.random.default_rng(0), 50, 12, 3)
    max_abs = _three_way(prog, ids, mask)
    assert max(v for k, v in max_abs.items() if k.endswith("/acc")) > (1 << 31) - 1
    narrow = _with_acc_bits(prog, 32)
    with pytest.raises(OverflowError, match="acc"):
        run_program(narrow, torch.from_numpy(ids), torch.from_numpy(mask))
    with pytest.raises(SimError, match="32-bit accumulator"):
        execute(load_plan(to_onnx(narrow)), ids, mask, count=False)


def test_w16a16_random_quant_model_runs_in_all_three():
    from models.config import EncoderConfig
    from quant.qat.lower import lower
    from quant.qat.model import random_quant_model
    cfg = EncoderConfig(vocab_size=50, hidden=24, layers=1, heads=3, ffn=32, max_position=16)
    prog = lower(random_quant_model(cfg, "inhibitor", bits=16, seed=3))
    assert {n.attrs["acc_bits"] for n in prog.nodes if n.op == "Linear"} == {64}
    _three_way(prog, *padded_batch(np.random.default_rng(4), 50, 9, 3))


@pytest.mark.parametrize("bits", [4, 8])
def test_narrow_programs_keep_32_bit_accumulators(bits):
    prog = synth_program(SynthConfig(attention="inhibitor", bits=bits, seed=3, hidden=64, heads=4, ffn=128))
    assert {n.attrs["acc_bits"] for n in prog.nodes if n.op == "Linear"} == {32}
    _three_way(prog, *padded_batch(np.random.default_rng(0), 50, 12, 3))

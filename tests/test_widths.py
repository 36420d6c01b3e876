"""Width settings (quant.qat.widths) and the width analysis (quant.ir.widths): every named setting
exports and simulates bit-exactly for every variant; accumulators are proven before they run, W16A16
included; widths the hardware cannot hold are refused."""
from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
import torch

from export.onnx_lower import to_onnx
from hwsim.sim.executor import execute
from hwsim.sim.graph import load_plan
from models.config import EncoderConfig
from models.errors import UserError
from quant import intops
from quant.intops.reference import run_program
from quant.ir import widths
from quant.ir.program import IntProgram, Node, TensorInfo
from quant.qat.config import QuantConfig
from quant.qat.lower import lower
from quant.qat.model import random_quant_model
from quant.qat.widths import WIDTHS, WidthSetting, uniform, width_setting
from quant.train.config import TrainConfig

ATTENTION_NODES = {"dot": ("q", "k", "v", "ctxh"), "inhibitor": ("q", "k", "v", "ctxh"),
                   "symmetric": ("qk", "q", "v", "ctxh")}
TINY = EncoderConfig(vocab_size=50, hidden=24, layers=1, heads=3, ffn=32, max_position=16)


def test_table_names_the_issues_settings():
    assert {"w8a8", "w6a6", "w4a8", "w4a4", "w8a8-att4"} <= set(WIDTHS)
    assert WIDTHS["w8a8-att4"].quant_config() == QuantConfig(attn_bits=4)  # probabilities follow attention
    assert WIDTHS["w4a8"].quant_config() == QuantConfig(weight_bits=4)
    for bits in (4, 8, 16):  # --bits N and --widths wNaN are one config
        assert uniform(bits).quant_config() == QuantConfig(weight_bits=bits, act_bits=bits)
    assert TrainConfig(out="r", widths="w4a4").width_setting() is WIDTHS["w4a4"]
    assert TrainConfig(out="r", bits=6).width_setting() == uniform(6)


@pytest.mark.parametrize("bad", [dict(weight_bits=3), dict(act_bits=2), dict(attn_bits=3), dict(prob_bits=17)])
def test_widths_below_the_floor_are_refused(bad):
    with pytest.raises(UserError, match="not a width the hardware holds"):
        QuantConfig(**bad)


def test_unknown_or_doubled_settings_are_refused():
    with pytest.raises(UserError, match="unknown width setting 'w2a2'"):
        width_setting("w2a2")
    with pytest.raises(UserError, match="not a width the hardware holds"):
        WidthSetting("w2a2", 2, 2, 2)
    with pytest.raises(UserError, match="not both"):
        TrainConfig(out="r", widths="w4a4", bits=6)
    with pytest.raises(UserError, match="--bits 3 is not a width the hardware holds"):
        TrainConfig(out="r", bits=3)


def _three_way_and_qat(qmodel, prog, ids, mask):
    """reference == QAT evaluation (float64) == hwsim == onnxruntime, all `==` on the integer logits."""
    want = run_program(prog, torch.from_numpy(ids), torch.from_numpy(mask))["logits"].numpy()
    with torch.no_grad():
        qat = qmodel.double()(torch.from_numpy(ids), torch.from_numpy(mask)).numpy()
    assert np.array_equal(qat * 2.0 ** prog.meta["logits_exp"], want)
    onnx_model = to_onnx(prog)
    assert np.array_equal(execute(load_plan(onnx_model), ids, mask, count=False).outputs["logits"], want)
    sess = ort.InferenceSession(onnx_model.SerializeToString())
    assert np.array_equal(sess.run(None, {"input_ids": ids, "attention_mask": mask})[0], want)


@pytest.mark.parametrize("attention", ["dot", "inhibitor", "symmetric"])
@pytest.mark.parametrize("name", list(WIDTHS))
def test_every_setting_is_exact_in_every_executor(name, attention):
    setting = WIDTHS[name]
    qmodel = random_quant_model(TINY, attention, seed=3, qcfg=setting.quant_config())
    prog = lower(qmodel)
    for node in ATTENTION_NODES[attention]:  # attention's tensors at its own width, the rest at the activations'
        assert prog.tensors[f"l0.{node}"].bits == setting.attn_bits, node
    assert prog.tensors["l0.ffn1"].bits == prog.tensors["l0.ln1"].bits == setting.act_bits
    assert int(np.abs(prog.params["l0.ffn1.w"]).max()) <= 2 ** (setting.weight_bits - 1)
    if attention != "inhibitor":
        (dot,) = (n for n in prog.nodes if n.op == "DotAttention")
        assert dot.attrs["prob_bits"] == setting.probabilities
    rng = np.random.default_rng(1)
    ids = rng.integers(1, 50, (3, 9))
    mask = np.ones_like(ids)
    mask[1, 4:], mask[2, 1:] = 0, 0  # padding, a single valid token
    _three_way_and_qat(qmodel, prog, ids, mask)


def _spread_channels(model) -> None:
    """Output channels of every Linear scaled by 2**-(0..7), one channel 2**-24 (below the floor of the
    per-channel scales, `FlooredAbsMax`): exponents spread over the whole offset range."""
    for name, p in model.named_parameters():
        if name.endswith(".weight") and p.dim() == 2 and "embeddings" not in name:
            steps = torch.arange(p.shape[0]) % 8
            p.mul_(2.0 ** -steps.double().to(p.dtype)[:, None])
            p[1].mul_(2.0 ** -24)


@pytest.mark.parametrize("attention", ["dot", "inhibitor", "symmetric"])
def test_per_channel_weights_are_exact_in_every_executor(attention):
    """w4a4-pc on a model whose channels span 2**-31..1: every Linear but the classifier has its shift
    offsets, the floored channel at the largest (15); reference == QAT == hwsim == onnxruntime, and
    the exported file lifts back to the same program."""
    from export.onnx_lift import from_onnx
    from models.encoder import SequenceClassifier
    from quant.qat.model import calibrate, quantize_model
    torch.manual_seed(0)
    model = SequenceClassifier(TINY.replace(attention=attention, activation="relu")).eval()
    with torch.no_grad():
        _spread_channels(model)
    ids = torch.randint(1, 50, (3, 12), generator=torch.Generator().manual_seed(1))
    qmodel = calibrate(quantize_model(model, WIDTHS["w4a4-pc"].quant_config()), [(ids, torch.ones_like(ids))])
    prog = lower(qmodel.eval())
    linears = {n.name: n for n in prog.nodes if n.op == "Linear"}
    assert [name for name, n in linears.items() if len(n.inputs) == 3] == ["logits"]
    for name, node in linears.items():
        if name != "logits":
            offsets = prog.params[node.inputs[3]]
            assert prog.tensors[node.inputs[3]] == TensorInfo(4, False, None)
            assert offsets.min() == 0 and offsets.max() == 15, name
    mask = np.ones((3, 12), np.int64)
    mask[1, 5:], mask[2, 1:] = 0, 0
    _three_way_and_qat(qmodel, prog, ids.numpy(), mask)
    proven = widths.prove(prog)  # the accumulator bounds, from the per-channel integer weights
    peaks = execute(load_plan(to_onnx(prog)), ids.numpy(), mask, count=False).max_abs
    assert all(widths.bits_for(peaks[k]) <= bits for k, bits in proven.items() if k.endswith("/acc"))
    lifted = from_onnx(to_onnx(prog))
    assert lifted.nodes == prog.nodes
    assert all(np.array_equal(lifted.params[k], v) for k, v in prog.params.items())


@pytest.mark.parametrize("bits", [4, 8])
def test_per_channel_quantizer_is_the_closed_form(bits):
    """exp_j = -ceil(log2(max(m_j, M 2**-15) / 2**(bits-1))) (m_j a row's max|w|, M the layer's), integers
    clamp(floor(w 2**exp_j + 1/2), +-(2**(bits-1) - 1)); a weight already on its row's grid comes back."""
    from quant.qat.modules import ActQuant, QLinear
    from quant.qat.quantizers import scale_exps
    qcfg = QuantConfig(weight_bits=bits, per_channel=True)
    assert not QLinear(6, 5, qcfg, act=None).per_channel  # the classifier keeps one scale
    lin = QLinear(6, 5, qcfg, ActQuant(qcfg))
    w = torch.randn(5, 6, generator=torch.Generator().manual_seed(bits), dtype=torch.float64)
    w[1] *= 2.0 ** -9
    w[2] *= 2.0 ** -30  # below the floor
    w[3] = torch.tensor([3, -2, 1, 0, 0, 0]) * 2.0 ** -5  # on 2**-5, coarser than its row's grid (2**-6 at 4 bits)
    with torch.no_grad():
        lin.weight.copy_(w.float())
    w = lin.weight.detach().double()
    peak = w.abs().amax(1).clamp(min=float(w.abs().max()) * 2.0 ** -15)
    exps = -torch.ceil(torch.log2(peak / 2 ** (bits - 1))).long()
    top = (1 << (bits - 1)) - 1
    ints = torch.clamp(torch.floor(w * 2.0 ** exps[:, None] + 0.5), -top, top)
    qw = lin.quant_weight()
    assert scale_exps(qw.scale).tolist() == exps.tolist() and int(exps.max() - exps.min()) == 15
    assert torch.equal(qw.int().double(), ints)
    assert torch.equal(qw.value[3].double(), w[3])


def test_per_tensor_is_the_default_and_a_bad_flag_is_refused():
    """Per-channel scales are opt-in: the other settings' Linears keep three inputs and no offsets."""
    assert [n for n, s in WIDTHS.items() if s.per_channel] == ["w4a8-pc", "w4a4-pc"]
    assert WIDTHS["w4a4-pc"].quant_config() == QuantConfig(weight_bits=4, act_bits=4, per_channel=True)
    prog = lower(random_quant_model(TINY, "dot", seed=0, qcfg=WIDTHS["w4a4"].quant_config()))
    assert all(len(n.inputs) == 3 for n in prog.nodes if n.op == "Linear")
    assert not [k for k in prog.params if k.endswith(".s")]
    with pytest.raises(UserError, match="per_channel='yes' is not a flag"):
        QuantConfig(per_channel="yes")
    with pytest.raises(UserError, match="per_channel=1 is not a flag"):
        WidthSetting("w4a4-x", 4, 4, 4, per_channel=1)


@pytest.mark.parametrize("name", ["w4a4", "w8a8-att4", "w16a16", "w4a4-pc"])
@pytest.mark.parametrize("attention", ["dot", "inhibitor"])
def test_training_values_equal_eval_values_at_the_settings(name, attention):
    """The straight-through forward of QAT (quant.qat.stvalues) gives the eval forward's values."""
    qmodel = random_quant_model(TINY.replace(dropout=0.0, attention_dropout=0.0), attention, seed=5,
                                qcfg=WIDTHS[name].quant_config()).double()
    ids = torch.randint(1, 50, (3, 10), generator=torch.Generator().manual_seed(2))
    mask = torch.ones_like(ids)
    mask[1, 6:] = 0
    trained = qmodel.train()(ids, mask).detach()
    with torch.no_grad():
        assert torch.equal(trained, qmodel.eval()(ids, mask))


def test_minilm_w16a16_dot_attention_is_proven_and_exact():
    """The known limit of before: a MiniLM-size W16A16 dot-product model overflowed its softmax. Its
    scores now take a 64-bit accumulator and a score shift; every accumulator is proven to fit; the
    reference, QAT, hwsim and onnxruntime agree."""
    qmodel = random_quant_model("minilm", "dot", 16, seed=0)
    prog = lower(qmodel)
    dots = [n for n in prog.nodes if n.op == "DotAttention"]
    assert {n.attrs["acc_bits"] for n in dots} == {64} and min(n.attrs["score_shift"] for n in dots) > 0
    widest = widths.widest(widths.prove(prog))
    assert widest["shifted"] <= 32 and max(widest.values()) <= 64 and widest["scores"] > 32
    rng = np.random.default_rng(1)
    ids = rng.integers(1, qmodel.cfg.vocab_size, (2, 48))
    mask = np.ones_like(ids)
    mask[1, 20:] = 0
    _three_way_and_qat(qmodel, prog, ids, mask)


def test_eight_bit_programs_keep_their_attributes():
    """Up to 12-bit scores no shift is needed: the programs of before, with the defaults written out."""
    prog = lower(random_quant_model(TINY, "dot", 8, seed=0))
    (dot,) = (n for n in prog.nodes if n.op == "DotAttention")
    assert (dot.attrs["score_shift"], dot.attrs["acc_bits"]) == (0, 32)


def test_proofs_hold_the_measured_peaks():
    """Every accumulator peak hwsim measures lies within the width the analysis proved for it."""
    prog = lower(random_quant_model(TINY, "symmetric", 16, seed=1))
    proven = widths.check(prog)
    ids = np.random.default_rng(0).integers(1, 50, (2, 16))
    peaks = execute(load_plan(to_onnx(prog)), ids, np.ones_like(ids), count=False).max_abs
    measured = {k: v for k, v in peaks.items() if k in proven}
    assert {k.rsplit("/", 1)[1] for k in measured} >= {"acc", "scores", "pv"}
    assert all(widths.bits_for(v) <= proven[k] for k, v in measured.items())


def _one_dot(**attrs) -> IntProgram:
    """An Embed-free program holding one DotAttention node (4 keys, d = 4)."""
    params = {"pos": np.zeros((4, 4), np.int8)}
    tensors = {t: TensorInfo(16) for t in ("q", "k", "v", "y")}
    tensors.update(attention_mask=TensorInfo(64), input_ids=TensorInfo(64), pos=TensorInfo(8))
    node = Node("DotAttention", "l0.ctxh", ("q", "k", "v", "attention_mask"), ("y",),
                {"n_clip": 30, "prob_bits": 16, "out_shift": 16, "bits": 16, **attrs})
    embed = Node("Embed", "emb", ("input_ids", "pos", "pos"), ("e",), {})
    tensors["e"] = TensorInfo(32)
    return IntProgram(nodes=(embed, node), params=params, tensors=tensors, meta={"hidden": 4, "heads": 1})


def test_analysis_refuses_an_accumulator_wider_than_declared_or_than_64_bits():
    consts = intops.softmax_constants(2.0 ** -20)
    with pytest.raises(widths.WidthError, match=r"node 'l0.ctxh' \(DotAttention\): accumulator 'scores' needs 34 bits, "
                                                r"more than its 32; declare a wider accumulator"):
        widths.check(_one_dot(**consts))
    with pytest.raises(widths.WidthError, match="accumulator 'shifted' needs 33 bits, more than its 32; raise score_shift"):
        widths.check(_one_dot(**consts, acc_bits=64, score_shift=1))
    huge = {"q_ln2": 1, "b_int": 2 ** 31, "c_int": 2 ** 62, "acc_bits": 64, "score_shift": 3}
    with pytest.raises(widths.WidthError, match="accumulator 'exp' needs 65 bits, more than its 64; no accumulator "
                                                "is wider than 64 bits"):
        widths.check(_one_dot(**huge))
    with pytest.raises(widths.WidthError, match="no score shift keeps the integer softmax"):
        intops.dot_attention_attrs(2.0 ** -40, 4, 2 ** 62, 16, 16, 16, 16, 30)


def test_export_cli_takes_a_named_setting(tmp_path):
    """`hwsim export --init random --widths NAME`: the file declares the setting's widths."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    import onnx
    arch = tmp_path / "tiny.json"
    arch.write_text(json.dumps(TINY.to_dict()), encoding="utf-8")
    out = tmp_path / "m.onnx"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1]), "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "-m", "hwsim.app.cli", "export", "--init", "random", "--arch", str(arch),
                           "--attention", "symmetric", "--widths", "w8a8-att4", "--out", str(out)],
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    meta = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    bits = json.loads(meta["hwsim.tensor_bits"])
    assert (bits["l0.qk"], bits["l0.q"], bits["l0.v"], bits["l0.ctxh"]) == (4, 4, 4, 4)
    assert (bits["l0.o"], bits["l0.ffn1"], bits["l0.qk.w"]) == (8, 8, 8)


@pytest.mark.parametrize("attention", ["dot", "symmetric"])
def test_coarse_four_bit_scores_are_shifted_left(attention):
    """4-bit q and k of a wide range give scores coarser than ln2 per step, which had no integer
    softmax (lowering raised): they are shifted left (score_shift < 0) and stay exact everywhere."""
    from models.encoder import SequenceClassifier
    from quant.qat.model import calibrate, quantize_model
    torch.manual_seed(0)
    model = SequenceClassifier(TINY.replace(attention=attention, activation="relu")).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if any(f"{lin}.weight" in name for lin in ("q_lin", "k_lin")):
                p.mul_(40.0)  # queries and keys spanning about +-30: exponents below 0 at 4 bits
    ids = torch.randint(1, 50, (3, 12), generator=torch.Generator().manual_seed(1))
    qmodel = calibrate(quantize_model(model, QuantConfig(weight_bits=4, act_bits=4)), [(ids, torch.ones_like(ids))])
    prog = lower(qmodel.eval())
    (dot,) = (n for n in prog.nodes if n.op == "DotAttention")
    assert dot.attrs["score_shift"] < 0 and dot.attrs["q_ln2"] >= intops.attention.COARSE_Q_LN2
    mask = np.ones((3, 12), np.int64)
    mask[1, 5:] = 0
    _three_way_and_qat(qmodel, prog, ids.numpy(), mask)

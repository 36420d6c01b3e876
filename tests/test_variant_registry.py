"""A fourth attention variant is one registry entry: this file alone defines and registers `shared`
(dot-product attention whose queries are its keys: one projection `qk_lin`, like symmetric without the
channel scale c, so it lowers to existing integer ops) and runs it through QAT, export, hwsim
(bit-exact against the integer reference, the QAT evaluation and onnxruntime), the report and the cost
table, then removes it from the registry."""
from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from models import variants
from models.attention import Attention, merge_heads, softmax_mix, split_heads
from models.config import EncoderConfig
from models.encoder import SequenceClassifier
from models.variants import NoOptions, Variant
from quant.intops import synth
from quant.intops.reference import run_program
from quant.qat.attention import QAttention, QDotCore
from quant.qat.config import QuantConfig
from quant.qat.lower import lower
from quant.qat.model import calibrate, quantize_model, random_quant_model
from quant.qat.modules import ActQuant, QLinear
from quant.train.config import TrainConfig
from quant.train.state import make_optimizer

TOY = "shared"


class SharedAttention(Attention):
    """softmax(U U^T / sqrt(d)) V per head, U = qk_lin(x) (queries = keys)."""

    dot_renames = {"q_lin": "qk_lin", "k_lin": None}

    def __init__(self, cfg: EncoderConfig):
        super().__init__(cfg)
        self.qk_lin = nn.Linear(cfg.hidden, cfg.hidden)
        self.v_lin = nn.Linear(cfg.hidden, cfg.hidden)
        self.drop = nn.Dropout(cfg.attention_dropout)

    def context(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        u = split_heads(self.qk_lin(x), self.heads)  # (B, H, n, d)
        v = split_heads(self.v_lin(x), self.heads)
        scores = u @ u.transpose(-2, -1) / math.sqrt(self.head_dim)  # (B, H, n, n)
        return merge_heads(softmax_mix(scores, v, mask, self.drop))  # (B, n, D)


class QSharedAttention(QAttention):
    """u = qk_lin(x) is both the queries and the keys; integer dot attention."""

    def __init__(self, cfg: EncoderConfig, qcfg: QuantConfig):
        super().__init__(cfg, qcfg)
        self.qk_lin = QLinear(cfg.hidden, cfg.hidden, qcfg, ActQuant(qcfg))
        self.core = QDotCore(cfg.head_dim, qcfg)

    def qkv(self, x):
        u = self.qk_lin(x)
        return u, u, self.v_lin(x)

    def lower_qk(self, bld, p: str, x: str, bias_bits: int) -> tuple[str, str]:
        qk = bld.linear(p + "qk", x, self.qk_lin, bias_bits)
        return qk, qk

    @classmethod
    def quant_state(cls, attn, state, cfg):
        return dict(state)  # same names


def synth_shared_qk(bld, p: str, x: str) -> tuple[str, str]:
    qk = bld.linear(p + "qk", x, bld.cfg.hidden)
    return qk, qk


SHARED = Variant(TOY, NoOptions, float_module=SharedAttention, quantized_module=QSharedAttention,
                 synthesis=synth.Synthesis(synth_shared_qk, synth.dot_core), compared_with="dot", subject=True)

@pytest.fixture
def shared():
    variants.register(SHARED)
    try:
        yield EncoderConfig(vocab_size=40, hidden=16, layers=2, heads=2, ffn=24, max_position=16, activation="relu",
                            type_vocab_size=2, dropout=0.0, attention_dropout=0.0, attention=TOY)
    finally:
        variants.unregister(TOY)
    assert TOY not in variants.VARIANTS


def batch(seed: int, rows: int = 6, n: int = 11) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, 40, (rows, n), generator=gen)
    mask = torch.ones_like(ids)
    mask[1, 7:] = 0
    mask[3, 2:] = 0
    return ids, mask, torch.randint(0, 2, (rows,), generator=gen)


def qat(cfg: EncoderConfig, steps: int = 4):
    """A tiny random float model of `cfg` quantized, calibrated and trained `steps` AdamW steps on
    random labels (the training loop's optimizer); returned in eval mode."""
    torch.manual_seed(0)
    ids, mask, labels = batch(1)
    qmodel = calibrate(quantize_model(SequenceClassifier(cfg), QuantConfig()), [(ids, mask)])
    before = {k: v.clone() for k, v in qmodel.state_dict().items()}
    opt, sched = make_optimizer(TrainConfig(out="unused", attention=cfg.attention, lr=1e-2, warmup=0.0), qmodel, steps)
    qmodel.train()
    for _ in range(steps):
        loss = F.cross_entropy(qmodel(ids, mask), labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    after = qmodel.state_dict()
    assert not torch.equal(after["encoder.blocks.0.attn.qk_lin.weight"], before["encoder.blocks.0.attn.qk_lin.weight"])
    return qmodel.eval()


def test_the_fourth_variant_runs_through_qat_export_hwsim_report_and_cost_table(shared, tmp_path):
    from export.pipeline import export_quant_model
    from hwsim.cost.scenario import load_scenario
    from hwsim.cost.table import load_tables, markdown, ratios, scenario_costs
    from hwsim.cost.energy import load_table
    from hwsim.sim.graph import load_plan
    from hwsim.app.parallel import RunSpec, simulate_local
    from hwsim.cost.report import format_tables, load_run_report, summarise

    assert TOY in variants.names() and variants.subjects() == ("inhibitor", TOY)
    qmodel = qat(shared)
    prog = lower(qmodel)
    assert [n.name for n in prog.nodes[:8]] == ["emb", "emb_ln", "l0.qk", "l0.v", "l0.qh", "l0.kh", "l0.vh", "l0.ctxh"]
    # the synthetic program of the variant has the lowered one's layout
    ref = synth.synth_program(synth.SynthConfig(vocab=40, max_position=16, hidden=16, heads=2, ffn=24, layers=2,
                                                attention=TOY))
    assert [(n.op, n.name, n.inputs, tuple(n.attrs)) for n in prog.nodes] == \
           [(n.op, n.name, n.inputs, tuple(n.attrs)) for n in ref.nodes]

    path = tmp_path / f"{TOY}.onnx"
    export_quant_model(qmodel, path)
    ids, mask, labels = batch(2)
    rows = [ids[i, :int(mask[i].sum())].numpy() for i in range(len(ids))]
    report = simulate_local(load_plan(path), RunSpec(model=str(path), check_ort=-1), rows, labels.tolist(),
                            progress=False)
    assert report["meta"]["attention"] == TOY and report["ort_checked"] == len(rows)
    for row, hw in zip(rows, report["logits"]):
        t_ids = torch.from_numpy(row)[None, :]
        t_mask = torch.ones_like(t_ids)
        ints = run_program(prog, t_ids, t_mask)["logits"]
        assert hw == ints[0].tolist()  # hwsim == the integer reference (and onnxruntime: check_ort)
        with torch.no_grad():
            fake = qmodel(t_ids, t_mask)
        assert torch.equal(ints.double() * 2.0 ** -prog.meta["logits_exp"], fake.double())  # == QAT evaluation

    (tmp_path / f"{TOY}.json").write_text(json.dumps(report))
    table = load_table()
    text = format_tables([summarise(load_run_report(tmp_path / f"{TOY}.json"), table)], table)
    assert TOY in text and "DotAttention" in text

    dot = tmp_path / "dot.onnx"
    export_quant_model(random_quant_model(shared.replace(attention="dot"), "dot"), dot)
    scenarios = [load_scenario("today"), load_scenario("edge")]
    results = scenario_costs({TOY: str(path), "dot": str(dot)}, scenarios, (8,), load_tables(), jobs=1)
    assert {(r.scenario, r.variant) for r in results} == {(s.name, v) for s in scenarios for v in (TOY, "dot")}
    assert [(s, n) for s, n, _, _ in ratios(results)[(TOY, "dot")]] == [("today", 8), ("edge", 8)]
    assert f"| {TOY}/dot attention | {TOY}/dot whole model |" in markdown(results, scenarios)


def test_the_registry_is_as_it_was():
    assert variants.names() == ("dot", "inhibitor", "symmetric") and variants.subjects() == ("inhibitor",)


def test_options_have_one_set_of_defaults_everywhere():
    """The float config, the training config and `--init random` use the inhibitor's one options
    dataclass; a checkpoint written with the flat keys of before reads the same options."""
    opts = variants.InhibitorOptions()
    assert EncoderConfig(attention="inhibitor").attention_options == opts == \
        TrainConfig(out="o", attention="inhibitor").attention_options()
    assert random_quant_model(EncoderConfig(vocab_size=40, hidden=16, layers=1, heads=2, ffn=24, max_position=16),
                              "inhibitor").cfg.attention_options == opts
    legacy = {**EncoderConfig().to_dict(), "attention": "inhibitor", "inhibitor_center": False,
              "inhibitor_signed": True, "alpha_init": 0.25, "gamma_init": 1.0, "beta_init": 2.0}
    del legacy["attention_options"]
    cfg = EncoderConfig.from_dict(legacy)
    assert cfg.attention_options == variants.InhibitorOptions(center=False, signed=True, alpha_init=0.25, beta_init=2.0)
    assert EncoderConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    assert EncoderConfig.from_dict({**legacy, "attention": "dot"}).attention_options == NoOptions()


def test_scalars_are_declared_by_the_modules():
    from quant.train.distill import scalar_ids
    model = SequenceClassifier(EncoderConfig(vocab_size=40, hidden=16, layers=2, heads=2, ffn=24, max_position=16,
                                             attention="inhibitor"))
    names = {n for n, p in model.named_parameters() if id(p) in scalar_ids(model)}
    assert names == {f"encoder.blocks.{i}.attn.{s}" for i in range(2) for s in ("gamma", "beta", "alpha")}
    qmodel = quantize_model(model, QuantConfig())
    names = {n for n, p in qmodel.named_parameters() if id(p) in scalar_ids(qmodel)}
    assert names == {f"encoder.blocks.{i}.attn.core.{s}" for i in range(2)
                     for s in ("log2_gamma", "log2_beta", "alpha")}
    for v in ("dot", "symmetric"):
        assert scalar_ids(SequenceClassifier(EncoderConfig(attention=v, vocab_size=40, hidden=16, layers=1, heads=2,
                                                           ffn=24, max_position=16))) == set()

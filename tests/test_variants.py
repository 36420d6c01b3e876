"""The attention registries agree: float (models.attention), quantized (quant.qat.attention) and synthetic
programs (quant.intops.synth) name the same variants, and every quantized variant has every hook.

A new variant registered in one place only, or with a hook missing, fails here; the per-variant tests
below run over the registry, so they cover it without being edited."""
from __future__ import annotations

import dataclasses
import inspect

import pytest
import torch

from models.attention import ATTENTIONS
from models.config import EncoderConfig
from models.encoder import SequenceClassifier
from quant.intops import synth
from quant.intops.reference import run_program
from quant.qat.attention import Q_ATTENTIONS, QAttention, QCore, QDotCore, register
from quant.qat.config import QuantConfig
from quant.qat.lower import lower
from quant.qat.model import calibrate, quantize_model
from quant.train.loop import TrainConfig, student_from

CFG = EncoderConfig(vocab_size=40, hidden=16, layers=1, heads=2, ffn=24, max_position=16, activation="relu",
                    type_vocab_size=2, dropout=0.0, attention_dropout=0.0)


def test_float_quantized_and_synthetic_registries_name_the_same_variants():
    assert set(ATTENTIONS) == set(Q_ATTENTIONS) == set(synth.VARIANTS)


@pytest.mark.parametrize("name", sorted(Q_ATTENTIONS))
def test_every_quantized_variant_provides_every_hook(name):
    cls = Q_ATTENTIONS[name]
    assert issubclass(cls, QAttention) and not inspect.isabstract(cls)
    assert {"qkv", "lower_qk", "quant_state"} <= QAttention.__abstractmethods__
    attn = cls(CFG.replace(attention=name), QuantConfig())
    assert isinstance(attn.core, QCore) and not inspect.isabstract(type(attn.core))


def test_register_rejects_duplicates_and_a_variant_without_a_hook():
    class NoStateMapping(QAttention):  # qkv and lowering, but no quant_state
        def __init__(self, cfg, qcfg):
            super().__init__(cfg, qcfg)
            self.core = QDotCore(cfg.head_dim, qcfg)

        def qkv(self, x):
            return self.v_lin(x), self.v_lin(x), self.v_lin(x)

        def lower_qk(self, bld, p, x, bias_bits):
            return x, x

    with pytest.raises(TypeError, match="lacks the hooks quant_state"):
        register("fourth")(NoStateMapping)
    with pytest.raises(ValueError, match="already registered"):
        register("dot")(Q_ATTENTIONS["dot"])
    assert "fourth" not in Q_ATTENTIONS


@pytest.mark.parametrize("name", sorted(ATTENTIONS))
def test_student_hooks_name_config_fields_and_keep_the_dot_weights(name):
    variant = ATTENTIONS[name]
    options = TrainConfig(out="unused", attention=name)
    overrides = variant.student_overrides(options)
    assert set(overrides) <= {f.name for f in dataclasses.fields(EncoderConfig)}
    assert isinstance(variant.calibrates_from_dot(options), bool)
    torch.manual_seed(0)
    dot = SequenceClassifier(CFG.replace(attention="dot"))
    student, cfg = student_from(dot, name, **overrides)
    assert cfg.attention == name and all(getattr(cfg, k) == v for k, v in overrides.items())
    own, theirs = student.state_dict(), dot.state_dict()
    for ours, value in variant.from_dot_state(theirs, heads=CFG.heads).items():
        if ours in own:
            assert torch.equal(own[ours], value), ours
    taken = {k for k in variant.from_dot_state(theirs, heads=CFG.heads) if k in own}
    assert {k for k in own if ".attn." not in k} <= taken  # everything outside attention is copied


@pytest.mark.parametrize("name", sorted(Q_ATTENTIONS))
def test_every_variant_quantizes_lowers_to_the_synth_layout_and_runs_exactly(name):
    torch.manual_seed(0)
    model = SequenceClassifier(CFG.replace(attention=name)).eval().double()
    gen = torch.Generator().manual_seed(1)
    ids = torch.randint(1, CFG.vocab_size, (3, 9), generator=gen)
    mask = torch.ones_like(ids)
    mask[1, 5:] = 0
    qmodel = calibrate(quantize_model(model, QuantConfig()), [(ids, mask)]).eval()
    prog = lower(qmodel)
    ref = synth.synth_program(synth.SynthConfig(vocab=CFG.vocab_size, max_position=CFG.max_position, hidden=16,
                                                heads=2, ffn=24, layers=1, attention=name))
    assert [(n.op, n.name, n.inputs, tuple(n.attrs)) for n in prog.nodes] == \
           [(n.op, n.name, n.inputs, tuple(n.attrs)) for n in ref.nodes]
    with torch.no_grad():
        fake = qmodel(ids, mask)
    assert torch.equal(run_program(prog, ids, mask)["logits"].double() * 2.0 ** -prog.meta["logits_exp"], fake)

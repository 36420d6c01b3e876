"""The attention variants' registry (`models.variants`): every entry's facets resolve, each in the layer
that owns it, and every quantized variant has every hook.

A new variant with a facet missing or misplaced fails here; the per-variant tests below run over the
registry, so they cover it without being edited (tests/test_variant_registry.py adds a fourth one)."""
from __future__ import annotations

import dataclasses
import inspect

import pytest
import torch

from models import variants
from models.attention import Attention
from models.config import EncoderConfig
from models.encoder import SequenceClassifier
from quant.intops import synth
from quant.intops.reference import run_program
from quant.qat.attention import QAttention, QCore, QDotCore, quantized_class
from quant.qat.config import QuantConfig
from quant.qat.lower import lower
from quant.qat.model import calibrate, quantize_model
from quant.train.loop import TrainConfig, student_from

CFG = EncoderConfig(vocab_size=40, hidden=16, layers=1, heads=2, ffn=24, max_position=16, activation="relu",
                    type_vocab_size=2, dropout=0.0, attention_dropout=0.0)


@pytest.mark.parametrize("name", variants.names())
def test_every_facet_resolves_in_its_layer(name):
    v = variants.get(name)
    assert issubclass(v.facet("float_module"), Attention)
    assert issubclass(v.facet("quantized_module"), QAttention)
    assert isinstance(v.facet("synthesis"), synth.Synthesis)
    assert v.calibration is None or callable(v.facet("calibration"))
    for facet, layer in variants.FACET_LAYERS.items():
        value = getattr(v, facet)
        if isinstance(value, str):
            assert value.startswith(layer + "."), (facet, value)
    options = v.options()
    assert dataclasses.is_dataclass(options) and v.compared_with in (None, *variants.names())
    for f in dataclasses.fields(options):  # what `hwsim train` is generated from
        assert f.metadata.get("help") and f.metadata.get("flag", "").startswith("--"), f.name


def test_one_baseline_that_the_others_are_compared_with():
    assert variants.baseline() == "dot" and variants.subjects() == ("inhibitor",)


def test_a_facet_outside_its_layer_is_refused():
    wrong = dataclasses.replace(variants.get("dot"), quantized_module="models.attention:DotAttention")
    with pytest.raises(TypeError, match="must live in quant.qat"):
        wrong.facet("quantized_module")


@pytest.mark.parametrize("name", variants.names())
def test_every_quantized_variant_provides_every_hook(name):
    cls = quantized_class(name)
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

    variants.register(dataclasses.replace(variants.get("dot"), name="fourth", quantized_module=NoStateMapping))
    try:
        with pytest.raises(TypeError, match="lacks the hooks quant_state"):
            quantized_class("fourth")
    finally:
        variants.unregister("fourth")
    with pytest.raises(ValueError, match="already registered"):
        variants.register(variants.get("dot"))
    with pytest.raises(ValueError, match="not registered"):
        variants.register(dataclasses.replace(variants.get("dot"), name="fifth", compared_with="nope"))
    assert "fourth" not in variants.VARIANTS and "fifth" not in variants.VARIANTS


@pytest.mark.parametrize("name", variants.names())
def test_a_student_takes_its_options_from_the_training_config_and_keeps_the_dot_weights(name):
    variant = variants.get(name)
    options = TrainConfig(out="unused", attention=name).attention_options()
    assert isinstance(options, variant.options)
    torch.manual_seed(0)
    dot = SequenceClassifier(CFG.replace(attention="dot"))
    student, cfg = student_from(dot, name, attention_options=options)
    assert cfg.attention == name and cfg.attention_options == options
    own, theirs = student.state_dict(), dot.state_dict()
    float_module = variant.facet("float_module")
    for ours, value in float_module.from_dot_state(theirs, heads=CFG.heads).items():
        if ours in own:
            assert torch.equal(own[ours], value), ours
    taken = {k for k in float_module.from_dot_state(theirs, heads=CFG.heads) if k in own}
    assert {k for k in own if ".attn." not in k} <= taken  # everything outside attention is copied


@pytest.mark.parametrize("name", variants.names())
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

"""Exactness: the lowered IntProgram run by quant.intops.reference == the fake-quant model, bit for bit."""
from __future__ import annotations

import pytest
import torch

from models.config import EncoderConfig
from models.encoder import SequenceClassifier
from quant.qat.config import QuantConfig
from quant.intops.reference import run_program
from quant.qat.lower import lower
from quant.qat.model import calibrate, quantize_model, random_quant_model
from quant.intops.synth import SynthConfig, synth_program
from models.variants import InhibitorOptions


def tiny_qmodel(attention, wbits, abits, seed=0, dtype=torch.float64, **overrides):
    torch.manual_seed(seed)
    cfg = EncoderConfig(vocab_size=60, hidden=16, layers=2, heads=2, ffn=24, max_position=24, attention=attention,
                        activation="relu", type_vocab_size=2, **overrides)
    model = SequenceClassifier(cfg)
    with torch.no_grad():
        for p in model.parameters():  # spread the weights so that every path carries signal
            p.add_(torch.randn_like(p) * 0.3)
    model = model.eval().to(dtype)
    qmodel = quantize_model(model, QuantConfig(weight_bits=wbits, act_bits=abits))
    return calibrate(qmodel, [batch(seed + s, 3, 12) for s in range(2)]).eval()


def batch(seed, size, n):
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, 60, (size, n), generator=gen)
    mask = torch.ones_like(ids)
    mask[1, n // 2:] = 0  # padding
    if size > 2:
        mask[2, 1:] = 0  # a single valid token
    return ids, mask


def assert_exact(qmodel, prog, ids, mask):
    with torch.no_grad():
        fake = qmodel(ids, mask).double()
    ints = run_program(prog, ids, mask)["logits"]
    assert torch.equal(ints.double() * 2.0 ** -prog.meta["logits_exp"], fake)


def inh(**options) -> dict:
    """EncoderConfig fields of an inhibitor with `options`, uncentred and unsigned unless they say so."""
    return {"attention_options": InhibitorOptions(**{"center": False, "signed": False, **options})}


VARIANTS = [
    ("dot", {}), ("symmetric", {}),
    ("inhibitor", inh()), ("inhibitor", inh(center=True)), ("inhibitor", inh(signed=True)),
    ("inhibitor", inh(center=True, signed=True, alpha_init=0.0)),
]


@pytest.mark.parametrize("attention,overrides", VARIANTS)
@pytest.mark.parametrize("wbits,abits", [(4, 4), (8, 8), (8, 16), (12, 12)])
def test_lowered_program_equals_fake_quant(attention, overrides, wbits, abits):
    qmodel = tiny_qmodel(attention, wbits, abits, **overrides)
    prog = lower(qmodel)
    for n in (1, 5, 12, 24):
        assert_exact(qmodel, prog, *batch(100 + n, 4, n))


@pytest.mark.parametrize("attention", ["dot", "inhibitor", "symmetric"])
def test_float32_model_is_exact_at_8_bits(attention):
    qmodel = tiny_qmodel(attention, 8, 8, dtype=torch.float32, pooler="bert")
    prog = lower(qmodel)
    assert_exact(qmodel, prog, *batch(7, 4, 16))


def test_layout_matches_synth():
    """Same node names, ops, params and attribute names as quant.intops.synth (the shared layout)."""
    for attention in ("dot", "inhibitor", "symmetric"):
        ours = lower(tiny_qmodel(attention, 8, 8))
        ref = synth_program(SynthConfig(vocab=60, max_position=24, hidden=16, heads=2, ffn=24, layers=2,
                                        attention=attention))
        assert [(n.op, n.name, n.inputs, tuple(n.attrs)) for n in ours.nodes] == \
               [(n.op, n.name, n.inputs, tuple(n.attrs)) for n in ref.nodes]
        assert set(ours.params) == set(ref.params)
        assert {"vocab_size", "hidden", "heads", "layers", "ffn", "attention", "bits", "num_labels",
                "logits_exp", "tokenizer", "max_position"} <= set(ours.meta)


def test_inhibitor_q_k_share_a_format_and_powers_of_two():
    qmodel = tiny_qmodel("inhibitor", 8, 8)
    prog = lower(qmodel)
    assert prog.tensors["l0.q"].exp == prog.tensors["l0.k"].exp
    core = qmodel.encoder.blocks[0].attn.core
    node = next(n for n in prog.nodes if n.name == "l0.ctxh")
    g = int(torch.floor(core.log2_gamma + 0.5))
    assert node.attrs["z_shift"] == prog.tensors["l0.q"].exp - prog.tensors["l0.v"].exp - g


def test_random_quant_model_lowers_and_runs():
    cfg = EncoderConfig(vocab_size=100, hidden=24, layers=1, heads=3, ffn=32, max_position=16)
    for attention in ("dot", "inhibitor", "symmetric"):
        qmodel = random_quant_model(cfg, attention, bits=8, seed=3)
        prog = lower(qmodel)
        assert prog.meta["attention"] == attention and prog.meta["bits"] == 8
        ids, mask = batch(1, 3, 9)
        ids = ids % 100
        assert_exact(qmodel.double(), prog, ids, mask)


@pytest.mark.slow
@pytest.mark.parametrize("attention", ["dot", "inhibitor", "symmetric"])
def test_exact_on_rt_snippets_with_minilm_initialised_model(attention):
    """A small but real model (the MiniLM teacher's embeddings and first 2 layers), RT snippets."""
    from models.loading import load_pretrained, load_tokenizer
    from models.teacher import resolve_teacher
    from quant.data.tasks import load_split
    folder = resolve_teacher("minilm")
    full = load_pretrained(folder, attention, 2, dropout=0.0, attention_dropout=0.0)
    small = SequenceClassifier(full.cfg.replace(layers=2, activation="relu"))
    small.load_state_dict(full.state_dict(), strict=False)  # drops blocks 2..5
    tok = load_tokenizer(folder)
    texts = [t[0] for t in load_split("rt", "test", limit=24).texts]
    enc = tok(texts, padding=True, truncation=True, max_length=32, return_tensors="pt")
    ids, mask = enc["input_ids"], enc["attention_mask"]
    qmodel = quantize_model(small.eval().double(), QuantConfig())
    qmodel = calibrate(qmodel, [(ids[:8], mask[:8]), (ids[8:16], mask[8:16])]).eval()
    prog = lower(qmodel, tokenizer="minilm")
    assert_exact(qmodel, prog, ids[16:], mask[16:])
    assert_exact(qmodel, prog, ids[:4, :7], mask[:4, :7])


# ---------------------------------------------------------------- training-mode values (quant.qat.stvalues)

TRAIN_VARIANTS = [("dot", {}), ("symmetric", {}), ("inhibitor", inh()), ("inhibitor", inh(center=True)),
                  ("inhibitor", inh(signed=True))]


def train_eval_logits(qmodel, ids, mask):
    """(logits in training mode, the graph kept as in QAT; logits in eval mode)."""
    trained = qmodel.train()(ids, mask)
    assert trained.requires_grad  # the straight-through path, not the no_grad shortcut
    with torch.no_grad():
        evaluated = qmodel.eval()(ids, mask)
    return trained.detach(), evaluated


@pytest.mark.parametrize("attention,overrides", TRAIN_VARIANTS)
@pytest.mark.parametrize("wbits,abits", [(4, 4), (8, 8), (12, 12)])
def test_training_mode_values_equal_eval_mode(attention, overrides, wbits, abits):
    """With dropout off, the training forward (float accumulations, stvalues) == the eval forward
    (float64 accumulations, intops), bit for bit."""
    qmodel = tiny_qmodel(attention, wbits, abits, dropout=0.0, attention_dropout=0.0, **overrides)
    for n in (1, 5, 12, 24):
        trained, evaluated = train_eval_logits(qmodel, *batch(200 + n, 4, n))
        assert torch.equal(trained, evaluated)


@pytest.mark.parametrize("attention", ["dot", "inhibitor", "symmetric"])
def test_float32_training_mode_values_equal_eval_mode_at_8_bits(attention):
    """The dtype QAT runs in: float32 sums stay exact at W8A8 on these widths."""
    qmodel = tiny_qmodel(attention, 8, 8, dtype=torch.float32, dropout=0.0, attention_dropout=0.0)
    trained, evaluated = train_eval_logits(qmodel, *batch(9, 4, 16))
    assert torch.equal(trained, evaluated)

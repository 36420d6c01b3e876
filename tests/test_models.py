"""The float encoder: config validation, attention registry, inhibitor fast == reference, gradients."""
from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from models import variants
from models.attention import inhibit_fast, inhibit_reference, make_attention
from models.config import EncoderConfig
from models.encoder import SequenceClassifier
from models.errors import UserError
from models.variants import InhibitorOptions

TINY = dict(vocab_size=50, hidden=16, layers=2, heads=2, ffn=24, max_position=20, dropout=0.0,
            attention_dropout=0.0)


def tiny(**changes) -> EncoderConfig:
    return EncoderConfig(**{**TINY, **changes})


def centred(name: str) -> EncoderConfig:
    """`name`'s tiny config; the inhibitor centred, unsigned."""
    options = InhibitorOptions(center=True, signed=False) if name == "inhibitor" else None
    return tiny(attention=name, attention_options=options)


def batch(B=3, n=9, vocab=50, seed=0):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, n + 1, (B,), generator=g)
    lengths[0] = n
    mask = (torch.arange(n)[None, :] < lengths[:, None]).long()  # (B, n)
    return torch.randint(1, vocab, (B, n), generator=g) * mask, mask


# ---------------------------------------------------------------- config

def test_config_round_trip():
    cfg = centred("inhibitor").replace(type_vocab_size=2, pooler="bert", num_labels=1)
    assert EncoderConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg


@pytest.mark.parametrize("changes, message", [
    (dict(hidden=30, heads=4), "not divisible by heads 4"),
    (dict(attention="linear"), "unknown attention 'linear'.*dot, inhibitor, symmetric"),
    (dict(activation="swish"), "unknown activation 'swish'.*gelu, relu"),
    (dict(pooler="mean"), "unknown pooler 'mean'"),
    (dict(layers=0), "layers must be a positive integer"),
    (dict(dropout=1.5), "dropout must be in"),
    (dict(pad_token_id=99), "outside the vocabulary"),
])
def test_config_rejects(changes, message):
    with pytest.raises(UserError, match=message):
        tiny(**changes)


def test_config_unknown_field():
    with pytest.raises(UserError, match="unknown EncoderConfig field"):
        EncoderConfig.from_dict({**TINY, "n_layers": 3})


# ---------------------------------------------------------------- registry

def test_register_rejects_duplicates():
    with pytest.raises(ValueError, match="already registered"):
        variants.register(variants.VARIANTS["dot"])
    assert set(variants.VARIANTS) >= {"dot", "inhibitor", "symmetric"}


def test_make_attention_unknown_name():
    cfg = tiny()
    object.__setattr__(cfg, "attention", "nope")  # bypass validation to reach make_attention's own check
    with pytest.raises(UserError, match="unknown attention 'nope'.*dot, inhibitor, symmetric"):
        make_attention(cfg)


@pytest.mark.parametrize("name", ["dot", "inhibitor", "symmetric"])
def test_same_signature_and_padding_invariance(name):
    """(B, n, D) in and out; valid positions do not depend on what sits in padded positions."""
    torch.manual_seed(0)
    attn = make_attention(centred(name)).eval()
    x = torch.randn(2, 7, 16)
    mask = torch.tensor([[1] * 7, [1] * 4 + [0] * 3])
    y = attn(x, mask)
    assert y.shape == x.shape and attn.context(x, mask).shape == x.shape
    x2 = x.clone()
    x2[1, 4:] = torch.randn(3, 16) * 5
    assert torch.allclose(attn(x2, mask)[1, :4], y[1, :4], atol=1e-6)


# ---------------------------------------------------------------- inhibitor

@pytest.mark.parametrize("signed", [False, True])
@pytest.mark.parametrize("center", [False, True])
def test_inhibit_fast_matches_reference(signed, center):
    g = torch.Generator().manual_seed(int(signed) * 2 + int(center))
    for trial in range(8):
        B, H, n, d = (int(torch.randint(1, hi, (1,), generator=g)) for hi in (4, 4, 13, 17))
        q, k, v = torch.randn(3, B, H, n, d, generator=g).unbind(0)
        mask = (torch.rand(B, n, generator=g) > 0.3).long()
        mask[:, 0] = 1
        gamma, beta = 0.5 + torch.rand(2, generator=g)
        alpha = None if trial % 3 == 0 else float(torch.rand(1, generator=g))
        ref = inhibit_reference(q, k, v, mask, gamma, alpha, beta, center, signed)
        fast = inhibit_fast(q, k, v, mask, gamma, alpha, beta, center, signed)
        assert (ref - fast).abs().max() < 1e-5, (B, H, n, d, alpha)


def test_inhibit_reference_by_hand():
    """One query, two keys, d = 1: Z = |q - k| (gamma = sqrt(d) = 1), H = sum_j ReLU(v_j - Z_j)."""
    q, k, v = torch.tensor([0.0]), torch.tensor([0.5, 2.0]), torch.tensor([1.0, 3.0])
    shape = lambda t, n: t.view(1, 1, n, 1)  # noqa: E731  (B, H, n, d)
    mask = torch.ones(1, 2)
    out = inhibit_reference(shape(q, 1), shape(k, 2), shape(v, 2), mask)
    assert out.item() == pytest.approx((1.0 - 0.5) + (3.0 - 2.0))
    signed = inhibit_reference(shape(q, 1), shape(k, 2), shape(-v, 2), mask, signed=True)
    assert signed.item() == pytest.approx(-1.5)
    masked = inhibit_reference(shape(q, 1), shape(k, 2), shape(v, 2), torch.tensor([[1, 0]]))
    assert masked.item() == pytest.approx(0.5)


def test_alpha_disabled():
    assert make_attention(tiny(attention="inhibitor", attention_options=InhibitorOptions(alpha_init=0.0))).alpha is None
    assert make_attention(tiny(attention="inhibitor")).alpha.item() == 0.5


def test_symmetric_scores_are_symmetric():
    torch.manual_seed(0)
    attn = make_attention(tiny(attention="symmetric"))
    with torch.no_grad():
        attn.c.uniform_(0.5, 1.5)
        u = attn.qk_lin(torch.randn(1, 5, 16)).view(1, 5, 2, 8).transpose(1, 2)  # (B, H, n, d)
        scores = (u * attn.c[:, None, :]) @ u.transpose(-2, -1)
    assert torch.allclose(scores, scores.transpose(-2, -1))
    assert not hasattr(attn, "k_lin") and attn.c.shape == (2, 8)


# ---------------------------------------------------------------- model

@pytest.mark.parametrize("name, params", [("inhibitor", ("gamma", "alpha", "beta")), ("symmetric", ("c",))])
def test_gradients_reach_attention_parameters(name, params):
    """With BERT's init (std 0.02) every |V| is below alpha = 0.5 and the inhibitor passes nothing,
    so the projections are re-drawn at the scale of trained weights first."""
    torch.manual_seed(0)
    model = SequenceClassifier(centred(name))
    for block in model.encoder.blocks:
        for lin in (m for m in block.attn.modules() if isinstance(m, nn.Linear)):
            nn.init.normal_(lin.weight, std=0.5)
    ids, mask = batch()
    torch.nn.functional.cross_entropy(model(ids, mask), torch.tensor([0, 1, 1])).backward()
    for block in model.encoder.blocks:
        for p in params:
            grad = getattr(block.attn, p).grad
            assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0, p


@pytest.mark.parametrize("pooler, types", [("bert", 2), ("distilbert", 0)])
def test_forward_all(pooler, types):
    model = SequenceClassifier(tiny(pooler=pooler, type_vocab_size=types, num_labels=1, activation="relu")).eval()
    ids, mask = batch()
    logits, out = model.forward_all(ids, mask)
    assert logits.shape == (3, 1)
    assert len(out.hidden_states) == 3 and len(out.contexts) == 2
    assert torch.equal(out.hidden_states[-1], out.last_hidden)
    assert all(c.shape == (3, 9, 16) for c in out.contexts)
    assert torch.equal(model(ids, mask), logits)
    assert (model.encoder.embeddings.token_type is None) == (types == 0)

"""The distillation transfer set: RT plot chunks split by the snippets' movies, and augmentations."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from quant.data.tasks import load_split
from quant.data.transfer import (CHUNK_WORDS, embedding_neighbours, load_rt_plots, neighbour_substitution,
                                 sentence_chunks, span_crop, transfer_split, word_dropout)

NEIGHBOURS = {"film": ["movie", "picture"], "good": ["fine"], "the": ["a"], "funny": ["droll", "comic"]}


@pytest.fixture(scope="module")
def rt():
    return {s: load_split("rt", s) for s in ("train", "validation", "test")}


@pytest.fixture(scope="module")
def plots():
    return load_rt_plots("train")


def test_plots_only_of_training_movies(rt, plots):
    movies = set(plots.groups)
    assert not movies & set(rt["validation"].groups) and not movies & set(rt["test"].groups)
    assert movies <= set(rt["train"].groups)
    assert (len(plots), len(movies)) == (527, 127)  # 127 of the 405 training movies have a plot row
    assert plots.labels.dtype == np.int64 and (plots.labels == -1).all()
    held_out = load_rt_plots("validation"), load_rt_plots("test")
    assert [len(set(p.groups)) for p in held_out] == [14, 15]  # 127 + 14 + 15 = the 156 plots with reviews
    assert set(held_out[0].groups) <= set(rt["validation"].groups)


def test_plot_chunks_short_unique_and_whole(plots):
    texts = [t for (t,) in plots.texts]
    assert len(set(texts)) == len(texts)
    assert all(1 <= len(t.split()) <= CHUNK_WORDS and t == " ".join(t.split()) for t in texts)
    long = "First one. " + " ".join(f"w{i}" for i in range(90)) + ". Last?"
    chunks = sentence_chunks(long)
    assert " ".join(chunks) == long  # nothing lost or reordered
    assert [len(c.split()) for c in chunks] == [32, 30, 31]  # 90-word sentence cut in 3 near-equal pieces


def test_unknown_split_is_a_user_error():
    from models.errors import UserError
    with pytest.raises(UserError, match="no split 'dev'"):
        load_rt_plots("dev")


def test_word_dropout_keeps_order_and_drops_about_p():
    words = [f"w{i}" for i in range(20000)]
    kept = word_dropout(words, 0.1, np.random.default_rng(0))
    assert kept == sorted(kept, key=lambda w: int(w[1:]))  # a subsequence, order kept
    assert set(kept) <= set(words) and len(set(kept)) == len(kept)
    assert abs(1 - len(kept) / len(words) - 0.1) < 0.01
    assert len(word_dropout(["a", "b", "c"], 1.0, np.random.default_rng(1))) == 1  # never empty


def test_span_crop_is_contiguous_and_long_enough():
    rng = np.random.default_rng(0)
    words = [f"w{i}" for i in range(10)]
    lengths = set()
    for _ in range(500):
        span = span_crop(words, 0.5, rng)
        start = words.index(span[0])
        assert span == words[start:start + len(span)] and len(span) >= 5
        lengths.add(len(span))
    assert lengths == {5, 6, 7, 8, 9, 10}
    assert span_crop(["only"], 0.5, rng) == ["only"]


def test_substitution_uses_only_listed_neighbours():
    rng = np.random.default_rng(0)
    words = "The film, good and funny: the (film) was good!".split()
    for p in (0.3, 1.0):
        for _ in range(50):
            out = neighbour_substitution(words, p, NEIGHBOURS, rng)
            assert len(out) == len(words)
            for old, new in zip(words, out):
                if old != new:
                    core = old.strip(",:()!")
                    assert old.replace(core, "") == new.replace(new.strip(",:()!"), "")  # punctuation kept
                    assert new.strip(",:()!").lower() in NEIGHBOURS[core.lower()]
    every = neighbour_substitution(words, 1.0, NEIGHBOURS, rng)
    assert every[0] == "A" and every[3] == "and" and every[1] in ("movie,", "picture,")
    assert neighbour_substitution(words, 0.0, NEIGHBOURS, rng) == words


def test_transfer_split_deterministic_and_unlabelled(rt, plots):
    train = rt["train"].limit(300)
    a = transfer_split(train, copies=2, plots=plots, neighbours=NEIGHBOURS, seed=0)
    b = transfer_split(train, copies=2, plots=plots, neighbours=NEIGHBOURS, seed=0)
    c = transfer_split(train, copies=2, plots=plots, neighbours=NEIGHBOURS, seed=1)
    assert a.texts == b.texts and a.groups == b.groups
    assert a.texts != c.texts
    assert a.labels.dtype == np.int64 and (a.labels == -1).all()
    n_aug = len(a) - len(plots)
    assert 0.6 * 600 < n_aug <= 600 and a.texts[n_aug:] == plots.texts and a.groups[n_aug:] == plots.groups
    originals = dict(zip(train.texts, train.groups))
    assert not set(a.texts[:n_aug]) & set(originals)  # no labelled snippet comes back
    assert set(a.groups[:n_aug]) <= set(train.groups)
    # variants depend on the snippet, not its position: a shorter split's variants are a prefix
    short = transfer_split(train.limit(100), copies=2, plots=None, neighbours=NEIGHBOURS, seed=0)
    assert short.texts == a.texts[:len(short)] and short.groups == a.groups[:len(short)]


def test_variants_come_from_their_source(rt):
    train = rt["train"].limit(200)
    out = transfer_split(train, copies=3, plots=None, neighbours=NEIGHBOURS, seed=3)
    words_of = {}
    for (text,), movie in zip(train.texts, train.groups):
        words_of.setdefault(movie, []).append({w.strip(",.:;!?()\"'").lower() for w in text.split()})
    for (text,), movie in zip(out.texts, out.groups):
        swapped = {n for ns in NEIGHBOURS.values() for n in ns}
        kept = {w.strip(",.:;!?()\"'").lower() for w in text.split()} - swapped
        assert any(kept <= src for src in words_of[movie]), text


def _tiny_tokenizer(tmp_path, words):
    from transformers import BertTokenizerFast
    (tmp_path / "vocab.txt").write_text("\n".join(words) + "\n")
    return BertTokenizerFast(str(tmp_path / "vocab.txt"))


def test_embedding_neighbours_cosine_whole_words(tmp_path):
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "good", "great", "bad", "##ly", "42", "cat", "dog"]
    tok = _tiny_tokenizer(tmp_path, vocab)
    rows = {"good": [1, 0, 0], "great": [0.9, 0.3, 0], "bad": [40, 40, 0], "##ly": [1, 0.01, 0],
            "[CLS]": [1, 0, 0], "42": [1, 0.02, 0], "cat": [0, 0, 1], "dog": [0, 0.2, 1]}
    emb = torch.zeros(len(vocab), 3)
    for w, v in rows.items():
        emb[vocab.index(w)] = torch.tensor(v)
    nb = embedding_neighbours(tok, emb, k=2)
    assert set(nb) == {"good", "great", "bad", "cat", "dog"}  # no specials, pieces or numbers
    assert all(w not in ns and len(ns) == 2 for w, ns in nb.items())
    assert nb["good"] == ["great", "bad"]  # cosine: bad's larger dot product does not count
    assert nb["cat"][0] == "dog" and nb["dog"][0] == "cat"
    assert embedding_neighbours(tok, emb, k=2, chunk=2) == nb  # chunking changes nothing
    # the same ranking from a full float64 cosine matrix
    ids = [vocab.index(w) for w in nb]
    e = emb[ids].double()
    cos = (e / e.norm(dim=1, keepdim=True)) @ (e / e.norm(dim=1, keepdim=True)).T
    cos.fill_diagonal_(-2)
    assert {w: [list(nb)[j] for j in cos[i].topk(2).indices] for i, w in enumerate(nb)} == nb

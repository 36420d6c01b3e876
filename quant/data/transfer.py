"""A teacher-labelled transfer set for distilling on RT: unlabelled texts the teacher scores.

Two sources, both from the RT corpus file that `load_split("rt", ...)` reads, and every example
labelled -1 (the caller labels it with the teacher) with its movie as group:

* Plot summaries (`load_rt_plots`): the corpus's `plot` rows, one per movie. A plot joins a split
  only through its movie, and the movie -> split map is the one of the review snippets
  (`tasks.rt_reviews`), so no plot of a validation or test movie reaches training. A plot whose
  movie has no review row is in no split and is dropped: 941 of the 1,097 plots, including two
  whose movie is spelled differently in the review rows (`feardotcom` / `fear_dot_com`,
  `lilo_stitch` / `lilo__stitch`; names are not guessed at). Texts are whitespace-normalised,
  cut at sentence ends (a word ending in . ! or ?, maybe before a closing quote or bracket) and
  the sentences packed greedily into chunks of at most `CHUNK_WORDS` words, near the length of a
  snippet (median 18 words); a longer sentence is cut into near-equal pieces. Chunks are
  deduplicated in file order.
* Augmented snippets (`transfer_split`): variants of each labelled snippet by word dropout, span
  cropping and substitution by input-embedding neighbours (`embedding_neighbours`). Each
  augmentation is a pure function of (words, numpy Generator); a snippet's variants depend only on
  (seed, its text), not on its position in the split, so a limited split gets the same variants.
"""
from __future__ import annotations

import bz2
import csv
import hashlib
import re
from pathlib import Path
from typing import Any

import numpy as np

from models.errors import UserError
from quant.data.tasks import Split, rt_corpus_path, rt_reviews

CHUNK_WORDS = 40
SENTENCE_END = re.compile(r"[.!?][\"'\u201d)\]]*$")
WORD = re.compile(r"^([^A-Za-z]*)([A-Za-z]+)([^A-Za-z]*)$")  # leading punctuation, word, trailing


# ---------------------------------------------------------------- plot summaries

def _read_plots(path: Path) -> list[tuple[str, str]]:
    """(normalised text, movie) per non-empty `plot` row, in file order."""
    try:
        with bz2.open(path, "rt", encoding="utf-8", newline="") as f:
            rows = [(" ".join(r["text"].split()), r["movie_name"]) for r in csv.DictReader(f)
                    if r.get("category") == "plot"]
    except (OSError, EOFError, csv.Error, KeyError) as err:
        raise UserError(f"cannot read the plot rows of the RT corpus {path}: {err}; delete it to fetch it "
                        f"again") from err
    return [(t, m) for t, m in rows if t]


def sentence_chunks(text: str, max_words: int = CHUNK_WORDS) -> list[str]:
    """Sentences of `text` packed greedily into chunks of at most `max_words` words.

    >>> sentence_chunks("One two. Three four five! Six.", max_words=4)
    ['One two.', 'Three four five! Six.']
    """
    sentences, current = [], []
    for word in text.split():
        current.append(word)
        if SENTENCE_END.search(word):
            sentences.append(current)
            current = []
    if current:
        sentences.append(current)
    pieces = []
    for s in sentences:  # a sentence over max_words: near-equal pieces, no short tail
        n = -(-len(s) // max_words)
        bounds = np.linspace(0, len(s), n + 1).round().astype(int)
        pieces += [s[a:b] for a, b in zip(bounds[:-1], bounds[1:])]
    chunks: list[list[str]] = []
    for p in pieces:
        if chunks and len(chunks[-1]) + len(p) <= max_words:
            chunks[-1] = chunks[-1] + p
        else:
            chunks.append(p)
    return [" ".join(c) for c in chunks]


def load_rt_plots(split: str = "train", data_dir: str | Path | None = None) -> Split:
    """Plot-summary chunks of the movies that the RT snippet split puts in `split` (labels -1,
    groups = movie), in file order."""
    path = rt_corpus_path(None if data_dir is None else Path(data_dir))
    _, assign = rt_reviews(path)
    if split not in set(assign.values()):
        raise UserError(f"rt has no split {split!r}; its splits: train, validation, test")
    texts, groups, seen = [], [], set()
    for text, movie in _read_plots(path):
        if assign.get(movie) != split:
            continue  # another split's movie, or a movie with no review row
        for chunk in sentence_chunks(text):
            if chunk not in seen:
                seen.add(chunk)
                texts.append((chunk,))
                groups.append(movie)
    return Split(texts, np.full(len(texts), -1, dtype=np.int64), groups)


# ---------------------------------------------------------------- augmentations

def word_dropout(words: list[str], p: float, rng: np.random.Generator) -> list[str]:
    """Each word dropped independently with probability `p`, order kept; never empty (if every
    word is drawn for dropping, one of them, chosen at random, stays)."""
    keep = rng.random(len(words)) >= p
    if words and not keep.any():
        keep[rng.integers(len(words))] = True
    return [w for w, k in zip(words, keep) if k]


def span_crop(words: list[str], min_frac: float, rng: np.random.Generator) -> list[str]:
    """A contiguous span of `ceil(min_frac * n)` to `n` words (length, then start, uniform)."""
    n = len(words)
    shortest = min(n, max(1, int(np.ceil(min_frac * n))))
    length = int(rng.integers(shortest, n + 1)) if n else 0
    start = int(rng.integers(0, n - length + 1))
    return words[start:start + length]


def neighbour_substitution(words: list[str], p: float, neighbours: dict[str, list[str]],
                           rng: np.random.Generator) -> list[str]:
    """Each word whose letters (punctuation around them kept) have an entry in `neighbours`
    (lowercase keys) is replaced with probability `p` by one of its neighbours, chosen uniformly;
    a capitalised word gets a capitalised neighbour. Other words are kept."""
    out = []
    for word in words:
        m = WORD.match(word)
        options = neighbours.get(m.group(2).lower()) if m else None
        if options and rng.random() < p:
            new = options[int(rng.integers(len(options)))]
            new = new.capitalize() if m.group(2)[0].isupper() else new
            word = m.group(1) + new + m.group(3)
        out.append(word)
    return out


def embedding_neighbours(tokenizer: Any, embeddings: Any, k: int = 8,
                         chunk: int = 1024) -> dict[str, list[str]]:
    """Lowercase whole word -> its `k` nearest whole words by cosine similarity of the rows of
    `embeddings` (vocab, hidden), most similar first, the word itself (any casing) excluded.

    Whole words are vocabulary tokens that are alphabetic (so no '##' pieces or '[CLS]'-style
    markers) and not special tokens. Similarities are float32 matmuls of `chunk` rows at a time
    against all whole words, so memory stays at chunk x words."""
    import torch
    special = set(tokenizer.all_special_tokens)
    vocab = sorted((i, t) for t, i in tokenizer.get_vocab().items() if t.isalpha() and t not in special)
    if not vocab:
        return {}
    ids = torch.tensor([i for i, _ in vocab])
    words = [t.lower() for _, t in vocab]
    emb = torch.nn.functional.normalize(embeddings.detach()[ids].float(), dim=1)  # (W, hidden)
    take = min(len(words), k + 5)  # spares: the word itself and, if cased, its other casings
    result: dict[str, list[str]] = {}
    for start in range(0, len(words), chunk):
        sims = emb[start:start + chunk] @ emb.T  # (chunk, W)
        top = sims.topk(take, dim=1).indices.tolist()  # the word itself among them, dropped below
        for r, cand in enumerate(top):
            word = words[start + r]
            if word in result:
                continue  # a cased vocabulary: the first (lowest id) form of a word wins
            near = list(dict.fromkeys(words[j] for j in cand if words[j] != word))
            result[word] = near[:k]
    return result


# ---------------------------------------------------------------- the transfer split

def _snippet_rng(seed: int, text: str) -> np.random.Generator:
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    return np.random.default_rng([seed, int.from_bytes(digest[:8], "little")])


def augment(words: list[str], rng: np.random.Generator, neighbours: dict[str, list[str]],
            p_drop: float, p_sub: float, min_crop: float) -> list[str]:
    """One variant: a uniformly chosen non-empty subset of {substitution, dropout, crop},
    applied in that order."""
    mask = int(rng.integers(1, 8))  # bits: 1 substitution, 2 dropout, 4 crop
    if mask & 1:
        words = neighbour_substitution(words, p_sub, neighbours, rng)
    if mask & 2:
        words = word_dropout(words, p_drop, rng)
    if mask & 4:
        words = span_crop(words, min_crop, rng)
    return words


def transfer_split(train: Split, *, copies: int, plots: Split | None, neighbours: dict[str, list[str]],
                   seed: int, p_drop: float = 0.1, p_sub: float = 0.1, min_crop: float = 0.5) -> Split:
    """Unlabelled examples for distillation: up to `copies` augmented variants of every snippet of
    `train` (a variant equal to the snippet or to an earlier variant of it is skipped, not
    redrawn), then the examples of `plots`. Labels -1, groups = the source movie; the labelled
    snippets themselves are not included. The same (train, seed) gives the same split."""
    if any(len(t) != 1 for t in train.texts):
        raise ValueError("transfer_split takes single-text examples (the rt task)")
    if train.groups is None or (plots is not None and plots.groups is None):
        raise ValueError("transfer_split needs groups (movies) on `train` and `plots`")
    texts, groups = [], []
    for (text,), movie in zip(train.texts, train.groups):
        rng, words, made = _snippet_rng(seed, text), text.split(), {text}
        for _ in range(copies):
            variant = " ".join(augment(words, rng, neighbours, p_drop, p_sub, min_crop))
            if variant not in made:
                made.add(variant)
                texts.append((variant,))
                groups.append(movie)
    if plots is not None:
        texts += plots.texts
        groups += plots.groups
    return Split(texts, np.full(len(texts), -1, dtype=np.int64), groups)

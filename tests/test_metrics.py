"""compute_metrics against values worked out by hand."""
import math
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import numpy as np
import pytest
import torch

from quant.data.metrics import compute_metrics


def test_accuracy_from_class_ids():
    assert compute_metrics("sst2", [0, 1, 0, 0], [0, 1, 1, 0]) == {"accuracy": 0.75}


def test_logits_are_argmaxed_numpy_and_torch():
    logits = np.array([[2.0, -1.0], [0.1, 0.3], [-5.0, 5.0], [1.0, 0.0]])  # -> 0, 1, 1, 0
    assert compute_metrics("rt", logits, [0, 1, 0, 0])["accuracy"] == 0.75
    assert compute_metrics("rt", torch.from_numpy(logits), torch.tensor([0, 1, 0, 0]))["accuracy"] == 0.75


def test_f1_and_accuracy_mrpc():
    # pred 1,1,0,0 vs gold 1,0,1,0: tp 1, fp 1, fn 1 -> F1 = 2*1 / (2*1 + 1 + 1) = 0.5
    assert compute_metrics("mrpc", [1, 1, 0, 0], [1, 0, 1, 0]) == {"f1": 0.5, "accuracy": 0.5}


def test_matthews_cola():
    # tp 1, tn 2, fp 0, fn 1: (1*2 - 0*1) / sqrt(1 * 2 * 2 * 3)
    got = compute_metrics("cola", [1, 0, 0, 0], [1, 1, 0, 0])
    assert got["matthews"] == pytest.approx(2 / math.sqrt(12))
    assert got["accuracy"] == 0.75
    assert compute_metrics("cola", [0, 0, 1, 1], [1, 1, 0, 0])["matthews"] == pytest.approx(-1.0)


def test_pearson_spearman_stsb():
    got = compute_metrics("stsb", np.array([[1.0], [2.0], [3.0]]), [1.0, 2.0, 4.0])
    assert got["pearson"] == pytest.approx(9 / math.sqrt(84))  # cov 3 / (sqrt 2 * sqrt(42) / 3)
    assert got["spearman"] == pytest.approx(1.0)
    assert compute_metrics("stsb", [3.0, 2.0, 1.0], [1.0, 2.0, 4.0])["spearman"] == pytest.approx(-1.0)


def test_three_way_mnli_logits():
    logits = torch.tensor([[3.0, 0.0, 0.0], [0.0, 3.0, 0.0], [0.0, 0.0, 3.0], [0.0, 0.0, 3.0]])
    assert compute_metrics("mnli", logits, [0, 1, 2, 0]) == {"accuracy": 0.75}


def test_bad_shapes_raise():
    with pytest.raises(ValueError, match="columns"):
        compute_metrics("sst2", np.zeros((2, 3)), [0, 1])
    with pytest.raises(ValueError, match="integer class ids"):
        compute_metrics("sst2", [0.2, 0.7], [0, 1])
    with pytest.raises(ValueError, match="predictions for"):
        compute_metrics("sst2", [0, 1, 1], [0, 1])


def test_mcnemar_counts_discordant_pairs_and_gives_the_exact_binomial_p():
    from quant.data.metrics import mcnemar
    gold = [1] * 20
    a = [1] * 12 + [0] * 8  # right on the first 12
    b = [1] * 4 + [0] * 8 + [1] * 2 + [0] * 6  # right on 0..3 and 12..13
    r = mcnemar(a, b, gold)
    assert (r["a_right_b_wrong"], r["a_wrong_b_right"], r["n"]) == (8, 2, 20)
    # two-sided exact: P(X <= 2) + P(X >= 8), X ~ Bin(10, 1/2) = 2 * 56 / 1024
    assert r["p_value"] == pytest.approx(112 / 1024)
    assert r["chi2"] == pytest.approx((6 - 1) ** 2 / 10)
    assert mcnemar(a, a, gold)["p_value"] == 1.0
    with pytest.raises(ValueError, match="paired"):
        mcnemar(a, b[:-1], gold)

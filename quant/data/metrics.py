"""Task metrics by GLUE convention, computed with scikit-learn and scipy (nothing re-implemented).

`compute_metrics(task, predictions, labels)` returns `{metric: value}` for every metric of the
task's `TaskSpec.metrics` (main metric included):

| name | function | range |
|---|---|---|
| accuracy | sklearn.metrics.accuracy_score | 0..1 |
| f1 | sklearn.metrics.f1_score (binary, positive class 1) | 0..1 |
| matthews | sklearn.metrics.matthews_corrcoef | -1..1 |
| pearson / spearman | scipy.stats.pearsonr / spearmanr | -1..1 |

Values are fractions, not percentages (multiply by 100 for GLUE tables).
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np
import scipy.stats
import sklearn.metrics

from quant.data.tasks import TaskSpec, get_task

METRICS: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {
    "accuracy": sklearn.metrics.accuracy_score,
    "f1": sklearn.metrics.f1_score,
    "matthews": sklearn.metrics.matthews_corrcoef,
    "pearson": lambda y_true, y_pred: scipy.stats.pearsonr(y_true, y_pred)[0],
    "spearman": lambda y_true, y_pred: scipy.stats.spearmanr(y_true, y_pred)[0],
}


def _as_numpy(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):  # torch tensor
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def predictions_to_labels(spec: TaskSpec, predictions: Any) -> np.ndarray:
    """Classification: logits [N, C] -> argmax class ids; class ids [N] pass through.
    Regression: scores [N] or [N, 1] -> float [N]."""
    pred = _as_numpy(predictions)
    if spec.is_regression:
        if pred.ndim == 2 and pred.shape[1] == 1:
            pred = pred[:, 0]
        if pred.ndim != 1:
            raise ValueError(f"{spec.name}: regression predictions must be [N] or [N, 1], got {pred.shape}")
        return pred.astype(np.float64)
    if pred.ndim == 2:
        if pred.shape[1] != spec.num_labels:
            raise ValueError(f"{spec.name}: logits have {pred.shape[1]} columns, task has {spec.num_labels} labels")
        return pred.argmax(axis=1)
    if pred.ndim != 1 or not np.issubdtype(pred.dtype, np.integer):
        raise ValueError(f"{spec.name}: predictions must be logits [N, C] or integer class ids [N], "
                         f"got {pred.dtype} {pred.shape}")
    return pred


def compute_metrics(task: str | TaskSpec, predictions: Any, labels: Any) -> dict[str, float]:
    """Every metric of `task` (a name or a TaskSpec). `predictions`: logits [N, num_labels] or
    integer class ids [N] for classification, scores [N] or [N, 1] for regression (numpy, torch
    or lists). `labels`: class ids or gold scores [N]."""
    spec = get_task(task) if isinstance(task, str) else task
    pred = predictions_to_labels(spec, predictions)
    gold = _as_numpy(labels).reshape(-1)
    if len(gold) != len(pred):
        raise ValueError(f"{spec.name}: {len(pred)} predictions for {len(gold)} labels")
    return {name: float(METRICS[name](gold, pred)) for name in spec.metrics}


def mcnemar(pred_a: Any, pred_b: Any, labels: Any) -> dict[str, float]:
    """Paired McNemar test of two classifiers on the same examples (class ids [N] each).

    b = examples A gets right and B wrong, c = the reverse; the exact two-sided p-value is that of
    b successes in b + c fair coin flips (`scipy.stats.binomtest`), valid for any b + c; `chi2` is the
    continuity-corrected statistic (|b - c| - 1)^2 / (b + c) for reference (0 when b + c = 0).
    Returns {"a_right_b_wrong", "a_wrong_b_right", "chi2", "p_value", "n"}."""
    a, b_, gold = (_as_numpy(x).reshape(-1) for x in (pred_a, pred_b, labels))
    if not len(a) == len(b_) == len(gold):
        raise ValueError(f"McNemar needs paired predictions: {len(a)}, {len(b_)} and {len(gold)} labels")
    right_a, right_b = a == gold, b_ == gold
    b = int(np.sum(right_a & ~right_b))
    c = int(np.sum(~right_a & right_b))
    p = float(scipy.stats.binomtest(b, b + c, 0.5).pvalue) if b + c else 1.0
    chi2 = (abs(b - c) - 1) ** 2 / (b + c) if b + c else 0.0
    return {"a_right_b_wrong": b, "a_wrong_b_right": c, "chi2": float(chi2), "p_value": p, "n": int(len(gold))}

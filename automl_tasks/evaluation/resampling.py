"""Bootstrap resamples of holdout rows, and a metric scored on many resamples at once.

`paired_bootstrap` (evaluation/compare.py) and the champion's interval (monitoring/health.py)
draw their resamples here, so the same seed gives both the same samples.

Vectorisation. Each (chunk, n) block of indices is scored for all resamples at once:

* mean-of-rows metrics (mse, rmse, mae, mape, logLoss, accuracy): a per-row term is
  computed once and gathered with the indices;
* r2: gathered residuals and labels, two-pass sum of squares per resample;
* areaUnderROC, areaUnderPR: rows are grouped by distinct score once; each resample
  becomes a (label x score group) count table via one bincount (no per-resample
  sort), from which ROC is the Mann-Whitney statistic with ties counted half (equal
  to Spark's trapezoids over tie-merged thresholds) in exact integer arithmetic, and
  PR the trapezoids over cumulative counts;
* f1, weightedPrecision, weightedRecall: a per-resample confusion matrix via one
  bincount, then Spark's label-weighted averages.

That is every metric in ``METRICS`` today (``VECTORISED_METRICS``); a metric added
later without a batch version falls back to a loop over ``compute_metric``. Batched
values equal ``compute_metric`` on each resample to ~1e-15 (tests/test_compare.py).
Indices are drawn in chunks of at most ``MAX_CHUNK_INDICES`` (2**20, 8 MB of int64)
so memory stays bounded for any n (the ROC/PR count tables are a few times that);
chunks of 1M were also faster than larger ones here (cache). Results do not depend
on the chunking: the generator yields the same indices however they are split. Chunks
are drawn in order, then scored on ``THREADS`` threads (numpy releases the GIL): same values.

Speed: bench/bootstrap.py (167k rows, AUC, overall + 3 segments: ~11 s on 2 cores).
"""

from __future__ import annotations

import math
import os
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from automl_tasks.evaluation.metrics import (LOG_LOSS_EPS, check_metric, compute_metric,
                                             weighted_by_label)

MAX_CHUNK_INDICES = 1 << 20
THREADS = max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)

# (r, n) resample indices -> (r,) metric values, one per resample.
Scorer = Callable[[np.ndarray], np.ndarray]


def metric_on_resamples(metric: str, task: str, y_true, prediction, indices) -> np.ndarray:
    """`metric` of one model on each row of `indices` (r, n): vectorised where available.

    Equal to ``[compute_metric(metric, task, y_true[i], prediction[i]) for i in indices]``.
    """
    idx = np.asarray(indices)
    if idx.ndim != 2 or not np.issubdtype(idx.dtype, np.integer):
        raise ValueError(f"indices must be a 2-D integer matrix (resamples, rows); "
                         f"got shape {idx.shape}, dtype {idx.dtype}")
    return _one_model_scorer(metric, task, y_true, prediction)[0](idx)


def bootstrap_metric(metric: str, task: str, y_true, prediction, *, resamples: int = 2000,
                     seed: int = 0) -> np.ndarray:
    """One model's `metric` on `resamples` bootstrap samples: the samples `paired_bootstrap`
    draws with the same seed, scored as it scores them."""
    score, n = _one_model_scorer(metric, task, y_true, prediction)
    return bootstrap([score], n, resamples, np.random.default_rng(seed))[0]


def _one_model_scorer(metric: str, task: str, y_true, prediction) -> tuple[Scorer, int]:
    check_metric(metric, task)
    y, prediction = np.asarray(y_true), np.asarray(prediction, dtype=np.float64)
    compute_metric(metric, task, y, prediction)  # validates shapes and labels, once
    return scorer(metric, task, labels(task, y), prediction), y.size


def labels(task: str, y: np.ndarray) -> np.ndarray:
    # Called after compute_metric accepted `y`: class labels are integral (maybe read
    # back from Spark as doubles), regression labels numeric.
    return y.astype(np.float64 if task == "regression" else np.int64, copy=False)


def bootstrap(scorers: list[Scorer], n: int, resamples: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Every scorer on the same `resamples` bootstrap samples of n rows (paired)."""
    per_chunk = max(1, MAX_CHUNK_INDICES // n)
    out = [np.empty(resamples) for _ in scorers]

    def score_chunk(start: int, idx: np.ndarray) -> None:
        for values, score in zip(out, scorers):
            values[start:start + idx.shape[0]] = score(idx)

    with ThreadPoolExecutor(THREADS) as pool:
        waiting: deque = deque()   # at most one chunk per thread held in memory
        for start in range(0, resamples, per_chunk):
            idx = rng.integers(0, n, size=(min(resamples, start + per_chunk) - start, n))
            waiting.append(pool.submit(score_chunk, start, idx))
            while waiting and (len(waiting) > THREADS or start + per_chunk >= resamples):
                waiting.popleft().result()
    return out


# --- batch scorers --------------------------------------------------------------------
# Each factory takes (metric, y, prediction) with validated inputs (classification
# labels as int64) and returns a Scorer. They mirror metrics.py's formulas operation
# by operation so values match compute_metric to the last bits or nearly.

def scorer(metric: str, task: str, y: np.ndarray, prediction: np.ndarray) -> Scorer:
    factory = _BATCH.get(metric)
    if factory is None:
        return _loop_scorer(metric, task, y, prediction)
    return factory(metric, y, prediction)


def _loop_scorer(metric: str, task: str, y: np.ndarray, prediction: np.ndarray) -> Scorer:
    return lambda idx: np.array([compute_metric(metric, task, y[i], prediction[i]) for i in idx],
                                dtype=np.float64)


def _row_bincount(keys: np.ndarray, size: int) -> np.ndarray:
    """Counts of each key 0..size-1 in every row of `keys` (r, n) -> (r, size), one bincount."""
    r = keys.shape[0]
    flat = (keys + (np.arange(r, dtype=np.int64) * size)[:, None]).ravel()
    return np.bincount(flat, minlength=r * size).reshape(r, size)


def _log_loss_rows(y: np.ndarray, proba: np.ndarray) -> np.ndarray:
    # Per-row form of metrics._log_loss (Spark's clipping at eps and 1 - eps).
    p = proba[np.arange(y.size), y]
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(p < LOG_LOSS_EPS, -math.log(LOG_LOSS_EPS),
                        np.where(p > 1.0 - LOG_LOSS_EPS, -math.log1p(-LOG_LOSS_EPS), -np.log(p)))


# Metrics that are a mean of one term per row (then `_FINISH`, if any).
_ROW_TERMS: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "mse": lambda y, yhat: (y - yhat) * (y - yhat),
    "rmse": lambda y, yhat: (y - yhat) * (y - yhat),
    "mae": lambda y, yhat: np.abs(y - yhat),
    "mape": lambda y, yhat: np.abs(y - yhat) / np.abs(y),  # label 0 already rejected
    "accuracy": lambda y, proba: (np.argmax(proba, axis=1) == y).astype(np.float64),
    "logLoss": _log_loss_rows,
}
_FINISH = {"rmse": np.sqrt}


def _mean_of_rows_scorer(metric: str, y: np.ndarray, prediction: np.ndarray) -> Scorer:
    term = _ROW_TERMS[metric](y, prediction)
    finish = _FINISH.get(metric, lambda v: v)
    return lambda idx: finish(term[idx].sum(axis=1) / idx.shape[1])


def _r2_scorer(metric: str, y: np.ndarray, yhat: np.ndarray) -> Scorer:
    squared_error = (y - yhat) * (y - yhat)

    def score(idx: np.ndarray) -> np.ndarray:
        labels = y[idx]
        centred = labels - labels.mean(axis=1, keepdims=True)
        with np.errstate(divide="ignore", invalid="ignore"):  # constant label: -inf/NaN as Spark
            return 1.0 - squared_error[idx].sum(axis=1) / np.einsum("ij,ij->i", centred, centred)
    return score


def _curve_scorer(metric: str, y: np.ndarray, proba: np.ndarray) -> Scorer:
    # Rows grouped by distinct P(1), highest first (Spark's threshold order): a resample
    # is then a table of counts per (label, score group), so no per-resample sort.
    _, ascending = np.unique(proba[:, 1], return_inverse=True)
    n_groups = int(ascending.max()) + 1
    keys = y * n_groups + (n_groups - 1 - ascending.ravel())
    area = _roc_area if metric == "areaUnderROC" else _pr_area
    return lambda idx: area(_row_bincount(keys[idx], 2 * n_groups).reshape(-1, 2, n_groups))


def _roc_area(counts: np.ndarray) -> np.ndarray:
    """ROC area per resample from (r, [neg, pos], groups by descending score) counts.

    The trapezoids over tie-merged thresholds equal the Mann-Whitney statistic with
    ties counted half: each positive beats the negatives of lower-scored groups and
    ties those of its own. Doubled, that count is an exact integer.
    """
    neg, pos = counts[:, 0], counts[:, 1]
    n_neg, n_pos = neg.sum(axis=1), pos.sum(axis=1)
    neg_below = n_neg[:, None] - np.cumsum(neg, axis=1)
    twice_wins = (pos * (2 * neg_below + neg)).sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        auc = twice_wins / (2.0 * n_pos * n_neg)
    # Spark's single-class conventions (metrics._area_under_roc): TPR 0 without
    # positives -> area 0; FPR 0 without negatives -> area 1.
    return np.where(n_pos == 0, 0.0, np.where(n_neg == 0, 1.0, auc))


def _pr_area(counts: np.ndarray) -> np.ndarray:
    """PR area per resample from (r, [neg, pos], groups by descending score) counts.

    A group with no row in the resample is not one of its thresholds; it repeats the
    previous point (same cumulative counts), so it adds a zero-width trapezoid and the
    sum is Spark's. Groups before the first occupied one would be 0/0: they take the
    first threshold's precision, which is also the point Spark prepends at recall 0.
    """
    neg, pos = counts[:, 0], counts[:, 1]
    tp = np.cumsum(pos, axis=1).astype(np.float64)
    seen = np.cumsum(pos + neg, axis=1).astype(np.float64)  # rows at or above each threshold
    n_pos = tp[:, -1:]
    rows = np.arange(counts.shape[0])
    first = np.argmax(seen > 0, axis=1)
    first_precision = (tp[rows, first] / seen[rows, first])[:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        recall = np.where(n_pos > 0, tp / n_pos, 0.0)  # Spark: recall 0 without positives
        precision = np.where(seen > 0, tp / seen, first_precision)
    width = np.diff(recall, axis=1, prepend=0.0)
    height = precision + np.concatenate([first_precision, precision[:, :-1]], axis=1)
    return (width * height / 2.0).sum(axis=1)


def _confusion_scorer(metric: str, y: np.ndarray, proba: np.ndarray) -> Scorer:
    k = proba.shape[1]
    keys = y * k + np.argmax(proba, axis=1)  # (label, predicted) cell; argmax ties -> lowest

    def score(idx: np.ndarray) -> np.ndarray:
        cells = _row_bincount(keys[idx], k * k).reshape(-1, k, k).astype(np.float64)
        return _weighted_by_label(metric, cells, float(idx.shape[1]))
    return score


def _weighted_by_label(metric: str, cells: np.ndarray, total: float) -> np.ndarray:
    # Batch form of metrics._confusion_metric: one shared formula, resamples on axis 0.
    return weighted_by_label(metric, np.diagonal(cells, axis1=1, axis2=2), cells.sum(axis=2),
                             cells.sum(axis=1), total)


_BATCH: dict[str, Callable[[str, np.ndarray, np.ndarray], Scorer]] = {
    **{name: _mean_of_rows_scorer for name in _ROW_TERMS},
    "r2": _r2_scorer,
    "areaUnderROC": _curve_scorer,
    "areaUnderPR": _curve_scorer,
    "f1": _confusion_scorer,
    "weightedPrecision": _confusion_scorer,
    "weightedRecall": _confusion_scorer,
}

VECTORISED_METRICS = frozenset(_BATCH)

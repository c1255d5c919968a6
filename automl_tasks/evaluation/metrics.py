"""Model metrics in numpy whose values equal Spark's own evaluators.

Tuning trials score models on the driver or inside executors on numpy arrays;
the registry and the monitoring jobs may score the same models with Spark's
evaluators. Both must agree, so every metric here reproduces Spark 4.x
semantics (checked against the real evaluators in tests/test_metrics.py):

* areaUnderROC, areaUnderPR: ``BinaryClassificationEvaluator`` with
  ``numBins=0`` (exact curves; the default ``numBins=1000`` down-samples the
  curve and moves the value by ~1e-6). Points are taken at each *distinct*
  score (ties form one point) in descending order and integrated with
  trapezoids. Spark's degenerate conventions are kept: recall (TPR) is 0 when
  there are no positives and FPR is 0 when there are no negatives, so a
  single-class validation set yields a number, not an error.
* f1, weightedPrecision, weightedRecall, accuracy, logLoss:
  ``MulticlassClassificationEvaluator`` (binary and multiclass).
* mse, rmse, r2, mae: ``RegressionEvaluator`` (``throughOrigin=False``).
* mape: not a Spark evaluator metric (RegressionEvaluator in 4.x knows only
  mse|rmse|r2|mae|var), defined here as mean(|y - yhat| / |y|).

Inputs: classification takes integer class indices 0..k-1 and an (n, k)
probability matrix (binary: (n, 2)); the predicted class is the argmax, ties
to the lowest index like Spark's ``Vector.argmax``. Regression takes two
float vectors of length n.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from automl_tasks.errors import DataError, SpecError

TASKS = ("binary", "multiclass", "regression")

# Spark's MulticlassClassificationEvaluator default eps for logLoss.
LOG_LOSS_EPS = 1e-15


@dataclass(frozen=True)
class Metric:
    name: str
    greater_is_better: bool
    tasks: frozenset[str]


_CLASSIFICATION = frozenset({"binary", "multiclass"})

METRICS: dict[str, Metric] = {m.name: m for m in (
    Metric("areaUnderROC", True, frozenset({"binary"})),
    Metric("areaUnderPR", True, frozenset({"binary"})),
    Metric("f1", True, _CLASSIFICATION),
    Metric("weightedPrecision", True, _CLASSIFICATION),
    Metric("weightedRecall", True, _CLASSIFICATION),
    Metric("accuracy", True, _CLASSIFICATION),
    Metric("logLoss", False, _CLASSIFICATION),
    Metric("mse", False, frozenset({"regression"})),
    Metric("rmse", False, frozenset({"regression"})),
    Metric("r2", True, frozenset({"regression"})),
    Metric("mae", False, frozenset({"regression"})),
    Metric("mape", False, frozenset({"regression"})),
)}

DEFAULT_METRIC = {"binary": "areaUnderROC", "multiclass": "logLoss", "regression": "rmse"}


def _names_for(task: str) -> str:
    return ", ".join(name for name, m in METRICS.items() if task in m.tasks)


def check_metric(name: str, task: str) -> Metric:
    """The Metric called `name`, if it is valid for `task`; SpecError otherwise."""
    if task not in TASKS:
        raise SpecError(f"unknown task {task!r}; expected one of: {', '.join(TASKS)}")
    metric = METRICS.get(name)
    if metric is None:
        # Spark's names are camelCase and case-sensitive: point out a case-only mismatch.
        hint = next((n for n in METRICS if n.lower() == str(name).lower()), None)
        did_you_mean = f" (did you mean {hint!r}?)" if hint else ""
        raise SpecError(f"unknown metric {name!r}{did_you_mean}; for task {task!r} use one of: "
                        f"{_names_for(task)}")
    if task not in metric.tasks:
        owners = ", ".join(t for t in TASKS if t in metric.tasks)
        raise SpecError(f"metric {name!r} is for {owners}; for task {task!r} use one of: "
                        f"{_names_for(task)}")
    return metric


def _metric(name: str) -> Metric:
    try:
        return METRICS[name]
    except KeyError:
        raise SpecError(f"unknown metric {name!r}; known: {', '.join(METRICS)}") from None


def is_better(name: str, candidate: float, incumbent: float) -> bool:
    """True if `candidate` is strictly better than `incumbent` for metric `name`.

    NaN is never better than anything; anything that is not NaN beats a NaN incumbent.
    """
    greater = _metric(name).greater_is_better
    if math.isnan(candidate):
        return False
    if math.isnan(incumbent):
        return True
    return candidate > incumbent if greater else candidate < incumbent


def orientation(name: str) -> float:
    """+1 for greater-is-better metrics, -1 otherwise: `orientation * (a - b) > 0` means a is better."""
    return 1.0 if _metric(name).greater_is_better else -1.0


def worst_value(name: str) -> float:
    """The value every real result beats: -inf if greater is better, else +inf."""
    return -math.inf if _metric(name).greater_is_better else math.inf


def compute_metric(name: str, task: str, y_true, prediction) -> float:
    """Metric `name` for `task`, equal to Spark's evaluator on the same predictions.

    Classification: `y_true` holds class indices 0..k-1, `prediction` is the
    (n, k) probability matrix. Regression: two float vectors of length n.
    """
    check_metric(name, task)
    if task == "regression":
        y, yhat = _regression_inputs(y_true, prediction)
        return _REGRESSION[name](y, yhat)
    y, proba = _classification_inputs(task, y_true, prediction)
    if name == "areaUnderROC":
        return _area_under_roc(y, proba[:, 1])
    if name == "areaUnderPR":
        return _area_under_pr(y, proba[:, 1])
    if name == "logLoss":
        return _log_loss(y, proba)
    return _confusion_metric(name, y, proba)


# --- input checks ---------------------------------------------------------------------

def _classification_inputs(task: str, y_true, prediction) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y_true)
    proba = np.asarray(prediction, dtype=np.float64)
    if y.ndim != 1:
        raise ValueError(f"y_true must be 1-D, got shape {y.shape}")
    if proba.ndim != 2 or proba.shape[0] != y.shape[0]:
        raise ValueError(f"prediction must be a probability matrix of shape ({y.shape[0]}, k); "
                         f"got shape {proba.shape}")
    if task == "binary" and proba.shape[1] != 2:
        raise ValueError(f"binary prediction must have 2 columns (P(0), P(1)); "
                         f"got {proba.shape[1]}")
    if y.size == 0:
        raise DataError("cannot compute a metric on 0 rows")
    if not np.issubdtype(y.dtype, np.integer):
        # Labels read back from Spark are doubles (0.0, 1.0, ...): accept integral values.
        yf = y.astype(np.float64)
        bad = ~np.isfinite(yf) | (yf != np.round(yf))
        if bad.any():
            raise DataError(f"class labels must be integers 0..k-1; got {yf[bad][0]!r} "
                            f"in {int(bad.sum())} row(s)")
        y = yf.astype(np.int64)
    k = proba.shape[1]
    out = (y < 0) | (y >= k)
    if out.any():
        raise DataError(f"class label {int(y[out][0])} is outside 0..{k - 1} (the prediction has "
                        f"{k} probability columns); {int(out.sum())} row(s) affected")
    return y.astype(np.int64, copy=False), proba


def _regression_inputs(y_true, prediction) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y_true, dtype=np.float64)
    yhat = np.asarray(prediction, dtype=np.float64)
    if y.ndim != 1 or yhat.shape != y.shape:
        raise ValueError(f"y_true and prediction must be 1-D of equal length; "
                         f"got shapes {y.shape} and {yhat.shape}")
    if y.size == 0:
        raise DataError("cannot compute a metric on 0 rows")
    return y, yhat


# --- binary curves (BinaryClassificationMetrics, numBins=0) ----------------------------

def _cumulative_counts(y: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray, int, int]:
    """Cumulative (true positives, false positives) at each distinct score, highest first.

    Spark groups rows by score before building the curve, so tied scores are a
    single threshold (one point), not an arbitrary order within the tie.
    """
    order = np.argsort(score)[::-1]  # order within a tie is irrelevant: ties are merged below
    s = score[order]
    positive = y[order] == 1
    tp = np.cumsum(positive, dtype=np.int64)
    fp = np.arange(1, s.size + 1, dtype=np.int64) - tp
    # Last row of each run of equal scores; != keeps NaN runs apart as Spark's keys would not
    # merge either (NaN scores are not expected from a probability model).
    ends = np.append(np.flatnonzero(s[1:] != s[:-1]), s.size - 1)
    n_pos = int(tp[-1])
    return tp[ends].astype(np.float64), fp[ends].astype(np.float64), n_pos, s.size - n_pos


def _trapezoids(x: np.ndarray, y: np.ndarray) -> float:
    # Same expression as Spark's AreaUnderCurve.trapezoid, summed over consecutive points.
    return float(np.sum((x[1:] - x[:-1]) * (y[1:] + y[:-1]) / 2.0))


def _area_under_roc(y: np.ndarray, score: np.ndarray) -> float:
    tp, fp, n_pos, n_neg = _cumulative_counts(y, score)
    tpr = tp / n_pos if n_pos else np.zeros_like(tp)  # Spark: recall is 0 with no positives
    fpr = fp / n_neg if n_neg else np.zeros_like(fp)  # Spark: FPR is 0 with no negatives
    # Spark brackets the curve with (0, 0) and (1, 1).
    x = np.concatenate(([0.0], fpr, [1.0]))
    t = np.concatenate(([0.0], tpr, [1.0]))
    return _trapezoids(x, t)


def _area_under_pr(y: np.ndarray, score: np.ndarray) -> float:
    tp, fp, n_pos, _ = _cumulative_counts(y, score)
    recall = tp / n_pos if n_pos else np.zeros_like(tp)
    precision = tp / (tp + fp)  # each threshold holds >= 1 row, so never 0/0
    # Spark prepends (recall 0, precision at the first threshold) rather than (0, 1):
    # the curve starts flat instead of assuming perfect precision above the top score,
    # which would reward a model whose highest scores are wrong.
    x = np.concatenate(([0.0], recall))
    p = np.concatenate(([precision[0]], precision))
    return _trapezoids(x, p)


# --- MulticlassMetrics -----------------------------------------------------------------

def _confusion_metric(name: str, y: np.ndarray, proba: np.ndarray) -> float:
    k = proba.shape[1]
    predicted = np.argmax(proba, axis=1)  # first maximum, like Spark's Vector.argmax
    label_count = np.bincount(y, minlength=k).astype(np.float64)
    tp = np.bincount(y[predicted == y], minlength=k).astype(np.float64)
    predicted_count = np.bincount(predicted, minlength=k).astype(np.float64)
    total = float(y.size)
    if name == "accuracy":
        return float(tp.sum() / total)
    return float(weighted_by_label(name, tp, label_count, predicted_count, total))


def weighted_by_label(name: str, tp, label_count, predicted_count, total: float):
    """Spark's weightedPrecision / weightedRecall / f1 from per-class counts (last axis = class).

    Spark averages only over classes that occur as labels, each weighted by its frequency;
    a class that is never predicted has precision 0 (not NaN). Leading axes are batches
    (the bootstrap scores many resamples at once).
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(predicted_count > 0, tp / predicted_count, 0.0)
        recall = tp / label_count
        if name == "weightedPrecision":
            per_class = precision
        elif name == "weightedRecall":
            per_class = recall
        elif name == "f1":
            s = precision + recall
            per_class = np.where(s == 0, 0.0, 2.0 * precision * recall / s)
        else:  # pragma: no cover - check_metric guards the names
            raise SpecError(f"metric {name!r} is not a confusion-matrix metric")
    # Same operation order as Spark: metric * count / total, then summed.
    return np.where(label_count > 0, per_class * label_count / total, 0.0).sum(axis=-1)


def _log_loss(y: np.ndarray, proba: np.ndarray, eps: float = LOG_LOSS_EPS) -> float:
    p = proba[np.arange(y.size), y]
    # Spark clips to [eps, 1 - eps] but evaluates the upper clip as -log1p(-eps), which is
    # exact, rather than -log(1 - eps); the probability vector is not renormalised.
    with np.errstate(divide="ignore", invalid="ignore"):
        loss = np.where(p < eps, -math.log(eps),
                        np.where(p > 1.0 - eps, -math.log1p(-eps), -np.log(p)))
    return float(loss.sum() / y.size)


# --- RegressionMetrics -----------------------------------------------------------------

def _mse(y: np.ndarray, yhat: np.ndarray) -> float:
    e = y - yhat
    return float(np.dot(e, e) / y.size)


def _rmse(y: np.ndarray, yhat: np.ndarray) -> float:
    return math.sqrt(_mse(y, yhat))


def _r2(y: np.ndarray, yhat: np.ndarray) -> float:
    # throughOrigin=False: 1 - SSerr / SStot with SStot about the label mean (Spark's
    # variance * (n - 1)). One row or a constant label gives SStot = 0 and, as in Spark,
    # -inf (or NaN when the fit is also exact) rather than an error.
    e = y - yhat
    d = y - y.mean()
    with np.errstate(divide="ignore", invalid="ignore"):
        return float(1.0 - np.float64(np.dot(e, e)) / np.float64(np.dot(d, d)))


def _mae(y: np.ndarray, yhat: np.ndarray) -> float:
    return float(np.abs(y - yhat).sum() / y.size)


def _mape(y: np.ndarray, yhat: np.ndarray) -> float:
    zero = int(np.count_nonzero(y == 0))
    if zero:
        raise DataError(f"metric 'mape' is undefined when the label is 0: {zero} of {y.size} "
                        f"row(s) have label 0; use 'mae' or 'rmse' instead")
    return float(np.mean(np.abs(y - yhat) / np.abs(y)))


_REGRESSION = {"mse": _mse, "rmse": _rmse, "r2": _r2, "mae": _mae, "mape": _mape}

"""The champion's estimated metric on a month whose labels have not arrived, with an interval.

CBPE for classifiers (arXiv 2401.08348): the champion's probabilities, calibrated on labelled
reference data (isotonic, per class), taken as fractional labels; the metric of the model's
scores on them is the expected metric (with one-hot labels it is `compute_metric` itself, so
metrics.py's conventions hold). DLE for regression: a small boosting model of the champion's
per-row loss. Assumption: no concept shift (P(y | scores) as on the reference); calibration
is always applied. The interval adds, in quadrature, the realized metric's label noise on the
month's own rows (simulated, not a row bootstrap: that measures the estimate's spread, not the
realized value's) and the estimator's error (refits without each reference chunk, and the
held-out chunks' excess error). The method, its choices and their checks: docs/estimation.md.
Deterministic for a seed; the boosting runs on one OpenMP thread (threadpoolctl).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from statistics import NormalDist

import numpy as np
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.isotonic import IsotonicRegression
from threadpoolctl import threadpool_limits

from automl_tasks.errors import DataError, SpecError
from automl_tasks.evaluation.metrics import (LOG_LOSS_EPS, _classification_inputs, check_metric,
                                             compute_metric, weighted_by_label)

RESAMPLES = 200
CHUNKS = 10
BLOCK = 4_000_000           # draws x rows x classes held at once, 32 MB of float64
DLE_METRICS = ("mse", "rmse", "mae", "mape")


@dataclass(frozen=True)
class Estimate:
    metric: str
    value: float                  # the estimated metric on the month
    ci_low: float
    ci_high: float
    method: str                   # "cbpe" or "dle"
    rows: int

    def to_dict(self) -> dict:
        return asdict(self)

    def contains(self, realized: float) -> bool:
        return self.ci_low <= realized <= self.ci_high


# --- CBPE ------------------------------------------------------------------------------

class Calibrator:
    """Isotonic calibration of a classifier's (n, k) probabilities, fitted on labelled rows."""

    def fit(self, proba, y) -> Calibrator:
        q, y = np.asarray(proba, dtype=np.float64), np.asarray(y)
        self.classes = q.shape[1]
        # Binary: P(0) is 1 - P(1); calibrating both columns separately could break that.
        columns = [1] if self.classes == 2 else range(self.classes)
        self._maps = [(c, IsotonicRegression(out_of_bounds="clip").fit(q[:, c], (y == c) * 1.0))
                      for c in columns]
        return self

    def transform(self, proba) -> np.ndarray:
        q = np.asarray(proba, dtype=np.float64)
        p = np.zeros_like(q)
        for c, iso in self._maps:
            p[:, c] = iso.predict(q[:, c])
        if self.classes == 2:
            p[:, 0] = 1.0 - p[:, 1]
            return p
        total = p.sum(axis=1, keepdims=True)
        # Every class mapped to 0 (each score below its class's first reference positive):
        # nothing to renormalise, keep the model's own row.
        return np.where(total > 0, p / np.where(total > 0, total, 1.0), q)


def expected_confusion(calibrated, prediction) -> np.ndarray:
    """(k, k) expected confusion matrix, [true class, predicted class]: the sum of calibrated
    P(true) over the rows the model predicts as that class (argmax of `prediction`)."""
    p = np.asarray(calibrated, dtype=np.float64)
    predicted = np.argmax(np.asarray(prediction), axis=1)
    return p.T @ np.eye(p.shape[1])[predicted]


def expected_metric(metric: str, task: str, calibrated, prediction) -> float:
    """CBPE's expected `metric` of the model's `prediction` (n, k) when row i is of class c
    with probability calibrated[i, c]. One-hot labels as `calibrated` give compute_metric."""
    check_metric(metric, task)
    return float(_weighted_value(metric, np.asarray(prediction, dtype=np.float64),
                                 np.asarray(calibrated, dtype=np.float64)))


def _weighted_value(metric: str, q: np.ndarray, w: np.ndarray):
    """`metric` of probabilities q (n, k) when row i holds weight w[..., i, c] of class c
    (rows sum to 1). Leading axes of w are batches (label draws); one value per batch."""
    n, k = q.shape
    if metric in ("areaUnderROC", "areaUnderPR"):
        order = np.argsort(q[:, 1])[::-1]
        s = q[order, 1]
        ends = np.append(np.flatnonzero(s[1:] != s[:-1]), n - 1)  # ties are one threshold
        tp = np.cumsum(w[..., order, 1], axis=-1)[..., ends]
        fp = np.cumsum(w[..., order, 0], axis=-1)[..., ends]
        return _roc_area(tp, fp) if metric == "areaUnderROC" else _pr_area(tp, fp)
    if metric == "logLoss":
        return (w * _log_loss_matrix(q)).sum(axis=(-2, -1)) / n
    hit = np.eye(k)[np.argmax(q, axis=1)]   # (n, k): the model's predicted class
    tp = (w * hit).sum(axis=-2)
    if metric == "accuracy":
        return tp.sum(axis=-1) / n
    return weighted_by_label(metric, tp, w.sum(axis=-2), hit.sum(axis=0), float(n))


def _share(count: np.ndarray, total: np.ndarray) -> np.ndarray:
    # Spark's conventions: recall (TPR) is 0 with no positives, FPR is 0 with no negatives.
    return np.divide(count, total, out=np.zeros_like(count), where=total > 0)


def _trapezoids(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return ((x[..., 1:] - x[..., :-1]) * (y[..., 1:] + y[..., :-1]) / 2.0).sum(axis=-1)


def _roc_area(tp: np.ndarray, fp: np.ndarray) -> np.ndarray:
    edge = np.zeros(tp.shape[:-1] + (1,))
    tpr, fpr = _share(tp, tp[..., -1:]), _share(fp, fp[..., -1:])
    return _trapezoids(np.concatenate([edge, fpr, edge + 1], axis=-1),
                       np.concatenate([edge, tpr, edge + 1], axis=-1))


def _pr_area(tp: np.ndarray, fp: np.ndarray) -> np.ndarray:
    recall = _share(tp, tp[..., -1:])
    precision = tp / (tp + fp)   # every threshold holds >= 1 row of total weight 1
    # As metrics._area_under_pr: the curve starts at (0, precision at the top threshold).
    return _trapezoids(np.concatenate([np.zeros_like(recall[..., :1]), recall], axis=-1),
                       np.concatenate([precision[..., :1], precision], axis=-1))


def _log_loss_matrix(q: np.ndarray) -> np.ndarray:
    """Per-cell log loss -log q[i, c], clipped as metrics._log_loss clips it."""
    with np.errstate(divide="ignore"):
        return np.where(q < LOG_LOSS_EPS, -math.log(LOG_LOSS_EPS),
                        np.where(q > 1.0 - LOG_LOSS_EPS, -math.log1p(-LOG_LOSS_EPS), -np.log(q)))


def _label_draws(metric: str, q: np.ndarray, p: np.ndarray, rng, resamples: int) -> np.ndarray:
    """The realized `metric` on `resamples` label vectors drawn from the calibrated p."""
    n, k = q.shape
    cumulative = np.cumsum(p, axis=1)[:, :-1]
    one_hot = np.eye(k)

    def draw(b: int) -> np.ndarray:
        labels = (rng.random((b, n, 1)) > cumulative).sum(axis=-1)
        return _weighted_value(metric, q, one_hot[labels])
    return _in_blocks(draw, resamples, n * k)


# --- DLE -------------------------------------------------------------------------------

def _loss(metric: str, y: np.ndarray, yhat: np.ndarray) -> np.ndarray:
    e = np.abs(y - yhat)
    if metric in ("mse", "rmse"):
        return e * e
    if metric == "mape":
        zero = int(np.count_nonzero(y == 0))
        if zero:
            raise DataError(f"metric 'mape' is undefined when the label is 0: {zero} of {y.size} "
                            f"reference row(s) have label 0; use 'mae' or 'rmse' instead")
        return e / np.abs(y)
    return e


def _from_mean_loss(metric: str, mean_loss):
    return np.sqrt(mean_loss) if metric == "rmse" else mean_loss


def _loss_model(seed: int) -> HistGradientBoostingRegressor:
    # Small and fixed: the loss is a noisy target, a deep model would chase the noise.
    return HistGradientBoostingRegressor(loss="poisson", max_iter=50, learning_rate=0.1,
                                         max_leaf_nodes=7, min_samples_leaf=50,
                                         early_stopping=False, random_state=seed)


def _loss_draws(metric: str, loss: np.ndarray, ratios: np.ndarray, rng,
                resamples: int) -> np.ndarray:
    """The realized `metric` when each row's loss is its predicted loss times a reference ratio."""
    def draw(b: int) -> np.ndarray:
        return _from_mean_loss(metric, (loss * ratios[rng.integers(0, ratios.size,
                                                                   (b, loss.size))]).mean(axis=1))
    return _in_blocks(draw, resamples, loss.size)


# --- estimators ------------------------------------------------------------------------

class _Estimator:
    method: str

    def __init__(self, task: str, metric: str, folds: list, chunk_sd: float, *, seed: int,
                 resamples: int, confidence: float):
        self.task, self.metric, self.folds, self.chunk_sd = task, metric, folds, chunk_sd
        self.seed, self.resamples, self.confidence = seed, resamples, confidence

    def _estimate(self, value: float, fold_values: list[float], draws: np.ndarray,
                  rows: int) -> Estimate:
        alpha = 1.0 - self.confidence
        low, high = np.quantile(draws, [alpha / 2, 1 - alpha / 2])
        # Grouped jackknife, (K - 1)/K * sum_k (e_k - mean e)^2, plus the chunks' excess error.
        jackknife = (len(fold_values) - 1) * float(np.var(fold_values))
        error = NormalDist().inv_cdf(1 - alpha / 2) ** 2 * (jackknife + self.chunk_sd ** 2)
        return Estimate(self.metric, value, value - math.sqrt(max(value - low, 0.0) ** 2 + error),
                        value + math.sqrt(max(high - value, 0.0) ** 2 + error), self.method, rows)


class CBPE(_Estimator):
    """A classifier's expected metric on unlabelled months, calibrated on a reference."""

    method = "cbpe"

    def __init__(self, task, metric, calibrator: Calibrator, folds: list[Calibrator], chunk_sd,
                 **settings):
        super().__init__(task, metric, folds, chunk_sd, **settings)
        self.calibrator = calibrator

    def estimate(self, prediction, features=None) -> Estimate:
        """Features are not used: CBPE needs only the model's probabilities."""
        q = _probabilities("prediction", prediction, self.task, self.calibrator.classes)
        p = self.calibrator.transform(q)
        fold_values = [_weighted_value(self.metric, q, c.transform(q)) for c in self.folds]
        draws = _label_draws(self.metric, q, p, np.random.default_rng([self.seed, 1]),
                             self.resamples)
        return self._estimate(float(_weighted_value(self.metric, q, p)), fold_values, draws,
                              q.shape[0])


class DLE(_Estimator):
    """A regressor's expected loss on unlabelled months, learnt on a reference."""

    method = "dle"

    def __init__(self, metric, model, folds: list, ratios: np.ndarray, features: int, chunk_sd,
                 **settings):
        super().__init__("regression", metric, folds, chunk_sd, **settings)
        self.model, self.ratios, self.features = model, ratios, features

    def estimate(self, prediction, features=None) -> Estimate:
        yhat = _vector("prediction", prediction)
        x = _design("features", features, yhat, self.features)
        with threadpool_limits(limits=1, user_api="openmp"):
            loss = self.model.predict(x)
            fold_values = [_from_mean_loss(self.metric, m.predict(x).mean()) for m in self.folds]
        draws = _loss_draws(self.metric, loss, self.ratios, np.random.default_rng([self.seed, 1]),
                            self.resamples)
        return self._estimate(float(_from_mean_loss(self.metric, loss.mean())), fold_values,
                              draws, yhat.size)


def fit_estimator(task: str, metric: str, *, reference_prediction, reference_y,
                  reference_features=None, reference_groups=None, seed: int = 0,
                  chunks: int = CHUNKS, resamples: int = RESAMPLES,
                  confidence: float = 0.95) -> CBPE | DLE:
    """An estimator of `metric` fitted on a labelled reference period of the champion.

    Classification (CBPE): `reference_prediction` is the (n, k) probability matrix and
    `reference_y` the class indices; features are ignored. Regression (DLE): the predictions
    and labels are float vectors and `reference_features` (n, d) numeric, NaN allowed, is
    required. `reference_groups`: the reference rows' month ids, one held-out chunk each;
    without them, `chunks` contiguous runs of rows.
    """
    check_metric(metric, task)
    if resamples < 1 or not 0.0 < confidence < 1.0 or chunks < 2:
        raise ValueError(f"need resamples >= 1, 0 < confidence < 1 and chunks >= 2; got "
                         f"{resamples}, {confidence}, {chunks}")
    settings = {"seed": seed, "resamples": resamples, "confidence": confidence}
    if task == "regression":
        return _fit_dle(metric, reference_prediction, reference_y, reference_features,
                        reference_groups, chunks, settings)
    return _fit_cbpe(task, metric, reference_prediction, reference_y, reference_groups, chunks,
                     settings)


def _fit_cbpe(task, metric, prediction, labels, groups, chunks, settings) -> CBPE:
    q = _probabilities("reference_prediction", prediction, task)
    labels = np.asarray(labels)
    if labels.shape != (q.shape[0],):
        raise DataError(f"reference_prediction has shape {q.shape} but reference_y has shape "
                        f"{labels.shape}: need one label per row")
    y, q = _classification_inputs(task, labels, q)
    present = np.unique(y)
    if present.size < 2:
        raise DataError(f"reference_y holds only class {int(present[0])} ({y.size} rows): "
                        f"cannot calibrate {metric} for task {task!r} without another class")
    rng = np.random.default_rng([settings["seed"], 0])
    folds, errors, noise = [], [], []
    for rows in _chunks(y.size, groups, chunks):
        rest = np.ones(y.size, dtype=bool)
        rest[rows] = False
        folds.append(Calibrator().fit(q[rest], y[rest]))
        p = folds[-1].transform(q[rows])
        errors.append(compute_metric(metric, task, y[rows], q[rows])
                      - _weighted_value(metric, q[rows], p))
        noise.append(_label_draws(metric, q[rows], p, rng, settings["resamples"]).var())
    return CBPE(task, metric, Calibrator().fit(q, y), folds, _chunk_sd(errors, noise),
                **settings)


def _fit_dle(metric, prediction, labels, features, groups, chunks, settings) -> DLE:
    if metric not in DLE_METRICS:
        raise SpecError(f"metric {metric!r} cannot be estimated without labels for task "
                        f"'regression': r2 divides by the month's label variance, which the "
                        f"predictions do not tell; use one of: {', '.join(DLE_METRICS)}")
    yhat = _vector("reference_prediction", prediction)
    y = _vector("reference_y", labels, rows=yhat.size, other="reference_prediction")
    if features is None:
        raise DataError(f"task 'regression' estimates {metric} by DLE, which learns the loss "
                        f"from the features: pass reference_features, an (n, d) matrix")
    x = _design("reference_features", features, yhat)
    loss = _loss(metric, y, yhat)
    if not loss.any():
        raise DataError(f"the champion's {metric} loss is 0 on all {y.size} reference rows: "
                        f"there is no loss to learn")
    held_out = _chunks(y.size, groups, chunks)
    predicted = np.empty_like(loss)   # each chunk's loss as predicted without it
    folds, errors = [], []
    with threadpool_limits(limits=1, user_api="openmp"):
        for rows in held_out:
            rest = np.ones(y.size, dtype=bool)
            rest[rows] = False
            folds.append(_loss_model(settings["seed"]).fit(x[rest], loss[rest]))
            predicted[rows] = folds[-1].predict(x[rows])
            errors.append(compute_metric(metric, "regression", y[rows], yhat[rows])
                          - _from_mean_loss(metric, predicted[rows].mean()))
        model = _loss_model(settings["seed"]).fit(x, loss)
    # Only the ratios' spread is wanted: mean 1 keeps the draws centred on the estimate
    # (loss / noisy prediction averages above 1); the model's bias is in the chunks' errors.
    ratios = loss / predicted
    ratios /= ratios.mean()
    rng = np.random.default_rng([settings["seed"], 0])
    noise = [_loss_draws(metric, predicted[rows], ratios, rng, settings["resamples"]).var()
             for rows in held_out]
    return DLE(metric, model, folds, ratios, x.shape[1] - 1, _chunk_sd(errors, noise),
               **settings)


# --- helpers ---------------------------------------------------------------------------

def _chunk_sd(errors: list[float], noise: list[float]) -> float:
    """The estimator's own error: what the chunks' errors show beyond their label noise."""
    return math.sqrt(max(float(np.mean(np.square(errors)) - np.mean(noise)), 0.0))


def _in_blocks(draw, resamples: int, size: int) -> np.ndarray:
    """draw(b) -> b values, called over blocks of at most BLOCK // size draws."""
    per = max(1, BLOCK // size)
    return np.concatenate([draw(min(per, resamples - s)) for s in range(0, resamples, per)])


def _chunks(n: int, groups, chunks: int) -> list[np.ndarray]:
    if groups is None:
        if n < chunks:
            raise DataError(f"the reference has {n} row(s); need at least chunks={chunks} to "
                            f"measure the estimator's error on held-out chunks")
        return np.array_split(np.arange(n), chunks)
    g = np.asarray(groups)
    if g.shape != (n,):
        raise DataError(f"reference_groups has shape {g.shape} but the reference has {n} rows")
    values, inverse = np.unique(g, return_inverse=True)
    if values.size < 2:
        raise DataError(f"reference_groups holds the single month {values[0]!r}: need >= 2 "
                        f"months to measure the estimator's error from month to month")
    return [np.flatnonzero(inverse == i) for i in range(values.size)]


def _probabilities(name: str, proba, task: str, classes: int | None = None) -> np.ndarray:
    q = np.asarray(proba, dtype=np.float64)
    if q.size == 0:
        raise DataError(f"{name} is empty: 0 rows")
    if q.ndim != 2:
        raise DataError(f"{name} must be an (n, k) probability matrix; got shape {q.shape}")
    if task == "binary" and q.shape[1] != 2:
        raise DataError(f"{name} for task 'binary' must have 2 columns (P(0), P(1)); "
                        f"got shape {q.shape}")
    if classes is not None and q.shape[1] != classes:
        raise DataError(f"{name} has {q.shape[1]} probability columns but the estimator was "
                        f"fitted on {classes} classes")
    bad = np.isnan(q).any(axis=1)
    if bad.any():
        raise DataError(f"{name} has NaN probabilities in {int(bad.sum())} row(s), the first "
                        f"at row {int(np.argmax(bad))}")
    return q


def _vector(name: str, values, rows: int | None = None, other: str = "") -> np.ndarray:
    v = np.asarray(values, dtype=np.float64)
    if rows is not None and v.shape != (rows,):
        raise DataError(f"{other} has shape ({rows},) but {name} has shape {v.shape}: "
                        f"need one value per row")
    if v.ndim != 1:
        raise DataError(f"{name} must be a 1-D vector; got shape {v.shape}")
    if v.size == 0:
        raise DataError(f"{name} is empty: 0 rows")
    bad = int(np.count_nonzero(~np.isfinite(v)))
    if bad:
        raise DataError(f"{name} has {bad} non-finite value(s) (NaN or inf)")
    return v


def _design(name: str, features, yhat: np.ndarray, columns: int | None = None) -> np.ndarray:
    """The loss model's inputs: the features, then the champion's prediction."""
    if features is None:
        raise DataError(f"DLE needs {name}: an (n, d) numeric matrix for the {yhat.size} rows")
    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] != yhat.size:
        raise DataError(f"{name} has shape {x.shape} but the prediction has shape {yhat.shape}: "
                        f"need an (n, d) matrix, one row per prediction")
    if columns is not None and x.shape[1] != columns:
        raise DataError(f"{name} has {x.shape[1]} columns but the estimator was fitted on "
                        f"{columns}")
    return np.column_stack([x, yhat])

"""Paired bootstrap comparison of two models scored on the same holdout rows.

Used for candidate vs champion and for the develop-branch model vs the master one:
both models predict the *same* rows, so the question is whether the difference in a
metric is larger than what resampling those rows would produce by chance.

Method. Draw `resamples` bootstrap samples of row indices (n rows with replacement);
score both models on each sample with the *same* indices (paired), so row difficulty
cancels out of the difference. The metric is the project's Spark-equal
``compute_metric`` (or its vectorised equivalent).

* ``raw_delta = candidate - baseline`` in the metric's own units.
* ``delta`` is oriented so that **positive means the candidate is better**:
  ``raw_delta`` for greater-is-better metrics (areaUnderROC, r2, ...), ``-raw_delta``
  for lower-is-better ones (logLoss, rmse, mse, mae, mape).
* ``ci_low, ci_high``: percentile interval of the oriented bootstrap deltas
  (``confidence`` = 0.95 gives the 2.5 % and 97.5 % quantiles).
* ``p_value``: two-sided, by inverting the percentile interval:
  ``min(1, 2 * (1 + min(#{d_b <= 0}, #{d_b >= 0})) / (B + 1))`` over the B
  bootstrap deltas d_b. It agrees with the interval (p < 1 - confidence roughly
  when the interval excludes 0); the +1 keeps it above 0 (smallest value with
  B = 2000 is ~1e-3); ties at 0 count on both sides, so identical models give 1.
* Resamples whose delta is not finite (r2 on a sample with a constant label) are
  left out; ``resamples`` is the number actually used and ``note`` says so.

The resamples are drawn and scored in evaluation/resampling.py.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from automl_tasks.errors import DataError
from automl_tasks.evaluation.metrics import check_metric, compute_metric, orientation
from automl_tasks.evaluation.resampling import bootstrap, labels, scorer

MIN_RESAMPLES = 1000


@dataclass(frozen=True)
class Comparison:
    """Candidate vs baseline on one set of rows (overall, or one segment).

    `delta` is oriented: positive = candidate better, whatever the metric's direction;
    `raw_delta` is candidate - baseline as measured. `ci_low`/`ci_high` bound `delta`.
    A segment with too few rows has point estimates only: NaN interval and p-value,
    `resamples` 0 and a `note` saying why.
    """

    metric: str
    n_rows: int
    candidate: float
    baseline: float
    delta: float
    raw_delta: float
    ci_low: float
    ci_high: float
    p_value: float
    resamples: int
    segment: str | None = None
    confidence: float = 0.95
    note: str | None = None

    def to_dict(self) -> dict:
        """Plain JSON-safe dict: non-finite floats (NaN interval, -inf r2) become None."""
        return {k: None if isinstance(v, float) and not math.isfinite(v) else v
                for k, v in asdict(self).items()}


def paired_bootstrap(metric: str, task: str, y_true, pred_candidate, pred_baseline, *,
                     resamples: int = 2000, seed: int = 0, segment: str | None = None,
                     confidence: float = 0.95) -> Comparison:
    """Compare two models' `metric` on the same rows with a paired bootstrap.

    Predictions follow ``compute_metric``: an (n, k) probability matrix for
    classification, a float vector for regression. Deterministic for a given `seed`.
    """
    _check_settings(resamples, confidence)
    y, cand, base = _inputs(metric, task, y_true, pred_candidate, pred_baseline)
    point_cand = compute_metric(metric, task, y, cand)  # also checks labels against k
    point_base = compute_metric(metric, task, y, base)
    y = labels(task, y)
    rng = np.random.default_rng(seed)
    boot_cand, boot_base = bootstrap(
        [scorer(metric, task, y, cand), scorer(metric, task, y, base)], y.size, resamples, rng)
    return _summarise(metric, y.size, point_cand, point_base, boot_cand, boot_base,
                      confidence, segment)


def compare_by_segment(metric: str, task: str, y_true, pred_candidate, pred_baseline, segments,
                       *, resamples: int = 2000, seed: int = 0, min_rows: int = 30,
                       confidence: float = 0.95,
                       segment_confidence: float | None = None) -> list[Comparison]:
    """Overall comparison first (segment None), then one per segment value, sorted by name.

    Segment values are labelled by ``str(value)`` (a missing value shows as "None" or
    "nan"). Every segment is listed: one with fewer than `min_rows` rows gets point
    estimates only (NaN interval and p-value, ``resamples=0``, a `note`) so a report
    shows it exists without pretending to know its uncertainty. Every call uses the
    same `seed`; each interval is valid on its own at `confidence`, or at
    `segment_confidence` for the segments when given (a multiple-comparison correction).
    """
    if min_rows < 1:
        raise ValueError(f"min_rows must be >= 1, got {min_rows}")
    _check_settings(resamples, confidence)
    per_segment = confidence if segment_confidence is None else segment_confidence
    _check_settings(resamples, per_segment)
    y, cand, base = _inputs(metric, task, y_true, pred_candidate, pred_baseline)
    names = np.asarray(segments)
    if names.ndim != 1 or names.size != y.size:
        raise ValueError(f"segments must be 1-D with one value per row ({y.size}); "
                         f"got shape {names.shape}")
    names = names.astype(str)
    out = [paired_bootstrap(metric, task, y, cand, base, resamples=resamples, seed=seed,
                            confidence=confidence)]
    for name in np.unique(names):  # sorted
        rows = names == name
        n = int(rows.sum())
        if n >= min_rows:
            out.append(paired_bootstrap(metric, task, y[rows], cand[rows], base[rows], resamples=resamples,
                                        seed=seed, segment=str(name), confidence=per_segment))
        else:
            out.append(_point_only(metric, task, y[rows], cand[rows], base[rows], str(name),
                                   per_segment, f"{n} rows < min_rows={min_rows}: no interval"))
    return out


# --- inputs ---------------------------------------------------------------------------

def _check_settings(resamples: int, confidence: float) -> None:
    if resamples < MIN_RESAMPLES:
        raise ValueError(f"resamples={resamples} is too few for a stable interval; "
                         f"use at least {MIN_RESAMPLES}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be strictly between 0 and 1, got {confidence}")


def _inputs(metric: str, task: str, y_true, pred_candidate, pred_baseline):
    check_metric(metric, task)
    y = np.asarray(y_true)
    cand = np.asarray(pred_candidate, dtype=np.float64)
    base = np.asarray(pred_baseline, dtype=np.float64)
    if y.ndim != 1:
        raise ValueError(f"y_true must be 1-D, got shape {y.shape}")
    for label, pred in (("pred_candidate", cand), ("pred_baseline", base)):
        if pred.ndim == 0 or pred.shape[0] != y.size:
            raise ValueError(f"{label} has {pred.shape[0] if pred.ndim else 0} rows but y_true "
                             f"has {y.size}: both models must be scored on the same rows")
    if cand.shape != base.shape:
        raise ValueError(f"pred_candidate and pred_baseline differ in shape: "
                         f"{cand.shape} vs {base.shape}")
    if y.size == 0:
        raise DataError("cannot compare models on 0 rows")
    for label, pred in (("pred_candidate", cand), ("pred_baseline", base)):
        bad = ~np.isfinite(pred)
        if bad.any():
            raise DataError(f"{label} has {int(bad.sum())} non-finite value(s) (NaN or inf)")
    return y, cand, base


# --- bootstrap and summary ------------------------------------------------------------

def _summarise(metric, n, point_cand, point_base, boot_cand, boot_base, confidence,
               segment) -> Comparison:
    sign = orientation(metric)
    with np.errstate(invalid="ignore"):  # -inf - -inf (r2, constant label): dropped below
        deltas = sign * (boot_cand - boot_base) + 0.0  # + 0.0 turns -0.0 into 0.0
    finite = np.isfinite(deltas)
    note = None
    if not finite.all():
        note = (f"{int((~finite).sum())} of {deltas.size} resamples gave a non-finite "
                f"{metric} difference and were left out")
        deltas = deltas[finite]
    if deltas.size == 0:
        ci_low = ci_high = p_value = math.nan
    else:
        alpha = 1.0 - confidence
        ci_low, ci_high = (float(q) for q in np.quantile(deltas, [alpha / 2, 1 - alpha / 2]))
        p_value = _two_sided_p(deltas)
    raw = point_cand - point_base
    return Comparison(metric=metric, n_rows=int(n), candidate=point_cand, baseline=point_base,
                      delta=sign * raw + 0.0, raw_delta=raw, ci_low=ci_low, ci_high=ci_high,
                      p_value=p_value, resamples=int(deltas.size), segment=segment,
                      confidence=confidence, note=note)


def _two_sided_p(deltas: np.ndarray) -> float:
    """Percentile-inversion p-value for delta == 0 (see the module docstring)."""
    tail = min(np.count_nonzero(deltas <= 0), np.count_nonzero(deltas >= 0))
    return float(min(1.0, 2.0 * (tail + 1) / (deltas.size + 1)))


def _point_only(metric, task, y, cand, base, segment, confidence, note) -> Comparison:
    point_cand = compute_metric(metric, task, y, cand)
    point_base = compute_metric(metric, task, y, base)
    raw = point_cand - point_base
    return Comparison(metric=metric, n_rows=int(y.size), candidate=point_cand,
                      baseline=point_base, delta=orientation(metric) * raw + 0.0, raw_delta=raw,
                      ci_low=math.nan, ci_high=math.nan, p_value=math.nan, resamples=0,
                      segment=segment, confidence=confidence, note=note)

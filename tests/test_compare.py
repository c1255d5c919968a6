"""automl_tasks.evaluation.compare: paired bootstrap of two models on the same rows.

The batched metrics must equal compute_metric on every resample (ties, degenerate
single-class resamples, constant labels included); the intervals must behave on
synthetic problems whose answer is known.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from automl_tasks.errors import DataError, SpecError
from automl_tasks.evaluation import resampling
from automl_tasks.evaluation.compare import MIN_RESAMPLES, Comparison, compare_by_segment, paired_bootstrap
from automl_tasks.evaluation.resampling import VECTORISED_METRICS, metric_on_resamples
from automl_tasks.evaluation.metrics import METRICS, compute_metric

TOL = 1e-12


# --- data ------------------------------------------------------------------------------

def binary_data(seed: int, n: int):
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.3).astype(np.int64)
    p1 = np.round(1.0 / (1.0 + np.exp(-(2 * y - 1 + rng.normal(0, 1.5, n)))), 1)  # many ties
    p1[rng.choice(n, max(1, n // 20), replace=False)] = 0.0  # log-loss clipping
    p1[rng.choice(n, max(1, n // 20), replace=False)] = 1.0
    return y, np.column_stack([1.0 - p1, p1])


def multiclass_data(seed: int, n: int, k: int = 4):
    rng = np.random.default_rng(seed)
    y = rng.choice(k, size=n, p=[0.5, 0.3, 0.2, 0.0][:k])  # last class never a label
    proba = rng.dirichlet(np.ones(k), size=n)
    proba[np.arange(n), y] += rng.uniform(0, 1, n)
    proba = np.round(proba / proba.sum(axis=1, keepdims=True), 1)  # argmax ties
    return y, proba


def regression_data(seed: int, n: int):
    rng = np.random.default_rng(seed)
    y = np.round(rng.normal(50, 20, n), 0)  # repeated labels; no zero label (mape)
    y[y == 0] = 1.0
    return y, y + rng.normal(0, 5, n)


DATA = {"binary": binary_data, "multiclass": multiclass_data, "regression": regression_data}


def task_for(metric: str) -> list[str]:
    return [t for t in ("binary", "multiclass", "regression") if t in METRICS[metric].tasks]


def loop(metric, task, y, prediction, idx):
    return np.array([compute_metric(metric, task, y[i], prediction[i]) for i in idx])


# --- batched metric == compute_metric ---------------------------------------------------

@pytest.mark.parametrize("metric,task", [(m, t) for m in METRICS for t in task_for(m)])
@pytest.mark.parametrize("n", [400, 5])  # n=5: single-class and constant-label resamples
def test_batched_metric_equals_compute_metric(metric, task, n):
    y, prediction = DATA[task](seed=n, n=n)
    idx = np.random.default_rng(7).integers(0, n, size=(60, n))
    batched = metric_on_resamples(metric, task, y, prediction, idx)
    np.testing.assert_allclose(batched, loop(metric, task, y, prediction, idx),
                               rtol=TOL, atol=TOL)


def test_every_metric_has_a_batch_version():
    assert VECTORISED_METRICS == set(METRICS)


def test_single_class_resamples_follow_spark_conventions():
    y = np.array([0, 1])
    proba = np.array([[0.4, 0.6], [0.3, 0.7]])
    idx = np.array([[0, 0], [1, 1], [0, 1]])  # negatives only, positives only, both
    np.testing.assert_array_equal(metric_on_resamples("areaUnderROC", "binary", y, proba, idx),
                                  [0.0, 1.0, 1.0])


def test_loop_fallback_gives_the_same_comparison(monkeypatch):
    y, proba = multiclass_data(seed=3, n=150)
    other = np.roll(proba, 1, axis=0)
    vectorised = paired_bootstrap("f1", "multiclass", y, proba, other, resamples=1000)
    monkeypatch.setattr(resampling, "_BATCH", {})
    looped = paired_bootstrap("f1", "multiclass", y, proba, other, resamples=1000)
    for field in ("candidate", "baseline", "delta", "ci_low", "ci_high", "p_value"):
        assert getattr(looped, field) == pytest.approx(getattr(vectorised, field), abs=TOL)


def test_results_do_not_depend_on_chunking(monkeypatch):
    y, yhat = regression_data(seed=1, n=300)
    whole = paired_bootstrap("rmse", "regression", y, yhat, yhat[::-1].copy())
    monkeypatch.setattr(resampling, "MAX_CHUNK_INDICES", 300 * 7)  # 7 resamples per chunk
    chunked = paired_bootstrap("rmse", "regression", y, yhat, yhat[::-1].copy())
    assert chunked == whole


# --- intervals on problems with a known answer ------------------------------------------

def gaussian_scores(y, separation, rng):
    score = separation * y + rng.normal(0, 1, y.size)
    p1 = 1.0 / (1.0 + np.exp(-score))
    return np.column_stack([1.0 - p1, p1])


def true_auc(separation):
    # Normal scores with mean gap d and unit variance: AUC = Phi(d / sqrt(2)).
    return 0.5 * (1.0 + math.erf(separation / 2.0))


def test_clearly_better_classifier_interval_covers_the_true_delta():
    rng = np.random.default_rng(0)
    y = (rng.random(2000) < 0.5).astype(np.int64)
    result = paired_bootstrap("areaUnderROC", "binary", y, gaussian_scores(y, 2.0, rng),
                              gaussian_scores(y, 1.0, rng))
    truth = true_auc(2.0) - true_auc(1.0)  # ~0.16
    assert result.ci_low < truth < result.ci_high
    assert result.ci_low > 0 and result.p_value < 0.01
    assert result.delta == result.raw_delta == result.candidate - result.baseline
    assert result.resamples == 2000 and result.n_rows == 2000 and result.note is None


def test_lower_is_better_metric_is_oriented_so_positive_means_candidate_better():
    rng = np.random.default_rng(1)
    y = rng.normal(0, 3, 3000)
    result = paired_bootstrap("rmse", "regression", y, y + rng.normal(0, 1, y.size),
                              y + rng.normal(0, 2, y.size))
    assert result.raw_delta < 0 and result.delta == -result.raw_delta
    assert result.ci_low < 1.0 < result.ci_high  # true rmse 1 vs 2
    assert result.ci_low > 0 and result.p_value < 0.01


def test_identical_models_give_a_zero_interval():
    y, proba = binary_data(seed=2, n=500)
    result = paired_bootstrap("logLoss", "binary", y, proba, proba.copy())
    assert (result.delta, result.ci_low, result.ci_high, result.p_value) == (0.0, 0.0, 0.0, 1.0)
    assert math.copysign(1.0, result.delta) == 1.0  # no -0.0 in reports


def test_equally_good_different_models_straddle_zero():
    # Baseline scores are the candidate's shuffled within each class: the same AUC on
    # the full data, a different ranking row by row.
    rng = np.random.default_rng(5)
    y = (rng.random(1500) < 0.4).astype(np.int64)
    cand = gaussian_scores(y, 1.0, rng)
    base = cand.copy()
    for label in (0, 1):
        rows = np.flatnonzero(y == label)
        base[rows] = cand[rng.permutation(rows)]
    result = paired_bootstrap("areaUnderROC", "binary", y, cand, base)
    assert result.delta == 0.0
    assert result.ci_low < 0.0 < result.ci_high
    assert result.p_value > 0.5


def test_same_seed_same_result_other_seed_other_interval():
    y, yhat = regression_data(seed=3, n=400)
    other = yhat + np.random.default_rng(0).normal(0, 3, yhat.size)
    first = paired_bootstrap("mae", "regression", y, yhat, other, seed=11)
    assert paired_bootstrap("mae", "regression", y, yhat, other, seed=11) == first
    moved = paired_bootstrap("mae", "regression", y, yhat, other, seed=12)
    assert moved.delta == first.delta and moved.ci_low != first.ci_low


def test_non_finite_resamples_are_left_out_with_a_note():
    # Labels [1, 1, 1, 2]: about a third of resamples have a constant label (r2 = -inf/NaN).
    y = np.array([1.0, 1.0, 1.0, 2.0])
    result = paired_bootstrap("r2", "regression", y, y + [0.1, -0.1, 0.2, 0.0],
                              y + [0.3, 0.1, -0.2, 0.1], resamples=1000)
    assert 0 < result.resamples < 1000
    assert "non-finite" in result.note and math.isfinite(result.ci_low)


# --- segments ---------------------------------------------------------------------------

def test_compare_by_segment_overall_first_then_sorted_segments():
    rng = np.random.default_rng(8)
    n_a, n_b, n_c = 600, 400, 12
    segments = np.array(["b"] * n_b + ["a"] * n_a + ["c"] * n_c)
    y = rng.normal(0, 3, segments.size)
    baseline = y + rng.normal(0, 2, y.size)
    candidate = baseline.copy()
    in_a = segments == "a"
    candidate[in_a] = y[in_a] + rng.normal(0, 1, n_a)  # better in "a" only
    results = compare_by_segment("rmse", "regression", y, candidate, baseline, segments,
                                 resamples=1000)
    assert [r.segment for r in results] == [None, "a", "b", "c"]
    assert [r.n_rows for r in results] == [n_a + n_b + n_c, n_a, n_b, n_c]
    overall, a, b, c = results
    assert overall.ci_low > 0 and a.ci_low > 0
    assert (b.delta, b.ci_low, b.ci_high) == (0.0, 0.0, 0.0)
    # Too few rows: point estimates only, and it says why.
    assert c.resamples == 0 and math.isnan(c.ci_low) and math.isnan(c.p_value)
    assert "min_rows=30" in c.note and c.delta == 0.0


def test_segment_values_are_labelled_by_their_string():
    y, proba = binary_data(seed=9, n=200)
    segments = np.where(np.arange(200) < 100, 10, 2)  # sorted as text: "10" < "2"
    results = compare_by_segment("accuracy", "binary", y, proba, proba, segments,
                                 resamples=1000, min_rows=50)
    assert [r.segment for r in results] == [None, "10", "2"]


def test_to_dict_is_json_safe():
    y, yhat = regression_data(seed=4, n=60)
    segments = ["x"] * 50 + ["y"] * 10
    results = compare_by_segment("mse", "regression", y, yhat, yhat + 1.0, segments,
                                 resamples=1000)
    dicts = [r.to_dict() for r in results]
    json.dumps(dicts, allow_nan=False)
    assert dicts[-1]["ci_low"] is None and dicts[-1]["segment"] == "y"
    assert set(dicts[0]) == set(Comparison.__dataclass_fields__)


# --- errors -----------------------------------------------------------------------------

def test_rejects_too_few_resamples():
    y, yhat = regression_data(seed=0, n=50)
    with pytest.raises(ValueError, match=f"at least {MIN_RESAMPLES}"):
        paired_bootstrap("rmse", "regression", y, yhat, yhat, resamples=999)


def test_rejects_mismatched_lengths():
    y, proba = binary_data(seed=0, n=50)
    with pytest.raises(ValueError, match="pred_baseline has 49 rows but y_true has 50"):
        paired_bootstrap("areaUnderROC", "binary", y, proba, proba[:-1])
    with pytest.raises(ValueError, match="segments must be 1-D with one value per row"):
        compare_by_segment("areaUnderROC", "binary", y, proba, proba, ["a"] * 49)


def test_rejects_empty_input():
    with pytest.raises(DataError, match="0 rows"):
        paired_bootstrap("rmse", "regression", [], [], [])


def test_rejects_non_finite_predictions_and_wrong_metric():
    y, yhat = regression_data(seed=0, n=50)
    bad = yhat.copy()
    bad[3] = np.nan
    with pytest.raises(DataError, match="pred_candidate has 1 non-finite"):
        paired_bootstrap("rmse", "regression", y, bad, yhat)
    with pytest.raises(SpecError, match="areaUnderROC"):
        paired_bootstrap("areaUnderROC", "regression", y, yhat, yhat)

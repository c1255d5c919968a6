"""Performance estimation without labels: CBPE for classification, DLE for regression."""

from __future__ import annotations

import math

import numpy as np
import pytest

from automl_tasks.errors import DataError, SpecError
from automl_tasks.evaluation.metrics import LOG_LOSS_EPS, compute_metric
from automl_tasks.monitoring.estimation import (Calibrator, Estimate, expected_confusion,
                                                expected_metric, fit_estimator)

CLASSIFICATION = ["accuracy", "f1", "weightedPrecision", "weightedRecall", "logLoss"]


def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def _binary(n, seed, *, shift=0.0, slope=3.0, concept=0.0):
    """One feature x ~ N(shift, 1); true P(y=1|x) = sigmoid(2x - 0.5 + concept).

    The model's score sigmoid(slope * x - 0.5) is monotone in x, so P(y | score) is the same
    wherever x moves (covariate shift); `concept` moves P(y|x) itself. slope 2: calibrated,
    steeper: overconfident."""
    rng = np.random.default_rng(seed)
    x = rng.normal(shift, 1.0, n)
    y = (rng.random(n) < _sigmoid(2.0 * x - 0.5 + concept)).astype(int)
    score = _sigmoid(slope * x - 0.5)
    return np.column_stack([1.0 - score, score]), y


def _multiclass(n, seed, *, shift=0.0):
    """Three classes, true P(y|x) = softmax(x @ W); the model is overconfident (logits x 1.5),
    a bijection of the true probabilities, so P(y | model) is unchanged by covariate shift."""
    rng = np.random.default_rng(seed)
    x = rng.normal(0.0, 1.0, (n, 2)) + shift
    logits = x @ np.array([[1.5, -1.0, 0.0], [0.0, 1.0, -1.2]])

    def softmax(z):
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)
    cumulative = np.cumsum(softmax(logits), axis=1)
    y = (rng.random((n, 1)) > cumulative[:, :-1]).sum(axis=1)
    return softmax(1.5 * logits), y


# --- arithmetic by hand ------------------------------------------------------------------

# The model predicts rows 0, 1 as class 1 and rows 2, 3 as class 0.
MODEL = np.array([[0.3, 0.7], [0.45, 0.55], [0.8, 0.2], [0.6, 0.4]])
CALIBRATED = np.array([[0.2, 0.8], [0.4, 0.6], [0.9, 0.1], [0.7, 0.3]])


def test_expected_confusion_matrix_and_accuracy_by_hand():
    # [true, predicted]: predicted 0 (rows 2, 3): true 0 = 0.9 + 0.7, true 1 = 0.1 + 0.3;
    # predicted 1 (rows 0, 1): true 0 = 0.2 + 0.4, true 1 = 0.8 + 0.6.
    assert expected_confusion(CALIBRATED, MODEL) == pytest.approx(np.array([[1.6, 0.6],
                                                                            [0.4, 1.4]]))
    # Expected accuracy (diagonal / rows) = (1.6 + 1.4) / 4; weightedRecall equals it.
    assert expected_metric("accuracy", "binary", CALIBRATED, MODEL) == pytest.approx(0.75)
    assert expected_metric("weightedRecall", "binary", CALIBRATED, MODEL) == pytest.approx(0.75)
    # Expected label counts (column sums of p): 2.2 and 1.8; predicted counts 2 and 2.
    # Precision 1.6/2 and 1.4/2, weighted by label count / 4.
    assert expected_metric("weightedPrecision", "binary", CALIBRATED, MODEL) == pytest.approx(
        (0.8 * 2.2 + 0.7 * 1.8) / 4)
    # f1 per class = 2 tp / (predicted + label): 3.2 / 4.2 and 2.8 / 3.8.
    assert expected_metric("f1", "binary", CALIBRATED, MODEL) == pytest.approx(
        (3.2 / 4.2 * 2.2 + 2.8 / 3.8 * 1.8) / 4)


def test_expected_auc_and_pr_by_hand_with_a_tie():
    score = np.array([0.9, 0.7, 0.7, 0.2])
    model = np.column_stack([1 - score, score])
    p = np.array([0.8, 0.6, 0.2, 0.4])
    calibrated = np.column_stack([1 - p, p])
    # Expected positives 2.0, negatives 2.0. Thresholds (the tie at 0.7 is one point):
    #   0.9: tp 0.8, fp 0.2 -> TPR 0.4, FPR 0.1
    #   0.7: tp 1.6, fp 1.4 -> TPR 0.8, FPR 0.7
    #   0.2: tp 2.0, fp 2.0 -> TPR 1.0, FPR 1.0
    # ROC (0,0) (0.1,0.4) (0.7,0.8) (1,1): 0.1*0.4/2 + 0.6*1.2/2 + 0.3*1.8/2 = 0.02+0.36+0.27.
    assert expected_metric("areaUnderROC", "binary", calibrated, model) == pytest.approx(0.65)
    # PR: recall 0.4, 0.8, 1.0; precision 0.8/1, 1.6/3, 2/4, starting flat at (0, 0.8):
    # 0.4*0.8 + 0.4*(0.8 + 8/15)/2 + 0.2*(8/15 + 0.5)/2 = 0.32 + 0.26667 + 0.10333.
    assert expected_metric("areaUnderPR", "binary", calibrated, model) == pytest.approx(0.69)


def test_expected_log_loss_by_hand_with_clipping():
    model = np.array([[0.5, 0.5], [0.2, 0.8], [1.0, 0.0]])
    calibrated = np.array([[0.25, 0.75], [0.5, 0.5], [0.9, 0.1]])
    rows = [
        math.log(2.0),                                       # -(0.25 + 0.75) log 0.5
        -(0.5 * math.log(0.2) + 0.5 * math.log(0.8)),
        # q = 1 and q = 0 are clipped as Spark clips them: -log1p(-eps) and -log(eps) = 34.54.
        -(0.9 * math.log1p(-LOG_LOSS_EPS) + 0.1 * math.log(LOG_LOSS_EPS)),
    ]
    assert expected_metric("logLoss", "binary", calibrated, model) == pytest.approx(
        sum(rows) / 3)


@pytest.mark.parametrize("task, metric", [("binary", m) for m in
                                          CLASSIFICATION + ["areaUnderROC", "areaUnderPR"]]
                         + [("multiclass", m) for m in CLASSIFICATION])
def test_one_hot_labels_as_probabilities_give_the_realized_metric(task, metric):
    # The expected metric and compute_metric share every convention: with certain labels
    # (p one-hot) they are the same number. Scores rounded to 0.1 make many ties.
    q, y = _binary(500, 1) if task == "binary" else _multiclass(500, 1)
    q = np.round(q, 1)
    one_hot = np.eye(q.shape[1])[y]
    assert expected_metric(metric, task, one_hot, q) == pytest.approx(
        compute_metric(metric, task, y, q), abs=1e-12)


# --- calibration -------------------------------------------------------------------------

def test_a_calibrated_source_is_estimated_close_to_realized():
    reference, reference_y = _binary(20_000, 2, slope=2.0)
    month, month_y = _binary(20_000, 3, slope=2.0)
    for metric in ("accuracy", "areaUnderROC"):
        estimator = fit_estimator("binary", metric, reference_prediction=reference,
                                  reference_y=reference_y)
        estimate = estimator.estimate(month)
        realized = compute_metric(metric, "binary", month_y, month)
        # On 20k rows the realized accuracy's sd is sqrt(0.8 * 0.2 / 20k) ~ 0.003 and AUC's
        # about as much: 0.012 is ~4 sd, room for the calibrator's own small error.
        assert abs(estimate.value - realized) < 0.012, (metric, estimate, realized)
        assert estimate.contains(realized)


def test_the_calibrator_corrects_an_overconfident_model():
    reference, reference_y = _binary(20_000, 4, slope=4.0)
    month, month_y = _binary(20_000, 5, slope=4.0)
    for metric in ("accuracy", "areaUnderROC", "logLoss"):
        realized = compute_metric(metric, "binary", month_y, month)
        naive = expected_metric(metric, "binary", month, month)   # its probabilities trusted
        estimate = fit_estimator("binary", metric, reference_prediction=reference,
                                 reference_y=reference_y).estimate(month)
        assert abs(naive - realized) > 0.03, (metric, naive, realized)
        assert abs(estimate.value - realized) < abs(naive - realized) / 5, (metric, estimate)
        assert estimate.contains(realized)


def test_the_calibrator_returns_rows_that_sum_to_one():
    q, y = _multiclass(3000, 6)
    calibrated = Calibrator().fit(q, y).transform(q)
    assert calibrated.shape == q.shape and np.allclose(calibrated.sum(axis=1), 1.0)
    assert ((calibrated >= 0) & (calibrated <= 1)).all()


# --- shift -------------------------------------------------------------------------------

# (reference, shifted month) per task: the features move, P(y | x) does not.
COVARIATE_SHIFT = {
    "binary": lambda: (_binary(10_000, 7), _binary(5000, 8, shift=1.2)),
    "multiclass": lambda: (_multiclass(10_000, 9), _multiclass(5000, 10, shift=np.array([1.0, -0.8]))),
}


@pytest.mark.parametrize("task, metric", [("binary", m) for m in ["accuracy", "f1", "logLoss", "areaUnderROC",
                                                                  "areaUnderPR"]]
                         + [("multiclass", m) for m in CLASSIFICATION])
def test_the_estimate_tracks_covariate_shift_within_its_interval(task, metric):
    (reference, reference_y), (month, month_y) = COVARIATE_SHIFT[task]()
    estimator = fit_estimator(task, metric, reference_prediction=reference, reference_y=reference_y)
    before = compute_metric(metric, task, reference_y, reference)
    realized = compute_metric(metric, task, month_y, month)
    estimate = estimator.estimate(month)
    # The shift moves the metric by more than the interval's half-width: tracking it matters.
    assert abs(realized - before) > (estimate.ci_high - estimate.ci_low) / 2
    assert estimate.contains(realized), (estimate, realized, before)


@pytest.mark.parametrize("metric", ["accuracy", "logLoss"])
def test_concept_shift_is_the_documented_limit(metric):
    # P(y|x) moves (the intercept drops by 2) while the scores do not: CBPE still estimates
    # the reference relationship, and the realized value lands well outside its interval
    # (accuracy 0.70 against [0.76, 0.80], logLoss 0.67 against [0.45, 0.51]). A ranking
    # metric such as areaUnderROC hardly moves with the intercept, so it is not the example.
    reference, reference_y = _binary(10_000, 11)
    month, month_y = _binary(5000, 12, concept=-2.0)
    estimate = fit_estimator("binary", metric, reference_prediction=reference,
                             reference_y=reference_y).estimate(month)
    realized = compute_metric(metric, "binary", month_y, month)
    assert not estimate.contains(realized), (estimate, realized)


def test_reference_months_whose_concept_wanders_widen_the_interval():
    # Six reference months; in the second set each month's P(y|x) intercept moves by +-0.6,
    # so the estimator's error on each held-out month (estimate vs realized AUC) grows, and so
    # does the refits' spread: the interval is ~0.024 wide with a stable concept, ~0.046
    # when it wanders.
    def reference(wander):
        parts = [_binary(2000, 20 + m, concept=wander * (-1) ** m) for m in range(6)]
        return (np.concatenate([q for q, _ in parts]), np.concatenate([y for _, y in parts]),
                np.repeat([f"2024-0{m + 1}" for m in range(6)], 2000))
    month, _ = _binary(3000, 30)
    widths = {}
    for wander in (0.0, 0.6):
        q, y, months = reference(wander)
        estimator = fit_estimator("binary", "areaUnderROC", reference_prediction=q,
                                  reference_y=y, reference_groups=months)
        estimate = estimator.estimate(month)
        widths[wander] = estimate.ci_high - estimate.ci_low
    assert widths[0.6] > 1.5 * widths[0.0], widths


# --- DLE ---------------------------------------------------------------------------------

def _regression(n, seed, *, low=0.0):
    """y = 3 x2 + noise with sd 0.2 + 2 x1, x1 ~ U(low, 1): raising `low` shifts the rows
    toward the noisy region. The champion predicts the mean 3 x2 exactly; 5% of x2 is NaN
    in the features (the champion saw it, the loss model copes)."""
    rng = np.random.default_rng(seed)
    x1, x2 = rng.uniform(low, 1.0, n), rng.normal(0.0, 1.0, n)
    y = 3.0 * x2 + rng.normal(0.0, 1.0, n) * (0.2 + 2.0 * x1)
    features = np.column_stack([x1, np.where(rng.random(n) < 0.05, np.nan, x2)])
    return features, 3.0 * x2, y


@pytest.mark.parametrize("metric", ["rmse", "mae"])
def test_dle_follows_a_shift_toward_the_noisy_region(metric):
    features, prediction, y = _regression(4000, 13)
    estimator = fit_estimator("regression", metric, reference_prediction=prediction,
                              reference_y=y, reference_features=features)
    same_features, same_prediction, same_y = _regression(3000, 14)
    shifted_features, shifted_prediction, shifted_y = _regression(3000, 15, low=0.5)
    same = estimator.estimate(same_prediction, same_features)
    shifted = estimator.estimate(shifted_prediction, shifted_features)
    # rmse goes from ~1.33 to ~1.73 (mae from ~0.96 to ~1.36): estimated, the rise is clear.
    assert shifted.value > same.value + 0.25 and shifted.ci_low > same.ci_high
    assert same.contains(compute_metric(metric, "regression", same_y, same_prediction))
    assert shifted.contains(compute_metric(metric, "regression", shifted_y, shifted_prediction))
    assert shifted.method == "dle" and shifted.rows == 3000


# --- the interval --------------------------------------------------------------------------

@pytest.mark.parametrize("metric", ["accuracy", "areaUnderROC"])
def test_the_interval_covers_the_realized_value_over_seeds(metric):
    # 40 independent calibrated no-shift worlds. Not >= 0.95: with 40 trials a true 95%
    # interval misses 2 on average and 3+ with probability 0.32, so 0.95 would fail a correct
    # interval a third of the time. >= 0.85 allows 6 misses: a true 95% interval misses 7+
    # with probability 0.003, while a 75% interval passes with probability < 0.1. The bound
    # tests coverage, with slack for an interval that is approximate (its estimator-error part
    # comes from 10 reference chunks).
    covered = []
    for seed in range(40):
        reference, reference_y = _binary(2000, 100 + seed, slope=2.0)
        month, month_y = _binary(1000, 200 + seed, slope=2.0)
        estimate = fit_estimator("binary", metric, reference_prediction=reference,
                                 reference_y=reference_y, seed=seed).estimate(month)
        covered.append(estimate.contains(compute_metric(metric, "binary", month_y, month)))
    assert np.mean(covered) >= 0.85, np.mean(covered)


def test_the_interval_holds_the_label_noise_a_row_bootstrap_would_miss():
    # Every row scored 0.8 and the reference exactly 80% positive in every chunk: the
    # calibrator maps 0.8 to 0.8, each held-out chunk is estimated exactly and every refit
    # agrees, so the estimator-error part is 0. A bootstrap of the month's rows would give a
    # zero-width interval (all rows equal), yet the realized accuracy on 2500 rows has sd
    # sqrt(0.8 * 0.2 / 2500) = 0.008: the interval is 0.8 +- 1.96 * 0.008 = +- 0.0157.
    reference = np.tile([0.2, 0.8], (5000, 1))
    reference_y = np.tile([1, 1, 1, 1, 0], 1000)
    estimator = fit_estimator("binary", "accuracy", reference_prediction=reference,
                              reference_y=reference_y)
    estimate = estimator.estimate(np.tile([0.2, 0.8], (2500, 1)))
    assert estimate.value == pytest.approx(0.8) and estimator.chunk_sd == 0.0
    # 200 draws place the 2.5% and 97.5% quantiles within ~15% of the exact ones.
    assert 0.0157 * 0.85 < estimate.value - estimate.ci_low < 0.0157 * 1.15
    assert 0.0157 * 0.85 < estimate.ci_high - estimate.value < 0.0157 * 1.15


def test_estimates_are_deterministic_and_serialise():
    reference, reference_y = _binary(3000, 40)
    month, _ = _binary(1000, 41)
    first = fit_estimator("binary", "f1", reference_prediction=reference,
                          reference_y=reference_y, seed=3).estimate(month)
    again = fit_estimator("binary", "f1", reference_prediction=reference,
                          reference_y=reference_y, seed=3).estimate(month)
    assert first == again and isinstance(first, Estimate)
    assert first.to_dict() == {"metric": "f1", "value": first.value, "ci_low": first.ci_low,
                               "ci_high": first.ci_high, "method": "cbpe", "rows": 1000}
    assert first.ci_low < first.value < first.ci_high
    assert first.contains(first.value) and not first.contains(first.ci_high + 1e-9)


# --- bad inputs ----------------------------------------------------------------------------

Q10, Y10 = _binary(10, 50)
Y10[:2] = [0, 1]          # both classes present
Q3, Y3 = _multiclass(60, 51)
X10 = np.zeros((10, 2))
YHAT10 = np.linspace(1.0, 2.0, 10)


def _fit(task, metric, prediction, y, **kw):
    return fit_estimator(task, metric, reference_prediction=prediction, reference_y=y,
                         chunks=2, **kw)


@pytest.mark.parametrize("call, error, fragments", [
    (lambda: _fit("binary", "accuracy", np.empty((0, 2)), np.empty(0, dtype=int)),
     DataError, ["reference_prediction is empty"]),
    (lambda: _fit("binary", "areaUnderROC", Q10, np.ones(10, dtype=int)),
     DataError, ["only class 1", "areaUnderROC", "'binary'"]),
    (lambda: _fit("binary", "accuracy", Q10, Y10[:9]),
     DataError, ["(10, 2)", "(9,)"]),
    (lambda: _fit("binary", "accuracy", np.column_stack([Q10, Q10[:, :1]]), Y10),
     DataError, ["2 columns", "(10, 3)"]),
    (lambda: _fit("binary", "accuracy", Q10, np.where(Y10 == 1, 3, 0)),
     DataError, ["class label 3", "0..1"]),
    (lambda: _fit("binary", "accuracy", np.where(np.arange(10)[:, None] == 4, np.nan, Q10), Y10),
     DataError, ["reference_prediction has NaN", "1 row(s)", "row 4"]),
    (lambda: _fit("binary", "accuracy", Q10, Y10).estimate(np.where(
        np.arange(10)[:, None] >= 7, np.nan, Q10)),
     DataError, ["prediction has NaN", "3 row(s)", "row 7"]),
    (lambda: _fit("multiclass", "f1", Q3, Y3).estimate(np.full((5, 4), 0.25)),
     DataError, ["4 probability columns", "fitted on 3 classes"]),
    (lambda: _fit("binary", "accuracy", Q10, Y10, reference_groups=["2024-01"] * 10),
     DataError, ["single month", "2024-01"]),
    (lambda: _fit("binary", "accuracy", Q10, Y10, reference_groups=["2024-01"] * 9),
     DataError, ["reference_groups has shape (9,)", "10 rows"]),
    (lambda: _fit("binary", "mse", Q10, Y10),
     SpecError, ["'mse'", "regression", "'binary'"]),
    (lambda: _fit("regression", "r2", YHAT10, YHAT10, reference_features=X10),
     SpecError, ["'r2'", "'regression'", "mse, rmse, mae, mape"]),
    (lambda: _fit("regression", "rmse", YHAT10, YHAT10 + 1.0),
     DataError, ["reference_features"]),
    (lambda: _fit("regression", "rmse", YHAT10, YHAT10[:8], reference_features=X10),
     DataError, ["(10,)", "(8,)"]),
    (lambda: _fit("regression", "rmse", YHAT10, YHAT10 + 1.0, reference_features=X10[:7]),
     DataError, ["reference_features has shape (7, 2)", "(10,)"]),
    (lambda: _fit("regression", "mape", YHAT10, np.append(YHAT10[:9], 0.0),
                  reference_features=X10),
     DataError, ["'mape'", "label 0", "1 of 10"]),
    (lambda: _fit("regression", "rmse", YHAT10, YHAT10 + 1.0, reference_features=X10)
     .estimate(YHAT10),
     DataError, ["DLE needs features"]),
    (lambda: _fit("regression", "rmse", YHAT10, YHAT10 + 1.0, reference_features=X10)
     .estimate(YHAT10, np.zeros((10, 3))),
     DataError, ["features has 3 columns", "fitted on 2"]),
])
def test_bad_inputs_raise_errors_that_say_what_is_wrong(call, error, fragments):
    with pytest.raises(error) as raised:
        call()
    for fragment in fragments:
        assert fragment in str(raised.value), (fragment, str(raised.value))

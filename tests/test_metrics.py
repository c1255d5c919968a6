"""automl_tasks.evaluation.metrics against Spark's own evaluators on the same predictions.

One DataFrame per scenario, every metric evaluated on it: random data with tied
scores, imbalanced labels, probabilities of exactly 0 and 1 (log-loss clipping),
tied argmax rows and, for multiclass, a class that is never predicted and a class
that is predicted but never a label.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest

from automl_tasks.errors import DataError, SpecError
from automl_tasks.evaluation.metrics import (
    DEFAULT_METRIC, METRICS, TASKS, check_metric, compute_metric, is_better, worst_value)

CLASSIFICATION_METRICS = ("f1", "weightedPrecision", "weightedRecall", "accuracy", "logLoss")
BINARY_METRICS = ("areaUnderROC", "areaUnderPR") + CLASSIFICATION_METRICS
REGRESSION_METRICS = ("mse", "rmse", "r2", "mae", "mape")

# Spark sums in a different order (per partition, tree reduce; the regression summariser
# works online): the results differ from numpy's only in the last bits. Every metric here
# is O(1) except mse/rmse/mae on large labels, hence the relative term.
ABS_TOL = 1e-9
REL_TOL = 1e-12


@pytest.fixture(scope="module")
def metrics_spark(spark):
    # The suite's one shared session (tests/conftest.py).
    return spark


# --- data ------------------------------------------------------------------------------

def binary_data(seed: int, n: int = 3000, positive_rate: float = 0.2):
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < positive_rate).astype(np.int64)
    logit = 1.5 * (2 * y - 1) + rng.normal(0, 1.5, n)
    p1 = np.round(1.0 / (1.0 + np.exp(-logit)), 2)  # rounding -> many tied scores and ties at 0.5
    # Exact 0 and 1 on both classes: log-loss clipping at eps and 1 - eps.
    p1[rng.choice(n, 20, replace=False)] = 0.0
    p1[rng.choice(n, 20, replace=False)] = 1.0
    return y, np.column_stack([1.0 - p1, p1])


def multiclass_data(seed: int, n: int = 3000):
    rng = np.random.default_rng(seed)
    k = 5
    # Class 4 is never a label; class 3 is a rare label and never predicted.
    y = rng.choice(k, size=n, p=[0.55, 0.25, 0.15, 0.05, 0.0])
    proba = rng.dirichlet(np.ones(k), size=n)
    proba[np.arange(n), y] += rng.uniform(0, 1.5, n)  # informative, but often wrong
    proba[:, 3] *= 0.01
    proba = np.round(proba / proba.sum(axis=1, keepdims=True), 2)  # ties between classes
    tie_rows = rng.choice(n, 30, replace=False)
    proba[tie_rows] = [0.4, 0.0, 0.4, 0.0, 0.2]  # argmax tie -> lowest index (0)
    hard = rng.choice(n, 20, replace=False)
    proba[hard] = 0.0
    proba[hard, 4] = 1.0  # confidently wrong (class 4 is never a label): p(true) == 0
    sure = rng.choice(np.flatnonzero(y != 3), 20, replace=False)  # keep class 3 unpredicted
    proba[sure] = 0.0
    proba[sure, y[sure]] = 1.0  # p(true) == 1
    return y, proba


def regression_data(seed: int, n: int = 3000, scale: float = 100.0):
    rng = np.random.default_rng(seed)
    y = rng.normal(0.5 * scale, scale, n)
    y[y == 0] = 1.0
    yhat = y + rng.standard_t(3, n) * 0.3 * scale + 0.05 * scale
    return y, yhat


# --- Spark side ------------------------------------------------------------------------

def classification_frame(spark, y, proba):
    """label, probability (VectorUDT) and prediction = argmax computed by Spark SQL, not numpy."""
    from pyspark.ml.functions import vector_to_array
    from pyspark.ml.linalg import Vectors
    from pyspark.sql import functions as F

    rows = [(float(label), Vectors.dense(row)) for label, row in zip(y.tolist(), proba.tolist())]
    df = spark.createDataFrame(rows, ["label", "probability"])
    arr = vector_to_array("probability")
    # array_position is 1-based and returns the first match: the lowest index among ties.
    df = df.withColumn("prediction", (F.array_position(arr, F.array_max(arr)) - 1).cast("double"))
    return df.cache()


def spark_classification_metrics(df, binary: bool) -> dict[str, float]:
    from pyspark.ml.evaluation import (
        BinaryClassificationEvaluator, MulticlassClassificationEvaluator)

    out = {}
    if binary:
        # numBins=0: exact curve; the default 1000 bins down-sample it and move AUC by ~1e-6.
        evaluator = BinaryClassificationEvaluator(rawPredictionCol="probability", numBins=0)
        for name in ("areaUnderROC", "areaUnderPR"):
            out[name] = evaluator.setMetricName(name).evaluate(df)
    evaluator = MulticlassClassificationEvaluator(probabilityCol="probability")
    for name in CLASSIFICATION_METRICS:
        out[name] = evaluator.setMetricName(name).evaluate(df)
    return out


def spark_regression_metrics(spark, y, yhat) -> dict[str, float]:
    from pyspark.ml.evaluation import RegressionEvaluator
    from pyspark.sql import functions as F

    rows = list(zip(y.tolist(), yhat.tolist()))
    df = spark.createDataFrame(rows, ["label", "prediction"]).cache()
    evaluator = RegressionEvaluator()
    out = {name: evaluator.setMetricName(name).evaluate(df)
           for name in ("mse", "rmse", "r2", "mae")}
    if spark_supports_mape(spark):
        out["mape"] = evaluator.setMetricName("mape").evaluate(df)
    else:  # Spark 4.x has no mape evaluator: check the definition with Spark SQL instead.
        out["mape"] = df.select(F.avg(F.abs(F.col("label") - F.col("prediction"))
                                      / F.abs(F.col("label")))).first()[0]
    df.unpersist()
    return out


@functools.cache
def spark_supports_mape(spark) -> bool:
    """Whether this Spark's RegressionEvaluator knows "mape" (4.3 does not)."""
    from pyspark.ml.evaluation import RegressionEvaluator

    df = spark.createDataFrame([(1.0, 1.0)], ["label", "prediction"])
    try:
        RegressionEvaluator(metricName="mape").evaluate(df)
    except Exception:  # IllegalArgumentException from the JVM param validator
        return False
    return True


def ours(task, names, y, prediction) -> dict[str, float]:
    return {name: compute_metric(name, task, y, prediction) for name in names}


def assert_matches(ours_values: dict, spark_values: dict):
    assert ours_values.keys() == spark_values.keys()
    for name, expected in spark_values.items():
        got = ours_values[name]
        assert abs(got - expected) <= ABS_TOL + REL_TOL * abs(expected), (
            f"{name}: ours {got!r} != Spark {expected!r} (diff {got - expected:.3g})")


# --- equality with Spark ---------------------------------------------------------------

@pytest.mark.parametrize("seed, positive_rate", [(0, 0.2), (1, 0.05), (3, 0.9)])
def test_binary_matches_spark(metrics_spark, seed, positive_rate):
    y, proba = binary_data(seed, positive_rate=positive_rate)
    assert np.unique(proba[:, 1]).size < y.size // 10  # heavy score ties
    assert (proba[:, 0] == proba[:, 1]).any()  # argmax ties
    df = classification_frame(metrics_spark, y, proba)
    assert_matches(ours("binary", BINARY_METRICS, y, proba), spark_classification_metrics(df, True))
    df.unpersist()


@pytest.mark.parametrize("case", ["constant_scores", "no_positives", "no_negatives"])
def test_binary_degenerate_cases_match_spark(metrics_spark, case):
    # Spark returns numbers (not errors) for these; we return the same numbers.
    rng = np.random.default_rng(7)
    n = 40
    y = (rng.random(n) < 0.5).astype(np.int64)
    p1 = np.round(rng.random(n), 1)
    if case == "constant_scores":
        p1[:] = 0.3
    elif case == "no_positives":
        y[:] = 0
    else:
        y[:] = 1
    proba = np.column_stack([1.0 - p1, p1])
    df = classification_frame(metrics_spark, y, proba)
    assert_matches(ours("binary", BINARY_METRICS, y, proba), spark_classification_metrics(df, True))
    df.unpersist()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_multiclass_matches_spark(metrics_spark, seed):
    y, proba = multiclass_data(seed)
    assert (proba.argmax(axis=1) != 3).all(), "scenario needs a never-predicted class"
    df = classification_frame(metrics_spark, y, proba)
    assert_matches(ours("multiclass", CLASSIFICATION_METRICS, y, proba),
                   spark_classification_metrics(df, False))
    df.unpersist()


@pytest.mark.parametrize("seed, scale", [(0, 1.0), (1, 100.0), (2, 1e6)])
def test_regression_matches_spark(metrics_spark, seed, scale):
    y, yhat = regression_data(seed, scale=scale)
    assert_matches(ours("regression", REGRESSION_METRICS, y, yhat),
                   spark_regression_metrics(metrics_spark, y, yhat))


def test_float_labels_from_spark_are_accepted():
    y, proba = binary_data(5, n=200)
    as_float = compute_metric("f1", "binary", y.astype(float), proba)
    assert as_float == compute_metric("f1", "binary", y, proba)


# --- definitions without Spark ---------------------------------------------------------

def test_known_values():
    y = np.array([0, 0, 1, 1])
    proba = np.column_stack([1 - np.array([0.1, 0.4, 0.35, 0.8]), [0.1, 0.4, 0.35, 0.8]])
    assert compute_metric("areaUnderROC", "binary", y, proba) == pytest.approx(0.75)
    assert compute_metric("accuracy", "binary", y, proba) == pytest.approx(0.75)
    # Perfect ranking: PR area is 1 because the prepended point is (0, precision of top score).
    assert compute_metric("areaUnderPR", "binary", np.array([0, 1]),
                          np.array([[0.9, 0.1], [0.2, 0.8]])) == pytest.approx(1.0)
    assert compute_metric("logLoss", "multiclass", np.array([2]),
                          np.array([[0.5, 0.0, 0.0]])) == pytest.approx(-math.log(1e-15))
    assert compute_metric("mape", "regression", np.array([2.0, -4.0]),
                          np.array([1.0, -5.0])) == pytest.approx(0.375)


def test_mape_zero_labels_name_the_count():
    with pytest.raises(DataError, match=r"2 of 4 row\(s\) have label 0"):
        compute_metric("mape", "regression", np.array([0.0, 1.0, 0.0, 2.0]), np.ones(4))


def test_bad_inputs():
    with pytest.raises(ValueError, match="2 columns"):
        compute_metric("f1", "binary", np.array([0, 1]), np.ones((2, 3)) / 3)
    with pytest.raises(ValueError, match="shape"):
        compute_metric("f1", "multiclass", np.array([0, 1]), np.array([0.2, 0.8]))
    with pytest.raises(DataError, match="class label 3 is outside 0..2"):
        compute_metric("accuracy", "multiclass", np.array([0, 3]), np.ones((2, 3)) / 3)
    with pytest.raises(DataError, match="integers"):
        compute_metric("accuracy", "binary", np.array([0.0, 0.5]), np.ones((2, 2)) / 2)
    with pytest.raises(DataError, match="0 rows"):
        compute_metric("rmse", "regression", np.array([]), np.array([]))


def test_check_metric_errors():
    for task in TASKS:
        for name, metric in METRICS.items():
            if task in metric.tasks:
                assert check_metric(name, task) is metric
        assert task in check_metric(DEFAULT_METRIC[task], task).tasks
    with pytest.raises(SpecError, match=r"unknown metric 'auc'; for task 'binary' use one of: "
                                        r"areaUnderROC, areaUnderPR, f1"):
        check_metric("auc", "binary")
    with pytest.raises(SpecError, match=r"did you mean 'areaUnderROC'"):
        check_metric("areaunderroc", "binary")
    with pytest.raises(SpecError, match=r"metric 'rmse' is for regression; for task 'binary' "
                                        r"use one of: areaUnderROC"):
        check_metric("rmse", "binary")
    with pytest.raises(SpecError, match=r"metric 'areaUnderROC' is for binary; for task "
                                        r"'multiclass' use one of: f1, weightedPrecision"):
        check_metric("areaUnderROC", "multiclass")
    with pytest.raises(SpecError, match="unknown task 'ranking'"):
        check_metric("f1", "ranking")
    with pytest.raises(SpecError, match="unknown metric"):
        compute_metric("auc", "binary", np.array([0, 1]), np.eye(2))


def test_is_better_and_worst_value():
    assert is_better("areaUnderROC", 0.8, 0.7) and not is_better("areaUnderROC", 0.7, 0.8)
    assert is_better("r2", 0.5, -1.0)
    assert is_better("rmse", 1.0, 2.0) and not is_better("rmse", 2.0, 1.0)
    assert is_better("logLoss", 0.1, 0.2)
    assert not is_better("f1", 0.5, 0.5) and not is_better("mae", 0.5, 0.5)  # strictly
    for name, metric in METRICS.items():
        worst = worst_value(name)
        assert worst == (-math.inf if metric.greater_is_better else math.inf)
        assert is_better(name, 0.0, worst) and not is_better(name, worst, 0.0)
        assert not is_better(name, math.nan, worst)
        assert is_better(name, 0.0, math.nan)
    with pytest.raises(SpecError, match="unknown metric"):
        is_better("auc", 1.0, 0.0)
    with pytest.raises(SpecError, match="unknown metric"):
        worst_value("auc")

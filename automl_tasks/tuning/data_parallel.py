"""The data-parallel training path: each fold of a trial trains across all executors.

The window is a Spark DataFrame (feature columns x0..x{n-1}, label `y`, fold id
`fold`, as `prepare.encoded_frame` and `validation.fold_column` make it) and is never
collected: each algorithm with a data-parallel path (its family's `DataParallel`) trains on
it across the executors: xgboost with `xgboost.spark` (its own barrier stage and tracker),
LightGBM with `models.lightgbm_distributed` (barrier tasks, LightGBM's socket network).
Validation rows are predicted on Spark and scored by Spark's own evaluators (the same
definitions as `evaluation.metrics`, so the two paths' values compare); `mape`, which
Spark lacks, is one aggregation. Only the model and one metric value reach the driver.

The folds of a trial run one after the other on the driver: each fold's fit already
occupies every task slot.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from automl_tasks.errors import TuningError
from automl_tasks.fitting import Fit, Learner, Refit
from automl_tasks.models import algorithms

LABEL, FOLD = "y", "fold"


@dataclass(frozen=True)
class SparkWindow:
    """The encoded window on Spark: the data-parallel path's `fitting.Window`."""
    frame: object                    # DataFrame: x0..x{n-1}, y, fold
    n_features: int
    n_classes: int | None            # classification: classes are 0..n_classes-1
    workers: int                     # barrier tasks per fit (the cluster's task slots)
    n_folds: int = 1
    fold_rows: tuple[tuple[int, int], ...] = ()   # (fold id, rows): -1 rows always train
    cached: object = None            # the persisted frame under `frame`, released by `release`

    on_driver = True                 # each fit is Spark jobs across every executor
    label = LABEL                    # the label column the families' trainers read

    @property
    def features(self) -> list[str]:
        return [f"x{i}" for i in range(self.n_features)]

    def fit_score(self, learner: Learner, fit: Fit) -> tuple[float, float, int, int]:
        return fit_fold(self, learner, fit)

    def refit(self, learner: Learner, params: dict, prepared, metric: str) -> Refit:
        return refit(self, learner, params, prepared, metric)

    def release(self) -> None:
        if self.cached is not None:
            self.cached.unpersist()


def stage(prepared, workers: int) -> SparkWindow:
    """The prepared window (`Prepared.frames`) with its folds, cached on the executors
    (memory, spilling to disk): every fold of every trial reads it again."""
    from pyspark import StorageLevel

    from automl_tasks.tuning.validation import fold_column

    spec, n_features = prepared.spec, len(prepared.encoding.feature_names)
    columns = [f"x{i}" for i in range(n_features)]
    cached = prepared.frames.train.select(*columns, LABEL, "month").persist(StorageLevel.MEMORY_AND_DISK)
    # The fold is a cheap hash over the cached columns, computed where each fit reads it.
    try:
        frame, n_folds, fold_rows = fold_column(cached, spec.validation, spec.task, prepared.window.train,
                                                seed=spec.seed, classes=prepared.classes)
    except BaseException:
        cached.unpersist()
        raise
    n_classes = len(prepared.classes) if prepared.classes is not None else None
    return SparkWindow(frame.select(*columns, LABEL, FOLD), n_features, n_classes, workers, n_folds,
                       tuple(sorted(fold_rows.items())), cached)


def is_window(data) -> bool:
    return isinstance(data, SparkWindow)


def fit_fold(window: SparkWindow, learner: Learner, fit: Fit) -> tuple[float, float, int, int]:
    """Fit on the fold's training rows, score its validation rows: (value, seconds, n_fit, n_valid).

    The fit and the metric never move rows to the driver (row counts: from `stage`, else Spark counts).
    """
    if fit.columns is not None or fit.observed_only or fit.repeat or fit.fold < 0:
        raise TuningError("the data-parallel window fits every feature on one fold assignment's folds only")
    frame = window.frame
    fit_rows, valid_rows = frame.where(frame[FOLD] != fit.fold), frame.where(frame[FOLD] == fit.fold)
    start = time.perf_counter()
    model = train(window, learner, fit.params, fit_rows)
    value = spark_metric(fit.metric, learner.task, predict(model, learner.task, valid_rows))
    seconds = time.perf_counter() - start
    known = dict(window.fold_rows)
    n_valid = known[fit.fold] if fit.fold in known else valid_rows.count()
    n_fit = sum(known.values()) - n_valid if known else fit_rows.count()
    return float(value), seconds, n_fit, n_valid


def train(window: SparkWindow, learner: Learner, params: dict, rows) -> DataParallelModel:
    """One model on `rows` across `window.workers` tasks: a DataParallelModel."""
    trainer = algorithms.get(learner.algorithm).data_parallel
    if trainer is None:
        raise TuningError(f"algorithm {learner.algorithm!r} has no data-parallel path "
                          f"(only {', '.join(algorithms.data_parallel_names())})")
    booster = trainer.fit(window, learner.task, params, rows, list(learner.categorical), learner.seed,
                          learner.threads)
    return DataParallelModel(learner.algorithm, booster, window.features)


def refit(window: SparkWindow, learner: Learner, params: dict, prepared, metric: str) -> Refit:
    """The refit across the executors, the holdout scored on Spark; the model comes back as the
    scikit-learn estimator export expects. Only 5 example rows reach the driver."""
    trained = train(window, learner, params, window.frame)
    holdout_value = None
    if prepared.frames.holdout is not None and any(prepared.row_counts.get(m)
                                                   for m in prepared.window.holdout_months):
        predicted = predict(trained, learner.task, prepared.frames.holdout)
        holdout_value = spark_metric(metric, learner.task, predicted)
    example = window.frame.select(*window.features).limit(5).toPandas().to_numpy(dtype=float)
    return Refit(to_estimator(trained, learner.task, params, window.n_classes), holdout_value, example)


@dataclass
class DataParallelModel:
    """A booster trained data-parallel; it predicts Spark rows in Spark tasks."""
    algorithm: str
    booster: object                  # xgboost.Booster | lightgbm.Booster
    features: list[str]

    def model_bytes(self) -> bytes:
        return algorithms.get(self.algorithm).data_parallel.to_bytes(self.booster)


def to_estimator(model: DataParallelModel, task: str, params: dict, n_classes: int | None):
    """The scikit-learn estimator `adapters.fit` would have returned, around the trained booster,
    so export, the MLflow flavors and `adapters.predict` treat both paths' models alike."""
    return algorithms.get(model.algorithm).data_parallel.to_estimator(model.booster, task, params, n_classes)


def _load_booster(algorithm: str, raw: bytes):
    return algorithms.get(algorithm).data_parallel.from_bytes(raw)


def _booster_predict(algorithm: str, booster, X: np.ndarray, task: str) -> np.ndarray:
    """Probabilities (n, k) for classification, values (n,) for regression, as adapters.predict."""
    out = algorithms.get(algorithm).data_parallel.predict(booster, X)
    out = np.asarray(out, dtype=np.float64)
    if task == "binary" and out.ndim == 1:
        out = np.column_stack([1.0 - out, out])
    return out


def predict(model: DataParallelModel, task: str, rows):
    """`rows` with the label and the prediction: `proba` (array of class probabilities) for
    classification, `prediction` for regression. The booster travels with the function
    (a model is small next to the window); each task loads it once."""
    import pandas as pd

    algorithm, features, raw = model.algorithm, list(model.features), model.model_bytes()
    regression = task == "regression"

    def run(batches):
        booster = _load_booster(algorithm, raw)
        for batch in batches:
            out = _booster_predict(algorithm, booster, batch[features].to_numpy(np.float64), task)
            column = {"prediction": out} if regression else {"proba": list(out)}
            yield pd.DataFrame({LABEL: batch[LABEL].astype(np.float64), **column})

    schema = f"{LABEL} double, " + ("prediction double" if regression else "proba array<double>")
    return rows.select(*features, LABEL).mapInPandas(run, schema=schema)


def spark_metric(metric: str, task: str, predicted) -> float:
    """`metric` over `predicted` (from `predict`) with Spark's evaluators, as evaluation.metrics
    defines it: AUC/PR exact (numBins=0), predicted class = argmax with ties to the lowest index."""
    from pyspark.ml.evaluation import (BinaryClassificationEvaluator, MulticlassClassificationEvaluator,
                                       RegressionEvaluator)
    from pyspark.ml.functions import array_to_vector
    from pyspark.sql import functions as F

    if task == "regression":
        if metric == "mape":
            return _mape(predicted)
        return RegressionEvaluator(labelCol=LABEL, predictionCol="prediction",
                                   metricName=metric).evaluate(predicted)
    if metric in ("areaUnderROC", "areaUnderPR"):
        scored = predicted.select(LABEL, F.col("proba")[1].alias("score"))
        return BinaryClassificationEvaluator(labelCol=LABEL, rawPredictionCol="score", metricName=metric,
                                             numBins=0).evaluate(scored)
    proba = F.col("proba")
    scored = predicted.select(
        LABEL, array_to_vector(proba).alias("probability"),
        (F.array_position(proba, F.array_max(proba)) - 1).cast("double").alias("prediction"))
    return MulticlassClassificationEvaluator(labelCol=LABEL, predictionCol="prediction",
                                             probabilityCol="probability",
                                             metricName=metric).evaluate(scored)


def _mape(predicted) -> float:
    from pyspark.sql import functions as F

    from automl_tasks.errors import DataError

    row = predicted.agg(F.sum((F.col(LABEL) == 0).cast("long")).alias("zero"), F.count(F.lit(1)).alias("n"),
                        F.avg(F.abs(F.col(LABEL) - F.col("prediction")) / F.abs(F.col(LABEL))).alias("mape")
                        ).first()
    if row["zero"]:
        raise DataError(f"metric 'mape' is undefined when the label is 0: {row['zero']} of {row['n']} "
                        f"row(s) have label 0; use 'mae' or 'rmse' instead")
    return float(row["mape"])


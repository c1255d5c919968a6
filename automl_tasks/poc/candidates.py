"""One PoC candidate (an algorithm with its best params) made white-box.

For each candidate: out-of-fold predictions on the tuning's own folds (the rows each
fold validated, predicted by a model that never saw them), every metric of the task
on them, the evaluation plots, a fit summary, test-data predictions from the exported
model, and the candidate definition: a spec that `automl-tasks tune --spec` re-runs to
the same model (the same data, folds, seed and params).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

import numpy as np

from automl_tasks import fitting
from automl_tasks.data.labels import class_key
from automl_tasks.errors import DataError
from automl_tasks.evaluation.metrics import METRICS, compute_metric
from automl_tasks.registry.records import LeaderboardEntry


@dataclass
class OutOfFold:
    algorithm: str
    params: dict
    rows: np.ndarray            # indices (into the folds' X) that some fold validated
    y: np.ndarray
    prediction: np.ndarray      # (n, k) probabilities or (n,) values, for `rows`
    seconds: float


def out_of_fold(folds, algorithm: str, task: str, params: dict, categorical: list[int], seed: int,
                n_threads: int | None = None) -> OutOfFold:
    """Fit `params` once per fold on its training rows and predict its validation rows, on the
    driver with all its cores (`fitting.predict_folds`)."""
    learner = fitting.Learner(algorithm, task, tuple(categorical), n_threads or os.cpu_count() or 1, seed)
    rows = np.flatnonzero(folds.fold_ids >= 0)
    started = time.perf_counter()
    parts = fitting.predict_folds(learner, params, folds.X, folds.y, folds.fold_ids)
    prediction = _assemble(folds, rows, parts)
    return OutOfFold(algorithm, dict(params), rows, folds.y[rows], prediction, time.perf_counter() - started)


def _assemble(folds, rows: np.ndarray, parts: dict[int, np.ndarray]) -> np.ndarray:
    """Per-fold predictions back in row order."""
    first = next(iter(parts.values()))
    out = np.empty((len(folds.y),) + first.shape[1:], dtype=np.float64)
    for fold, values in parts.items():
        out[folds.fold_ids == fold] = values
    return out[rows]


def performance(task: str, y: np.ndarray, prediction: np.ndarray) -> dict[str, float | None]:
    """Every metric of the task on the same predictions (None where undefined, e.g. mape with y=0)."""
    out = {}
    for name, metric in METRICS.items():
        if task not in metric.tasks:
            continue
        try:
            value = compute_metric(name, task, y, prediction)
            out[name] = None if not np.isfinite(value) else float(value)
        except DataError:
            out[name] = None
    return out


def candidate_spec(spec, algorithm: str, params: dict) -> dict:
    """The spec that re-creates this candidate: one algorithm, its params as a one-point grid."""
    raw = spec.model_dump(mode="json", exclude_defaults=True)
    raw.update(name=spec.name, task=spec.task, metric=spec.metric,
               validation=spec.validation.model_dump(mode="json"), seed=spec.seed)
    raw["algorithms"] = {algorithm: {"search": "grid",
                                     "space": {k: [v] for k, v in sorted(params.items())}}}
    return raw


def fit_summary(entry: LeaderboardEntry, oof: OutOfFold | None, importance: dict[str, float], metric: str) -> dict:
    top = sorted(importance.items(), key=lambda kv: -kv[1])[:20]
    return {
        "algorithm": entry.algorithm, "params": entry.params, "metric": metric,
        "cv_value": entry.cv_value, "trials": entry.trials, "failed_trials": entry.failed,
        "best_trial": entry.best_trial, "fit_seconds": entry.fit_seconds,
        "refit_seconds": entry.refit_seconds, "default_params_value": entry.baseline_value,
        "lift_over_defaults": entry.lift,
        "out_of_fold_rows": None if oof is None else int(len(oof.rows)),
        "importance": [{"feature": k, "importance": v} for k, v in top],
    }


def test_predictions(model, pipeline_model, test_df, spec, classes: list | None):
    """(frame: the test rows with their predictions, y or None, prediction) from the exported model."""
    import pandas as pd
    from pyspark.sql import functions as F

    from automl_tasks.data.prepare import label_column, model_columns

    meta = model.meta
    cols = model_columns(meta["feature_names"], list(meta["categorical"]), meta["impute_strategy"])
    label = spec.data.label
    has_label = label in test_df.columns
    df = test_df.withColumn("__row", F.monotonically_increasing_id())
    if has_label:
        df = df.withColumn("__y", label_column(spec))
    out = pipeline_model.transform(df)
    pdf = out.select("__row", *test_df.columns, *(["__y"] if has_label else []),
                     *[F.col(c).cast("double").alias(f"__x{i}") for i, c in enumerate(cols)]
                     ).toPandas().sort_values("__row")
    X = pdf[[f"__x{i}" for i in range(len(cols))]].to_numpy(dtype=np.float64)
    prediction = model.predict(X)
    frame = pdf[list(test_df.columns)].reset_index(drop=True)
    if classes is None:
        frame["prediction"] = prediction
    else:
        frame["predicted_label"] = [classes[i] for i in np.argmax(prediction, axis=1)]
        for j, c in enumerate(classes):
            frame[f"probability_{c}"] = prediction[:, j]
    y = None
    if has_label:
        raw = pdf["__y"].reset_index(drop=True)
        if classes is None:
            y = raw.to_numpy(dtype=np.float64)
        else:
            index = {class_key(c): i for i, c in enumerate(classes)}
            unseen = sorted({v for v in raw.dropna() if v not in index})
            if unseen:
                raise DataError(f"test data label {label!r} has value {unseen[0]!r}, which the training "
                                f"data does not have (classes: {', '.join(map(str, classes))})")
            y = raw.map(index).to_numpy()
        if pd.isna(y).any():
            raise DataError(f"test data label {label!r} has missing values: leave the column out to "
                            "predict without scoring, or fill it")
        y = y.astype(np.float64 if classes is None else np.int64)
    return frame, y, prediction

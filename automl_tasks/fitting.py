"""Fit on some rows, score on others: the one path tuning, ablation and the PoC all use.

A job stages its window once (`stage`: the encoded arrays shipped to the executors, or
tuning/data_parallel.py's `SparkWindow`: the window as a Spark DataFrame), then describes
each fit as data: a `Fit` (params, metric, which fold, which columns, observed rows only)
with a `Learner` (algorithm and settings every fit of the batch shares). `run` fits a batch
as Spark tasks, or one after the other on the driver when each fit is itself Spark jobs;
`Window.refit` fits on the whole window and scores the out-of-time holdout.

Rows: fold id f >= 0 validates in fold f and trains in every other fold; ALWAYS_TRAIN rows
train in every fold; NEVER_TRAIN rows (a holdout staged beside the window) train in none
and are scored by the fold HOLDOUT, which trains on every window row.
"""

from __future__ import annotations

import hashlib
import os
import time
import traceback
from dataclasses import dataclass
from typing import Callable, Protocol

import numpy as np

ALWAYS_TRAIN = -1
NEVER_TRAIN = -2
HOLDOUT = NEVER_TRAIN        # a Fit's fold: train on the window, score the staged holdout rows
# Scale-free scores for a feature alone (the leakage probe: the spec's metric may be rmse or logLoss).
LEAK_METRIC = {"binary": "areaUnderROC", "multiclass": "accuracy", "regression": "r2"}
RESULT_KEYS = ("task", "value", "seconds", "error", "n_train", "n_valid")
TASK_SCHEMA = "task long, value double, seconds double, error string, n_train long, n_valid long"


@dataclass(frozen=True)
class Learner:
    """What every fit of a batch shares (small: travels with each Spark job)."""
    algorithm: str
    task: str
    categorical: tuple[int, ...]     # categorical columns of the staged X
    threads: int                     # per fit
    seed: int


@dataclass(frozen=True)
class Fit:
    """One fit-and-score: the caller's differences as data."""
    params: dict
    metric: str
    fold: int                        # score this fold's rows (HOLDOUT: the staged holdout rows)
    repeat: int = 0                  # which fold-id row, when several fold assignments are staged
    columns: tuple[int, ...] | None = None    # a feature subset (None: every column)
    observed_only: bool = False      # fit and score only rows where the (single) column is not null


@dataclass
class Refit:
    model: object                    # what adapters.fit returns (export and the flavors take it)
    holdout_value: float | None      # the metric on the holdout, None without holdout rows
    example: np.ndarray              # a few input rows (the MLflow model's input example)


class Window(Protocol):
    """A staged window: `StagedArrays` (per-trial) or data_parallel.SparkWindow."""
    on_driver: bool                  # each fit is itself Spark jobs: fits run one after another

    def fit_score(self, learner: Learner, fit: Fit) -> tuple[float, float, int, int]:
        """(value, seconds, n_fit, n_scored)."""

    def refit(self, learner: Learner, params: dict, prepared, metric: str) -> Refit:
        """The model on every window row, scored on `prepared`'s holdout."""

    def release(self) -> None:
        """Free what staging holds on the executors."""


# --- the per-trial window: arrays shipped to the executors --------------------------------

@dataclass(frozen=True)
class StagedArrays:
    """X, y and fold ids on the executors, loaded once per Python worker (`arrays`).

    `data`: a broadcast (classic Spark), or on Spark Connect the path of a .npz file under
    AUTOML_STAGING_DIR. fold_ids: one row per row of X, or (assignments, rows).
    """
    data: object
    on_driver = False

    def arrays(self) -> dict[str, np.ndarray]:
        return load_staged(self.data)

    def fit_score(self, learner: Learner, fit: Fit) -> tuple[float, float, int, int]:
        data = self.arrays()
        ids = data["fold_ids"] if data["fold_ids"].ndim == 1 else data["fold_ids"][fit.repeat]
        fit_rows, valid_rows = split(ids, fit.fold)
        X = data["X"] if fit.columns is None else data["X"][:, list(fit.columns)]
        if fit.observed_only:
            observed = ~np.isnan(X[:, 0])
            fit_rows, valid_rows = fit_rows & observed, valid_rows & observed
        start = time.perf_counter()
        model = fit_model(learner, fit.params, X[fit_rows], data["y"][fit_rows], fit.columns)
        value = score(fit.metric, learner.task, data["y"][valid_rows], predict(model, learner.task, X[valid_rows]))
        return float(value), time.perf_counter() - start, int(fit_rows.sum()), int(valid_rows.sum())

    def refit(self, learner: Learner, params: dict, prepared, metric: str) -> Refit:
        """On the driver with all its cores, from the driver's copy of the window (`prepared`)."""
        # C-ordered like the fold arrays the trials fit (the encoded frame's numpy view is not).
        X, y = np.ascontiguousarray(prepared.train.X), prepared.train.y
        driver = Learner(learner.algorithm, learner.task, learner.categorical, os.cpu_count() or 1, learner.seed)
        model = fit_model(driver, params, X, y)
        holdout_value = None
        if prepared.holdout is not None and len(prepared.holdout.y):
            holdout_value = score(metric, learner.task, prepared.holdout.y,
                                  predict(model, learner.task, prepared.holdout.X))
        return Refit(model, holdout_value, X[:5])

    def release(self) -> None:
        """Nothing: the next `stage` releases the broadcast."""


_BROADCAST: list = []    # the driver's current staged window (one job's data at a time)


def stage(spark, X: np.ndarray, y: np.ndarray, fold_ids: np.ndarray) -> StagedArrays:
    """Ship the window to the executors once.

    Classic Spark: a broadcast, which Spark itself moves to every executor, so no task
    reads a file on the driver's disk (executors on other hosts could not). Staging
    releases the previous broadcast. Spark Connect has no broadcasts: a .npz file named
    by its content under AUTOML_STAGING_DIR, which must then be storage every executor reads.
    """
    arrays = {"X": X, "y": y, "fold_ids": fold_ids}
    sc = getattr(spark, "_sc", None)          # None on Spark Connect
    if sc is None:
        return StagedArrays(_stage_file(arrays))
    while _BROADCAST:
        old = _BROADCAST.pop()
        if old._sc is sc:                     # not if its session was stopped since
            old.destroy()
    _BROADCAST.append(sc.broadcast(arrays))
    return StagedArrays(_BROADCAST[0])


def _stage_file(arrays: dict[str, np.ndarray]) -> str:
    from automl_tasks.config import staging_dir

    digest = hashlib.sha256()
    for array in arrays.values():
        digest.update(np.ascontiguousarray(array).tobytes())
    path = staging_dir() / f"{digest.hexdigest()[:20]}.npz"
    if not path.exists():
        tmp = path.with_name(f"{path.stem}.{os.getpid()}.tmp.npz")
        np.savez(tmp, **arrays)
        os.replace(tmp, path)
    return str(path)


_CACHE: dict[str, dict[str, np.ndarray]] = {}


def load_staged(data) -> dict[str, np.ndarray]:
    """The staged arrays (X, y, fold_ids) in a task, loaded once per Python worker."""
    if not isinstance(data, str):
        return data.value                     # the worker keeps a broadcast's value
    if data not in _CACHE:
        _CACHE.clear()  # one job's data at a time per worker
        with np.load(data) as loaded:
            _CACHE[data] = {k: loaded[k] for k in loaded.files}
    return _CACHE[data]


# --- one fit ------------------------------------------------------------------------------

def split(fold_ids: np.ndarray, fold: int) -> tuple[np.ndarray, np.ndarray]:
    """(fit rows, scored rows) of `fold` as boolean masks."""
    return (fold_ids != fold) & (fold_ids != NEVER_TRAIN), fold_ids == fold


def fit_model(learner: Learner, params: dict, X: np.ndarray, y: np.ndarray,
              columns: tuple[int, ...] | None = None):
    """One model on X (already the `columns` of the staged X, when given)."""
    from automl_tasks.models import adapters

    categorical = list(learner.categorical) if columns is None else \
        [j for j, c in enumerate(columns) if c in learner.categorical]
    return adapters.fit(learner.algorithm, learner.task, params, X, y, categorical,
                        n_threads=learner.threads, seed=learner.seed)


def predict(model, task: str, X: np.ndarray) -> np.ndarray:
    from automl_tasks.models import adapters

    return adapters.predict(model, task, X)


def score(metric: str, task: str, y: np.ndarray, prediction: np.ndarray) -> float:
    from automl_tasks.evaluation.metrics import compute_metric

    return compute_metric(metric, task, y, prediction)


def predict_folds(learner: Learner, params: dict, X: np.ndarray, y: np.ndarray, fold_ids: np.ndarray,
                  n_classes: int | None = None) -> dict[int, np.ndarray]:
    """Out of fold: {fold: predictions of its rows} for every fold id >= 0, each by a model fit
    on that fold's fit rows. `n_classes`: every class must be among a fold's fit rows."""
    out = {}
    for fold in sorted(int(f) for f in np.unique(fold_ids) if f >= 0):
        fit_rows, valid_rows = split(fold_ids, fold)
        if n_classes is not None:
            absent = sorted(set(range(n_classes)) - set(np.unique(y[fit_rows]).tolist()))
            if absent:
                raise ValueError(f"class index {absent[0]} is absent from the training rows of fold {fold}")
        model = fit_model(learner, params, X[fit_rows], y[fit_rows])
        out[fold] = predict(model, learner.task, X[valid_rows])
    return out


# --- a batch of fits ------------------------------------------------------------------------

def on_driver(window: Window, algorithm: str) -> bool:
    """Each fit is itself Spark jobs over every slot (Spark ML, the data-parallel window), so the
    driver runs the fits one after the other instead of as Spark tasks."""
    from automl_tasks.models import algorithms

    return algorithms.get(algorithm).fits_on_driver or window.on_driver


def run(spark, window: Window, learner: Learner, fits: list[Fit], partitions: int) -> list[dict]:
    """Every fit, recorded as a dict (RESULT_KEYS; `task` = its index in `fits`), in no
    particular order: as Spark tasks in `partitions` partitions, or on the driver (`on_driver`)."""
    fit_score = _FitScore(window, learner)
    if on_driver(window, learner.algorithm):
        return run_on_driver(fit_score, fits)
    return run_tasks(spark, fit_score, fits, partitions)


@dataclass(frozen=True)
class _FitScore:
    """`window.fit_score(learner, fit)` as a picklable callable (what a Spark task runs)."""
    window: object
    learner: Learner

    def __call__(self, fit: Fit) -> tuple[float, float, int, int]:
        return self.window.fit_score(self.learner, fit)


def run_keyed(spark, window: Window, learner: Learner, fits: dict, partitions: int) -> dict:
    """`run` over {key: Fit}: {key: {value (None when NaN or failed), seconds, error}}."""
    keys = list(fits)
    out = {}
    for row in run(spark, window, learner, [fits[k] for k in keys], partitions):
        value = row["value"]
        out[keys[row["task"]]] = {"value": None if value is None or value != value else value,
                                  "seconds": row["seconds"], "error": row["error"]}
    return out


def run_tasks(spark, fit: Callable[[object], tuple[float, float, int, int]], tasks: list,
              partitions: int) -> list[dict]:
    """`fit(task)` for every task as Spark tasks; one dict per task, in no particular order.

    `fit` returns (value, seconds, n_train, n_valid). A failing fit is recorded with its
    error text (value NaN), never raised: the caller decides what a failure means.
    Only DataFrame APIs run the tasks, so Spark Connect works too.
    """
    import pandas as pd

    def run_batches(batches):
        for batch in batches:
            rows = [_attempt(fit, tasks, index) for index in batch["id"].tolist()]
            yield pd.DataFrame(rows, columns=list(RESULT_KEYS))

    frame = spark.range(0, len(tasks), 1, numPartitions=max(1, partitions))
    return [row.asDict() for row in frame.mapInPandas(run_batches, schema=TASK_SCHEMA).collect()]


def run_on_driver(fit: Callable[[object], tuple[float, float, int, int]], tasks: list) -> list[dict]:
    """`fit(task)` for every task, one after the other on the driver, recorded like `run_tasks`."""
    return [dict(zip(RESULT_KEYS, _attempt(fit, tasks, index))) for index in range(len(tasks))]


def _attempt(fit, tasks: list, index: int) -> tuple:
    try:
        value, seconds, n_fit, n_valid = fit(tasks[index])
        error = None
    except Exception as exc:  # recorded per task; the batch goes on
        value, seconds, n_fit, n_valid = float("nan"), 0.0, 0, 0
        # The message first, whole up to 1000 chars (progress and tags show the first line); then the
        # traceback's end: a Spark failure chained under it is pages of Java stack.
        error = f"{type(exc).__name__}: {exc}"[:1000] + "\n" + traceback.format_exc(limit=3)[-3000:]
    return (index, value, seconds, error, n_fit, n_valid)

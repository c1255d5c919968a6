"""Trials as Spark tasks: one task per (trial, fold), results back to the driver.

The encoded window is shipped to the executors once per tuning (`stage`) and loaded
once per Python worker (workers are reused), so a wave of trials ships only the
small list of configs. Only DataFrame APIs run the tasks, so Spark Connect works too.
Spark ML algorithms, which need the driver's session, run their folds on the driver, and
so does the data-parallel path (tuning/data_parallel.py), whose window is a DataFrame.
"""

from __future__ import annotations

import functools
import hashlib
import os
import time
import traceback
from dataclasses import dataclass
from typing import Callable

import numpy as np

from automl_tasks.config import staging_dir
from automl_tasks.tuning import data_parallel
from automl_tasks.tuning.validation import Folds

TASK_SCHEMA = "task long, value double, seconds double, error string, n_train long, n_valid long"


@dataclass(frozen=True)
class FitContext:
    """What every trial of one tuning shares (small: travels with each wave)."""
    data: object                     # what stage() returned: a broadcast, or a shared file's path
    algorithm: str
    task: str
    metric: str
    categorical: tuple[int, ...]
    threads_per_task: int
    seed: int


_BROADCAST: list = []    # the driver's current staged window (one tuning's data at a time)


def stage(spark, folds: Folds):
    """Ship the window (X, y, fold ids) to the executors; returns what `load_staged` reads.

    Classic Spark: a broadcast, which Spark itself moves to every executor, so no task
    reads a file on the driver's disk (executors on other hosts could not). Staging
    releases the previous broadcast. Spark Connect has no broadcasts: a .npz file named
    by its content under AUTOML_STAGING_DIR, which must then be storage every executor reads.
    """
    arrays = {"X": folds.X, "y": folds.y, "fold_ids": folds.fold_ids}
    sc = getattr(spark, "_sc", None)          # None on Spark Connect
    if sc is None:
        return _stage_file(arrays)
    while _BROADCAST:
        old = _BROADCAST.pop()
        if old._sc is sc:                     # not if its session was stopped since
            old.destroy()
    _BROADCAST.append(sc.broadcast(arrays))
    return _BROADCAST[0]


def _stage_file(arrays: dict[str, np.ndarray]) -> str:
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
        _CACHE.clear()  # one tuning's data at a time per worker
        with np.load(data) as loaded:
            _CACHE[data] = {k: loaded[k] for k in loaded.files}
    return _CACHE[data]


def fit_fold(ctx: FitContext, params: dict, fold: int) -> tuple[float, float, int, int]:
    """Fit on the fold's training rows and score its validation rows: (value, seconds, n_fit, n_valid)."""
    from automl_tasks.evaluation.metrics import compute_metric
    from automl_tasks.models import adapters

    data = load_staged(ctx.data)
    fit_rows, valid_rows = data["fold_ids"] != fold, data["fold_ids"] == fold
    start = time.perf_counter()
    model = adapters.fit(ctx.algorithm, ctx.task, params, data["X"][fit_rows], data["y"][fit_rows],
                         list(ctx.categorical), n_threads=ctx.threads_per_task, seed=ctx.seed)
    prediction = adapters.predict(model, ctx.task, data["X"][valid_rows])
    value = compute_metric(ctx.metric, ctx.task, data["y"][valid_rows], prediction)
    return float(value), time.perf_counter() - start, int(fit_rows.sum()), int(valid_rows.sum())


def run_tasks(spark, fit: Callable[[object], tuple[float, float, int, int]], tasks: list,
              partitions: int) -> list[dict]:
    """`fit(task)` for every task as Spark tasks; one dict per task, in no particular order.

    `fit` returns (value, seconds, n_train, n_valid). A failing fit is recorded with its
    error text (value NaN), never raised: the caller decides what a failure means.
    """
    import pandas as pd

    def run(batches):
        for batch in batches:
            rows = [_attempt(fit, tasks, index) for index in batch["id"].tolist()]
            yield pd.DataFrame(rows, columns=["task", "value", "seconds", "error", "n_train", "n_valid"])

    frame = spark.range(0, len(tasks), 1, numPartitions=max(1, partitions))
    return [row.asDict() for row in frame.mapInPandas(run, schema=TASK_SCHEMA).collect()]


def run_on_driver(fit: Callable[[object], tuple[float, float, int, int]], tasks: list) -> list[dict]:
    """`fit(task)` for every task, one after the other on the driver, recorded like `run_tasks`.

    For models that need the driver's SparkSession (Spark ML): each fit is itself
    data-parallel Spark jobs, so the tasks run in sequence.
    """
    keys = ["task", "value", "seconds", "error", "n_train", "n_valid"]
    return [dict(zip(keys, _attempt(fit, tasks, index))) for index in range(len(tasks))]


def _attempt(fit, tasks: list, index: int) -> tuple:
    try:
        value, seconds, n_fit, n_valid = fit(tasks[index])
        error = None
    except Exception as exc:  # recorded per task; the search goes on
        value, seconds, n_fit, n_valid = float("nan"), 0.0, 0, 0
        # The message first, whole up to 1000 chars (progress and tags show the first line); then the
        # traceback's end: a Spark failure chained under it is pages of Java stack.
        error = f"{type(exc).__name__}: {exc}"[:1000] + "\n" + traceback.format_exc(limit=3)[-3000:]
    return (index, value, seconds, error, n_fit, n_valid)


def _fit_trial_fold(ctx: FitContext, task: tuple[int, dict, int]) -> tuple[float, float, int, int]:
    _, params, fold = task
    if data_parallel.is_window(ctx.data):
        return data_parallel.fit_fold(ctx.data, ctx.algorithm, ctx.task, ctx.metric, params, fold,
                                      list(ctx.categorical), ctx.seed, ctx.threads_per_task)
    return fit_fold(ctx, params, fold)


def fits_on_driver(ctx: FitContext) -> bool:
    """Each fit is itself Spark jobs over every slot (Spark ML, the data-parallel path), so the
    driver runs a wave's (trial, fold) fits one after the other instead of as Spark tasks."""
    from automl_tasks.models import algorithms

    return algorithms.get(ctx.algorithm).fits_on_driver or data_parallel.is_window(ctx.data)


def run_wave(spark, ctx: FitContext, trials: list[tuple[int, dict]], n_folds: int) -> list[dict]:
    """Run every fold of every trial as its own Spark task; returns one dict per (trial, fold)."""
    tasks = [(trial, params, fold) for trial, params in trials for fold in range(n_folds)]
    fit = functools.partial(_fit_trial_fold, ctx)
    if fits_on_driver(ctx):
        rows = run_on_driver(fit, tasks)
    else:
        # One partition per task: Spark hands the next task to whichever slot frees first.
        rows = run_tasks(spark, fit, tasks, len(tasks))
    return [{**row, "trial": tasks[row["task"]][0], "fold": tasks[row["task"]][2]} for row in rows]

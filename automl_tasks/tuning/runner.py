"""Trials as Spark tasks: one task per (trial, fold), results back to the driver.

The encoded window is staged once per tuning as a .npz file that executors load
once per Python worker (workers are reused), so a wave of trials ships only the
small list of configs. On a cluster the staging folder must be shared storage
(AUTOML_STAGING_DIR). Only DataFrame APIs are used, so Spark Connect works too.
"""

from __future__ import annotations

import hashlib
import os
import time
import traceback
from dataclasses import dataclass

import numpy as np

from automl_tasks.config import staging_dir
from automl_tasks.tuning.validation import Folds

RESULT_SCHEMA = ("task long, trial long, fold long, value double, seconds double, "
                 "error string, n_train long, n_valid long")


@dataclass(frozen=True)
class FitContext:
    """What every trial of one tuning shares (small: travels with each wave)."""
    data_path: str
    algorithm: str
    task: str
    metric: str
    categorical: tuple[int, ...]
    threads_per_task: int
    seed: int


def stage(folds: Folds) -> str:
    """Write the window once; the name is its content hash, so re-staging is free."""
    digest = hashlib.sha256()
    for array in (folds.X, folds.y, folds.fold_ids):
        digest.update(np.ascontiguousarray(array).tobytes())
    path = staging_dir() / f"{digest.hexdigest()[:20]}.npz"
    if not path.exists():
        tmp = path.with_name(f"{path.stem}.{os.getpid()}.tmp.npz")
        np.savez(tmp, X=folds.X, y=folds.y, fold_ids=folds.fold_ids)
        os.replace(tmp, path)
    return str(path)


_CACHE: dict[str, dict[str, np.ndarray]] = {}


def _load(path: str) -> dict[str, np.ndarray]:
    if path not in _CACHE:
        _CACHE.clear()  # one tuning's data at a time per worker
        with np.load(path) as data:
            _CACHE[path] = {k: data[k] for k in data.files}
    return _CACHE[path]


def fit_fold(ctx: FitContext, params: dict, fold: int) -> tuple[float, float, int, int]:
    """Fit on the fold's training rows and score its validation rows: (value, seconds, n_fit, n_valid)."""
    from automl_tasks.evaluation.metrics import compute_metric
    from automl_tasks.models import adapters

    data = _load(ctx.data_path)
    fit_rows, valid_rows = data["fold_ids"] != fold, data["fold_ids"] == fold
    start = time.perf_counter()
    model = adapters.fit(ctx.algorithm, ctx.task, params, data["X"][fit_rows], data["y"][fit_rows],
                         list(ctx.categorical), n_threads=ctx.threads_per_task, seed=ctx.seed)
    prediction = adapters.predict(model, ctx.task, data["X"][valid_rows])
    value = compute_metric(ctx.metric, ctx.task, data["y"][valid_rows], prediction)
    return float(value), time.perf_counter() - start, int(fit_rows.sum()), int(valid_rows.sum())


def _run_partition(ctx: FitContext, tasks: list[tuple[int, dict, int]]):
    import pandas as pd

    def run(batches):
        for batch in batches:
            rows = []
            for task_id in batch["id"].tolist():
                trial, params, fold = tasks[task_id]
                try:
                    value, seconds, n_fit, n_valid = fit_fold(ctx, params, fold)
                    error = None
                except Exception as exc:  # recorded per trial; the search goes on
                    value, seconds, n_fit, n_valid = float("nan"), 0.0, 0, 0
                    error = f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=3)}"[-4000:]
                rows.append((task_id, trial, fold, value, seconds, error, n_fit, n_valid))
            yield pd.DataFrame(rows, columns=["task", "trial", "fold", "value", "seconds",
                                              "error", "n_train", "n_valid"])
    return run


def run_wave(spark, ctx: FitContext, trials: list[tuple[int, dict]], n_folds: int) -> list[dict]:
    """Run every fold of every trial as its own Spark task; returns one dict per (trial, fold)."""
    tasks = [(trial, params, fold) for trial, params in trials for fold in range(n_folds)]
    # One partition per task: Spark hands the next task to whichever slot frees first.
    frame = spark.range(0, len(tasks), 1, numPartitions=len(tasks))
    rows = frame.mapInPandas(_run_partition(ctx, tasks), schema=RESULT_SCHEMA).collect()
    return [row.asDict() for row in rows]

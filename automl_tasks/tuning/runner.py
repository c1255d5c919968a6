"""Trials as fits: one `fitting.Fit` per (trial, fold), a wave of them run by `fitting.run`.

The encoded window is shipped to the executors once per tuning (`stage`) and loaded
once per Python worker (workers are reused), so a wave of trials ships only the
small list of configs. Spark ML algorithms, which need the driver's session, run their
folds on the driver, and so does the data-parallel path (tuning/data_parallel.py), whose
window is a DataFrame.
"""

from __future__ import annotations

from dataclasses import dataclass

from automl_tasks import fitting
from automl_tasks.tuning.validation import Folds


@dataclass(frozen=True)
class FitContext:
    """What every trial of one tuning shares (small: travels with each wave)."""
    data: fitting.Window             # what stage() (or data_parallel.stage) returned
    algorithm: str
    task: str
    metric: str
    categorical: tuple[int, ...]
    threads_per_task: int
    seed: int

    @property
    def learner(self) -> fitting.Learner:
        return fitting.Learner(self.algorithm, self.task, self.categorical, self.threads_per_task, self.seed)


def stage(spark, folds: Folds) -> fitting.StagedArrays:
    """Ship the window (X, y, fold ids) to the executors (`fitting.stage`)."""
    return fitting.stage(spark, folds.X, folds.y, folds.fold_ids)


def fit_fold(ctx: FitContext, params: dict, fold: int) -> tuple[float, float, int, int]:
    """Fit on the fold's training rows and score its validation rows: (value, seconds, n_fit, n_valid)."""
    return ctx.data.fit_score(ctx.learner, fitting.Fit(params, ctx.metric, fold))


def fits_on_driver(ctx: FitContext) -> bool:
    """A wave's fits run one after the other on the driver (`fitting.on_driver`)."""
    return fitting.on_driver(ctx.data, ctx.algorithm)


def run_wave(spark, ctx: FitContext, trials: list[tuple[int, dict]], n_folds: int) -> list[dict]:
    """Every fold of every trial as its own fit; returns one dict per (trial, fold)."""
    tasks = [(trial, fold) for trial, _ in trials for fold in range(n_folds)]
    fits = [fitting.Fit(params, ctx.metric, fold) for _, params in trials for fold in range(n_folds)]
    # One partition per fit: Spark hands the next fit to whichever slot frees first.
    rows = fitting.run(spark, ctx.data, ctx.learner, fits, len(fits))
    return [{**row, "trial": tasks[row["task"]][0], "fold": tasks[row["task"]][1]} for row in rows]

"""Validation schemes as one fold-id vector, so every trial sees identical folds.

fold_ids[i] == f means row i validates in fold f and trains in every other fold;
-1 means the row always trains (split, time and given have one fold).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from automl_tasks.data.prepare import Matrix
from automl_tasks.errors import DataError
from automl_tasks.spec import ValidationSpec


@dataclass
class Folds:
    X: np.ndarray
    y: np.ndarray
    fold_ids: np.ndarray
    n_folds: int
    refit_rows: np.ndarray       # rows the final model trains on (all window rows, never `given`)
    method: str

    def split(self, fold: int) -> tuple[np.ndarray, np.ndarray]:
        return self.fold_ids != fold, self.fold_ids == fold


def _stratified(y: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    ids = np.empty(len(y), dtype=np.int64)
    for cls in np.unique(y):
        rows = np.flatnonzero(y == cls)
        rng.shuffle(rows)
        ids[rows] = (np.arange(len(rows)) + int(rng.integers(k))) % k
    return ids


def _holdout_share(y: np.ndarray, ratio: float, rng, stratify: bool) -> np.ndarray:
    ids = np.full(len(y), -1, dtype=np.int64)
    groups = [np.flatnonzero(y == c) for c in np.unique(y)] if stratify else [np.arange(len(y))]
    for rows in groups:
        rows = rows.copy()
        rng.shuffle(rows)
        n_valid = int(round(len(rows) * (1 - ratio)))
        ids[rows[:n_valid]] = 0
    return ids


def make_folds(train: Matrix, given: Matrix | None, validation: ValidationSpec, task: str,
               window_months: tuple[str, ...], seed: int = 0, classes: list | None = None) -> Folds:
    rng = np.random.default_rng(seed)
    classify = task != "regression"
    X, y, refit = train.X, train.y, np.ones(len(train.y), dtype=bool)
    method = validation.method
    if method == "cv":
        k = validation.folds
        if classify:
            counts = np.bincount(y, minlength=len(classes))
            smallest = int(np.argmin(counts))
            if counts[smallest] < k:
                raise DataError(f"class {classes[smallest]!r} has {counts[smallest]} rows in the window "
                                f"({window_months[0]} to {window_months[-1]}); {k}-fold cv needs at "
                                f"least {k} per class")
            fold_ids = _stratified(y, k, rng)
        else:
            if len(y) < 2 * k:
                raise DataError(f"{len(y)} rows in the window are too few for {k}-fold cv")
            fold_ids = rng.permutation(np.arange(len(y)) % k)
        n_folds = k
    elif method == "split":
        fold_ids, n_folds = _holdout_share(y, validation.train_ratio, rng, classify), 1
    elif method == "time":
        valid_months = set(window_months[-validation.months:])
        fold_ids, n_folds = np.where(np.isin(train.months, list(valid_months)), 0, -1), 1
    else:  # given: a separate validation source, appended after the window rows
        X, y = np.vstack([train.X, given.X]), np.concatenate([train.y, given.y])
        fold_ids = np.concatenate([np.full(len(train.y), -1), np.zeros(len(given.y), dtype=np.int64)])
        refit = np.concatenate([refit, np.zeros(len(given.y), dtype=bool)])
        n_folds = 1
    folds = Folds(X, y, fold_ids, n_folds, refit, method)
    pairs, n = np.unique(np.column_stack([fold_ids, y if classify else np.zeros(len(y))]), axis=0,
                         return_counts=True)
    check_folds({(int(f), int(c)): int(k) for (f, c), k in zip(pairs, n)}, n_folds, method,
                classes if classify else None)
    return folds


def check_folds(counts: dict[tuple[int, int], int], n_folds: int, method: str, classes: list | None) -> None:
    """Every fold has training and validation rows, and (classification) every class trains in it.

    `counts[(fold_id, class_index)]`: rows (regression: class index 0 for all rows).
    """
    for f in range(n_folds):
        n_fit = sum(k for (fold, _), k in counts.items() if fold != f)
        n_valid = sum(k for (fold, _), k in counts.items() if fold == f)
        if n_valid == 0 or n_fit == 0:
            raise DataError(f"validation {method}: fold {f} has {n_fit} training and "
                            f"{n_valid} validation rows; more data is needed")
        if classes is not None:
            trained = {c for (fold, c), k in counts.items() if fold != f and k}
            absent = [c for c in range(len(classes)) if c not in trained]
            if absent:
                raise DataError(f"validation {method}: class {classes[absent[0]]!r} is absent from the "
                                f"training part of fold {f}")


def fold_column(frame, validation: ValidationSpec, task: str, window_months: tuple[str, ...],
                seed: int = 0, classes: list | None = None):
    """`frame` (encoded: x0.., y, month) with an int `fold` column, on Spark: (frame, n_folds,
    rows per fold id).

    The data-parallel path's folds: cv and split draw each row's fold from a seeded hash of
    the row itself, so the assignment never depends on partitioning or recomputation;
    unlike `make_folds` they are not stratified (for the windows this path is for, each
    class's share per fold is within a fraction of a percent). `given` is not supported.
    Checked like `make_folds` with one small aggregation (rows per fold and class).
    """
    from pyspark.sql import functions as F

    method = validation.method
    row_hash = F.xxhash64(F.lit(seed), *[F.col(c) for c in frame.columns if c.startswith("x")],
                          F.col("y"), F.col("month"))
    if method == "cv":
        fold, n_folds = F.pmod(row_hash, F.lit(validation.folds)), validation.folds
    elif method == "split":
        scale = 1_000_000
        valid = F.pmod(row_hash, F.lit(scale)) < F.lit(int(round((1 - validation.train_ratio) * scale)))
        fold, n_folds = F.when(valid, 0).otherwise(-1), 1
    elif method == "time":
        fold, n_folds = F.when(F.col("month").isin(list(window_months[-validation.months:])), 0).otherwise(-1), 1
    else:
        raise DataError(f"validation.method {method!r} has no data-parallel fold assignment (use cv, split or time)")
    out = frame.withColumn("fold", fold.cast("int"))
    classify = task != "regression"
    label = F.col("y").cast("int") if classify else F.lit(0)
    counts = {(r["fold"], r["c"]): r["n"] for r in
              out.groupBy("fold", label.alias("c")).agg(F.count(F.lit(1)).alias("n")).collect()}
    check_folds(counts, n_folds, method, classes if classify else None)
    per_fold: dict[int, int] = {}
    for (f, _), n in counts.items():
        per_fold[f] = per_fold.get(f, 0) + n
    return out, n_folds, per_fold

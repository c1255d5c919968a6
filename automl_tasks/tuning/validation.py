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
    for f in range(n_folds):
        fit_rows, valid_rows = folds.split(f)
        if valid_rows.sum() == 0 or fit_rows.sum() == 0:
            raise DataError(f"validation {method}: fold {f} has {int(fit_rows.sum())} training and "
                            f"{int(valid_rows.sum())} validation rows; more data is needed")
        if classify:
            absent = np.setdiff1d(np.arange(len(classes)), np.unique(y[fit_rows]))
            if absent.size:
                raise DataError(f"validation {method}: class {classes[absent[0]]!r} is absent from the "
                                f"training part of fold {f}")
    return folds

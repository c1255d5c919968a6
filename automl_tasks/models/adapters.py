"""Fit, predict and explain a model of any registered algorithm (models/algorithms/) by its name.

Inputs are numeric matrices: numeric features as floats, categorical features as integer
codes (see data/prepare.py), with the categorical column indices given, so the libraries
split on categories natively instead of on one-hot columns.
"""

from __future__ import annotations

import warnings

import numpy as np

from automl_tasks.errors import SpecError
from automl_tasks.models import algorithms


def fit(algorithm: str, task: str, params: dict, X: np.ndarray, y: np.ndarray,
        categorical: list[int], n_threads: int = 1, seed: int = 0):
    """Fit one model; raises whatever the library raises (the caller records the trial)."""
    return algorithms.get(algorithm).fit(task, params, X, y, categorical, n_threads, seed)


def predict(model, task: str, X: np.ndarray) -> np.ndarray:
    """Probabilities (n, k) for classification, values (n,) for regression."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        if task == "regression":
            return np.asarray(model.predict(X), dtype=float)
        return np.asarray(model.predict_proba(X), dtype=float)


def objective(model, algorithm: str) -> str:
    return algorithms.get(algorithm).objective(model)


def importance(model, algorithm: str, feature_names: list[str],
               categorical: list[int] = ()) -> dict[str, float]:
    """Importance by feature name: the boosters' gain, Spark ML's featureImportances or |coefficients|."""
    explain = algorithms.get(algorithm).importance
    if explain is None:
        raise SpecError(f"algorithm {algorithm!r} has no feature importance")
    return explain(model, feature_names, list(categorical))

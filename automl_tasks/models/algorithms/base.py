"""The one interface every algorithm implements: a frozen `Algorithm` of facts and functions.

A family module (one per library: xgboost.py, spark_ml.py, ...) builds the `Algorithm`s
it fits; the registry (this package's `__init__`) lists them. Code outside a family module
never compares algorithm names: it asks the registry for the `Algorithm` and uses its fields.

Models: `fit` returns a model with scikit-learn's `predict` (regression) and `predict_proba`
(classification) on the encoded numpy matrix (numeric features as floats, categorical features
as integer codes), which is how `adapters.predict` scores every algorithm alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

TASKS = ("binary", "multiclass", "regression")


@dataclass(frozen=True, eq=False)
class NativeFormat:
    """The model's own file in its exported folder (models/export.py), and reading it back."""
    file: str                         # file (or folder) name: metadata.json's `booster_file`
    save: Callable                    # (model, path, feature names) -> None
    load: Callable                    # (path, metadata) -> a model with predict / predict_proba
    # Standalone functions (imports inside, nothing from this project) copied into the folder's
    # predict.py, the last one `raw_predict(path, meta, X)`: the file's output (binary: P(class 1)).
    # Empty: no predict.py (the model needs more than its library to load).
    portable: tuple[Callable, ...] = ()


@dataclass(frozen=True, eq=False)
class Flavor:
    """How the model is logged with its MLflow flavor and loaded back."""
    module: str                       # mlflow.<module>
    log: Callable                     # (model, Algorithm, prepared, X_example) -> logged model (model_uri)
    load: Callable                    # (model_uri, metadata) -> a model with predict / predict_proba


@dataclass(frozen=True, eq=False)
class DataParallel:
    """Training across every executor on the window as a Spark DataFrame (tuning/data_parallel.py).

    `window` is a `data_parallel.SparkWindow`: its `features` and `label` columns, `n_features`,
    `n_classes` and `workers` are what a trainer reads."""
    fit: Callable                     # (window, task, params, rows, categorical, seed, threads) -> booster
    to_bytes: Callable                # booster -> bytes (what the predicting Spark tasks receive)
    from_bytes: Callable              # bytes -> booster
    predict: Callable                 # (booster, X) -> its output (binary: P(class 1))
    to_estimator: Callable            # (booster, task, params, n_classes) -> the model `fit` returns
    connect_refusal: str = ""         # why `fit` cannot run through Spark Connect ("" when it can)


@dataclass(frozen=True, eq=False)
class Algorithm:
    name: str
    tasks: tuple[str, ...]            # the tasks it fits
    task_note: str                    # why not the others ("" when it fits every task)
    packages: tuple[str, ...]         # what its models need besides numpy, pandas and scikit-learn;
                                      # the first is its library (metadata.json's library_version)
    fit: Callable                     # (task, params, X, y, categorical, n_threads, seed) -> model
    objective: Callable               # model -> its objective's name (metadata.json)
    params: Callable                  # () -> frozenset of the parameter names a spec may set
    reserved: frozenset[str]          # parameters the project sets itself
    param_types: Callable             # () -> {parameter: (int | float | str | bool, None accepted)}
    native: NativeFormat
    flavor: Flavor
    space: dict                       # its default search: {"space": ..., "fixed": ...} (the PoC's)
    defaults: dict                    # the library's own values on those axes (the PoC's first trial)
    min_seconds: float                # the least one trial and its refit take (the PoC's time planning)
    fits_on_driver: bool = False      # needs the driver's SparkSession: fits one after another there
    poc_default: bool = True          # in the PoC's leaderboard when the request names no algorithms
    importance: Callable | None = None    # (model, feature names, categorical) -> {feature: importance}
    shap: Callable | None = None          # (model, X) -> TreeSHAP contributions, bias last, per class
    data_parallel: DataParallel | None = None
    connect_refusal: str = ""         # why it cannot run through Spark Connect ("" when it can)

    @property
    def library(self) -> str:
        return self.packages[0]

    def fits(self, task: str) -> bool:
        return task in self.tasks

    def pip_requirements(self) -> list[str]:
        """Its models' exact requirements (MLflow's inference of them costs seconds per model)."""
        from importlib import metadata

        names = dict.fromkeys(["numpy", "pandas", "scikit-learn", *self.packages])
        return [f"{n}=={metadata.version(n)}" for n in names]

    def task_refusal(self) -> str:
        """The error for a task it does not fit, naming what it fits and why."""
        return (f"algorithm {self.name!r} fits {' and '.join(self.tasks)} labels only "
                f"({self.task_note})")

"""XGBoost / LightGBM (and the Spark ML baselines) behind one small interface: fit, predict, export.

Inputs are numeric matrices: numeric features as floats, categorical features as
integer codes (see data/prepare.py), with the categorical column indices given,
so both libraries split on categories natively instead of on one-hot columns.
The Spark ML algorithms (models/spark_ml.py) take the same matrices and fit on the driver.
"""

from __future__ import annotations

import warnings
from functools import cache

import numpy as np

from automl_tasks.errors import SpecError
from automl_tasks.models import spark_ml

# Params the project sets itself: a user value would break threading or encoding.
RESERVED = {"n_jobs", "nthread", "num_threads", "enable_categorical", "feature_types",
            "objective", "num_class", "callbacks", "device", "verbosity", "verbose"}


def runs_on_driver(algorithm: str) -> bool:
    """Spark ML models fit on the driver (data-parallel); the boosters fit inside Spark tasks."""
    return spark_ml.is_spark(algorithm)


@cache
def allowed_params(algorithm: str) -> frozenset[str]:
    if spark_ml.is_spark(algorithm):
        return spark_ml.PARAMS[algorithm]
    import lightgbm as lgb
    import xgboost as xgb

    if algorithm == "xgboost":
        names = set(xgb.XGBModel().get_params())
    elif algorithm == "lightgbm":
        names = set(lgb.LGBMModel().get_params())
    else:
        raise SpecError(f"unknown algorithm {algorithm!r}; known: xgboost, lightgbm, "
                        f"{', '.join(spark_ml.SPARK_ALGORITHMS)}")
    return frozenset(names - RESERVED - {"kwargs", "missing", "importance_type"})


def check_params(algorithm: str, names, where: str) -> None:
    allowed = allowed_params(algorithm)
    reserved = spark_ml.RESERVED if spark_ml.is_spark(algorithm) else RESERVED
    for name in names:
        if name in reserved:
            raise SpecError(f"{where}: parameter {name!r} is set by automl_tasks and cannot be tuned")
        if name not in allowed:
            raise SpecError(f"{where}: unknown {algorithm} parameter {name!r}")


def _estimator(algorithm: str, task: str, params: dict, n_threads: int, seed: int,
               categorical: list[int], n_features: int):
    import lightgbm as lgb
    import xgboost as xgb

    params = {"n_estimators": 100, "random_state": seed, **params}
    if algorithm == "xgboost":
        cls = xgb.XGBRegressor if task == "regression" else xgb.XGBClassifier
        cats = set(categorical)
        types = ["c" if i in cats else "q" for i in range(n_features)]
        return cls(tree_method=params.pop("tree_method", "hist"), n_jobs=n_threads,
                   enable_categorical=True, feature_types=types, **params)
    cls = lgb.LGBMRegressor if task == "regression" else lgb.LGBMClassifier
    return cls(n_jobs=n_threads, verbose=-1, **params)


def fit(algorithm: str, task: str, params: dict, X: np.ndarray, y: np.ndarray,
        categorical: list[int], n_threads: int = 1, seed: int = 0):
    """Fit one model; raises whatever the library raises (the caller records the trial)."""
    if spark_ml.is_spark(algorithm):
        return spark_ml.fit(algorithm, task, params, X, y, categorical, seed=seed)
    model = _estimator(algorithm, task, dict(params), n_threads, seed, categorical, X.shape[1])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        if algorithm == "lightgbm":
            model.fit(X, y, categorical_feature=categorical or "auto")
        else:
            model.fit(X, y)
    return model


def predict(model, task: str, X: np.ndarray) -> np.ndarray:
    """Probabilities (n, k) for classification, values (n,) for regression."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        if task == "regression":
            return np.asarray(model.predict(X), dtype=float)
        return np.asarray(model.predict_proba(X), dtype=float)


def library(algorithm: str) -> str:
    """The package that fits `algorithm` (its version goes into metadata.json)."""
    return "pyspark" if spark_ml.is_spark(algorithm) else algorithm


def booster_file(algorithm: str) -> str:
    if spark_ml.is_spark(algorithm):
        return "sparkml"          # a Spark ML PipelineModel folder
    return "model.json" if algorithm == "xgboost" else "model.txt"


def save_native(model, algorithm: str, path, feature_names: list[str]) -> None:
    """Write the plain booster file that xgboost / lightgbm load without this project."""
    if spark_ml.is_spark(algorithm):
        spark_ml.save(model, path)
    elif algorithm == "xgboost":
        booster = model.get_booster()
        booster.feature_names = list(feature_names)
        booster.save_model(str(path))
    else:
        model.booster_.save_model(str(path))


def objective(model, algorithm: str) -> str:
    if spark_ml.is_spark(algorithm):
        return spark_ml.objective(model)
    if algorithm == "xgboost":
        return str(model.get_params().get("objective") or model.objective)
    return str(model.objective_)


def importance(model, algorithm: str, feature_names: list[str],
               categorical: list[int] = ()) -> dict[str, float]:
    """Gain importance by feature name (Spark ML: featureImportances, or |coefficients|)."""
    if spark_ml.is_spark(algorithm):
        return spark_ml.importance(model, feature_names, list(categorical))
    if algorithm == "xgboost":
        scores = model.get_booster().get_score(importance_type="total_gain")
        # xgboost names unnamed columns f0, f1, ...
        return {name: float(scores.get(name, scores.get(f"f{i}", 0.0)))
                for i, name in enumerate(feature_names)}
    gains = model.booster_.feature_importance(importance_type="gain")
    return {name: float(g) for name, g in zip(feature_names, gains)}

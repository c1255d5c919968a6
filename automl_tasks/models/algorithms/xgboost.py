"""XGBoost: the scikit-learn estimators per trial, `xgboost.spark` data-parallel.

Categorical features are integer codes that xgboost splits on natively (feature type "c").
Native file: the booster's JSON (`model.json`, feature names inside), which plain xgboost loads.
"""

from __future__ import annotations

import warnings

import numpy as np

from automl_tasks.models.algorithms import estimators
from automl_tasks.models.algorithms.base import TASKS, Algorithm, DataParallel, NativeFormat


def _feature_types(categorical, n_features: int) -> list[str]:
    cats = set(categorical)
    return ["c" if i in cats else "q" for i in range(n_features)]


def estimator(task: str, params: dict, n_threads: int, seed: int, categorical, n_features: int):
    """The unfitted scikit-learn estimator for `params` (and the project's settings)."""
    import xgboost as xgb

    params = {"n_estimators": 100, "random_state": seed, **params}
    cls = xgb.XGBRegressor if task == "regression" else xgb.XGBClassifier
    return cls(tree_method=params.pop("tree_method", "hist"), n_jobs=n_threads, enable_categorical=True,
               feature_types=_feature_types(categorical, n_features), **params)


def fit(task: str, params: dict, X: np.ndarray, y: np.ndarray, categorical, n_threads: int = 1, seed: int = 0):
    model = estimator(task, dict(params), n_threads, seed, categorical, X.shape[1])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        model.fit(X, y)
    return model


def objective(model) -> str:
    return str(model.get_params().get("objective") or model.objective)


params, param_types = estimators.booster_parameters("xgboost", "XGBModel")


def importance(model, feature_names: list[str], categorical=()) -> dict[str, float]:
    """Total gain by feature name."""
    scores = model.get_booster().get_score(importance_type="total_gain")
    # xgboost names unnamed columns f0, f1, ...
    return {name: float(scores.get(name, scores.get(f"f{i}", 0.0))) for i, name in enumerate(feature_names)}


def shap(model, X: np.ndarray) -> np.ndarray:
    """xgboost's own TreeSHAP."""
    import xgboost as xgb

    booster = model.get_booster()
    matrix = xgb.DMatrix(X, feature_types=booster.feature_types, enable_categorical=True)
    return np.asarray(booster.predict(matrix, pred_contribs=True))


# --- native file -------------------------------------------------------------------------------

def save_native(model, path, feature_names: list[str]) -> None:
    booster = model.get_booster()
    booster.feature_names = list(feature_names)
    booster.save_model(str(path))


def load_native(path, meta: dict):
    import xgboost as xgb

    model = (xgb.XGBRegressor if meta["task"] == "regression" else xgb.XGBClassifier)()
    model.load_model(str(path))
    return model


def raw_predict(path: str, meta: dict, X: np.ndarray) -> np.ndarray:
    """The booster file's output for X, with plain xgboost (binary: P(class 1))."""
    import xgboost as xgb

    booster = xgb.Booster(model_file=path)
    types = ["c" if f in meta["categorical"] else "q" for f in meta["feature_names"]]
    matrix = xgb.DMatrix(X, feature_names=meta["feature_names"], feature_types=types, enable_categorical=True)
    return booster.predict(matrix)


# --- data-parallel: xgboost.spark --------------------------------------------------------------

def fit_data_parallel(window, task: str, params: dict, rows, categorical, seed: int, threads: int = 1):
    import logging

    from xgboost.spark import SparkXGBClassifier, SparkXGBRegressor

    from automl_tasks.errors import TuningError
    from automl_tasks.spark import job_failure

    # Its INFO lines (params) and, in every worker, each boosting round's training loss
    # (`verbose`, on by default) would drown the progress output.
    logging.getLogger("XGBoost-PySpark").setLevel(logging.WARNING)
    params = {"n_estimators": 100, "random_state": seed, "tree_method": "hist", **params}
    cls = SparkXGBRegressor if task == "regression" else SparkXGBClassifier
    model = cls(features_col=window.features, label_col=window.label, num_workers=window.workers,
                feature_types=_feature_types(categorical, window.n_features), verbose=False, **params)
    try:
        return model.fit(rows).get_booster()
    except Exception as exc:
        raise TuningError(f"xgboost.spark training on {window.workers} workers failed: "
                          f"{job_failure(exc)}") from exc


def to_bytes(booster) -> bytes:
    return bytes(booster.save_raw("ubj"))


def from_bytes(raw: bytes):
    import xgboost as xgb

    booster = xgb.Booster()
    booster.load_model(bytearray(raw))
    return booster


def booster_predict(booster, X: np.ndarray) -> np.ndarray:
    return booster.inplace_predict(X)


def to_estimator(booster, task: str, params: dict, n_classes: int | None):
    """The scikit-learn estimator around a booster (loading it restores objective and classes)."""
    import xgboost as xgb

    estimator = (xgb.XGBRegressor if task == "regression" else xgb.XGBClassifier)()
    estimator.load_model(bytearray(to_bytes(booster)))
    return estimator


XGBOOST = Algorithm(
    name="xgboost", tasks=TASKS, task_note="", packages=("xgboost",),
    fit=fit, objective=objective, params=params, reserved=estimators.BOOSTER_RESERVED,
    param_types=param_types,
    native=NativeFormat("model.json", save_native, load_native, portable=(raw_predict,)),
    flavor=estimators.flavor("xgboost"),
    space={"space": {"max_depth": {"int": [2, 8]}, "learning_rate": {"log": [0.02, 0.3]},
                     "n_estimators": {"int": [50, 300]}, "subsample": {"uniform": [0.6, 1.0]},
                     "colsample_bytree": {"uniform": [0.6, 1.0]},
                     "min_child_weight": {"log": [0.5, 10.0]}}},
    defaults={"max_depth": 6, "learning_rate": 0.3, "n_estimators": 100, "subsample": 1.0,
              "colsample_bytree": 1.0, "min_child_weight": 1.0},
    min_seconds=10.0,
    importance=importance, shap=shap,
    data_parallel=DataParallel(fit_data_parallel, to_bytes, from_bytes, booster_predict, to_estimator,
                               connect_refusal="xgboost.spark reads the driver's SparkContext"),
)

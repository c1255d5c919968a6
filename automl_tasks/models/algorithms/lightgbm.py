"""LightGBM: the scikit-learn estimators per trial, its own data-parallel learner in Spark
barrier tasks (models/lightgbm_distributed.py).

Categorical features are integer codes LightGBM splits on natively (`categorical_feature`).
Native file: the booster's text model (`model.txt`), which plain lightgbm loads.
"""

from __future__ import annotations

import warnings

import numpy as np

from automl_tasks.models.algorithms import estimators
from automl_tasks.models.algorithms.base import TASKS, Algorithm, DataParallel, NativeFormat


def estimator(task: str, params: dict, n_threads: int, seed: int, categorical=(), n_features: int = 0):
    """The unfitted scikit-learn estimator for `params` (categorical columns are given to `fit`)."""
    import lightgbm as lgb

    params = {"n_estimators": 100, "random_state": seed, **params}
    cls = lgb.LGBMRegressor if task == "regression" else lgb.LGBMClassifier
    return cls(n_jobs=n_threads, verbose=-1, **params)


def fit(task: str, params: dict, X: np.ndarray, y: np.ndarray, categorical, n_threads: int = 1, seed: int = 0):
    model = estimator(task, dict(params), n_threads, seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        model.fit(X, y, categorical_feature=categorical or "auto")
    return model


def objective(model) -> str:
    return str(model.objective_)


params, param_types = estimators.booster_parameters("lightgbm", "LGBMModel")


def importance(model, feature_names: list[str], categorical=()) -> dict[str, float]:
    """Gain by feature name."""
    gains = model.booster_.feature_importance(importance_type="gain")
    return {name: float(g) for name, g in zip(feature_names, gains)}


def shap(model, X: np.ndarray) -> np.ndarray:
    """LightGBM's own TreeSHAP."""
    return np.asarray(model.booster_.predict(X, pred_contrib=True))


# --- native file -------------------------------------------------------------------------------

def save_native(model, path, feature_names: list[str]) -> None:
    model.booster_.save_model(str(path))


def load_native(path, meta: dict):
    import lightgbm as lgb

    classes = meta["classes"]
    return to_estimator(lgb.Booster(model_file=str(path)), meta["task"], meta["params"],
                        len(classes) if classes is not None else None)


def raw_predict(path: str, meta: dict, X: np.ndarray) -> np.ndarray:
    """The booster file's output for X, with plain lightgbm (binary: P(class 1))."""
    import lightgbm as lgb

    return lgb.Booster(model_file=path).predict(X)


# --- data-parallel: LightGBM's socket network in barrier tasks ---------------------------------

def fit_data_parallel(window, task: str, params: dict, rows, categorical, seed: int, threads: int = 1):
    from automl_tasks.models import lightgbm_distributed

    return lightgbm_distributed.train(
        rows, features=window.features, label=window.label, task=task, params=params,
        num_workers=window.workers, categorical=categorical, n_classes=window.n_classes, seed=seed,
        threads_per_task=threads)


def to_bytes(booster) -> bytes:
    return booster.model_to_string().encode()


def from_bytes(raw: bytes):
    import lightgbm as lgb

    return lgb.Booster(model_str=raw.decode())


def booster_predict(booster, X: np.ndarray) -> np.ndarray:
    return booster.predict(X)


def to_estimator(booster, task: str, params: dict, n_classes: int | None):
    """The scikit-learn estimator around a trained booster."""
    import lightgbm as lgb
    from sklearn.preprocessing import LabelEncoder

    # LightGBM has no public way to wrap a booster: these are the attributes its scikit-learn
    # predict, predict_proba, booster_ and objective_ read (lightgbm 4.x; tests/test_data_parallel.py).
    regression = task == "regression"
    estimator = (lgb.LGBMRegressor if regression else lgb.LGBMClassifier)(**params)
    estimator._Booster, estimator.fitted_ = booster, True
    estimator._n_features = estimator._n_features_in = booster.num_feature()
    estimator._objective = booster.params.get("objective", task)
    if not regression:
        estimator._le = LabelEncoder().fit(np.arange(n_classes))
        estimator._classes, estimator._n_classes = estimator._le.classes_, n_classes
    return estimator


LIGHTGBM = Algorithm(
    name="lightgbm", tasks=TASKS, task_note="", packages=("lightgbm",),
    fit=fit, objective=objective, params=params, reserved=estimators.BOOSTER_RESERVED,
    param_types=param_types,
    native=NativeFormat("model.txt", save_native, load_native, portable=(raw_predict,)),
    flavor=estimators.flavor("lightgbm"),
    space={"space": {"num_leaves": {"int": [4, 64]}, "learning_rate": {"log": [0.02, 0.3]},
                     "n_estimators": {"int": [50, 300]}, "min_child_samples": {"int": [5, 50]},
                     "colsample_bytree": {"uniform": [0.6, 1.0]}}},
    defaults={"num_leaves": 31, "learning_rate": 0.1, "n_estimators": 100, "min_child_samples": 20,
              "colsample_bytree": 1.0},
    min_seconds=10.0,
    importance=importance, shap=shap,
    data_parallel=DataParallel(fit_data_parallel, to_bytes, from_bytes, booster_predict, to_estimator),
)

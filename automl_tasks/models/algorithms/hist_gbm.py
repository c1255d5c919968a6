"""scikit-learn's HistGradientBoostingClassifier / HistGradientBoostingRegressor, per trial.

Categorical features are integer codes it splits on natively (`categorical_features`; a
feature with more than `max_bins` codes fails its trials). Its OpenMP threads are held to the
task's share (`n_threads`) while it fits. No data-parallel path, no importance and no SHAP:
scikit-learn exposes neither for these models (the PoC lists no importance for it; the
ablation study, which ranks features by gain and TreeSHAP, refuses it).

Native file, `model.skops`: scikit-learn has no stable, pickle-free format like xgboost's JSON
or LightGBM's text model; its own persistence is pickle (joblib), and loading a pickle runs
whatever code the file names. skops.io (installed with MLflow, which writes sklearn models
with it by default; pinned in constraints.txt) stores the estimator's state as JSON and numpy
arrays and, loading, builds only allow-listed types: predict.py allows skops' defaults and the
three scikit-learn types a fitted model holds, and refuses a file that names any other. What it
does not give is a format stable across scikit-learn versions: load it with the version in
metadata.json's `library_version`. So the folder keeps the contract of the other families:
`model.skops`, metadata.json and a predict.py that needs numpy, scikit-learn and skops only.
The MLflow model: the sklearn flavor, in the same skops format.
"""

from __future__ import annotations

from functools import cache

import numpy as np

from automl_tasks.models.algorithms import estimators
from automl_tasks.models.algorithms.base import TASKS, Algorithm, NativeFormat

# Set by the project: the categorical columns; the loss (its objective); the log level; and the
# early-stopping scorer, which would put a scorer object in the model that skops cannot write.
RESERVED = frozenset({"categorical_features", "loss", "verbose", "scoring"})


def _classes():
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

    return HistGradientBoostingClassifier, HistGradientBoostingRegressor


def fit(task: str, params: dict, X: np.ndarray, y: np.ndarray, categorical, n_threads: int = 1, seed: int = 0):
    from threadpoolctl import threadpool_limits

    classifier, regressor = _classes()
    cls = regressor if task == "regression" else classifier
    model = cls(**{"random_state": seed, **params}, categorical_features=list(categorical) or None)
    with threadpool_limits(limits=n_threads, user_api="openmp"):
        model.fit(X, y)
    return model


def objective(model) -> str:
    return str(model.loss)


@cache
def params() -> frozenset[str]:
    classifier, regressor = _classes()
    return frozenset((set(classifier().get_params()) | set(regressor().get_params())) - RESERVED)


@cache
def param_types() -> dict[str, tuple[type, bool]]:
    """Read from the estimators' `_parameter_constraints` (what scikit-learn validates against):
    integer or real intervals, "boolean", string options; None allowed when listed. Parameters
    with other or mixed constraints (arrays, dicts, callables, "auto" or a bool) are left to it."""
    from numbers import Integral

    from sklearn.utils._param_validation import Interval, StrOptions

    def kind(constraint):
        if isinstance(constraint, Interval):
            return int if constraint.type is Integral else float
        return {"boolean": bool}.get(constraint) if isinstance(constraint, str) else (
            str if isinstance(constraint, StrOptions) else None)

    found = {}
    for cls in _classes():
        for name, constraints in cls._parameter_constraints.items():
            kinds = {kind(c) for c in constraints if c is not None}
            kinds = {float} if kinds == {int, float} else kinds
            if len(kinds) == 1 and None not in kinds:
                found.setdefault(name, (kinds.pop(), None in constraints))
    return found


# --- native file -------------------------------------------------------------------------------

def save_native(model, path, feature_names: list[str]) -> None:
    import skops.io as sio

    sio.dump(model, str(path))


def read_model(path: str):
    """The estimator in a model.skops file; skops refuses one naming a type off the allow-list."""
    import skops.io as sio

    # Beyond skops' defaults, the parts of a fitted HistGradientBoosting model (scikit-learn's own).
    trusted = ["functools.partial", "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
               "sklearn.utils.validation.check_array"]
    return sio.load(str(path), trusted=trusted)


def load_native(path, meta: dict):
    return read_model(path)


def raw_predict(path: str, meta: dict, X: np.ndarray) -> np.ndarray:
    """The model file's output for X, with plain scikit-learn (binary: P(class 1))."""
    model = read_model(path)
    if meta["task"] == "regression":
        return model.predict(X)
    proba = model.predict_proba(X)
    return proba[:, 1] if meta["task"] == "binary" else proba


def _skops_options(model) -> dict:
    """MLflow's sklearn flavor in skops format, allowing the types this model holds (it was just
    fitted here, so they are scikit-learn's own)."""
    import skops.io as sio

    return {"serialization_format": "skops",
            "skops_trusted_types": sio.get_untrusted_types(data=sio.dumps(model))}


HIST_GBM = Algorithm(
    name="hist_gbm", tasks=TASKS, task_note="", packages=("scikit-learn", "skops"),
    poc_default=False,         # added after the PoC's budgets were measured: opt in by name
    fit=fit, objective=objective, params=params, reserved=RESERVED, param_types=param_types,
    native=NativeFormat("model.skops", save_native, load_native, portable=(read_model, raw_predict)),
    flavor=estimators.flavor("sklearn", _skops_options),
    space={"space": {"learning_rate": {"log": [0.02, 0.3]}, "max_iter": {"int": [50, 300]},
                     "max_leaf_nodes": {"int": [8, 64]}, "min_samples_leaf": {"int": [5, 50]},
                     "l2_regularization": {"uniform": [0.0, 1.0]}}},
    defaults={"learning_rate": 0.1, "max_iter": 100, "max_leaf_nodes": 31, "min_samples_leaf": 20,
              "l2_regularization": 0.0},
    min_seconds=10.0,
)

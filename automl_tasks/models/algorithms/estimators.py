"""What the families with scikit-learn-style estimators share: parameter types read from a
signature, the boosters' reserved parameters, and logging / loading with an MLflow flavor."""

from __future__ import annotations

import functools
import importlib
import inspect
import types
import typing
from typing import Callable

from automl_tasks.models.algorithms.base import Flavor

# The boosters' params the project sets itself: a user value would break threading or encoding.
BOOSTER_RESERVED = frozenset({"n_jobs", "nthread", "num_threads", "enable_categorical", "feature_types",
                              "objective", "num_class", "callbacks", "device", "verbosity", "verbose"})
TYPES = (int, float, str, bool)


def signature_types(init) -> dict[str, tuple[type, bool]]:
    """Parameter -> (int, float, str or bool; whether None is accepted), from `init`'s annotations.
    Parameters of other types (dicts, callables, unions) are left to the library."""
    found = {}
    for name, parameter in inspect.signature(init, eval_str=True).parameters.items():
        annotation = parameter.annotation
        union = typing.get_origin(annotation) in (typing.Union, types.UnionType)
        options = typing.get_args(annotation) if union else (annotation,)
        rest = [t for t in options if t is not type(None)]
        if len(rest) == 1 and rest[0] in TYPES:
            found[name] = (rest[0], len(rest) < len(options))
    return found


def booster_parameters(module: str, base: str) -> tuple[Callable, Callable]:
    """(params, param_types) of a booster whose scikit-learn base class is `module.base`: the
    names a spec may set (its get_params() less what the project sets) and their types. Read
    on first use: the library is imported then, not when the registry is."""
    @functools.cache
    def model_class():
        return getattr(importlib.import_module(module), base)

    @functools.cache
    def params() -> frozenset[str]:
        return frozenset(set(model_class()().get_params()) - BOOSTER_RESERVED
                         - {"kwargs", "missing", "importance_type"})

    @functools.cache
    def param_types() -> dict[str, tuple[type, bool]]:
        return signature_types(model_class().__init__)

    return params, param_types


def _log(module: str, options: Callable, model, algorithm, prepared, X_example):
    """Log with the flavor; the signature comes from predict_proba for classifiers."""
    import pandas as pd
    from mlflow.models import infer_signature

    example = pd.DataFrame(X_example, columns=prepared.encoding.feature_names)
    output = (model.predict(example.to_numpy()) if prepared.spec.task == "regression"
              else model.predict_proba(example.to_numpy()))
    signature = infer_signature(example, output)
    return importlib.import_module(f"mlflow.{module}").log_model(
        model, name=algorithm.name, signature=signature, input_example=example,
        pip_requirements=algorithm.pip_requirements(), **options(model))


def _load(module: str, model_uri: str, meta: dict):
    return importlib.import_module(f"mlflow.{module}").load_model(model_uri)


def _no_options(model) -> dict:
    return {}


def flavor(module: str, options: Callable = _no_options) -> Flavor:
    """The estimator logged with mlflow.<module> (`options(model)`: extra log_model arguments)."""
    return Flavor(module, functools.partial(_log, module, options), functools.partial(_load, module))

"""Small specs over the demo data, overridable per test."""

from __future__ import annotations

import copy
from pathlib import Path

import yaml

FEATURES = ["income", "loan_amount", "loan_length", "car_value", "debt_ratio", "age",
            "salary_range", "region", "employment", "purpose"]

BASE = {
    "name": "loans_test",
    "task": "binary",
    "data": {"source": "loans", "label": "default", "timestamp": "timestamp", "id": "id"},
    "features": FEATURES,
    "window": {"train_months": 4},
    "metric": "areaUnderROC",
    "validation": {"method": "cv", "folds": 3},
    "algorithms": {
        "xgboost": {"search": "grid", "space": {"max_depth": [2, 4], "n_estimators": [20]}},
        "lightgbm": {"search": "random", "trials": 2,
                     "space": {"num_leaves": {"int": [4, 16]}, "n_estimators": [20]}},
    },
}

TASKS = {
    "binary": {"data": {"label": "default"}, "metric": "areaUnderROC"},
    "multiclass": {"data": {"label": "grade"}, "metric": "logLoss"},
    "regression": {"data": {"label": "loss"}, "metric": "rmse"},
}


def merge(base: dict, override: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict) and key != "algorithms":
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def spec_dict(task: str = "binary", **override) -> dict:
    return merge(merge(BASE, {"task": task, **TASKS[task]}), override)


def write_spec(folder: Path, task: str = "binary", filename: str = "spec.yaml", **override) -> Path:
    """Write a spec into `folder` (data paths are relative to it, like a user's spec)."""
    path = Path(folder) / filename
    path.write_text(yaml.safe_dump(spec_dict(task, **override), sort_keys=False))
    return path

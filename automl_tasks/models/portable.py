"""Score an exported model with its own library alone (xgboost, lightgbm, ...): no automl_tasks, no Spark.

This file is copied next to every exported model as `predict.py`, its `raw_predict` replaced
by the model's algorithm's own (models/export.py). It imports only the standard library, numpy
and the model's own library, and applies the encoding recorded in metadata.json exactly as the
training pipeline did:
  numeric: float, null/NaN -> the recorded fill value (when imputation was on);
  categorical: the value as Spark's cast to text writes it (`true`, `3`, `2.5`, `1.0E20`) -> its
  index in the recorded categories; null or a category unseen in training -> len(categories),
  the same bucket Spark uses.

    python predict.py MODEL_DIR rows.json     # rows.json: a list of {column: value}
    >>> import predict; predict.predict("MODEL_DIR", [{"income": 5.0, "region": "north"}])
"""

from __future__ import annotations

import json
import math
import sys
from decimal import Decimal
from pathlib import Path

import numpy as np


def load_metadata(model_dir) -> dict:
    return json.loads((Path(model_dir) / "metadata.json").read_text())


def _number(value) -> float:
    if value is None:
        return math.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ValueError(f"numeric feature got non-numeric value {value!r}") from None


def _category_key(value) -> str | None:
    """The text Spark's CAST(value AS STRING) gives: the key training indexed the category by."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, (bool, np.bool_)):
        return "true" if value else "false"
    if isinstance(value, (float, np.floating)):
        return _java_double(float(value))
    return str(value)


def _java_double(x: float) -> str:
    """Java's Double.toString, as Spark casts a double: plain from 1e-3 to 1e7 (`2.5`, `7.0`),
    else one digit, the rest and a power of ten (`1.0E20`, `1.5E-5`); the same shortest digits as repr."""
    if math.isinf(x):
        return "Infinity" if x > 0 else "-Infinity"
    if x == 0 or 1e-3 <= abs(x) < 1e7:
        return repr(x)
    sign, digits, exponent = Decimal(repr(x)).normalize().as_tuple()
    text = "".join(map(str, digits))
    return f"{'-' if sign else ''}{text[0]}.{text[1:] or '0'}E{exponent + len(text) - 1}"


def _numbers(values) -> np.ndarray:
    try:
        return np.asarray(values, dtype=np.float64)     # None -> NaN, as float() reads text
    except (TypeError, ValueError):
        return np.array([_number(v) for v in values], dtype=np.float64)    # raises naming the value


def encode_columns(meta: dict, columns: dict, n_rows: int) -> np.ndarray:
    """Raw values by feature name (any sequence of n_rows) -> the model's input matrix, column order as trained."""
    X = np.empty((n_rows, len(meta["feature_names"])), dtype=np.float64)
    for j, name in enumerate(meta["feature_names"]):
        if name in meta["categorical"]:
            categories = meta["categorical"][name]
            index = {c: i for i, c in enumerate(categories)}
            unseen = len(categories)
            X[:, j] = [index.get(_category_key(v), unseen) for v in columns[name]]
        else:
            column = _numbers(columns[name])
            if name in meta["impute"]:
                column[np.isnan(column)] = meta["impute"][name]
            X[:, j] = column
    return X


def encode(meta: dict, rows: list[dict]) -> np.ndarray:
    """Rows of raw values -> the model's input matrix, column order as trained."""
    return encode_columns(meta, {name: [r.get(name) for r in rows] for name in meta["feature_names"]}, len(rows))


def raw_predict(path: str, meta: dict, X: np.ndarray) -> np.ndarray:
    """The model file's output for X (binary: P(class 1)). In predict.py, the algorithm's own."""
    from automl_tasks.models import algorithms

    return algorithms.get(meta["algorithm"]).native.portable[-1](path, meta, X)


def predict_matrix(model_dir, meta: dict, X: np.ndarray) -> np.ndarray:
    """Probabilities (n, classes) for classifiers, values (n,) for regression."""
    out = np.asarray(raw_predict(str(Path(model_dir) / meta["booster_file"]), meta, X), dtype=np.float64)
    if meta["task"] == "binary":
        return np.column_stack([1.0 - out, out])
    return out


def predict(model_dir, rows: list[dict]) -> np.ndarray:
    meta = load_metadata(model_dir)
    return predict_matrix(model_dir, meta, encode(meta, rows))


def label_of(meta: dict, probabilities: np.ndarray) -> list:
    """The class values (as in the training label) of the most probable class per row."""
    return [meta["classes"][i] for i in np.argmax(probabilities, axis=1)]


if __name__ == "__main__":
    model_dir, rows_path = sys.argv[1], sys.argv[2]
    result = predict(model_dir, json.loads(Path(rows_path).read_text()))
    json.dump(result.tolist(), sys.stdout)
    print()

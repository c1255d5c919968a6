"""Scoring new rows the project's way: the saved Spark pipeline encodes, the model predicts."""

from __future__ import annotations

import numpy as np

from automl_tasks.data.prepare import model_columns
from automl_tasks.models import adapters


def load_pipeline(path: str):
    from pyspark.ml import PipelineModel

    return PipelineModel.load(str(path))


def encode(pipeline_model, meta: dict, df) -> np.ndarray:
    """Raw Spark rows -> the model's input matrix, with the encoding fitted at training time."""
    from pyspark.sql import functions as F

    cols = model_columns(meta["feature_names"], list(meta["categorical"]), meta["impute_strategy"])
    pdf = pipeline_model.transform(df).select(
        *[F.col(c).cast("double").alias(f"x{i}") for i, c in enumerate(cols)]).toPandas()
    return pdf.to_numpy(dtype=np.float64)


def predict(model, meta: dict, X: np.ndarray) -> np.ndarray:
    return adapters.predict(model, meta["task"], X)

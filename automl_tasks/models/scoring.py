"""Scoring new rows the project's way: metadata.json's encoding on Spark's own casts, then the model.

`encode` needs no fitted Spark pipeline: the pipeline's first stage casts each feature (numeric to
double, categorical to string), and what it fitted after that, the categories' order and the
fill values, is what metadata.json records. So `encode` runs the same casts in Spark and applies
the recorded encoding with numpy (predict.py's own code): the same matrix the pipeline gives
(tests/test_scoring_encode.py), without loading a pipeline on every scoring step. The pipeline is
still saved with each tuning run (`preprocessing/`): a Spark job can score with it.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

from automl_tasks.errors import DataError, SpecError
from automl_tasks.models import adapters
from automl_tasks.spark import driver_local_ml_io


def save_pipeline(pipeline_model, path) -> None:
    """Write the fitted preprocessing into a folder on the driver, wherever the executors run."""
    with driver_local_ml_io():
        pipeline_model.write().overwrite().save(str(path))


def load_pipeline(path):
    """A folder `save_pipeline` wrote, or one written by Spark jobs (runs logged before it)."""
    from pyspark.ml import PipelineModel
    from pyspark.ml.util import JavaMLReader

    if (Path(path) / "metadata").is_dir():     # Spark jobs write a folder of part files
        return PipelineModel.load(str(path))
    with driver_local_ml_io():
        # PySpark's own reader reads the metadata with a Spark job; the JVM's one honours the switch.
        return JavaMLReader(PipelineModel).load(str(path))


def check_can_score(meta: dict, where: str, task: str, columns, source: str) -> None:
    """A model (`where`: how errors name it) can score `columns` (`source`: how errors name
    them) for a spec of `task`: a DataError naming the first feature it lacks, or a SpecError."""
    missing = [f for f in meta["feature_names"] if f not in columns]
    if missing:
        raise DataError(f"feature {missing[0]!r} of {where} is not in {source}")
    if meta["task"] != task:
        raise SpecError(f"{where} is a {meta['task']} model; the spec says task {task}")


def encode(meta: dict, df, *, carry: str | None = None):
    """Raw Spark rows -> the model's input matrix, with the encoding fitted at training time.
    `carry`: a column of `df` (an id) returned beside the matrix, row for row: (X, values)."""
    from pyspark.sql import functions as F

    from automl_tasks.models import portable

    names = meta["feature_names"]
    xs = [f"x{i}" for i in range(len(names))]
    # The training pipeline's casts (data.prepare._pipeline's first stage), so text keys and numbers match.
    pdf = df.select(*[F.col(name).cast("string" if name in meta["categorical"] else "double").alias(x)
                      for x, name in zip(xs, names)],
                    *([F.col(carry).alias("carried")] if carry else [])).toPandas()
    X = portable.encode_columns(meta, {name: pdf[x].to_numpy() for x, name in zip(xs, names)}, len(pdf))
    return (X, pdf["carried"].to_numpy()) if carry else X


def predict(model, meta: dict, X: np.ndarray) -> np.ndarray:
    return adapters.predict(model, meta["task"], X)


class NativeModel:
    """An exported model folder (models/export.py) loaded back: metadata, predict, importance.

    Predictions go through predict.py's own code (portable.py) where the folder has one, else
    (Spark ML) through the model its family reads back from the folder.
    """

    def __init__(self, model_dir):
        from automl_tasks.models import algorithms, portable

        self.dir = str(model_dir)
        self.meta = portable.load_metadata(model_dir)
        self.algorithm = self.meta["algorithm"]
        self._native = algorithms.get(self.algorithm).native

    @functools.cached_property
    def model(self):
        return self._native.load(f"{self.dir}/{self.meta['booster_file']}", self.meta)

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Probabilities (n, k) for classification, values (n,) for regression, as adapters.predict."""
        from automl_tasks.models import portable

        if self._native.portable:
            return portable.predict_matrix(self.dir, self.meta, X)
        return adapters.predict(self.model, self.meta["task"], X)

    def importance(self) -> dict[str, float]:
        """By feature name, as adapters.importance; empty for an algorithm that has none."""
        from automl_tasks.models import algorithms

        if algorithms.get(self.algorithm).importance is None:
            return {}
        names = self.meta["feature_names"]
        categorical = [i for i, f in enumerate(names) if f in self.meta["categorical"]]
        return adapters.importance(self.model, self.algorithm, names, categorical)

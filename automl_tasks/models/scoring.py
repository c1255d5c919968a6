"""Scoring new rows the project's way: the saved Spark pipeline encodes, the model predicts."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from automl_tasks.data.prepare import model_columns
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


def encode(pipeline_model, meta: dict, df) -> np.ndarray:
    """Raw Spark rows -> the model's input matrix, with the encoding fitted at training time."""
    from pyspark.sql import functions as F

    cols = model_columns(meta["feature_names"], list(meta["categorical"]), meta["impute_strategy"])
    pdf = pipeline_model.transform(df).select(
        *[F.col(c).cast("double").alias(f"x{i}") for i, c in enumerate(cols)]).toPandas()
    return pdf.to_numpy(dtype=np.float64)


def predict(model, meta: dict, X: np.ndarray) -> np.ndarray:
    return adapters.predict(model, meta["task"], X)


class NativeModel:
    """An exported model folder (models/export.py) loaded back: metadata, predict, importance.

    Boosters are read with plain xgboost / lightgbm (portable.py), Spark ML pipelines with Spark.
    """

    def __init__(self, model_dir):
        from automl_tasks.models import portable, spark_ml

        self.dir = str(model_dir)
        self.meta = portable.load_metadata(model_dir)
        self.algorithm = self.meta["algorithm"]
        self._spark = None
        if spark_ml.is_spark(self.algorithm):
            self._spark = spark_ml.load(f"{self.dir}/{self.meta['booster_file']}", self.algorithm,
                                        self.meta["task"], len(self.meta["feature_names"]))

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Probabilities (n, k) for classification, values (n,) for regression, as adapters.predict."""
        from automl_tasks.models import portable

        if self._spark is not None:
            return adapters.predict(self._spark, self.meta["task"], X)
        return portable.predict_matrix(self.dir, self.meta, X)

    def importance(self) -> dict[str, float]:
        names = self.meta["feature_names"]
        if self._spark is not None:
            categorical = [i for i, f in enumerate(names) if f in self.meta["categorical"]]
            return adapters.importance(self._spark, self.algorithm, names, categorical)
        path = f"{self.dir}/{self.meta['booster_file']}"
        if self.algorithm == "xgboost":
            import xgboost as xgb

            scores = xgb.Booster(model_file=path).get_score(importance_type="total_gain")
            return {name: float(scores.get(name, 0.0)) for name in names}
        import lightgbm as lgb

        gains = lgb.Booster(model_file=path).feature_importance(importance_type="gain")
        return {name: float(g) for name, g in zip(names, gains)}

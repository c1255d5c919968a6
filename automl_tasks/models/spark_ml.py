"""Spark ML baselines (linear, random forest, GBT) behind the adapters' numpy interface.

The tuning engine hands every algorithm the same encoded matrix (numeric features as
floats, categorical features as integer codes). A Spark ML model cannot be fitted
inside an executor (it needs the driver's SparkSession), so these algorithms fit on
the driver, data-parallel on the cluster, one (trial, fold) after the other
(`tuning.runner.run_wave` dispatches on `runs_on_driver`).

Per algorithm and task:
  spark_linear         LogisticRegression (binary, multiclass) | LinearRegression
  spark_random_forest  RandomForestClassifier | RandomForestRegressor
  spark_gbt            GBTClassifier (binary only: Spark's GBT has no multiclass) | GBTRegressor
The linear model one-hot encodes the categorical codes (trees split on the codes).
A fitted model is a `SparkModel`: the Spark PipelineModel (assembler, encoder, estimator)
with numpy predict / predict_proba, saved with Spark ML's own persistence format.
"""

from __future__ import annotations

import numpy as np

from automl_tasks.errors import DataError

SPARK_ALGORITHMS = ("spark_linear", "spark_random_forest", "spark_gbt")

_TREE = {"maxDepth", "maxBins", "minInstancesPerNode", "minInfoGain", "subsamplingRate",
         "featureSubsetStrategy", "minWeightFractionPerNode", "checkpointInterval", "cacheNodeIds",
         "maxMemoryInMB"}
# Tunable Spark ML param names (camelCase, as Spark spells them). Columns, seed and the
# loss family are set by the project.
PARAMS: dict[str, frozenset[str]] = {
    "spark_linear": frozenset({"regParam", "elasticNetParam", "maxIter", "tol", "fitIntercept",
                               "standardization", "aggregationDepth"}),
    "spark_random_forest": frozenset(_TREE | {"numTrees", "bootstrap", "impurity"}),
    "spark_gbt": frozenset(_TREE | {"maxIter", "stepSize", "validationTol"}),
}
RESERVED = frozenset({"featuresCol", "labelCol", "predictionCol", "probabilityCol", "rawPredictionCol",
                      "weightCol", "seed", "family", "lossType", "solver", "varianceCol", "leafCol"})


def is_spark(algorithm: str) -> bool:
    return algorithm in SPARK_ALGORITHMS


def _columns(n: int) -> list[str]:
    return [f"x{i}" for i in range(n)]


def _frame(spark, X: np.ndarray, y: np.ndarray | None = None):
    import pandas as pd

    pdf = pd.DataFrame(np.asarray(X, dtype=np.float64), columns=_columns(X.shape[1]))
    pdf.insert(0, "__row", np.arange(len(pdf), dtype=np.int64))
    if y is not None:
        pdf["label"] = np.asarray(y, dtype=np.float64)
    return spark.createDataFrame(pdf)


def _estimator(algorithm: str, task: str, params: dict, seed: int):
    from pyspark.ml import classification as clf
    from pyspark.ml import regression as reg

    regression = task == "regression"
    if algorithm == "spark_linear":
        cls = reg.LinearRegression if regression else clf.LogisticRegression
        return cls(featuresCol="features", labelCol="label", **params)
    if algorithm == "spark_random_forest":
        cls = reg.RandomForestRegressor if regression else clf.RandomForestClassifier
        return cls(featuresCol="features", labelCol="label", seed=seed, **params)
    if task == "multiclass":
        raise DataError("spark_gbt supports binary classification and regression only "
                        "(Spark's GBTClassifier has no multiclass); drop it for a multiclass label")
    cls = reg.GBTRegressor if regression else clf.GBTClassifier
    return cls(featuresCol="features", labelCol="label", seed=seed, **params)


def _stages(algorithm: str, n_features: int, categorical: list[int]):
    from pyspark.ml.feature import OneHotEncoder, VectorAssembler

    columns = _columns(n_features)
    if algorithm != "spark_linear" or not categorical:
        return [VectorAssembler(inputCols=columns, outputCol="features", handleInvalid="keep")], columns
    cats = set(categorical)
    onehot = [f"{columns[i]}_onehot" for i in sorted(cats)]
    encoder = OneHotEncoder(inputCols=[columns[i] for i in sorted(cats)], outputCols=onehot,
                            handleInvalid="keep", dropLast=True)
    inputs = [c for i, c in enumerate(columns) if i not in cats] + onehot
    return [encoder, VectorAssembler(inputCols=inputs, outputCol="features", handleInvalid="keep")], inputs


class SparkModel:
    """A fitted Spark ML pipeline with the adapters' interface (numpy in, numpy out)."""

    def __init__(self, pipeline_model, algorithm: str, task: str, n_features: int):
        self.pipeline_model, self.algorithm, self.task = pipeline_model, algorithm, task
        self.n_features = n_features

    def _transform(self, X: np.ndarray, column: str) -> np.ndarray:
        from pyspark.ml.functions import vector_to_array
        from pyspark.sql import functions as F

        out = self.pipeline_model.transform(_frame(_session(), X))
        value = vector_to_array(column) if column == "probability" else F.col(column)
        pdf = out.select("__row", value.alias("value")).toPandas().sort_values("__row")
        if column == "probability":
            return np.vstack(pdf["value"].to_numpy()).astype(np.float64)
        return pdf["value"].to_numpy(dtype=np.float64)

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self._transform(X, "prediction")

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        return self._transform(X, "probability")

    @property
    def estimator_model(self):
        return self.pipeline_model.stages[-1]


def _session():
    from pyspark.sql import SparkSession

    spark = SparkSession.getActiveSession()
    if spark is None:
        raise RuntimeError("Spark ML algorithms fit and predict on the driver: no active SparkSession")
    return spark


def fit(algorithm: str, task: str, params: dict, X: np.ndarray, y: np.ndarray, categorical: list[int],
        seed: int = 0) -> SparkModel:
    from pyspark.ml import Pipeline

    stages, _ = _stages(algorithm, X.shape[1], list(categorical))
    pipeline = Pipeline(stages=[*stages, _estimator(algorithm, task, dict(params), seed)])
    return SparkModel(pipeline.fit(_frame(_session(), X, y)), algorithm, task, X.shape[1])


def wrap(pipeline_model, algorithm: str, task: str, n_features: int) -> SparkModel:
    """A loaded PipelineModel (native folder or MLflow's spark flavor) as a SparkModel."""
    return pipeline_model if isinstance(pipeline_model, SparkModel) else SparkModel(
        pipeline_model, algorithm, task, n_features)


def save(model: SparkModel, path) -> None:
    model.pipeline_model.write().overwrite().save(str(path))


def load(path, algorithm: str, task: str, n_features: int) -> SparkModel:
    from pyspark.ml import PipelineModel

    return SparkModel(PipelineModel.load(str(path)), algorithm, task, n_features)


def objective(model: SparkModel) -> str:
    return type(model.estimator_model).__name__


def importance(model: SparkModel, feature_names: list[str], categorical: list[int]) -> dict[str, float]:
    """Trees: Spark's featureImportances; linear: |coefficient| summed over a feature's one-hot columns."""
    estimator = model.estimator_model
    if model.algorithm != "spark_linear":
        values = estimator.featureImportances.toArray()
        return {name: float(values[i]) for i, name in enumerate(feature_names)}
    coefficients = (estimator.coefficientMatrix.toArray() if hasattr(estimator, "coefficientMatrix")
                    else np.atleast_2d(estimator.coefficients.toArray()))
    weight = np.abs(coefficients).sum(axis=0)
    _, inputs = _stages("spark_linear", len(feature_names), categorical)
    encoder = model.pipeline_model.stages[0] if categorical else None
    sizes = dict(zip(encoder.getOutputCols(), encoder.categorySizes)) if encoder is not None else {}
    out, position = {}, 0
    for column in inputs:
        index = int(column[1:].split("_")[0])
        # handleInvalid=keep adds a bucket and dropLast removes one: categorySize columns.
        width = sizes.get(column, 1)
        out[feature_names[index]] = float(weight[position:position + width].sum())
        position += width
    return out

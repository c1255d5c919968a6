"""Spark ML baselines (linear, random forest, GBT) behind the same numpy interface.

The tuning engine hands every algorithm the same encoded matrix (numeric features as
floats, categorical features as integer codes). A Spark ML model cannot be fitted
inside an executor (it needs the driver's SparkSession), so these algorithms fit on
the driver, data-parallel on the cluster, one (trial, fold) after the other
(`fits_on_driver`: `fitting.on_driver` dispatches on it).

Per algorithm and task:
  spark_linear         LogisticRegression (binary, multiclass) | LinearRegression
  spark_random_forest  RandomForestClassifier | RandomForestRegressor
  spark_gbt            GBTClassifier (binary only: Spark's GBT has no multiclass) | GBTRegressor
The linear model one-hot encodes the categorical codes (trees split on the codes).
A fitted model is a `SparkModel`: the Spark PipelineModel (assembler, encoder, estimator)
with numpy predict / predict_proba, saved with Spark ML's own persistence format (no
predict.py: scoring it needs Spark) and logged with MLflow's spark flavor.
"""

from __future__ import annotations

import functools
import inspect
import tempfile
from functools import cache
from types import SimpleNamespace

import numpy as np

from automl_tasks.errors import DataError
from automl_tasks.models.algorithms.base import TASKS, Algorithm, Flavor, NativeFormat

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
        n_threads: int = 1, seed: int = 0) -> SparkModel:
    """One pipeline on the driver's session (`n_threads` does not apply: Spark schedules the work)."""
    from pyspark.ml import Pipeline

    stages, _ = _stages(algorithm, X.shape[1], list(categorical))
    pipeline = Pipeline(stages=[*stages, _estimator(algorithm, task, dict(params), seed)])
    return SparkModel(pipeline.fit(_frame(_session(), X, y)), algorithm, task, X.shape[1])


def wrap(pipeline_model, algorithm: str, task: str, n_features: int) -> SparkModel:
    """A loaded PipelineModel (native folder or MLflow's spark flavor) as a SparkModel."""
    return pipeline_model if isinstance(pipeline_model, SparkModel) else SparkModel(
        pipeline_model, algorithm, task, n_features)


def save(model: SparkModel, path, feature_names: list[str] = ()) -> None:
    model.pipeline_model.write().overwrite().save(str(path))


def load(algorithm: str, path, meta: dict) -> SparkModel:
    from pyspark.ml import PipelineModel

    return SparkModel(PipelineModel.load(str(path)), algorithm, meta["task"], len(meta["feature_names"]))


def objective(model: SparkModel) -> str:
    return type(model.estimator_model).__name__


def importance(model: SparkModel, feature_names: list[str], categorical=()) -> dict[str, float]:
    """Trees: Spark's featureImportances; linear: |coefficient| summed over a feature's one-hot columns."""
    estimator = model.estimator_model
    if model.algorithm != "spark_linear":
        values = estimator.featureImportances.toArray()
        return {name: float(values[i]) for i, name in enumerate(feature_names)}
    categorical = list(categorical)
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


def log_flavor(model: SparkModel, algorithm: Algorithm, prepared, X_example):
    """The Spark pipeline reads columns x0..x{n-1} (the encoded features, in order) and MLflow's
    spark pyfunc returns its "prediction" column. Saved locally, then logged as the run's
    artifacts: mlflow.spark.log_model would first try to write to the artifact store with
    Spark's own file system (which has no mlflow-artifacts: scheme) and fail."""
    import mlflow
    import pandas as pd
    from mlflow.models import infer_signature

    example = pd.DataFrame(X_example, columns=[f"x{i}" for i in range(X_example.shape[1])])
    signature = infer_signature(example, model.predict(example.to_numpy()))
    with tempfile.TemporaryDirectory() as tmp:
        mlflow.spark.save_model(model.pipeline_model, f"{tmp}/{algorithm.name}", signature=signature,
                                input_example=example, pip_requirements=algorithm.pip_requirements())
        mlflow.log_artifacts(f"{tmp}/{algorithm.name}", algorithm.name)
    return SimpleNamespace(model_uri=f"runs:/{mlflow.active_run().info.run_id}/{algorithm.name}")


def load_flavor(algorithm: str, model_uri: str, meta: dict) -> SparkModel:
    import mlflow

    return wrap(mlflow.spark.load_model(model_uri), algorithm, meta["task"], len(meta["feature_names"]))


@cache
def param_types(classifier: str, regressor: str) -> dict[str, tuple[type, bool]]:
    """Parameter -> (int, float, str or bool; False), from the Param type converters of Spark ML's
    classifier and regressor behind the algorithm."""
    from pyspark.ml import classification, regression
    from pyspark.ml.param import TypeConverters

    converters = {TypeConverters.toInt: int, TypeConverters.toFloat: float,
                  TypeConverters.toString: str, TypeConverters.toBoolean: bool}
    found = {}
    for cls in (getattr(classification, classifier), getattr(regression, regressor)):
        for name, param in inspect.getmembers(cls, lambda m: hasattr(m, "typeConverter")):
            if param.typeConverter in converters:
                found.setdefault(name, (converters[param.typeConverter], False))
    return found


def _algorithm(name: str, estimators: tuple[str, str], space: dict, defaults: dict,
               tasks: tuple[str, ...] = TASKS, task_note: str = "") -> Algorithm:
    return Algorithm(
        name=name, tasks=tasks, task_note=task_note, packages=("pyspark",),
        fit=functools.partial(fit, name), objective=objective,
        params=functools.partial(PARAMS.__getitem__, name), reserved=RESERVED,
        param_types=functools.partial(param_types, *estimators),
        native=NativeFormat("sparkml", save, functools.partial(load, name)),   # a PipelineModel folder
        flavor=Flavor("spark", log_flavor, functools.partial(load_flavor, name)),
        space=space, defaults=defaults,
        # Measured on a shared 2-core machine (bench/RESULTS.md): one trial (3 folds on the driver)
        # with its refit takes ~30-40 s.
        min_seconds=40.0, fits_on_driver=True, importance=importance,
        connect_refusal="its models are Spark ML pipelines, saved and logged (mlflow.spark) through "
                        "the driver's JVM")


SPARK_LINEAR = _algorithm(
    "spark_linear", ("LogisticRegression", "LinearRegression"),
    {"space": {"regParam": {"log": [1e-4, 1.0]}, "elasticNetParam": {"uniform": [0.0, 1.0]}},
     "fixed": {"maxIter": 50}},
    {"regParam": 1e-4, "elasticNetParam": 0.0})
SPARK_RANDOM_FOREST = _algorithm(
    "spark_random_forest", ("RandomForestClassifier", "RandomForestRegressor"),
    {"space": {"numTrees": {"int": [20, 100]}, "maxDepth": {"int": [3, 10]}}},
    {"numTrees": 20, "maxDepth": 5})
SPARK_GBT = _algorithm(
    "spark_gbt", ("GBTClassifier", "GBTRegressor"),
    {"space": {"maxIter": {"int": [10, 40]}, "maxDepth": {"int": [2, 6]}, "stepSize": {"log": [0.03, 0.3]}}},
    {"maxIter": 20, "maxDepth": 5, "stepSize": 0.1},
    tasks=("binary", "regression"), task_note="Spark's GBT has no multiclass")

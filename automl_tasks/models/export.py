"""Model export: native booster + metadata.json + predict.py, and the MLflow flavor model."""

from __future__ import annotations

import json
import shutil
import tempfile
from importlib import metadata as pkg_metadata
from pathlib import Path
from types import SimpleNamespace

from automl_tasks.data.prepare import Prepared
from automl_tasks.models import adapters, portable, spark_ml

FORMAT_VERSION = 1


def build_metadata(model, algorithm: str, prepared: Prepared, params: dict, run_id: str | None) -> dict:
    spec, enc = prepared.spec, prepared.encoding
    library = adapters.library(algorithm)
    return {
        "format_version": FORMAT_VERSION,
        "name": spec.name,
        "algorithm": algorithm,
        "library_version": pkg_metadata.version(library),
        "task": spec.task,
        "objective": adapters.objective(model, algorithm),
        "metric": spec.metric,
        "params": params,
        "label": spec.data.label,
        "classes": prepared.classes,
        "label_mapping": ({str(c): i for i, c in enumerate(prepared.classes)}
                          if prepared.classes is not None else None),
        "feature_names": enc.feature_names,
        "categorical": enc.categorical,
        "unseen_category": "null or unseen values map to code len(categories)",
        "impute_strategy": spec.impute,
        "impute": enc.impute,
        "booster_file": adapters.booster_file(algorithm),
        "trained_on_months": list(prepared.window.train),
        "data_fingerprint": prepared.fingerprint,
        "mlflow_run_id": run_id,
    }


def export_native(model, algorithm: str, prepared: Prepared, params: dict, out_dir: Path,
                  run_id: str | None = None) -> Path:
    """Write a folder loadable by plain xgboost / lightgbm: booster, metadata.json, predict.py."""
    out_dir = Path(out_dir)
    if out_dir.exists():
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True)
    adapters.save_native(model, algorithm, out_dir / adapters.booster_file(algorithm),
                         prepared.encoding.feature_names)
    meta = build_metadata(model, algorithm, prepared, params, run_id)
    (out_dir / "metadata.json").write_text(json.dumps(meta, indent=2, default=str))
    if not spark_ml.is_spark(algorithm):   # predict.py needs a booster; Spark ML models need Spark
        shutil.copyfile(portable.__file__, out_dir / "predict.py")
    return out_dir


def pip_requirements(algorithm: str) -> list[str]:
    """Explicit requirements: MLflow's inference of them costs seconds per model."""
    names = ["numpy", "pandas", "scikit-learn", adapters.library(algorithm)]
    return [f"{n}=={pkg_metadata.version(n)}" for n in names]


def flavor(algorithm: str):
    """The MLflow flavor module a model of `algorithm` is logged with."""
    import mlflow

    if spark_ml.is_spark(algorithm):
        return mlflow.spark
    return mlflow.xgboost if algorithm == "xgboost" else mlflow.lightgbm


def load_flavor_model(algorithm: str, model_uri: str, meta: dict):
    """The logged model, ready for `adapters.predict` (Spark ML: wrapped as a SparkModel)."""
    model = flavor(algorithm).load_model(model_uri)
    if spark_ml.is_spark(algorithm):
        return spark_ml.wrap(model, algorithm, meta["task"], len(meta["feature_names"]))
    return model


def log_flavor_model(model, algorithm: str, prepared: Prepared, X_example):
    """Log the model with its MLflow flavor; the signature comes from predict_proba for classifiers."""
    import mlflow
    import pandas as pd
    from mlflow.models import infer_signature

    if spark_ml.is_spark(algorithm):
        # The Spark pipeline reads columns x0..x{n-1} (the encoded features, in order) and
        # MLflow's spark pyfunc returns its "prediction" column. Saved locally, then logged as
        # the run's artifacts: mlflow.spark.log_model would first try to write to the artifact
        # store with Spark's own file system (which has no mlflow-artifacts: scheme) and fail.
        example = pd.DataFrame(X_example, columns=[f"x{i}" for i in range(X_example.shape[1])])
        signature = infer_signature(example, model.predict(example.to_numpy()))
        with tempfile.TemporaryDirectory() as tmp:
            mlflow.spark.save_model(model.pipeline_model, f"{tmp}/{algorithm}", signature=signature,
                                    input_example=example, pip_requirements=pip_requirements(algorithm))
            mlflow.log_artifacts(f"{tmp}/{algorithm}", algorithm)
        return SimpleNamespace(model_uri=f"runs:/{mlflow.active_run().info.run_id}/{algorithm}")
    example = pd.DataFrame(X_example, columns=prepared.encoding.feature_names)
    output = (model.predict(example.to_numpy()) if prepared.spec.task == "regression"
              else model.predict_proba(example.to_numpy()))
    signature = infer_signature(example, output)
    return flavor(algorithm).log_model(model, name=algorithm, signature=signature, input_example=example,
                                       pip_requirements=pip_requirements(algorithm))

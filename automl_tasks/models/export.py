"""Model export: native model file + metadata.json + predict.py, and the MLflow flavor model.

What each algorithm writes and logs is its family's (models/algorithms/): the native file
(`NativeFormat`), the standalone scorer predict.py holds, the MLflow flavor (`Flavor`).
"""

from __future__ import annotations

import inspect
import json
import shutil
from importlib import metadata as pkg_metadata
from pathlib import Path

from automl_tasks.data.labels import class_key
from automl_tasks.data.prepare import Prepared
from automl_tasks.models import algorithms, portable

FORMAT_VERSION = 1


def build_metadata(model, algorithm: str, prepared: Prepared, params: dict, run_id: str | None) -> dict:
    spec, enc = prepared.spec, prepared.encoding
    family = algorithms.get(algorithm)
    return {
        "format_version": FORMAT_VERSION,
        "name": spec.name,
        "algorithm": algorithm,
        "library_version": pkg_metadata.version(family.library),
        "task": spec.task,
        "objective": family.objective(model),
        "metric": spec.metric,
        "params": params,
        "label": spec.data.label,
        "classes": prepared.classes,
        "label_mapping": ({class_key(c): i for i, c in enumerate(prepared.classes)}
                          if prepared.classes is not None else None),
        "feature_names": enc.feature_names,
        "categorical": enc.categorical,
        "unseen_category": "null or unseen values map to code len(categories)",
        "impute_strategy": spec.impute,
        "impute": enc.impute,
        "booster_file": family.native.file,
        "trained_on_months": list(prepared.window.train),
        "data_fingerprint": prepared.fingerprint,
        "mlflow_run_id": run_id,
    }


def export_native(model, algorithm: str, prepared: Prepared, params: dict, out_dir: Path,
                  run_id: str | None = None) -> Path:
    """Write a folder loadable with the model's own library: model file, metadata.json, predict.py
    (Spark ML pipelines, which need Spark to score, have no predict.py)."""
    out_dir = Path(out_dir)
    if out_dir.exists():
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True)
    native = algorithms.get(algorithm).native
    native.save(model, out_dir / native.file, prepared.encoding.feature_names)
    meta = build_metadata(model, algorithm, prepared, params, run_id)
    (out_dir / "metadata.json").write_text(json.dumps(meta, indent=2, default=str))
    if native.portable:
        (out_dir / "predict.py").write_text(predict_script(native.portable))
    return out_dir


def predict_script(scorer: tuple) -> str:
    """portable.py with its `raw_predict` replaced by the family's standalone functions (`scorer`,
    the last one its raw_predict): a predict.py that needs no automl_tasks."""
    template, generic = Path(portable.__file__).read_text(), inspect.getsource(portable.raw_predict)
    return template.replace(generic, "\n\n".join(inspect.getsource(f) for f in scorer))


def load_flavor_model(algorithm: str, model_uri: str, meta: dict):
    """The logged model, ready for `adapters.predict`."""
    return algorithms.get(algorithm).flavor.load(model_uri, meta)


def log_flavor_model(model, algorithm: str, prepared: Prepared, X_example):
    """Log the model with its MLflow flavor (signature and input example included)."""
    family = algorithms.get(algorithm)
    return family.flavor.log(model, family, prepared, X_example)

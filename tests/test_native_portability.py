"""The exported model scores in a fresh Python with only xgboost/lightgbm (and numpy), as the project does."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest

from automl_tasks.data.demo import generate_loans
from automl_tasks.models import scoring
from automl_tasks.spec import load_spec
from automl_tasks.tuning.job import tune
from tests.support.encoding import pipeline_matrix
from tests.support.specs import write_spec

ONE_TRIAL = {
    "xgboost": {"search": "grid", "space": {"max_depth": [3], "n_estimators": [15]}},
    "lightgbm": {"search": "grid", "space": {"num_leaves": [7], "n_estimators": [15]}},
}


def _rows() -> pd.DataFrame:
    """Scoring rows: a later month (with the late-only purpose), plus unseen and missing values."""
    rows = generate_loans(n_months=13, rows_per_month=60, start="2017-01", shift_month="2017-09", seed=5)
    rows = rows[rows["month"] == "2018-01"].head(40).copy()
    rows.iloc[0, rows.columns.get_loc("region")] = "atlantis"          # never seen in training
    rows.iloc[1, rows.columns.get_loc("purpose")] = None                # missing categorical
    rows.iloc[2, rows.columns.get_loc("car_value")] = np.nan            # missing numeric
    rows.iloc[3, rows.columns.get_loc("salary_range")] = "unknown"
    return rows


FRESH_PROCESS = """
import json, sys
sys.path.insert(0, sys.argv[1])          # the model folder only: predict.py lives there
import predict
rows = json.load(open(sys.argv[2]))
print(json.dumps(predict.predict(sys.argv[1], rows).tolist()))
print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in ('automl_tasks', 'pyspark', 'mlflow'))))
"""


@pytest.mark.parametrize("task", ["binary", "multiclass", "regression"])
def test_native_model_reproduces_project_predictions(task, demo_dir, spark, tracking, tmp_path):
    spec = load_spec(write_spec(demo_dir, task, filename=f"portable_{task}.yaml", algorithms=ONE_TRIAL))
    summary = tune(spec, "2017-11", spark=spark, progress=lambda line: None)
    rows = _rows()
    raw = rows.drop(columns=["timestamp"]).astype(object).where(rows.notna(), None)
    rows_path = tmp_path / "rows.json"
    rows_path.write_text(json.dumps(raw.to_dict(orient="records"), default=str))
    frame = spark.createDataFrame(rows.drop(columns=["timestamp"]))

    for entry in summary["leaderboard"]:
        model_dir = Path(entry["model_dir"])
        meta = json.loads((model_dir / "metadata.json").read_text())
        assert meta["task"] == task and meta["feature_names"][:2] == ["income", "loan_amount"]
        assert "atlantis" not in meta["categorical"]["region"]
        # The project's path: metadata.json's encoding on Spark's casts + the MLflow flavor model. Its
        # matrix is the one the run's saved Spark preprocessing gives.
        X = scoring.encode(meta, frame)
        pipeline = scoring.load_pipeline(model_dir.parent / "preprocessing")
        np.testing.assert_array_equal(X, pipeline_matrix(pipeline, meta, frame))
        flavor = mlflow.xgboost if entry["algorithm"] == "xgboost" else mlflow.lightgbm
        project = scoring.predict(flavor.load_model(entry["model_uri"]), meta, X)

        # A fresh interpreter, isolated from the project (-I: no cwd, no user site, no PYTHON* env).
        out = subprocess.run([sys.executable, "-I", "-c", FRESH_PROCESS, str(model_dir), str(rows_path)],
                             capture_output=True, text=True, timeout=300, cwd=tmp_path)
        assert out.returncode == 0, out.stderr[-2000:]
        portable_lines = out.stdout.strip().splitlines()
        portable = np.array(json.loads(portable_lines[0]))
        assert json.loads(portable_lines[1]) == []      # no project, Spark or MLflow imported
        assert portable.shape == project.shape == ((40,) if task == "regression" else (40, len(meta["classes"])))
        assert np.max(np.abs(portable - project)) <= 1e-6
        if task != "regression":
            assert np.allclose(portable.sum(axis=1), 1.0)

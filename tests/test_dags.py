"""DAGs: light to parse, and the monthly DAG end to end under dag.test() with a person approving."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from mlflow import MlflowClient

from tests.support.specs import spec_dict

ROOT = Path(__file__).resolve().parents[1]
AIRFLOW = str(Path(sys.executable).with_name("airflow"))


@pytest.fixture(scope="module")
def airflow_env(tmp_path_factory):
    home = tmp_path_factory.mktemp("airflow")
    env = {**os.environ, "AIRFLOW_HOME": str(home), "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
           "AIRFLOW__CORE__LOAD_EXAMPLES": "False", "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
           "PYTHONPATH": str(ROOT)}
    subprocess.run([AIRFLOW, "db", "migrate"], env=env, check=True, capture_output=True, timeout=600)
    return env


def test_dag_files_parse_without_heavy_imports(airflow_env):
    probe = (
        "import sys, runpy\n"
        "from airflow.dag_processing.dagbag import DagBag\n"
        "bag = DagBag()\n"
        "assert not bag.import_errors, bag.import_errors\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in "
        "('pyspark', 'mlflow', 'xgboost', 'lightgbm', 'evidently') or m.startswith('automl_tasks.pipelines'))\n"
        "print(sorted(bag.dag_ids)); print(heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], env=airflow_env, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    dag_ids, heavy = (json.loads(line.replace("'", '"')) for line in out.stdout.strip().splitlines()[-2:])
    assert "monthly_retrain" in dag_ids
    assert heavy == []


def test_monthly_dag_waits_for_a_person_and_applies_the_approval(airflow_env, demo_dir, tmp_path, tracking):
    specs = tmp_path / "specs"
    specs.mkdir()
    raw = spec_dict("binary", name="dag_monthly", segment="segment",
                    data={"source": str(demo_dir / "loans")})
    (specs / "dag_monthly.yaml").write_text(yaml.safe_dump(raw))
    env = {**airflow_env, "AUTOML_SPECS_DIR": str(specs), "MLFLOW_TRACKING_URI": tracking,
           "AUTOML_HOME": os.environ["AUTOML_HOME"], "SPARK_MASTER": "local[2]"}
    conf = {"month": "2017-10", "promotion": "manual"}
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "run_dag.py"), "monthly_retrain",
                          "--date", "2018-08-01T00:00:00+00:00", "--conf", json.dumps(conf),
                          "--answer", "Approve"],
                         env=env, cwd=ROOT, capture_output=True, text=True, timeout=1500)
    assert out.returncode == 0, out.stderr[-4000:]
    assert "ANSWERED per_spec.approve_challenger[0] Approve" in out.stdout
    result = json.loads(out.stdout.split("RESULT ", 1)[1].splitlines()[0])
    assert result["state"] == "success", result
    assert result["tasks"]["per_spec.apply_decision[0]"] == "success"

    client = MlflowClient(tracking)
    champion = client.get_model_version_by_alias("dag_monthly", "champion")
    assert champion.tags["automl.decision.status"] == "approved"
    assert champion.tags["automl.decision.decided_by"] == "user:tester"
    runs = client.search_runs([client.get_experiment_by_name("dag_monthly/monthly").experiment_id])
    assert runs and all(r.data.tags.get("automl.dag_run_id", "").startswith("manual__") for r in runs
                        if r.data.tags.get("automl.kind") in ("evaluation", "comparison", "tuning"))

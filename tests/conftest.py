"""Shared fixtures: one local Spark session, one real MLflow server on loopback, demo data."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("SPARK_MASTER", "local[2]")
# Tests run many small Spark jobs that end before the JIT's C2 tier pays off.
os.environ.setdefault("AUTOML_DRIVER_JAVA_OPTIONS", "-XX:TieredStopAtLevel=1")


@pytest.fixture(scope="session")
def spark():
    from automl_tasks.spark import get_spark

    session = get_spark("automl_tasks-tests")
    yield session
    session.stop()


@pytest.fixture(scope="session")
def mlflow_url(tmp_path_factory):
    from tests.support.mlflow_server import mlflow_server

    with mlflow_server(tmp_path_factory.mktemp("mlflow-server")) as url:
        yield url


@pytest.fixture
def tracking(mlflow_url, tmp_path, monkeypatch):
    """Point the library at the test server and a fresh AUTOML_HOME."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_url)
    monkeypatch.setenv("AUTOML_HOME", str(tmp_path / "home"))
    return mlflow_url


@pytest.fixture(scope="session")
def demo_dir(tmp_path_factory) -> Path:
    """Small demo data: 12 months x 400 rows, with the concept shift at 2017-09."""
    from automl_tasks.data.demo import write_demo_data

    out = tmp_path_factory.mktemp("demo")
    write_demo_data(out, n_months=12, rows_per_month=400, shift_month="2017-09", seed=1)
    return out


@pytest.fixture(scope="session")
def airflow_env(tmp_path_factory) -> dict[str, str]:
    """Environment of a migrated Airflow home (SQLite metadata DB) whose DAGs are this repo's."""
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    home = tmp_path_factory.mktemp("airflow")
    env = {**os.environ, "AIRFLOW_HOME": str(home), "AIRFLOW__CORE__DAGS_FOLDER": str(root / "dags"),
           "AIRFLOW__CORE__PLUGINS_FOLDER": str(root / "plugins"),
           "AIRFLOW__CORE__LOAD_EXAMPLES": "False", "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
           "PYTHONPATH": str(root)}
    airflow = str(Path(sys.executable).with_name("airflow"))
    subprocess.run([airflow, "db", "migrate"], env=env, check=True, capture_output=True, timeout=600)
    return env


@pytest.fixture(autouse=True)
def _no_mlflow_uris_across_tests():
    """tracking.client() sets MLflow's process-global tracking and registry URIs; tests point
    at different servers, so a later test must not read from or write to an earlier test's
    (stopped) server. mlflow.set_tracking_uri also exports MLFLOW_TRACKING_URI: restored too."""
    tracking_env = os.environ.get("MLFLOW_TRACKING_URI")
    registry_env = os.environ.get("MLFLOW_REGISTRY_URI")
    yield
    import mlflow.tracking._model_registry.utils as registry_utils
    import mlflow.tracking._tracking_service.utils as tracking_utils

    registry_utils._registry_uri = None
    tracking_utils._tracking_uri = None
    if tracking_env is None:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    else:
        os.environ["MLFLOW_TRACKING_URI"] = tracking_env
    assert os.environ.get("MLFLOW_REGISTRY_URI") == registry_env, \
        "MLFLOW_REGISTRY_URI leaked into the environment (child processes would use it)"

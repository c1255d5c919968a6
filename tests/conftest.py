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
    from automl_tasks.registry import tracking as mlflow_tracking

    mlflow_tracking.configure()       # the test's entry point: MLflow's fluent API included
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
def _each_test_configures_mlflow_afresh():
    """Each test is a process of its own for MLflow's configuration: configured once, by its
    fixtures (`tracking`), the CLI's main or its first tracking.client(), for its own store.

    A reset is still needed: MLflow's tracking and registry URIs are process-global and pytest runs
    every test in one process, so what one test configured (or set itself with
    mlflow.set_tracking_uri) would send a later test to an earlier test's (stopped) server.
    tracking.unconfigure() resets them with MLflow's public setters. mlflow.set_tracking_uri also
    exports MLFLOW_TRACKING_URI, even when the test had it unset (default store under
    AUTOML_HOME): restored to what it was, else the next test would read that store's URI."""
    tracking_env = os.environ.get("MLFLOW_TRACKING_URI")
    registry_env = os.environ.get("MLFLOW_REGISTRY_URI")
    yield
    from automl_tasks.registry import tracking

    tracking.unconfigure()
    if tracking_env is None:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    else:
        os.environ["MLFLOW_TRACKING_URI"] = tracking_env
    assert os.environ.get("MLFLOW_REGISTRY_URI") == registry_env, \
        "MLFLOW_REGISTRY_URI leaked into the environment (child processes would use it)"

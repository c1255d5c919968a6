"""Links between the MLflow UI and the Airflow UI, as a browser reaches them.

MLflow side: `AUTOML_MLFLOW_UI_URL`, else an http(s) tracking URI (config.mlflow_ui_url);
with neither (a local SQLite store) there is no UI to link to and every link is None.
Airflow side: `AIRFLOW__API__BASE_URL`, the address Airflow's own links use.

A DAG task publishes its MLflow links as the XCom `XCOM_KEY` ({link name: URL}, from
`task_links`); the Airflow plugin `plugins/mlflow_links.py` serves them as the task's
"MLflow run" and "Model version" buttons. No Airflow import here: the key is the contract.
"""

from __future__ import annotations

import os
from urllib.parse import quote

from automl_tasks import config

XCOM_KEY = "mlflow_links"
RUN, MODEL_VERSION = "MLflow run", "Model version"


def run_url(run_id: str, experiment_id: str | None = None) -> str | None:
    """The run's page (MLflow's `#/runs/<id>` route finds the experiment itself)."""
    base = config.mlflow_ui_url()
    if not base:
        return None
    return f"{base}/#/experiments/{experiment_id}/runs/{run_id}" if experiment_id else f"{base}/#/runs/{run_id}"


def version_url(name: str, version: str) -> str | None:
    base = config.mlflow_ui_url()
    return f"{base}/#/models/{quote(name, safe='')}/versions/{version}" if base else None


def task_links(run_id: str | None = None, model: str | None = None, version: str | None = None) -> dict[str, str]:
    """What a task shows as extra links: its MLflow run, and the model version it registered or decided."""
    links = {RUN: run_id and run_url(run_id), MODEL_VERSION: model and version and version_url(model, str(version))}
    return {name: url for name, url in links.items() if url}


def monthly_links(result: dict) -> dict[str, str]:
    """Links of the monthly DAG's steps, from evaluate's result: the month run and the challenger."""
    return task_links(result["runs"]["month"], result["name"], result["decision"]["version"])


def airflow_run_url(dag_id: str, dag_run_id: str) -> str | None:
    """The DAG run's page in the Airflow UI, when AIRFLOW__API__BASE_URL says where that is."""
    base = os.environ.get("AIRFLOW__API__BASE_URL", "").rstrip("/")
    if not base.startswith(("http://", "https://")):
        return None
    return f"{base}/dags/{quote(dag_id, safe='')}/runs/{quote(dag_run_id, safe='')}"

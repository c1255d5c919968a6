"""Airflow plugin: each task's "MLflow run" button, and "Model version" where a task registered or
decided one, opening the MLflow UI at that run or registered model version.

How Airflow 3 serves extra links: the api-server answers
`GET /api/v2/dags/{dag}/dagRuns/{run}/taskInstances/{task}/links?map_index=N` by calling each link's
`get_link(operator, ti_key=...)` in its own process, on the deserialized operator; it never runs
the task's code. So the data must already be in the metadata DB: a task pushes its links as the XCom
`mlflow_links` ({link name: URL}; automl_tasks.registry.links builds them where the MLflow UI's
address is configured), and these links read that XCom for the task instance, map index included.

Registered as *global* links: they appear on every task, whatever its operator (@task functions,
the HITL approval subclass, tasks in mapped groups). A task that pushed no such XCom gets a null
URL, which the UI leaves out.
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin
from airflow.sdk import BaseOperatorLink

from automl_tasks.registry.links import MODEL_VERSION, RUN, XCOM_KEY


def task_links(ti_key) -> dict:
    """The {link name: URL} the task instance pushed, or {} (read in the api-server, from the DB)."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    query = XComModel.get_many(key=XCOM_KEY, run_id=ti_key.run_id, dag_ids=ti_key.dag_id,
                               task_ids=ti_key.task_id, map_indexes=ti_key.map_index)
    with create_session() as session:
        row = session.execute(query.with_only_columns(XComModel.value)).first()
    value = XComModel.deserialize_value(row) if row is not None else None
    return value if isinstance(value, dict) else {}


class _MlflowLink(BaseOperatorLink):
    def get_link(self, operator, *, ti_key) -> str:
        return task_links(ti_key).get(self.name) or ""


class MlflowRunLink(_MlflowLink):
    name = RUN


class ModelVersionLink(_MlflowLink):
    name = MODEL_VERSION


class MlflowLinksPlugin(AirflowPlugin):
    name = "mlflow_links"
    global_operator_extra_links = [MlflowRunLink(), ModelVersionLink()]

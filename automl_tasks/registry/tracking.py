"""MLflow conventions: experiments per model and purpose, automl.* tags, nested trial runs."""

from __future__ import annotations

import hashlib
import json
import os
import queue
import threading
import time

from automl_tasks import config
from automl_tasks.registry import links
from automl_tasks.spec import ModelSpec

MAX_TAG = 5000


def client():
    """Point MLflow at the configured store and return a client for it."""
    import mlflow
    from mlflow import MlflowClient

    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    uri = config.tracking_uri()
    mlflow.set_tracking_uri(uri)
    # The registry lives in the same store. Set explicitly, MLflow no longer asks an active
    # Spark session for "spark.mlflow.modelRegistryUri" each time it makes a client (a py4j
    # call, which fails while a signal-interrupted Spark call is unwinding).
    # set_registry_uri also exports MLFLOW_REGISTRY_URI to the environment, which child
    # processes would inherit even when their tracking URI differs: keep the caller's value.
    inherited = os.environ.get("MLFLOW_REGISTRY_URI")
    mlflow.set_registry_uri(uri)
    if inherited is None:
        os.environ.pop("MLFLOW_REGISTRY_URI", None)
    else:
        os.environ["MLFLOW_REGISTRY_URI"] = inherited
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def experiment_id(mlflow_client, spec: ModelSpec, purpose: str) -> str:
    """`<model>/<purpose>`, created on first use (artifacts under AUTOML_HOME for a local store)."""
    name = f"{spec.name}/{purpose}"
    found = mlflow_client.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    root = config.local_artifact_root()
    location = (root / name).as_uri() if root is not None else None
    return mlflow_client.create_experiment(name, artifact_location=location)


def run_tags(spec: ModelSpec, kind: str, month: str | None, fingerprint: str | None,
             dag_run_id: str | None = None) -> dict[str, str]:
    tags = {
        "automl.kind": kind,
        "automl.model": spec.name,
        "automl.month": month or "all",
        "automl.branch": spec.origin.get("branch", "none"),
        "automl.git_commit": spec.origin.get("git_commit", "none"),
    }
    if fingerprint:
        tags["automl.data_fingerprint"] = fingerprint
    # The spec's content too: an edited, uncommitted spec must not reuse runs made from the old one.
    tags["automl.spec_hash"] = hashlib.sha256(spec.model_dump_json().encode()).hexdigest()[:16]
    return {**tags, **airflow_tags(dag_run_id)}


# Who made a run, not what it is: never part of a key that finds a run for reuse.
AIRFLOW_TAGS = ("automl.dag_run_id", "automl.dag_id", "automl.task_id", "automl.airflow_url")


def airflow_tags(dag_run_id: str | None = None) -> dict[str, str]:
    """The Airflow DAG run and task a run was made in, and a link back to the DAG run in the Airflow UI.

    Read from the AIRFLOW_CTX_* variables Airflow exports into a task's process; none from the CLI.
    """
    env = os.environ
    dag_run_id = dag_run_id or env.get("AIRFLOW_CTX_DAG_RUN_ID")
    if not dag_run_id:
        return {}
    dag_id, task_id = env.get("AIRFLOW_CTX_DAG_ID"), env.get("AIRFLOW_CTX_TASK_ID")
    tags = {"automl.dag_run_id": dag_run_id, "automl.dag_id": dag_id, "automl.task_id": task_id,
            "automl.airflow_url": dag_id and links.airflow_run_url(dag_id, dag_run_id)}
    return {key: value for key, value in tags.items() if value}


def clear_attempt(mlflow_client, experiment: str, run_id: str) -> None:
    """Delete what an interrupted attempt of `run_id` left inside it (its nested runs and the
    models it logged), so the resumed run logs them once. Deleted runs stay restorable."""
    children = mlflow_client.search_runs([experiment], f"tags.`mlflow.parentRunId` = '{run_id}'",
                                         max_results=50000)
    for child in children:
        mlflow_client.delete_run(child.info.run_id)
    for model in mlflow_client.search_logged_models([experiment], f"source_run_id = '{run_id}'"):
        mlflow_client.delete_logged_model(model.model_id)


def _param_value(value) -> str:
    return value if isinstance(value, str) else json.dumps(value)


class TrialLogger:
    """Logs trial results as nested runs from a background thread, off the tuning's critical path.

    Errors are kept and raised by close(), never swallowed.
    """

    def __init__(self, mlflow_client, experiment: str, parent_run_id: str, tags: dict[str, str],
                 metric: str):
        self.client, self.experiment, self.parent = mlflow_client, experiment, parent_run_id
        self.tags, self.metric = tags, metric
        self.queue: queue.Queue = queue.Queue()
        self.error: BaseException | None = None
        self.logged = 0
        self.thread = threading.Thread(target=self._work, name="mlflow-trial-logger", daemon=True)
        self.thread.start()

    def submit(self, trials) -> None:
        if self.error is not None:
            raise self.error
        self.queue.put(list(trials))

    def close(self) -> None:
        self.queue.put(None)
        self.thread.join()
        if self.error is not None:
            raise self.error

    def _work(self) -> None:
        while (batch := self.queue.get()) is not None:
            if self.error is not None:
                continue
            try:
                for trial in batch:
                    self._log(trial)
                # On the parent: lets the MLflow UI show progress while the tuning runs.
                self.client.log_metric(self.parent, "trials_done", self.logged, step=self.logged)
            except BaseException as exc:  # kept for close(); the main thread re-raises it
                self.error = exc

    def _log(self, trial) -> None:
        from mlflow.entities import Metric, Param, RunTag
        from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

        tags = {**self.tags, "automl.kind": "trial", "automl.algorithm": trial.algorithm,
                MLFLOW_PARENT_RUN_ID: self.parent}
        if trial.warm_start:
            tags["automl.warm_start"] = "true"
        if trial.error:
            tags["automl.error"] = trial.error[:MAX_TAG]
        run = self.client.create_run(self.experiment, run_name=f"{trial.algorithm}-{trial.number:03d}",
                                     tags=tags)
        now = int(time.time() * 1000)
        params = [Param("algorithm", trial.algorithm), Param("trial", str(trial.number))]
        params += [Param(k, _param_value(v)) for k, v in sorted(trial.params.items())]
        metrics = [Metric("duration_s", trial.seconds, now, 0)]
        # A failed fold comes back as null (NaN crosses Arrow as null): nothing to log for it.
        metrics += [Metric(f"{self.metric}_fold{i}", v, now, 0)
                    for i, v in enumerate(trial.fold_values) if v is not None and v == v]
        if trial.status == "FINISHED":
            metrics.append(Metric(self.metric, trial.value, now, 0))
        self.client.log_batch(run.info.run_id, metrics=metrics, params=params,
                              tags=[RunTag("automl.status", trial.status)])
        self.client.set_terminated(run.info.run_id, status=trial.status)
        self.logged += 1

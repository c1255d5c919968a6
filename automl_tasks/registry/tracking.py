"""MLflow conventions: experiments per model and purpose, automl.* tags, nested trial runs."""

from __future__ import annotations

import hashlib
import json
import os
import queue
import sys
import threading
import time
from pathlib import Path

from automl_tasks import config
from automl_tasks.data.months import describe_months
from automl_tasks.registry import links
from automl_tasks.spec import ModelSpec

MAX_TAG = 5000


# The store configure() pointed MLflow at in this process; None until it has.
_configured: str | None = None


def configure() -> str:
    """Point MLflow, fluent API included, at the configured store (`config.tracking_uri()`) for
    this whole process; returns its URI.

    Each entry point calls it once at its start: the CLI's main, each Airflow task, the tests'
    fixtures. Idempotent: again with the same settings it changes nothing; with other settings
    (an in-process caller that changed MLFLOW_TRACKING_URI or AUTOML_HOME) it re-points MLflow.
    Library code calls client(), which configures only when the process is not configured for the
    current settings (the Python API from a notebook, with no entry point), so not on every call.
    mlflow.set_tracking_uri exports MLFLOW_TRACKING_URI, so a store set that way is the configured
    one from then on. Makes no folder or store.
    """
    import mlflow

    global _configured
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    uri = config.tracking_uri(create=False)
    if uri == _configured and mlflow.get_tracking_uri() == uri:
        return uri
    mlflow.set_tracking_uri(uri)       # also exports MLFLOW_TRACKING_URI, for child processes
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
    _configured = uri
    return uri


def unconfigure() -> None:
    """Undo configure() (and any mlflow.set_tracking_uri / set_registry_uri): MLflow falls back to
    MLFLOW_TRACKING_URI, and the next client() configures again.

    For a process that runs job after job against different stores, as pytest runs tests each
    with its own (tests/conftest.py); public MLflow API only. The environment is left as it is.
    """
    global _configured
    _configured = None
    if "mlflow" not in sys.modules:    # nothing was set: not worth importing MLflow to say so
        return
    import mlflow

    tracking_env = os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(None)      # also unsets MLFLOW_TRACKING_URI: not this function's to unset
    mlflow.set_registry_uri(None)      # exports nothing when None
    if tracking_env is not None:
        os.environ["MLFLOW_TRACKING_URI"] = tracking_env


def client():
    """A client of the configured store. Configures MLflow only when this process has not been
    configured for the current settings (first use without an entry point, or MLFLOW_TRACKING_URI /
    AUTOML_HOME changed since): never again on later calls, never fighting an entry point."""
    from mlflow import MlflowClient

    uri = config.tracking_uri(create=False)
    if uri != _configured:
        configure()
    if uri.startswith("sqlite:///"):   # the folder of a local store (the home folder by default)
        Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


# MLflow's UI opens an experiment on the page its kind names (unset: the GenAI overview, in 3.17).
EXPERIMENT_KIND = {"mlflow.experimentKind": "custom_model_development"}


def experiment_id(mlflow_client, spec: ModelSpec, purpose: str) -> str:
    """`<model>/<purpose>`, created on first use (artifacts under AUTOML_HOME for a local store);
    marked as model training so the UI opens it on its runs."""
    name = f"{spec.name}/{purpose}"
    found = mlflow_client.get_experiment_by_name(name)
    if found is not None:
        if not EXPERIMENT_KIND.items() <= found.tags.items():   # made before the kind was set
            for key, value in EXPERIMENT_KIND.items():
                mlflow_client.set_experiment_tag(found.experiment_id, key, value)
        return found.experiment_id
    root = config.local_artifact_root()
    location = (root / name).as_uri() if root is not None else None
    return mlflow_client.create_experiment(name, artifact_location=location, tags=EXPERIMENT_KIND)


def log_window_inputs(spec: ModelSpec, window, fingerprint: str) -> None:
    """The training window and the holdout as MLflow datasets of the active run, for the runs
    table's Dataset column and filter: metadata only (the source, the months as the name, a digest
    of the data fingerprint and the months), never the rows."""
    import warnings

    import mlflow
    from mlflow.data.dataset_source_registry import resolve_dataset_source
    from mlflow.data.meta_dataset import MetaDataset

    with warnings.catch_warnings():
        # MLflow 3.17 registers its local-path source class twice and warns that a path is ambiguous.
        warnings.filterwarnings("ignore", message="The specified dataset source can be interpreted")
        source = resolve_dataset_source(spec.data.source)
    for context, months in (("training", window.train), ("holdout", window.holdout_months)):
        if months:
            digest = hashlib.sha256(f"{fingerprint}:{','.join(months)}".encode()).hexdigest()[:10]
            dataset = MetaDataset(source, name=f"{spec.name} {describe_months(months)}", digest=digest)
            mlflow.log_input(dataset, context=context)


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
    tags["automl.spec_hash"] = spec_hash(spec)
    return {**tags, **airflow_tags(dag_run_id)}


def spec_hash(spec: ModelSpec) -> str:
    """The spec's content, hashed: what the runs made from it are tagged with."""
    return hashlib.sha256(spec.model_dump_json().encode()).hexdigest()[:16]


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


def _quoted(value: str) -> str:
    """A filter-string literal: MLflow's parser takes single or double quotes, no escapes."""
    value = str(value)
    if "'" not in value:
        return f"'{value}'"
    if '"' not in value:
        return f'"{value}"'
    raise ValueError(f"a tag value with both quote kinds cannot be searched for: {value!r}")


def find_runs(mlflow_client, experiment_ids: list[str], tags: dict[str, str], *,
              finished: bool = False, max_results: int = 5000) -> list:
    """The runs carrying every tag in `tags` (values quoted), newest first; FINISHED only if asked."""
    clauses = [f"tags.`{key}` = {_quoted(value)}" for key, value in tags.items()]
    if finished:
        clauses.append("attributes.status = 'FINISHED'")
    return mlflow_client.search_runs(list(experiment_ids), filter_string=" and ".join(clauses),
                                     order_by=["attributes.start_time DESC"], max_results=max_results)


def find_run(mlflow_client, experiment_ids: list[str], tags: dict[str, str], *, finished: bool = False):
    """The newest run carrying every tag in `tags`, or None."""
    runs = find_runs(mlflow_client, experiment_ids, tags, finished=finished, max_results=1)
    return runs[0] if runs else None


def clear_attempt(mlflow_client, experiment: str, run_id: str) -> None:
    """Delete what an interrupted attempt of `run_id` left inside it (its nested runs and the
    models it logged), so the resumed run logs them once. Deleted runs stay restorable."""
    children = find_runs(mlflow_client, [experiment], {"mlflow.parentRunId": run_id}, max_results=50000)
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

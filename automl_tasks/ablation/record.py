"""The study in MLflow (`<name>/ablation`): its key, reusing an earlier identical study, logging it."""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

from automl_tasks.ablation.fits import Design
from automl_tasks.ablation.plan import Plan
from automl_tasks.spec import ModelSpec

PURPOSE = "ablation"


def study_key(plan: Plan, design: Design, algorithm: str, params: dict) -> str:
    """What makes two studies the same beyond the data and spec: tagged, so a re-run reuses."""
    import hashlib

    payload = {"base": plan.base, "candidates": plan.candidates, "settled": plan.settled,
               "tables": [t.model_dump(mode="json") for t in plan.tables], "direction": design.direction,
               "repeats": design.repeats, "folds": design.folds, "algorithm": algorithm, "params": params}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


def earlier_study(spec: ModelSpec, month, fingerprint, key: str) -> dict | None:
    """The summary of a finished study with the same tags (DAG retries, re-runs), or None."""
    import mlflow

    from automl_tasks.registry import tracking

    client = tracking.client()
    experiment = client.get_experiment_by_name(f"{spec.name}/{PURPOSE}")
    if experiment is None:
        return None
    tags = {**tracking.run_tags(spec, "ablation", month, fingerprint), "automl.study_key": key,
            "automl.status": "ok"}
    tags = {k: v for k, v in tags.items() if k not in tracking.AIRFLOW_TAGS}
    run = tracking.find_run(client, [experiment.experiment_id], tags, finished=True)
    if run is None:
        return None
    run_id = run.info.run_id
    summary = mlflow.artifacts.load_dict(f"runs:/{run_id}/study.json")
    return {**summary, "run_id": run_id, "reused": True}


def log_study(spec: ModelSpec, month, fingerprint, dag_run_id, key: str, summary: dict, progress) -> str:
    """Parent run with the table, CSV, plots; one nested run per candidate. Returns the run id."""
    import mlflow
    import pandas as pd

    from automl_tasks.ablation import plots
    from automl_tasks.registry import tracking

    client = tracking.client()
    experiment = tracking.experiment_id(client, spec, PURPOSE)
    tags = {**tracking.run_tags(spec, "ablation", month, fingerprint, dag_run_id),
            "automl.direction": summary["direction"], "automl.study_key": key}
    metric = spec.metric
    with mlflow.start_run(experiment_id=experiment, run_name=f"ablation-{month or 'all'}", tags=tags,
                          nested=mlflow.active_run() is not None) as run:
        try:
            design = summary["design"]
            mlflow.log_params({
                "metric": metric, "direction": summary["direction"], "algorithm": summary["algorithm"],
                "params": json.dumps(summary["params"], sort_keys=True), "params_source": summary["params_source"],
                "repeats": design["repeats"], "folds": design["folds"], "interval": design["interval"],
                "min_effect": design["min_effect"], "leakage_threshold": design["leakage_threshold"],
                "base_features": ",".join(summary["base"]["features"])[:6000],
                "train_months": ",".join(summary["window"]), "holdout_month": summary["holdout_month"] or "none",
            })
            mlflow.log_metric(f"base_{metric}", summary["base"]["value"])
            if summary["base"]["holdout_value"] is not None:
                mlflow.log_metric(f"base_holdout_{metric}", summary["base"]["holdout_value"])
            mlflow.log_dict(summary["tables"], "tables.json")
            table = pd.DataFrame([{k: v for k, v in r.items() if k != "fold_deltas"}
                                  for r in summary["results"]])
            mlflow.log_table(table, artifact_file="results.json")
            importance = pd.DataFrame(summary["importance"])
            mlflow.log_table(importance, artifact_file="importance.json")
            with tempfile.TemporaryDirectory() as tmp:
                table.to_csv(Path(tmp) / "results.csv", index=False)
                importance.to_csv(Path(tmp) / "importance.csv", index=False)
                mlflow.log_artifact(str(Path(tmp) / "results.csv"))
                mlflow.log_artifact(str(Path(tmp) / "importance.csv"))
            measured = [r for r in summary["results"] if r["delta"] is not None]
            if measured:
                mlflow.log_figure(plots.delta_chart(measured, metric, summary["direction"]), "deltas.png")
            mlflow.log_figure(plots.importance_chart(summary["importance"]), "importance.png")
            for r in summary["results"]:
                _log_candidate(client, experiment, run.info.run_id, tags, r, metric)
            mlflow.log_dict({k: v for k, v in summary.items() if k != "run_id"}, "study.json")
            mlflow.set_tags({"automl.status": "ok",
                             "automl.adopted": ",".join(r["feature"] for r in summary["results"]
                                                        if r["verdict"] == "adopt")[:tracking.MAX_TAG]})
        except BaseException as exc:
            client.set_tag(run.info.run_id, "automl.error", f"{type(exc).__name__}: {exc}"[:tracking.MAX_TAG])
            raise
    progress(f"{spec.name}: study logged as run {run.info.run_id} in {spec.name}/{PURPOSE}")
    return run.info.run_id


def _log_candidate(client, experiment: str, parent: str, tags: dict, r: dict, metric: str) -> None:
    from mlflow.entities import Metric, Param, RunTag
    from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

    from automl_tasks.registry import tracking

    run = client.create_run(experiment, run_name=r["feature"], tags={
        **tags, "automl.kind": "ablation_candidate", "automl.feature": r["feature"],
        "automl.verdict": r["verdict"], MLFLOW_PARENT_RUN_ID: parent})
    now = int(time.time() * 1000)
    metrics = [Metric(k, float(r[k]), now, 0) for k in
               ("delta", "ci_low", "ci_high", "p_value", "holdout_delta", "alone_value", "importance_rank")
               if r.get(k) is not None]
    if r.get("arm_value") is not None:
        metrics.append(Metric(metric, r["arm_value"], now, 0))
    metrics += [Metric("fold_delta", d, now, i) for i, d in enumerate(r["fold_deltas"]) if d is not None]
    client.log_batch(run.info.run_id, metrics=metrics,
                     params=[Param("feature", r["feature"]), Param("verdict", r["verdict"])],
                     tags=[RunTag("automl.reason", r["reason"][:tracking.MAX_TAG]),
                           RunTag("automl.leakage", str(r["leakage"]).lower())])
    client.set_terminated(run.info.run_id)

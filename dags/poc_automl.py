"""poc_automl: a PoC on new data, from a form or from a file dropped into the inbox.

Two ways to start it, one task doing the work (automl_tasks.poc.run.run_poc, the same
call as `automl-tasks poc`):
- by hand, with the Params form (data path under the data folders, label, task, metric,
  time budget, algorithms, validation, test data, segment column);
- by dropping NAME_train.csv (and NAME_test.csv, NAME_poc.json with form values) into the
  inbox folder: an asset watcher (plugins/poc_inbox_trigger.py, run by the triggerer)
  claims the files and emits an event on the `poc_inbox` asset, which schedules this DAG
  with the drop in the event's payload. No polling DAG, no cron script.

PoCs run one at a time (each uses the whole time budget of the machine's cores). Paths
stay inside AUTOML_DATA_ROOTS (default: AUTOML_DATA_DIR and the inbox).
"""

from __future__ import annotations

import os
from pathlib import Path

from airflow.sdk import Asset, AssetWatcher, Param, dag, task
from dag_helpers import deployment_dir        # plugins/: light at parse time
from poc_inbox_trigger import PocInboxTrigger

from automl_tasks.models import algorithms

DATA_DIR = deployment_dir("AUTOML_DATA_DIR", "data")
INBOX = os.environ.get("AUTOML_POC_INBOX", str(Path(DATA_DIR) / "poc_inbox"))
ALGORITHMS = list(algorithms.names())
FORM = ("data", "label", "task", "metric", "time_budget_s", "algorithms", "validation", "test", "segment",
        "name", "max_trials")

poc_inbox = Asset(name="poc_inbox", uri=f"file://{INBOX}", group="automl",
                  watchers=[AssetWatcher(name="poc_inbox_watcher", trigger=PocInboxTrigger(inbox=INBOX))])


@dag(
    dag_id="poc_automl",
    schedule=[poc_inbox],
    catchup=False,
    tags=["automl", "poc"],
    params={
        "data": Param("", type="string",
                      description="Training data (csv or parquet), a path under the data folder; empty when "
                                  "started by a file drop"),
        "label": Param(os.environ.get("AUTOML_POC_LABEL", "label"), type="string", minLength=1,
                       description="The column to predict"),
        "task": Param(None, type=["null", "string"], enum=[None, "binary", "multiclass", "regression"],
                      description="Empty: inferred from the label (the run says how)"),
        "metric": Param(None, type=["null", "string"],
                        description="Spark evaluator name (areaUnderROC, logLoss, rmse, ...); empty: the task's default"),
        "time_budget_s": Param(300, type="number", minimum=1, description="Seconds for the whole PoC"),
        "algorithms": Param(None, type=["null", "array"], items={"type": "string", "enum": ALGORITHMS},
                            description="Empty: all that fit the task"),
        "validation": Param("cv", type="string", pattern=r"^(cv(:\d+)?|split(:0?\.\d+)?)$",
                            description="cv, cv:K folds, split or split:RATIO (train share)"),
        "test": Param(None, type=["null", "string"],
                      description="Test data under the data folder, same columns (label optional): predictions"),
        "segment": Param(None, type=["null", "string"],
                         description="Segment column: per-segment models compared with the global model"),
        "name": Param(None, type=["null", "string"], pattern=r"^[A-Za-z0-9_.-]+$",
                      description="Model name (MLflow <name>/poc); empty: from the data file's name"),
        "max_trials": Param(None, type=["null", "integer"], minimum=1,
                            description="Trials per algorithm at most; empty: as many as the budget allows"),
    },
)
def poc_automl():
    @task
    def requests(params=None, triggering_asset_events=None) -> list[dict]:
        """One request per inbox drop that triggered the run, else the form's."""
        from automl_tasks.errors import SpecError
        from automl_tasks.poc.inbox import request_from_event

        form = {key: params.get(key) for key in FORM}
        drops = [event.extra["payload"] for events in (triggering_asset_events or {}).values()
                 for event in events if (event.extra or {}).get("from_trigger")]
        if drops:
            return [request_from_event(payload, {**form, "data": None}) for payload in drops]
        if not form["data"]:
            raise SpecError("Param 'data' is empty: give the training data's path under the data folder")
        return [form]

    @task(max_active_tis_per_dag=1)
    def run(request: dict, run_id=None, ti=None) -> dict:
        from automl_tasks.poc.request import PocRequest
        from automl_tasks.poc.run import run_poc
        from automl_tasks.progress import stderr_as_info
        from automl_tasks.registry import links, tracking

        tracking.configure()            # this task's process talks to the configured MLflow store
        roots = os.environ.get("AUTOML_DATA_ROOTS")
        roots = roots.split(os.pathsep) if roots else [DATA_DIR, INBOX]
        with stderr_as_info():
            summary = run_poc(PocRequest(**{k: v for k, v in request.items() if v is not None}), roots=roots,
                              dag_run_id=run_id)
        ti.xcom_push(links.XCOM_KEY, links.task_links(summary["run_id"]))   # its "MLflow run" button
        # Small JSON for XCom: the leaderboard and where to read the rest.
        return {"run_id": summary["run_id"], "experiment": summary["experiment"], "task_note": summary["task_note"],
                "best": {k: summary["best"][k] for k in ("algorithm", "metric", "value", "spec")},
                "leaderboard": [{k: r[k] for k in ("algorithm", "metric", "value", "fit_seconds")}
                                for r in summary["leaderboard"]],
                "warnings": [w["kind"] for w in summary["warnings"]],
                "algorithm_check": (summary["algorithm_check"] or {}).get("verdict"),
                "segments": (summary["segments"] or {}).get("advice"),
                "outputs": summary["outputs"]["dir"], "elapsed_s": summary["budget"]["elapsed_s"]}

    run.expand(request=requests())


poc_automl()

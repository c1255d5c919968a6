"""feature_ablation: triggered by hand, "does this new table's column earn its place?".

Thin wiring only: one task calls automl_tasks.ablation.run_ablation (the same call as
`automl-tasks ablation`), which logs the study to MLflow `<name>/ablation` (results
table, deltas with CIs sorted by effect, importance plots) and returns small JSON.
Paths from the form stay inside their folders: the spec under AUTOML_SPECS_DIR, a
candidate table under AUTOML_DATA_DIR (or `table:db.name`).
"""

from __future__ import annotations

from airflow.sdk import Param, dag, task
from dag_helpers import deployment_dir        # plugins/: light at parse time

from automl_tasks.data import months     # standard library only: safe at parse time

SPECS_DIR = deployment_dir("AUTOML_SPECS_DIR", "specs")
DATA_DIR = deployment_dir("AUTOML_DATA_DIR", "data")


@dag(
    dag_id="feature_ablation",
    schedule=None,
    catchup=False,
    tags=["automl", "ablation"],
    params={
        "spec": Param("", type="string", minLength=1, description="Spec file under the specs folder"),
        "month": Param(None, type=["null", "string"], pattern=months.PATTERN,
                       description="Holdout month YYYY-MM; the study trains on the months before it"),
        "candidates": Param(None, type=["null", "string"],
                            description="Comma-separated candidate columns; empty: the spec's "
                                        "ablation.candidates, else every column of the table"),
        "table": Param(None, type=["null", "string"],
                       description="Candidate table: a path under the data folder, or table:db.name"),
        "on": Param(None, type=["null", "string"], description="Join key(s) of the table, comma-separated"),
        "as_of": Param(None, type=["null", "string"],
                       description="Time column of the table for a point-in-time join "
                                   "(default: its as_of column when it has one)"),
        "repeats": Param(None, type=["null", "integer"], minimum=2, maximum=50,
                         description="Repeats of the k-fold; empty: the spec's ablation.repeats"),
        "direction": Param("add", type="string", enum=["add", "drop"],
                           description="add: base + one candidate; drop: base - one base feature"),
    },
)
def feature_ablation():
    @task
    def ablation(params=None, run_id=None, ti=None) -> dict:
        from automl_tasks.ablation.study import request, run_ablation
        from automl_tasks.paths import confined, specs_in
        from automl_tasks.progress import stderr_as_info
        from automl_tasks.registry import links, tracking
        from automl_tasks.spark import get_spark
        from automl_tasks.spec import load_spec

        tracking.configure()            # this task's process talks to the configured MLflow store
        spec = load_spec(specs_in(SPECS_DIR, params["spec"])[0])
        spark = get_spark()
        table = params.get("table")
        if table and not table.startswith("table:"):
            table = str(confined(DATA_DIR, table))
        candidates, tables = request(spark, spec, candidates=params.get("candidates"), table=table,
                                     on=params.get("on"), as_of=params.get("as_of"))
        with stderr_as_info():
            summary = run_ablation(spec, params.get("month"), candidates=candidates, tables=tables,
                                   repeats=params.get("repeats"), direction=params["direction"], spark=spark,
                                   dag_run_id=run_id)
        ti.xcom_push(links.XCOM_KEY, links.task_links(summary["run_id"]))   # its "MLflow run" button
        # Small JSON for XCom: the verdicts and where to read the rest.
        return {"run_id": summary["run_id"], "experiment": summary["experiment"], "base": summary["base"],
                "results": [{k: r[k] for k in ("feature", "delta", "ci_low", "ci_high", "p_value",
                                               "holdout_delta", "verdict", "reason", "importance_rank")}
                            for r in summary["results"]]}

    ablation()


feature_ablation()

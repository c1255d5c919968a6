"""DAGs: light to parse, and the monthly DAG end to end under dag.test() (auto mode; the manual
mode, answered over the REST API, is in test_dag_rest_approval.py)."""

from __future__ import annotations

import html
import json
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

from mlflow import MlflowClient

from automl_tasks.data.demo import develop_variant, write_specs_repo
from automl_tasks.data.months import Month
from automl_tasks.pipelines import history, month_runs
from automl_tasks.registry import promotion
from tests.support.dags import dag_env, run_dag
from tests.support.gateway import flaky_gateway
from tests.support.smtp import body_text, smtp_server
from tests.support.specs import spec_dict


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
    assert {"monthly_retrain", "score_new_champion", "batch_score"} <= set(dag_ids)
    assert heavy == []


def test_monthly_dag_parses_with_a_first_month_that_is_the_deployments(airflow_env):
    """AUTOML_FIRST_MONTH unset: the schedule starts at the current month (no backfill of history);
    far back: moved up to AUTOML_MAX_CATCHUP_MONTHS (default 12) with a warning naming both; the
    bound raised: the month as given (docs/operations.md, "First month and catchup")."""
    probe = (
        "import json, logging, os, sys\n"
        "from airflow.dag_processing.dagbag import DagBag\n"
        "seen = []\n"
        "class Keep(logging.Handler):\n"
        "    def emit(self, record): seen.append(record.getMessage())\n"
        "logging.getLogger('automl_tasks.data.months').addHandler(Keep())\n"
        "out = {}\n"
        "for case, env in json.loads(sys.argv[1]).items():\n"
        "    for k, v in env.items():\n"
        "        os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)\n"
        "    del seen[:]\n"
        "    bag = DagBag(dag_folder=os.environ['AIRFLOW__CORE__DAGS_FOLDER'] + '/monthly_retrain.py')\n"
        "    assert not bag.import_errors, bag.import_errors\n"
        "    out[case] = [bag.dags['monthly_retrain'].start_date.strftime('%Y-%m'), list(seen)]\n"
        "print(json.dumps(out))\n"
    )
    cases = {"unset": {"AUTOML_FIRST_MONTH": None, "AUTOML_MAX_CATCHUP_MONTHS": None},
             "far": {"AUTOML_FIRST_MONTH": "2018-01"},
             "raised": {"AUTOML_MAX_CATCHUP_MONTHS": "1200"}}
    out = subprocess.run([sys.executable, "-c", probe, json.dumps(cases)], env=airflow_env, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    found = json.loads(out.stdout.strip().splitlines()[-1])
    now = datetime.now(timezone.utc)
    this, bound = f"{now:%Y-%m}", str(Month(now.year, now.month) - 12)
    assert found["unset"] == [this, []], found
    assert found["far"][0] == bound, found
    [warning] = found["far"][1]
    assert warning.startswith("AUTOML_FIRST_MONTH=2018-01 is ") and "AUTOML_MAX_CATCHUP_MONTHS=12" in warning
    assert found["raised"] == ["2018-01", []], found


def test_monthly_dag_backfills_months_in_auto_mode_with_develop_vs_master(airflow_env, demo_dir, tmp_path,
                                                                         tracking):
    """Two months through the real DAG in one process, months from the runs' data intervals."""
    repo = tmp_path / "specs_repo"
    xgboost_only = {"xgboost": {"search": "grid", "space": {"max_depth": [3], "n_estimators": [20]}}}
    master = spec_dict("binary", name="dag_monthly", segment="segment", algorithms=xgboost_only,
                       data={"source": str(demo_dir / "loans")})
    commits = write_specs_repo(repo, "specs/dag_monthly.yaml",
                               {"master": master, "develop": develop_variant(master, str(demo_dir / "bureau.parquet"))})
    env = dag_env(airflow_env, tracking, AUTOML_SPECS_DIR=str(repo / "specs"), AUTOML_SPECS_REPO=str(repo),
                  AUTOML_FIRST_MONTH="2017-10")
    # A month's run starts once the month is over: these are the runs for 2017-10 and 2017-11.
    results = run_dag("monthly_retrain", ["2017-11-01T00:00:00+00:00", "2017-12-01T00:00:00+00:00"],
                      {"promotion": "auto", "refs": "develop,master"}, env)
    assert [r["state"] for r in results] == ["success", "success"], results
    for result in results:
        assert result["tasks"]["per_spec.approve_challenger[0]"] == "success"   # nobody asked in auto mode
        assert result["tasks"]["per_spec.compare_refs[0]"] == "success"

    client = MlflowClient(tracking)
    experiment = client.get_experiment_by_name("dag_monthly/monthly").experiment_id
    months = client.search_runs([experiment], "tags.`automl.kind` = 'decision'")
    assert sorted(r.data.tags["automl.month"] for r in months) == ["2017-10", "2017-11"]
    assert all(r.data.tags["automl.git_commit"] == commits["master"] for r in months)
    assert all(r.data.tags["automl.dag_run_id"].startswith("manual__") for r in months)
    first = promotion.decision_history("dag_monthly")[0]
    assert first.month == "2017-10" and first.status == "approved" and first.decided_by == "policy:auto"
    # A month whose decision moved `champion` emits the model's champion asset event, no other month.
    decisions = {d.month: d for d in promotion.decision_history("dag_monthly")}
    for result, month in zip(results, ("2017-10", "2017-11")):
        d = decisions[month]
        moved = [{"uri": "automl://dag_monthly/champion", "extra": {
            "model": "dag_monthly", "version": d.version, "month": month, "previous": d.champion_before}}]
        assert result["asset_events"] == (moved if d.status == "approved" else []), (month, d.status, result)
    branch_runs = client.search_runs([experiment], "tags.`automl.compare` = 'develop_vs_master'")
    assert sorted(r.data.tags["automl.month"] for r in branch_runs) == ["2017-10", "2017-11"]
    assert {r.data.tags["automl.develop_commit"] for r in branch_runs} == {commits["develop"]}


def test_feature_ablation_dag_from_its_form(airflow_env, demo_dir, tmp_path, tracking):
    """The manual trigger's Params (spec under the specs folder, a table under the data folder) to a study."""
    specs = tmp_path / "specs"
    specs.mkdir()
    xgboost_only = {"xgboost": {"search": "grid", "space": {"max_depth": [3], "n_estimators": [20]}}}
    (specs / "dag_ablation.yaml").write_text(json.dumps(spec_dict(
        "binary", name="dag_ablation", algorithms=xgboost_only, data={"source": str(demo_dir / "loans")})))
    env = dag_env(airflow_env, tracking, AUTOML_SPECS_DIR=str(specs), AUTOML_DATA_DIR=str(demo_dir))
    conf = {"spec": "dag_ablation.yaml", "month": "2017-11", "table": "bureau.parquet", "on": "id",
            "candidates": "bureau_score,noise_1", "repeats": 2}
    [result] = run_dag("feature_ablation", ["2018-01-01T00:00:00+00:00"], conf, env)
    assert result["state"] == "success", result
    client = MlflowClient(tracking)
    study = client.search_runs([client.get_experiment_by_name("dag_ablation/ablation").experiment_id],
                               "tags.`automl.kind` = 'ablation'")
    assert len(study) == 1 and study[0].data.tags["automl.dag_run_id"].startswith("manual__")
    table = Path(client.download_artifacts(study[0].info.run_id, "results.csv", str(tmp_path))).read_text()
    assert "bureau_score" in table and "noise_1" in table


def test_bad_input_fails_the_month_at_once_without_retries(airflow_env, demo_dir, tmp_path, tracking):
    """A month with no data is a DataError: not transient, so the task fails on its first try with
    the library's message, although the DAG retries other failures (AUTOML_TASK_RETRIES)."""
    specs = tmp_path / "specs"
    specs.mkdir()
    (specs / "dag_bad_month.yaml").write_text(json.dumps(spec_dict(
        "binary", name="dag_bad_month", data={"source": str(demo_dir / "loans")})))
    env = dag_env(airflow_env, tracking, AUTOML_SPECS_DIR=str(specs), AUTOML_TASK_RETRIES="2",
                  AUTOML_RETRY_DELAY_MINUTES="0")
    [result] = run_dag("monthly_retrain", ["2031-02-01T00:00:00+00:00"], {"promotion": "auto"}, env)
    assert result["state"] == "failed", result
    assert result["tasks"]["per_spec.check[0]"] == "failed", result
    assert result["tries"]["per_spec.check[0]"] == 1, result       # no retry of bad input
    assert result["tasks"]["per_spec.monitor[0]"] == "upstream_failed", result
    # Nothing of the month was written: no month run, no registered version.
    client = MlflowClient(tracking)
    experiment = client.get_experiment_by_name("dag_bad_month/monthly")
    assert experiment is None or client.search_runs([experiment.experiment_id]) == []
    assert client.search_registered_models("name = 'dag_bad_month'") == []


def test_a_step_failing_on_a_transient_fault_is_retried_alone(airflow_env, demo_dir, tmp_path, tracking):
    """The gateway in front of MLflow answers 503 once, when the compare step creates its run: Airflow
    retries that step, and the steps before it are not run again (one try each, one run each)."""
    specs = tmp_path / "specs"
    specs.mkdir()
    xgboost_only = {"xgboost": {"search": "grid", "space": {"max_depth": [3], "n_estimators": [20]}}}
    (specs / "dag_retry.yaml").write_text(json.dumps(spec_dict(
        "binary", name="dag_retry", algorithms=xgboost_only, data={"source": str(demo_dir / "loans")})))

    def comparison_run(method: str, path: str, body: bytes) -> bool:
        return method == "POST" and path.endswith("/mlflow/runs/create") and b'"comparison"' in body

    with flaky_gateway(tracking, comparison_run) as gateway:
        env = dag_env(airflow_env, gateway.url, AUTOML_SPECS_DIR=str(specs), AUTOML_FIRST_MONTH="2017-10",
                      AUTOML_TASK_RETRIES="1", AUTOML_RETRY_DELAY_MINUTES="0",
                      MLFLOW_HTTP_REQUEST_MAX_RETRIES="0")     # the 503 reaches the step, unretried
        [result] = run_dag("monthly_retrain", ["2017-11-01T00:00:00+00:00"], {"promotion": "auto"}, env)
    assert gateway.refused == [("POST", "/api/2.0/mlflow/runs/create")], (gateway.refused, result)
    assert result["state"] == "success", result
    steps = ("check", "ablation", "monitor", "tune", "compare", "decide")
    assert {s: result["tries"][f"per_spec.{s}[0]"] for s in steps} == {
        "check": 1, "ablation": 1, "monitor": 1, "tune": 1, "compare": 2, "decide": 1}, result["tries"]
    client = MlflowClient(tracking)
    experiment = client.get_experiment_by_name("dag_retry/monthly").experiment_id
    kinds = [r.data.tags["automl.kind"] for r in client.search_runs([experiment], max_results=1000)]
    assert {k: kinds.count(k) for k in ("decision", "evaluation", "tuning", "comparison")} == {
        "decision": 1, "evaluation": 1, "tuning": 1, "comparison": 1}, kinds
    [decision] = promotion.decision_history("dag_retry")
    assert decision.month == "2017-10" and decision.status == "approved" and decision.decided_by == "policy:auto"


def test_the_shift_month_mails_the_degraded_champion_and_the_missed_estimate(airflow_env, tmp_path, tracking):
    """The demo data's concept shift at 2018-07 (as `make demo` generates it, fewer months), with
    labels a month late: the run for 2018-07 estimates 2018-07 without its labels, the run for
    2018-08 evaluates it, and its decide task mails a `degraded` alert (the champion's metric
    with its CI against its reference, and the delta) and an `estimate_missed` one (the estimate
    made a month earlier against the realized value); the months before raised neither."""
    from automl_tasks.data.demo import write_demo_data

    write_demo_data(tmp_path / "demo", n_months=8, start="2018-01", shift_month="2018-07")
    specs = tmp_path / "specs"
    specs.mkdir()
    xgboost_only = {"xgboost": {"search": "grid", "space": {"max_depth": [3], "n_estimators": [60]}}}
    (specs / "dag_shift.yaml").write_text(json.dumps(spec_dict(
        "binary", name="dag_shift", algorithms=xgboost_only, labels={"delay_months": 1},
        data={"source": str(tmp_path / "demo" / "loans")})))
    with smtp_server() as mail:
        env = dag_env(airflow_env, tracking, AUTOML_SPECS_DIR=str(specs), AUTOML_FIRST_MONTH="2018-06",
                      AUTOML_NOTIFY="smtp", AUTOML_NOTIFY_KINDS="degraded,estimate_missed",
                      AUTOML_NOTIFY_EMAIL_TO="ml-team@example.org", AIRFLOW_CONN_SMTP_DEFAULT=mail.connection())
        results = run_dag("monthly_retrain", [f"2018-{m:02d}-01T00:00:00+00:00" for m in (7, 8, 9)],
                          {"promotion": "auto"}, env)
        mails = mail.wait_for(2, timeout_s=5)
    assert [r["state"] for r in results] == ["success"] * 3, results
    rows = {r["month"]: r for r in history.history("dag_shift")}
    assert sorted(rows) == ["2018-05", "2018-06", "2018-07", "2018-08"]   # 2018-08: monitored only
    assert rows["2018-05"]["alerts"] == rows["2018-06"]["alerts"] == [], rows
    assert {"degraded", "estimate_missed"} <= set(rows["2018-07"]["alerts"]), rows
    assert rows["2018-08"]["decision"] == "labels pending" and rows["2018-08"]["realized"] is None
    version = rows["2018-07"]["champion"]
    estimated = rows["2018-07"]["estimated"]
    assert [m["Subject"] for m in mails] == [f"[automl] dag_shift 2018-07: the champion degraded (v{version})",
                                            "[automl] dag_shift 2018-07: the realized metric fell outside its estimate"]
    client = MlflowClient(tracking)
    record = month_runs.recorded(client, client.get_run(rows["2018-07"]["run_id"]))
    health = record.health
    body = body_text(mails[0])
    assert (f"champion v{version} areaUnderROC {health['value']:.4f} "
            f"[95% CI {health['ci_low']:.4f}, {health['ci_high']:.4f}] against {health['reference']:.4f}") in body
    assert f"delta {health['value'] - health['reference']:+.4f}" in body
    assert (f"dag_shift 2018-07: v{estimated['version']}'s realized areaUnderROC {rows['2018-07']['realized']:.4f} "
            f"lies outside the estimate made before its labels landed, {estimated['value']:.4f}") in html.unescape(
        body_text(mails[1]))


def test_the_dag_runs_every_step_of_the_library_in_order():
    """The DAG names the steps (it may not import the library at parse time): the same list, in order."""
    import ast

    from automl_tasks.pipelines.monthly import steps

    tree = ast.parse((Path(__file__).resolve().parents[1] / "dags" / "monthly_retrain.py").read_text())
    [names] = [ast.literal_eval(node.value) for node in tree.body if isinstance(node, ast.Assign)
               and [getattr(t, "id", None) for t in node.targets] == ["STEP_NAMES"]]
    assert names == tuple(step.__name__ for step in steps.STEPS)

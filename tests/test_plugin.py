"""plugins/mlflow_links.py: Airflow loads it from the plugins folder, and its links turn what a task
pushed into the URLs the api-server serves (the REST endpoint itself: test_dag_rest_approval.py).

One real Airflow process on a copy of the test session's migrated metadata DB: it loads the plugins the way
every Airflow component does, runs a small DAG with dag.test() (a mapped task that pushes its links
like the monthly DAG's tasks, one that pushes none), then asks the *serialized* DAG's tasks for their
links, the call the api-server's links endpoint makes.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

PROBE = '''
import json
import pendulum
from airflow import plugins_manager, settings
from airflow.models.serialized_dag import SerializedDagModel
from airflow.sdk import dag, task

from automl_tasks.registry import links

@dag(dag_id="mlflow_links_probe", schedule=None, start_date=pendulum.datetime(2024, 1, 1, tz="UTC"))
def probe():
    @task
    def tracked(n: int, ti=None):
        ti.xcom_push(links.XCOM_KEY, links.task_links(f"run{n}", "loan default", str(n + 1)))

    @task
    def run_only(ti=None):
        ti.xcom_push(links.XCOM_KEY, links.task_links("solo"))

    @task
    def untracked():
        return "no links"

    tracked.expand(n=[0, 1])
    run_only()
    untracked()


probe_dag = probe()

if __name__ == "__main__":   # not when dag.test() parses this file from the DAGs folder
    print("PLUGINS " + json.dumps({"folder": settings.PLUGINS_FOLDER, "loaded": plugins_manager.get_plugin_info(),
                                  "errors": plugins_manager.get_import_errors()}, default=str), flush=True)
    run = probe_dag.test()
    served = SerializedDagModel.get_dag(probe_dag.dag_id)   # what the api-server works from
    out = {}
    for ti in run.get_task_instances():
        op = served.get_task(ti.task_id)
        out[f"{ti.task_id}[{ti.map_index}]"] = {name: op.get_extra_links(ti, name) or None
                                                 for name in op.extra_links}
    print("LINKS " + json.dumps(out), flush=True)
'''


def _tagged(stdout: str, tag: str):
    return json.loads(next(line for line in stdout.splitlines() if line.startswith(tag + " "))[len(tag) + 1:])


def test_plugin_loads_from_the_folder_and_serves_each_task_its_links(airflow_env, tmp_path):
    # Its own copy of the session's migrated DB, and a DAGs folder holding just the probe DAG.
    home, dags = tmp_path / "airflow", tmp_path / "dags"
    home.mkdir()
    dags.mkdir()
    shutil.copy(Path(airflow_env["AIRFLOW_HOME"]) / "airflow.db", home / "airflow.db")
    script = dags / "probe_dag.py"
    script.write_text(PROBE)
    env = {**airflow_env, "AIRFLOW_HOME": str(home), "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
           "AUTOML_MLFLOW_UI_URL": "http://127.0.0.1:5000/"}
    out = subprocess.run([sys.executable, str(script)], env=env, cwd=tmp_path, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-4000:]

    found = _tagged(out.stdout, "PLUGINS")
    assert found["folder"] == str(ROOT / "plugins") and found["errors"] == {}, found
    plugins = {p["name"]: p for p in found["loaded"]}
    assert "mlflow_links" in plugins, plugins
    plugin = plugins["mlflow_links"]
    assert plugin["source"] == "$PLUGINS_FOLDER/mlflow_links.py", plugin
    assert sorted(plugin["global_operator_extra_links"]) == [
        "<mlflow_links.MlflowRunLink object>", "<mlflow_links.ModelVersionLink object>"]

    ui = "http://127.0.0.1:5000"
    assert _tagged(out.stdout, "LINKS") == {
        # Each mapped instance its own run and version (map index in the lookup).
        "tracked[0]": {"MLflow run": f"{ui}/#/runs/run0", "Model version": f"{ui}/#/models/loan%20default/versions/1"},
        "tracked[1]": {"MLflow run": f"{ui}/#/runs/run1", "Model version": f"{ui}/#/models/loan%20default/versions/2"},
        "run_only[-1]": {"MLflow run": f"{ui}/#/runs/solo", "Model version": None},
        "untracked[-1]": {"MLflow run": None, "Model version": None},
    }


def test_links_and_tags_from_the_environment(monkeypatch):
    """Without a browser-facing MLflow address no link is pushed; outside Airflow no run gets Airflow tags."""
    from automl_tasks.registry import links, tracking

    for var in ("AUTOML_MLFLOW_UI_URL", "AIRFLOW__API__BASE_URL", "AIRFLOW_CTX_DAG_ID", "AIRFLOW_CTX_TASK_ID",
                "AIRFLOW_CTX_DAG_RUN_ID"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///unused.db")
    assert links.task_links("abc", "m", "3") == {}
    assert tracking.airflow_tags() == {}

    monkeypatch.setenv("AIRFLOW_CTX_DAG_ID", "monthly_retrain")
    monkeypatch.setenv("AIRFLOW_CTX_TASK_ID", "per_spec.evaluate")
    monkeypatch.setenv("AIRFLOW_CTX_DAG_RUN_ID", "scheduled__2018-02-01T00:00:00+00:00")
    assert "automl.airflow_url" not in tracking.airflow_tags()      # no Airflow address known
    monkeypatch.setenv("AIRFLOW__API__BASE_URL", "http://127.0.0.1:8080/")
    assert tracking.airflow_tags() == {
        "automl.dag_run_id": "scheduled__2018-02-01T00:00:00+00:00", "automl.dag_id": "monthly_retrain",
        "automl.task_id": "per_spec.evaluate",
        "automl.airflow_url":
            "http://127.0.0.1:8080/dags/monthly_retrain/runs/scheduled__2018-02-01T00%3A00%3A00%2B00%3A00"}


MONTH_RUNS_PROBE = """
import json, pendulum
from airflow.timetables.base import DataInterval
from airflow.utils.types import DagRunType
from month_runs import MonthRuns
timetable = MonthRuns("@monthly", timezone="UTC")
after = pendulum.datetime(2018, 11, 1, tz="UTC")
october = DataInterval(pendulum.datetime(2018, 10, 1, tz="UTC"), after)
again = MonthRuns.deserialize(timetable.serialize())
print("IDS " + json.dumps({
    "scheduled": timetable.generate_run_id(run_type=DagRunType.SCHEDULED, run_after=after, data_interval=october),
    "manual_without_interval": timetable.generate_run_id(run_type=DagRunType.MANUAL, run_after=after,
                                                         data_interval=None),
    "deserialized": [type(again).__name__, again.serialize() == timetable.serialize()]}))
"""


def test_month_runs_name_the_month_a_run_covers(airflow_env):
    """plugins/month_runs.py: the run that starts on 1 November covers October, and says so; the
    scheduler rebuilds the same timetable from the serialized DAG. (Airflow in a child process,
    with the plugins folder on its path, as every Airflow process here has it.)"""
    env = {**airflow_env, "PYTHONPATH": f"{ROOT / 'plugins'}:{ROOT}"}
    out = subprocess.run([sys.executable, "-c", MONTH_RUNS_PROBE], env=env, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert _tagged(out.stdout, "IDS") == {
        "scheduled": "scheduled__2018-10__2018-11-01T00:00:00+00:00",
        "manual_without_interval": "manual__2018-11-01T00:00:00+00:00",     # no interval: no month to name
        "deserialized": ["MonthRuns", True]}

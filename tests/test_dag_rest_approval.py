"""monthly_retrain in `manual` mode waits for a person, who answers over the Airflow REST API.

Real components: the DAG runs under dag.test() in its own process (`scripts/run_dag.py`
without --answer, so nothing in that process answers), a real `airflow api-server` on
127.0.0.1 shares its SQLite metadata DB, and a real MLflow server records the decision.
The test acts as the person: it logs in (`POST /auth/token`), finds the waiting approval
task through the HITL list endpoint and answers it with `PATCH .../hitlDetails`.

Approve runs first (2017-10, no champion yet), then Reject (2017-11): months are in order. The
approved month is a module fixture (`approved`), run once: the Reject test asks for it, so
`-k reject` alone runs both months.

The two UIs link to each other: the api-server (with plugins/mlflow_links.py loaded) serves each
monthly task's "MLflow run" and "Model version" links, which must be the URLs of the month run and
the challenger version that MLflow holds; that month run links back to the Airflow DAG run.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from urllib.parse import quote

import pytest
import yaml
from mlflow import MlflowClient

from tests.support.airflow_api import USER, airflow_api_server
from tests.support.dags import run_dag
from tests.support.processes import die_with_parent, stop_group
from tests.support.specs import spec_dict

ROOT = Path(__file__).resolve().parents[1]
DAG_ID = "monthly_retrain"
CHECK, DECIDE = "per_spec.check", "per_spec.decide"     # the month run is made by check; decide shows the links
APPROVAL, APPLY = "per_spec.approve_challenger", "per_spec.apply_decision"
MODEL = "dag_rest"               # its own registered model: the MLflow server is shared by the session
RUN_TIMEOUT_S = 1800             # one DAG run is ~2 min on an idle 2-core machine; shared machines are slower
# dag.test() logs this once a pass of its loop (about a second) while only the approval is left.
STILL_WAITING = f"Waiting for Human-in-the-loop input for tasks: ['{APPROVAL}']"
WAIT_PASSES = 3                  # passes of that loop that must go by with no answer and nothing moving
WAIT_PASSES_TIMEOUT_S = 300      # they come a second apart: only a hung run takes this long


# The approval path is under test, not the search: one config of one algorithm keeps each month short.
ONE_CONFIG = {"xgboost": {"search": "grid", "space": {"max_depth": [3], "n_estimators": [30]}}}


@pytest.fixture(scope="module")
def api(airflow_env, tmp_path_factory):
    with airflow_api_server(airflow_env, tmp_path_factory.mktemp("airflow-api")) as server:
        yield server


@pytest.fixture(scope="module")
def specs_dir(demo_dir, tmp_path_factory):
    specs = tmp_path_factory.mktemp("rest-specs")
    raw = spec_dict("binary", name=MODEL, segment="segment", algorithms=ONE_CONFIG,
                    data={"source": str(demo_dir / "loans")})
    (specs / f"{MODEL}.yaml").write_text(yaml.safe_dump(raw))
    return specs


# ---------------------------------------------------------------- helpers

def _tail(path: Path, chars: int = 4000) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError:
        return ""


def _passes_waiting(out_path: Path) -> int:
    """Passes of dag.test()'s loop that found only the approval left (it logs each one)."""
    return _tail(out_path, 10**9).count(STILL_WAITING)


def _same_instant(iso: str | None, date: str) -> bool:
    return iso is not None and datetime.fromisoformat(iso.replace("Z", "+00:00")) == datetime.fromisoformat(date)


def _waiting_approval(api, date: str) -> dict | None:
    """The unanswered HITL detail of the approval task (map index 0) of the run at `date`, if parked."""
    page = api.get_json(f"/api/v2/dags/{DAG_ID}/dagRuns/~/hitlDetails",
                        params={"task_id": APPROVAL, "map_index": 0, "response_received": False})
    for detail in page["hitl_details"]:
        ti = detail["task_instance"]
        if _same_instant(ti["logical_date"], date) and ti["state"] == "awaiting_input":
            return detail
    return None


def _wait_for_approval(api, proc, date: str, started: float, why) -> dict:
    """The approval of the run at `date` once `proc` (run_dag) has parked it."""
    while (detail := _waiting_approval(api, date)) is None:
        assert proc.poll() is None, f"run_dag exited {proc.returncode} before asking anyone{why()}"
        assert time.monotonic() - started < RUN_TIMEOUT_S, f"no approval task waiting{why()}"
        time.sleep(3)
    return detail


def _ti_path(run_id: str, task_id: str, map_index: int = 0) -> str:
    return f"/api/v2/dags/{DAG_ID}/dagRuns/{quote(run_id, safe='')}/taskInstances/{task_id}/{map_index}"


def _month_run(client: MlflowClient, month: str):
    """The month's parent run, as MLflow has it (found by its tags, not by anything Airflow says)."""
    experiment = client.get_experiment_by_name(f"{MODEL}/monthly")
    runs = client.search_runs([experiment.experiment_id],
                              f"tags.`automl.kind` = 'decision' and tags.`automl.month` = '{month}'")
    assert len(runs) == 1, [r.info.run_id for r in runs]
    return runs[0]


def _assert_links_point_into_mlflow(api, tracking: str, run_id: str, month: str, task_ids) -> None:
    """Each task's extra links (GET .../taskInstances/{task}/links, map index 0) open MLflow at the
    month run and at the model version registered for the month."""
    client = MlflowClient(tracking)
    month_run = _month_run(client, month).info.run_id
    version = next(v.version for v in client.search_model_versions(f"name = '{MODEL}'")
                   if v.tags.get("automl.decision.month") == month)
    ui = tracking.rstrip("/")
    expected = {"MLflow run": f"{ui}/#/runs/{month_run}", "Model version": f"{ui}/#/models/{MODEL}/versions/{version}"}
    for task_id in task_ids:
        path = f"/api/v2/dags/{DAG_ID}/dagRuns/{quote(run_id, safe='')}/taskInstances/{task_id}/links"
        links = api.get_json(path, params={"map_index": 0})["extra_links"]
        assert links == expected, (task_id, links, expected)


def run_month_answered_over_rest(api, env: dict, tmp_path: Path, *, month: str, date: str,
                                 answer: str) -> dict:
    """Run the DAG for `month` (manual mode), answer its approval over REST; return what happened."""
    out_path, err_path = tmp_path / "run_dag.out", tmp_path / "run_dag.err"
    conf = {"month": month, "promotion": "manual"}
    started = time.monotonic()
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        proc = subprocess.Popen([sys.executable, str(ROOT / "scripts" / "run_dag.py"), DAG_ID,
                                 "--date", date, "--conf", json.dumps(conf)],
                                env=env, cwd=ROOT, stdout=out, stderr=err,
                                start_new_session=True, preexec_fn=die_with_parent)

    def why() -> str:
        return (f"\n--- run_dag stdout ---\n{_tail(out_path, 2000)}\n--- run_dag stderr ---\n"
                f"{_tail(err_path)}\n--- api-server log ---\n{api.log_tail(2000)}")

    try:
        # 1. The run parks the approval task and waits for a person.
        detail = _wait_for_approval(api, proc, date, started, why)
        asked_after = time.monotonic() - started
        run_id = detail["task_instance"]["dag_run_id"]
        assert detail["options"] == ["Approve", "Reject"] and detail["multiple"] is False, detail
        version = re.fullmatch(rf"Promote {MODEL} v(\d+) for {month} to champion\?", detail["subject"])
        assert version, detail["subject"]
        # The person reads the decision summary: the policy's verdict, the metrics table, the runs.
        assert f"{MODEL} v{version.group(1)}" in detail["body"] and "Policy:" in detail["body"]
        assert "| model | holdout areaUnderROC |" in detail["body"] and f"MLflow: [month run {month}](" in detail["body"]
        # ... and has buttons to the month run and the challenger version in MLflow.
        _assert_links_point_into_mlflow(api, env["MLFLOW_TRACKING_URI"], run_id, month, (DECIDE, APPROVAL))
        # Still waiting after the run's own loop has looked again a few times: nobody but the
        # person moves it on.
        seen, polled = _passes_waiting(out_path), time.monotonic()
        while _passes_waiting(out_path) < seen + WAIT_PASSES:
            assert proc.poll() is None, f"run_dag exited {proc.returncode} without an answer{why()}"
            assert time.monotonic() - polled < WAIT_PASSES_TIMEOUT_S, \
                f"run_dag's loop did not pass {WAIT_PASSES} more times waiting for the answer{why()}"
            time.sleep(0.5)
        assert proc.poll() is None, f"run_dag exited {proc.returncode} without an answer{why()}"
        assert _waiting_approval(api, date) is not None, why()
        apply_ti = api.get(_ti_path(run_id, APPLY))  # 404 if not expanded yet
        assert apply_ti.status_code in (200, 404), (apply_ti.status_code, apply_ti.text)
        assert apply_ti.status_code == 404 or apply_ti.json()["state"] is None, apply_ti.json()

        # 2. The person answers over REST.
        path = _ti_path(run_id, APPROVAL) + "/hitlDetails"
        resp = api.patch(path, json={"chosen_options": [answer]})
        assert resp.status_code == 200, f"PATCH {path} -> {resp.status_code} {resp.text}{why()}"
        assert resp.json()["chosen_options"] == [answer]
        assert resp.json()["responded_by"] == {"id": USER, "name": USER}

        # 3. The run resumes and applies the answer.
        try:
            rc = proc.wait(timeout=max(60.0, RUN_TIMEOUT_S - (time.monotonic() - started)))
        except subprocess.TimeoutExpired:
            pytest.fail(f"run_dag did not finish after the answer{why()}")
        assert rc == 0, f"run_dag exited {rc}{why()}"
        stdout = out_path.read_text()
        assert "RESULT " in stdout, why()
        result = json.loads(stdout.split("RESULT ", 1)[1].splitlines()[0])
        answered = api.get_json(path)
        _assert_links_point_into_mlflow(api, env["MLFLOW_TRACKING_URI"], run_id, month, (APPLY,))
        return {"result": result, "run_id": run_id, "version": version.group(1), "answered": answered,
                "asked_after_s": round(asked_after), "total_s": round(time.monotonic() - started),
                "why": why()}
    finally:
        if proc.poll() is None:
            stop_group(proc)


@pytest.fixture(scope="module")
def dag_env(airflow_env, specs_dir, mlflow_url, api, tmp_path_factory) -> dict:
    """The environment both months' DAG runs share: the session's MLflow server, one AUTOML_HOME."""
    # No branch comparison (compare_refs skips): only the approval path is under test here.
    base = {k: v for k, v in airflow_env.items() if k not in ("AUTOML_COMPARE_REFS", "AUTOML_SPECS_REPO")}
    return {**base, "AUTOML_SPECS_DIR": str(specs_dir), "MLFLOW_TRACKING_URI": mlflow_url,
            "AUTOML_HOME": str(tmp_path_factory.mktemp("rest-home")), "SPARK_MASTER": "local[2]",
            "AIRFLOW__API__BASE_URL": api.url,   # where MLflow runs link back to
            # The runs' logical dates are years back: the schedule starts there, catchup unbounded.
            "AUTOML_FIRST_MONTH": "2017-10", "AUTOML_MAX_CATCHUP_MONTHS": "1200"}


@pytest.fixture(scope="module")
def approved(api, dag_env, tmp_path_factory) -> dict:
    """The 2017-10 month (no champion yet), run once and approved over REST: its challenger is the
    first champion. The Reject test's month comes after it."""
    run = run_month_answered_over_rest(api, dag_env, tmp_path_factory.mktemp("approve"),
                                       month="2017-10", date="2018-08-01T00:00:00+00:00", answer="Approve")
    _assert_answered(run, "Approve")
    return run


# ---------------------------------------------------------------- tests

def test_rest_api_needs_a_token(api):
    resp = api.get("/api/v2/dags", auth=False)
    assert resp.status_code == 401, (resp.status_code, resp.text, api.log_tail())
    resp = api.patch(f"/api/v2/dags/{DAG_ID}/dagRuns/x/taskInstances/{APPROVAL}/0/hitlDetails",
                     auth=False, json={"chosen_options": ["Approve"]})
    assert resp.status_code == 401, (resp.status_code, resp.text)
    wrong = api.http.post("/auth/token", json={"username": USER, "password": "not-the-password"})
    assert wrong.status_code == 401, (wrong.status_code, wrong.text)
    assert api.get("/api/v2/dags").status_code == 200, api.log_tail()


def _assert_answered(run: dict, answer: str) -> None:
    """The run went on after the person's answer, and Airflow recorded who gave which."""
    print(f"{answer}: asked after {run['asked_after_s']}s, done after {run['total_s']}s")
    result = run["result"]
    assert result["state"] == "success", (result, run["why"])
    assert result["tasks"][f"{APPROVAL}[0]"] == "success", result
    assert result["tasks"][f"{APPLY}[0]"] == "success", result
    assert run["answered"]["response_received"] is True
    assert run["answered"]["chosen_options"] == [answer]
    assert run["answered"]["responded_by_user"] == {"id": USER, "name": USER}


def test_person_approves_over_rest(api, approved, mlflow_url):
    run = approved
    _assert_answered(run, "Approve")

    client = MlflowClient(mlflow_url)
    # The month run links back to the DAG run that made it, which the Airflow API knows.
    tags = _month_run(client, "2017-10").data.tags
    assert {k: tags.get(k) for k in ("automl.dag_id", "automl.task_id", "automl.dag_run_id")} == {
        "automl.dag_id": DAG_ID, "automl.task_id": CHECK, "automl.dag_run_id": run["run_id"]}, tags
    assert tags.get("automl.airflow_url") == f"{api.url}/dags/{DAG_ID}/runs/{quote(run['run_id'], safe='')}", tags
    assert api.get_json(f"/api/v2/dags/{DAG_ID}/dagRuns/{quote(run['run_id'], safe='')}")["dag_run_id"] == run["run_id"]
    champion = client.get_model_version_by_alias(MODEL, "champion")
    assert champion.version == run["version"]
    assert champion.tags["automl.decision.status"] == "approved"
    assert champion.tags["automl.decision.decided_by"] == f"user:{USER}"
    assert champion.tags["automl.decision.month"] == "2017-10"
    assert "challenger" not in client.get_registered_model(MODEL).aliases


def test_person_rejects_over_rest(api, approved, dag_env, mlflow_url, tmp_path):
    client = MlflowClient(mlflow_url)
    assert client.get_model_version_by_alias(MODEL, "champion").version == approved["version"]
    run = run_month_answered_over_rest(api, dag_env, tmp_path, month="2017-11",
                                       date="2018-09-01T00:00:00+00:00", answer="Reject")
    _assert_answered(run, "Reject")

    assert run["version"] != approved["version"]
    assert client.get_model_version_by_alias(MODEL, "champion").version == approved["version"]
    rejected = client.get_model_version(MODEL, run["version"])
    assert rejected.tags["automl.decision.status"] == "rejected"
    assert rejected.tags["automl.decision.decided_by"] == f"user:{USER}"
    assert rejected.tags["automl.decision.month"] == "2017-11"
    assert "challenger" not in client.get_registered_model(MODEL).aliases


# ---------------------------------------------------------------- an approval nobody answers

TIMEOUT_MODEL = "dag_timeout"     # its own registered model and specs: independent of the months above
# The scheduler's awaiting-input sweep, as its loop runs it, until the run has nothing parked.
SWEEP = """
import sys, time
from airflow.jobs.job import Job
from airflow.jobs.scheduler_job_runner import SchedulerJobRunner
from airflow.models import TaskInstance
from airflow.utils.session import create_session
from airflow.utils.state import TaskInstanceState

runner, dag_id, logical_date = SchedulerJobRunner(job=Job()), sys.argv[1], sys.argv[2]
for _ in range(300):
    runner.check_awaiting_input_timeouts()
    with create_session() as session:
        parked = [ti for ti in session.query(TaskInstance).filter(TaskInstance.dag_id == dag_id,
                  TaskInstance.state == TaskInstanceState.AWAITING_INPUT)
                  if ti.dag_run.logical_date.isoformat() == logical_date]
    if not parked:
        print("SWEPT")
        break
    time.sleep(1)
"""


def test_an_unanswered_approval_is_rejected_when_it_times_out(api, dag_env, mlflow_url, demo_dir, tmp_path):
    """Nobody answers: at `promotion.approval_timeout_hours` the scheduler's sweep applies the
    default (Reject), the run goes on, and the decision says it was the timeout, not a person."""
    specs = tmp_path / "specs"
    specs.mkdir()
    raw = spec_dict("binary", name=TIMEOUT_MODEL, algorithms=ONE_CONFIG, data={"source": str(demo_dir / "loans")},
                    promotion={"mode": "manual", "approval_timeout_hours": 0.005})   # 18 s
    (specs / f"{TIMEOUT_MODEL}.yaml").write_text(yaml.safe_dump(raw))
    env = {**dag_env, "AUTOML_SPECS_DIR": str(specs), "AUTOML_HOME": str(tmp_path / "home")}
    date, month = "2018-12-01T00:00:00+00:00", "2017-10"
    out_path, err_path = tmp_path / "run_dag.out", tmp_path / "run_dag.err"
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        proc = subprocess.Popen([sys.executable, str(ROOT / "scripts" / "run_dag.py"), DAG_ID, "--date", date,
                                 "--conf", json.dumps({"month": month})],
                                env=env, cwd=ROOT, stdout=out, stderr=err,
                                start_new_session=True, preexec_fn=die_with_parent)

    def why() -> str:
        return f"\n--- run_dag stdout ---\n{_tail(out_path, 2000)}\n--- run_dag stderr ---\n{_tail(err_path)}"

    try:
        detail = _wait_for_approval(api, proc, date, time.monotonic(), why)
        assert detail["defaults"] == ["Reject"], detail
        # dag.test() never resolves a parked task itself (it only waits): the scheduler's sweep does.
        swept = subprocess.run([sys.executable, "-c", SWEEP, DAG_ID, datetime.fromisoformat(date).isoformat()],
                               env=env, cwd=ROOT, capture_output=True, text=True, timeout=600)
        assert swept.returncode == 0 and "SWEPT" in swept.stdout, swept.stderr[-3000:] + why()
        rc = proc.wait(timeout=RUN_TIMEOUT_S)
        assert rc == 0, f"run_dag exited {rc}{why()}"
    finally:
        if proc.poll() is None:
            stop_group(proc)
    result = json.loads(out_path.read_text().split("RESULT ", 1)[1].splitlines()[0])
    assert result["state"] == "success", (result, why())
    assert result["tasks"][f"{APPLY}[0]"] == "success", result

    client = MlflowClient(mlflow_url, registry_uri=mlflow_url)
    version = next(v for v in client.search_model_versions(f"name = '{TIMEOUT_MODEL}'")
                   if v.tags.get("automl.decision.month") == month)
    assert version.tags["automl.decision.status"] == "rejected", version.tags
    assert version.tags["automl.decision.decided_by"] == "timeout", version.tags
    record = json.loads(version.tags["automl.decision.record"])
    assert any("nobody answered within 0.005 h" in reason for reason in record["reasons"]), record
    assert client.get_registered_model(TIMEOUT_MODEL).aliases == {}   # no champion, no challenger left
    answered = api.get_json(_ti_path(detail["task_instance"]["dag_run_id"], APPROVAL) + "/hitlDetails")
    assert answered["chosen_options"] == ["Reject"] and answered["responded_by_user"] is None, answered

    # Nothing is left waiting: the next month runs and decides (here by the policy, auto mode).
    [following] = run_dag(DAG_ID, ["2019-01-01T00:00:00+00:00"], {"month": "2017-11", "promotion": "auto"}, env)
    assert following["state"] == "success", following
    decided = next(v for v in client.search_model_versions(f"name = '{TIMEOUT_MODEL}'")
                   if v.tags.get("automl.decision.month") == "2017-11")
    assert decided.tags["automl.decision.decided_by"] == "policy:auto", decided.tags
    assert decided.tags["automl.decision.status"] in ("approved", "rejected"), decided.tags

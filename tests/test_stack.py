"""The deployed stack on loopback: PostgreSQL, MLflow with auth, Airflow 3 with its scheduler.

Everything docker-compose.yml runs, minus containers, MinIO and the standalone Spark cluster (the
Spark Connect server the tasks reach runs local executors), started from
the compose file's own resolved config (tests/support/stack.py, tests/support/compose.py: the
services' environment, commands, volumes and depends_on order; only secrets are generated, and
every setting the stack replaces is listed with its reason): the test is the person who triggers `monthly_retrain` over the
Airflow REST API in `manual` promotion mode, answers the approval task over REST, and then
checks in MLflow, logged in as the service account the tasks used, that the answer moved
(or did not move) `champion` and was recorded. Month 2017-10 is approved (first champion),
2017-11 rejected (champion unchanged): months in order, as the DAG runs them.

A person's browser (headless Chromium) opens the waiting approval's Required Action page in
the Airflow UI (the month in the subject, the CI table, both buttons) and the MLflow UI of
the stack (as the READ-only `viewer`), which must show the month runs and the `@ champion`
alias on the approved version. Every task log of both months, read over REST, holds no ERROR
record: library progress is INFO. The two months run once, in a module fixture, and each
test checks its part of what they left.

Needs PostgreSQL's server binaries and Chromium (Debian packages `postgresql`, `chromium`;
`.ci/run` installs them). Without them the tests skip, except under CI (CI=true): fail.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import quote

import pytest
import requests
import yaml

from tests.support import postgres
from tests.support.airflow_api import USER
from tests.support.browser import chromium_page, find_chromium
from tests.support.sockets import beyond_loopback, listeners, tree
from tests.support.specs import spec_dict
from tests.support.stack import airflow_stack

# Its own deadlines (RUN_TIMEOUT_S) fail first, with every log's tail; this one is the backstop.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]

DAG_ID = "monthly_retrain"
APPROVAL, APPLY = "per_spec.approve_challenger", "per_spec.apply_decision"
MODEL = "stack_loans"
STEPS = [f"per_spec.{step}" for step in ("check", "ablation", "monitor", "tune", "compare", "decide")]
RUN_TIMEOUT_S = 1200          # one month's run is ~2 min on an idle 2-core machine


def _require(present: bool, what: str) -> None:
    if present:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"{what} is missing under CI: .ci/run must install it")
    pytest.skip(f"{what} is not installed")


@pytest.fixture(scope="module")
def stack(demo_dir, tmp_path_factory):
    _require(postgres.bin_dir() is not None, "PostgreSQL (Debian package postgresql)")
    specs = tmp_path_factory.mktemp("stack-specs")
    xgboost_only = {"xgboost": {"search": "grid", "space": {"max_depth": [3], "n_estimators": [20]}}}
    raw = spec_dict("binary", name=MODEL, segment="segment", algorithms=xgboost_only,
                    data={"source": str(demo_dir / "loans")})
    (specs / f"{MODEL}.yaml").write_text(yaml.safe_dump(raw))
    with airflow_stack(tmp_path_factory.mktemp("stack"), specs_dir=specs, models=[MODEL]) as running:
        yield running


@pytest.fixture(scope="module")
def monthly_dag(stack):
    """The dag-processor parsed every DAG without import errors; the person unpauses monthly_retrain."""
    api = stack.airflow

    def parsed():
        resp = api.get(f"/api/v2/dags/{DAG_ID}")
        return resp.json() if resp.status_code == 200 else None

    _wait(stack, f"the dag-processor to parse {DAG_ID}", parsed, time.monotonic() + 300)
    errors = api.get_json("/api/v2/importErrors")
    assert errors["total_entries"] == 0, errors
    dag = api.call_json("PATCH", f"/api/v2/dags/{DAG_ID}", json={"is_paused": False})
    assert dag["is_paused"] is False, dag
    return stack


@pytest.fixture
def as_service_account(stack, monkeypatch):
    """An MlflowClient acting as the tasks' service account (MLflow reads the env per request)."""
    from mlflow import MlflowClient

    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", stack.service[0])
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", stack.service[1])
    monkeypatch.setenv("MLFLOW_TRACKING_URI", stack.mlflow.url)
    monkeypatch.setenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    return MlflowClient(stack.mlflow.url)


# ---------------------------------------------------------------- helpers

def _run_path(run_id: str) -> str:
    return f"/api/v2/dags/{DAG_ID}/dagRuns/{quote(run_id, safe='')}"


def _wait(stack, what: str, probe, deadline: float, every_s: float = 3.0):
    """Call `probe` until it returns something; fail with every log's tail at the deadline."""
    while True:
        stack.check_alive()
        found = probe()
        if found is not None:
            return found
        assert time.monotonic() < deadline, f"timed out waiting for {what}{stack.why()}"
        time.sleep(every_s)


def run_month(stack, month: str, answer: str, before_answer=None) -> dict:
    """Trigger the DAG for `month` (manual mode), answer its approval over REST, wait for the end.

    `before_answer(run_id)`, if given, looks at the waiting approval first (the browser does)."""
    api, started = stack.airflow, time.monotonic()
    deadline = started + RUN_TIMEOUT_S
    conf = {"spec": f"{MODEL}.yaml", "month": month, "promotion": "manual"}
    run = api.call_json("POST", f"/api/v2/dags/{DAG_ID}/dagRuns", json={"logical_date": None, "conf": conf})
    run_id = run["dag_run_id"]
    assert run["conf"] == conf and run["state"] == "queued", run

    # 1. The scheduler runs the month; the approval task waits for a person.
    def waiting():
        state = api.get_json(_run_path(run_id))["state"]
        assert state in ("queued", "running"), f"run {run_id} ended {state} before asking anyone{stack.why()}"
        page = api.get_json(_run_path(run_id) + "/hitlDetails", params={"task_id": APPROVAL, "map_index": 0})
        return next((d for d in page["hitl_details"] if d["task_instance"]["state"] == "awaiting_input"), None)

    detail = _wait(stack, f"the approval task of {run_id}", waiting, deadline)
    asked_after = time.monotonic() - started
    assert detail["options"] == ["Approve", "Reject"] and detail["response_received"] is False, detail
    version = re.fullmatch(rf"Promote {MODEL} v(\d+) for {month} to champion\?", detail["subject"])
    assert version, detail["subject"]
    assert "Policy:" in detail["body"] and stack.mlflow.url in detail["body"], detail["body"][:2000]
    looked = before_answer(run_id) if before_answer else None
    # While the person reads, the scheduler records the exit of the parked attempt (~6 s after
    # parking on a busy 2-core host). On Airflow 3.3.2 an answer landing before that makes the
    # scheduler fail the resumed attempt as "killed externally" (a stale executor event; see
    # apache/airflow#72716): it failed a run here that was answered ~2 s after parking. So the
    # test, like a person, answers after that record.
    parked = f"TaskInstance Finished: dag_id={DAG_ID}, task_id={APPROVAL}, run_id={run_id}, map_index=0,"
    _wait(stack, "the scheduler to record the parked approval attempt",
          lambda: True if parked in stack.log("scheduler") else None, deadline, every_s=1)
    assert waiting() is not None, f"the approval stopped waiting before anyone answered{stack.why()}"

    # 2. The person answers over REST.
    hitl = f"{_run_path(run_id)}/taskInstances/{APPROVAL}/0/hitlDetails"
    answered = api.call_json("PATCH", hitl, json={"chosen_options": [answer]})
    assert answered["chosen_options"] == [answer] and answered["responded_by"] == {"id": USER, "name": USER}

    # 3. The scheduler resumes the task and applies the answer.
    def finished():
        state = api.get_json(_run_path(run_id))["state"]
        return state if state in ("success", "failed") else None

    state = _wait(stack, f"run {run_id} to finish after the answer", finished, deadline)
    tis = api.get_json(_run_path(run_id) + "/taskInstances")["task_instances"]
    states = {f"{ti['task_id']}[{ti['map_index']}]": ti["state"] for ti in tis}
    assert state == "success", f"{run_id}: {states}{stack.why()}"
    assert states[f"{APPROVAL}[0]"] == states[f"{APPLY}[0]"] == "success", states
    assert states["per_spec.compare_refs[0]"] == "skipped", states     # no refs: no branch comparison
    labels = {ti["task_id"]: ti["rendered_map_index"] for ti in tis if ti["task_id"] != "list_specs"}
    assert labels == dict.fromkeys([*STEPS, APPROVAL, APPLY, "per_spec.compare_refs"], f"{MODEL} {month}"), labels
    print(f"{month} {answer}: asked after {asked_after:.0f}s, done after {time.monotonic() - started:.0f}s")
    run = api.get_json(_run_path(run_id))
    return {"run_id": run_id, "version": version.group(1), "looked": looked, "logical_date": run["logical_date"],
            "errors": {ti["task_id"]: _error_records(api, run_id, ti) for ti in tis if ti["state"] == "success"}}


def _error_records(api, run_id: str, ti: dict) -> list[str]:
    """The ERROR records of every try of a task instance, read over REST as a person's UI reads them."""
    found = []
    for attempt in range(1, ti["try_number"] + 1):
        path = (f"{_run_path(run_id)}/taskInstances/{ti['task_id']}/logs/{attempt}")
        resp = api.get(path, params={"map_index": ti["map_index"], "full_content": "true"})
        assert resp.status_code == 200, (path, resp.status_code, resp.text[:500])
        content = resp.json()["content"]
        assert content, f"{ti['task_id']} try {attempt}: an empty log"
        found += [f"try {attempt}: {e.get('event')}" for e in content
                  if isinstance(e, dict) and str(e.get("level", "")).lower() in ("error", "critical")]
    return found


def _month_run(client, month: str):
    experiment = client.get_experiment_by_name(f"{MODEL}/monthly").experiment_id
    runs = client.search_runs([experiment], f"tags.`automl.kind` = 'decision' and tags.`automl.month` = '{month}'")
    assert len(runs) == 1, [r.info.run_name for r in runs]
    return runs[0]


def _assert_recorded(client, month: str, version: str, run_id: str, status: str) -> None:
    """The decision is on the model version (tags) and as the evidence run's JSON artifact."""
    mv = client.get_model_version(MODEL, version)
    assert mv.tags["automl.decision.status"] == status, mv.tags
    assert mv.tags["automl.decision.decided_by"] == f"user:{USER}", mv.tags
    assert mv.tags["automl.decision.month"] == month, mv.tags
    record = json.loads(mv.tags["automl.decision.record"])
    with tempfile.TemporaryDirectory() as tmp:     # through this client: its server, its user
        artifact = json.loads(Path(client.download_artifacts(
            record["evidence_run_id"], f"decisions/{month}-v{version}.json", tmp)).read_text())
    assert artifact["status"] == status and artifact["decided_by"] == f"user:{USER}", artifact
    # The month's MLflow run is the one this Airflow run made.
    assert _month_run(client, month).data.tags["automl.dag_run_id"] == run_id


# ---------------------------------------------------------------- tests

def test_stack_runs_what_compose_runs_minus_the_named_skips(stack):
    """Every compose service is started (in depends_on order) or named as skipped with a reason."""
    from tests.support import compose

    started = [name for wave in stack.waves for name in wave]
    assert sorted([*started, *compose.SKIPPED]) == sorted(compose.resolved()["services"])
    order = {name: i for i, wave in enumerate(stack.waves) for name in wave}
    for name in started:
        for dep in compose.resolved()["services"][name].get("depends_on") or {}:
            assert dep in compose.SKIPPED or order[dep] < order[name], (name, dep, stack.waves)
    assert all(compose.SKIPPED.values())
    print(compose.deviations())


def test_stack_runs_on_postgres_with_auth_everywhere(stack):
    """Both services keep their state in PostgreSQL, listen on loopback only, and neither answers
    an anonymous caller."""
    procs = [p for proc in stack.process_groups().values() for p in tree(proc.pid)]
    ports = {port for *_, port in listeners(procs)}
    assert {stack.postgres.port, stack.mlflow.port, stack.airflow.port} <= ports, ports
    assert beyond_loopback(procs) == []
    assert {"dag_run", "task_instance", "hitl_detail"} <= stack.postgres.tables("airflow")
    assert {"experiments", "runs", "registered_models"} <= stack.postgres.tables("mlflow")
    assert "users" in stack.postgres.tables("mlflow_auth")

    search = f"{stack.mlflow.url}/api/2.0/mlflow/experiments/search"
    assert requests.get(search, params={"max_results": 5}, timeout=30).status_code == 401
    as_service = requests.get(search, params={"max_results": 5}, auth=stack.service, timeout=30)
    assert as_service.status_code == 200, as_service.text
    assert f"{MODEL}/monthly" in {e["name"] for e in as_service.json()["experiments"]}   # setup-team's
    assert stack.airflow.get("/api/v2/dags", auth=False).status_code == 401


@pytest.fixture(scope="module")
def months(monthly_dag, tmp_path_factory):
    """2017-10 approved (the first champion), then 2017-11, looked at in the browser, rejected."""
    approved = run_month(monthly_dag, "2017-10", "Approve")
    binary = find_chromium()
    look = (lambda run_id: _required_action_page(monthly_dag, binary, run_id, tmp_path_factory.mktemp("hitl"))
            ) if binary else None
    rejected = run_month(monthly_dag, "2017-11", "Reject", before_answer=look)
    return {"approved": approved, "rejected": rejected}


def _required_action_page(stack, binary: str, run_id: str, root: Path) -> str:
    """The approval's Required Action page in the Airflow UI, as the signed-in person sees it."""
    url = stack.airflow.url
    with chromium_page(binary, root) as page:
        page.set_cookie(url, "_token", stack.airflow.token)
        text = page.open(f"{url}/dags/{DAG_ID}/runs/{quote(run_id, safe='')}/tasks/{APPROVAL}/mapped/0"
                         "/required_actions", expect=["Approve", "Reject", "2017-11"])
        html, png = page.save(root / "required_action")
    assert png.stat().st_size > 20_000, "a blank screenshot"
    print(f"required action page: {html}")
    return text


def test_person_approves_over_rest_and_champion_moves(months, as_service_account):
    run, client = months["approved"], as_service_account
    assert client.get_model_version_by_alias(MODEL, "champion").version == run["version"]
    assert "challenger" not in client.get_registered_model(MODEL).aliases
    _assert_recorded(client, "2017-10", run["version"], run["run_id"], "approved")


def test_person_rejects_next_month_and_champion_stays(months, as_service_account):
    run, client = months["rejected"], as_service_account
    assert run["version"] != months["approved"]["version"]
    assert client.get_model_version_by_alias(MODEL, "champion").version == months["approved"]["version"]
    assert "challenger" not in client.get_registered_model(MODEL).aliases
    _assert_recorded(client, "2017-11", run["version"], run["run_id"], "rejected")


def test_the_tasks_reached_spark_through_the_connect_service(months, as_service_account):
    """Spark ran in compose's spark-connect service, not in the scheduler's task processes: each
    month's tuning run says it trained through Connect, on the server's (local-mode) executors."""
    client = as_service_account
    experiment = client.get_experiment_by_name(f"{MODEL}/monthly").experiment_id   # the month's tuning too
    for month in ("2017-10", "2017-11"):
        runs = client.search_runs([experiment], f"tags.`automl.month` = '{month}' and tags.`automl.kind` = 'tuning'")
        assert [r.data.tags.get("automl.spark") for r in runs] == ["connect: local[2]"], (month, runs)


def test_successful_months_log_no_error_records(months):
    for month in ("approved", "rejected"):
        errors = months[month]["errors"]
        assert {*STEPS, APPROVAL, APPLY} <= set(errors), errors.keys()
        assert all(records == [] for records in errors.values()), (month, errors)


def test_the_approver_sees_the_month_the_evidence_and_both_buttons(months):
    _require(find_chromium() is not None, "Chromium (Debian package chromium)")
    text = months["rejected"]["looked"]
    assert f"Promote {MODEL} v{months['rejected']['version']} for 2017-11 to champion?" in text, text[:3000]
    assert "Challenger minus champion" in text and "Trained on 2017-07..2017-10" in text, text[:3000]
    assert re.search(r"all\s+400\s+[+-]\d\.\d{4}", text), text[:3000]        # the CI table's overall row
    assert "Approve" in text and "Reject" in text


def test_unpausing_started_no_run_for_past_months(months, monthly_dag):
    """Compose leaves AUTOML_FIRST_MONTH empty (.env.example): the schedule starts at the current
    month, so unpausing made no scheduled run; the only runs are the two the person triggered.
    (A run of the current month would start at the next month's first second: not during the test,
    unless it spans that midnight, UTC.)"""
    runs = monthly_dag.airflow.get_json(f"/api/v2/dags/{DAG_ID}/dagRuns")["dag_runs"]
    assert sorted(r["dag_run_id"] for r in runs) == sorted(months[m]["run_id"] for m in ("approved", "rejected"))
    assert {r["run_type"] for r in runs} == {"manual"}, runs
    dag = monthly_dag.airflow.get_json(f"/api/v2/dags/{DAG_ID}/details")
    now = time.gmtime()
    assert dag["start_date"].startswith(f"{now.tm_year:04d}-{now.tm_mon:02d}-01"), dag["start_date"]


def test_triggerer_is_healthy(monthly_dag):
    health = monthly_dag.airflow.get_json("/api/v2/monitor/health")
    assert health["triggerer"]["status"] == "healthy", health
    assert health["scheduler"]["status"] == "healthy", health


def _version_rows(text: str) -> dict[str, str]:
    """The model page's version table as {version: the row's text}."""
    parts = re.split(r"^Version (\d+)$", text, flags=re.M)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


def test_browser_shows_month_runs_and_champion(stack, months, tmp_path):
    binary = find_chromium()
    _require(binary is not None, "Chromium (Debian package chromium)")
    experiment = requests.get(f"{stack.mlflow.url}/api/2.0/mlflow/experiments/get-by-name", auth=stack.viewer,
                              params={"experiment_name": f"{MODEL}/monthly"}, timeout=30).json()
    experiment_id = experiment["experiment"]["experiment_id"]
    with chromium_page(binary, tmp_path / "chromium", auth=stack.viewer) as page:
        runs = page.open(f"{stack.mlflow.url}/#/experiments/{experiment_id}/runs",
                         expect=["monthly-2017-10", "monthly-2017-11"])
        runs_html, _ = page.save(tmp_path / "runs")
        assert stack.viewer[0] in runs.splitlines()     # signed in as the viewer
        model = page.open(f"{stack.mlflow.url}/#/models/{MODEL}", expect=["@ champion"])
        html, png = page.save(tmp_path / "model")
    rows = _version_rows(model)
    assert "@ champion" in rows[months["approved"]["version"]], rows
    assert "@ champion" not in rows[months["rejected"]["version"]], rows
    assert "@ challenger" not in model
    # The saved DOM is the rendered app with the stack's data, not the served shell.
    assert "monthly-2017-11" in runs_html.read_text() and "champion" in html.read_text()
    assert png.stat().st_size > 20_000, "a blank screenshot"
    print(f"browser captures: {tmp_path}")


def test_the_stack_demo_triggers_and_follows_a_month_over_rest(stack, months, tmp_path):
    """`make stack-demo`'s REST part (scripts/stack_demo.py) against this stack, with an env file
    as a team's .env: it signs in as the admin, finds monthly_retrain parsed, triggers a month in
    auto mode, follows it task by task to success and exits 0. (Its other part, writing the demo
    data, is `automl-tasks demo-data`; this stack's spec reads the tests' demo data.)"""
    env_file = tmp_path / ".env"
    env_file.write_text(f"AIRFLOW_UI_URL={stack.airflow.url}\nMLFLOW_UI_URL={stack.mlflow.url}\n"
                        f"AIRFLOW_ADMIN_USERNAME={stack.airflow.user}\n"
                        f"AIRFLOW_ADMIN_PASSWORD={stack.airflow.password}\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW_", "MLFLOW_UI_URL"))}
    script = Path(__file__).resolve().parents[1] / "scripts" / "stack_demo.py"
    done = subprocess.run([sys.executable, str(script), "--env-file", str(env_file), "--spec", f"{MODEL}.yaml",
                           "--month", "2017-12", "--timeout", str(RUN_TIMEOUT_S)],
                          env=env, capture_output=True, text=True, timeout=RUN_TIMEOUT_S + 120)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:] + stack.why()
    assert re.search(rf"^{MODEL}\.yaml 2017-12: success  {re.escape(stack.airflow.url)}/dags/{DAG_ID}/runs/",
                     done.stdout, re.M), done.stdout
    for step in (*STEPS, APPLY):
        assert f"  {step} [{MODEL} 2017-12]: success" in done.stdout, done.stdout
    assert f"MLflow (the month runs, the registered model and its champion): {stack.mlflow.url}" in done.stdout

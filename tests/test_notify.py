"""plugins/automl_notify.py: the month's alerts and a failed step, sent by the providers' notifiers
from a real DAG run (dag.test() in its own Airflow process) to a real SMTP server (aiosmtpd) and a
real HTTP endpoint standing in for the Slack webhook, both on 127.0.0.1; the connections come from
AIRFLOW_CONN_* variables, the rest from the AUTOML_NOTIFY* settings, as in a deployment.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.processes import free_port
from tests.support.smtp import body_text, smtp_server
from tests.support.webhook import TOKEN, webhook_server
from tests.test_messages import monthly_result

ROOT = Path(__file__).resolve().parents[1]
MLFLOW_UI, AIRFLOW_UI = "http://127.0.0.1:5000", "http://127.0.0.1:8080"
RECIPIENTS = ["mlops@example.org", "owner@example.org"]

PROBE = '''
import json
import os

import pendulum
from airflow.sdk import dag, get_current_context, task
from automl_notify import notify_alerts, on_step_failure   # plugins/, as the monthly DAG imports it

RESULT = json.loads(os.environ["PROBE_RESULT"])


@dag(dag_id="notify_probe", schedule=None, start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
     default_args={"retries": 0})
def probe():
    @task(map_index_template="{{ automl_label | default('') }}")
    def evaluate(name: str) -> dict:
        context = get_current_context()
        context["automl_label"] = f"{name} 2018-03"
        return notify_alerts(RESULT, context, approval_task_id="approve_challenger")

    @task
    def notify_unreachable() -> dict:
        """The SMTP server of this connection does not answer: the task still succeeds."""
        saved = {k: os.environ.get(k) for k in ("AUTOML_NOTIFY", "AUTOML_NOTIFY_SMTP_CONN", "AUTOML_NOTIFY_KINDS")}
        os.environ.update(AUTOML_NOTIFY="smtp", AUTOML_NOTIFY_SMTP_CONN="smtp_closed", AUTOML_NOTIFY_KINDS="drift")
        try:
            return notify_alerts(RESULT, get_current_context())
        finally:
            for key, value in saved.items():
                os.environ.pop(key) if value is None else os.environ.update({key: value})

    @task(map_index_template="{{ automl_label | default('') }}", on_failure_callback=on_step_failure)
    def train(name: str):
        get_current_context()["automl_label"] = f"{name} 2018-03"
        raise ValueError("column 'salary_range' is missing in 2018-03 (a {{ brace }} stays as written)")

    evaluate.expand(name=["loan_default"]) >> notify_unreachable()
    train.expand(name=["loan_default"])


probe_dag = probe()

if __name__ == "__main__":   # not when dag.test() parses this file from the DAGs folder
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    run = probe_dag.test()
    states = {f"{ti.task_id}[{ti.map_index}]": str(ti.state) for ti in run.get_task_instances()}
    with create_session() as session:
        rows = session.execute(XComModel.get_many(key="automl_notifications", run_id=run.run_id,
                                                  dag_ids=probe_dag.dag_id).with_only_columns(
            XComModel.task_id, XComModel.value)).all()
    pushed = {task_id: XComModel.deserialize_value(type("Row", (), {"value": value})) for task_id, value in rows}
    print("RESULT " + json.dumps({"state": str(run.state), "tasks": states, "pushed": pushed}), flush=True)
'''


def _tagged(stdout: str, tag: str):
    return json.loads(next(line for line in stdout.splitlines() if line.startswith(tag + " "))[len(tag) + 1:])


@pytest.fixture
def probe_env(airflow_env, tmp_path):
    """A copy of the session's migrated Airflow DB and a DAGs folder holding just the probe DAG."""
    home, dags = tmp_path / "airflow", tmp_path / "dags"
    home.mkdir()
    dags.mkdir()
    shutil.copy(Path(airflow_env["AIRFLOW_HOME"]) / "airflow.db", home / "airflow.db")
    (dags / "notify_probe.py").write_text(PROBE)
    env = {k: v for k, v in airflow_env.items() if not k.startswith(("AUTOML_NOTIFY", "AIRFLOW_CONN_"))}
    return {**env, "AIRFLOW_HOME": str(home), "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
            "AUTOML_MLFLOW_UI_URL": MLFLOW_UI, "AIRFLOW__API__BASE_URL": AIRFLOW_UI,
            "PROBE_RESULT": json.dumps(monthly_result())}


def _run_probe(env: dict, cwd: Path):
    out = subprocess.run([sys.executable, env["AIRFLOW__CORE__DAGS_FOLDER"] + "/notify_probe.py"], env=env,
                         cwd=cwd, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-4000:]
    return _tagged(out.stdout, "RESULT"), out.stdout + out.stderr


def test_alerts_and_a_failed_step_arrive_by_mail_and_on_the_slack_webhook(probe_env, tmp_path):
    with smtp_server() as mail, webhook_server() as slack:
        env = {**probe_env, "AUTOML_NOTIFY": "smtp, slack", "AUTOML_NOTIFY_EMAIL_TO": ", ".join(RECIPIENTS),
               "AIRFLOW_CONN_SMTP_DEFAULT": mail.connection(),
               "AIRFLOW_CONN_SMTP_CLOSED": json.dumps({"conn_type": "smtp", "host": "127.0.0.1", "port": free_port(),
                                                       "extra": {"disable_ssl": True, "disable_tls": True,
                                                                 "from_email": "automl@example.org",
                                                                 "retry_limit": 0, "timeout": 5}}),
               "AIRFLOW_CONN_SLACK_DEFAULT": slack.connection()}
        result, logs = _run_probe(env, tmp_path)
        mails, posts = mail.wait_for(4, timeout_s=5), slack.wait_for(4, timeout_s=5)

    # The failing step failed the run; the notifying tasks succeeded, the unreachable server included.
    assert result["state"] == "failed" and result["tasks"] == {
        "evaluate[0]": "success", "notify_unreachable[-1]": "success", "train[0]": "failed"}, result

    # Three alert mails and one failure mail, to the recipients, from the connection's sender.
    subjects = sorted(m["Subject"] for m in mails)
    assert subjects == ["[automl] a step failed: notify_probe.train [loan_default 2018-03]",
                        "[automl] loan_default 2018-03: a challenger waits for approval (v4)",
                        "[automl] loan_default 2018-03: the champion degraded (v3)",
                        "[automl] loan_default 2018-03: the month's data drifted"], subjects
    assert all(m["From"] == "automl@example.org" and m["To"] == ", ".join(RECIPIENTS) for m in mails)
    assert {sender for sender, _ in mail.envelopes} == {"automl@example.org"}
    assert all(sorted(rcpts) == RECIPIENTS for _, rcpts in mail.envelopes)
    bodies = {m["Subject"]: body_text(m) for m in mails}

    degraded = bodies["[automl] loan_default 2018-03: the champion degraded (v3)"]
    assert "champion v3 areaUnderROC 0.8012 [95% CI 0.7801, 0.8233] against 0.8620" in degraded
    assert "delta -0.0608 (95% CI -0.0819 .. -0.0387)" in degraded             # the champion vs its reference
    assert "delta +0.0338 (95% CI +0.0121 .. +0.0562)" in degraded             # challenger vs champion
    assert "Decision (manual mode): pending for v4" in degraded
    # The links, as anchors: MLflow's month run and version, the Airflow run; no approval page here.
    run_page = f"{AIRFLOW_UI}/dags/notify_probe/runs/"
    assert f'<a href="{MLFLOW_UI}/#/runs/month-run-1">' in degraded
    assert f'<a href="{MLFLOW_UI}/#/models/loan_default/versions/4">' in degraded
    assert f'Airflow DAG run: <a href="{run_page}' in degraded and "required_actions" not in degraded

    waiting = bodies["[automl] loan_default 2018-03: a challenger waits for approval (v4)"]
    approve = waiting.split('Approve or reject in Airflow: <a href="')[1].split('"')[0]
    assert approve.startswith(run_page) and approve.endswith("/tasks/approve_challenger/mapped/0/required_actions")

    failed = bodies["[automl] a step failed: notify_probe.train [loan_default 2018-03]"]
    assert "Task train of DAG notify_probe failed for loan_default 2018-03 (try 1) in run manual__" in failed
    # The error as raised: Jinja syntax in it is not rendered by the notifier (HTML-escaped only).
    assert ("Error: ValueError: column &#x27;salary_range&#x27; is missing in 2018-03 "
            "(a {{ brace }} stays as written)") in failed
    log_link = failed.split('Task log: <a href="')[1].split('"')[0]
    assert log_link.startswith(run_page) and "/tasks/train/mapped/0?try_number=1" in log_link

    # Slack: the same four messages, posted to the webhook's path as the connection's token.
    assert {path for path, _ in posts} == {f"/services/{TOKEN}"} and len(posts) == 4
    texts = sorted(body["text"] for _, body in posts)
    assert [t.split("\n")[0] for t in texts] == [f"*{s}*" for s in subjects]
    slack_degraded = next(t for t in texts if "champion degraded" in t)
    assert "delta -0.0608 (95% CI -0.0819 .. -0.0387)" in slack_degraded
    assert f"<{MLFLOW_UI}/#/runs/month-run-1|MLflow run>" in slack_degraded

    # What each notifying task recorded: all sent; the unreachable server's refusal, by channel.
    pushed = result["pushed"]
    assert [(m["kind"], m["sent"], m["failed"]) for m in pushed["evaluate"]["messages"]] == [
        ("degraded", ["smtp", "slack"], []), ("drift", ["smtp", "slack"], []),
        ("approval_waiting", ["smtp", "slack"], [])]
    [unsent] = pushed["notify_unreachable"]["messages"]
    assert unsent["kind"] == "drift" and unsent["sent"] == [] and unsent["failed"][0]["channel"] == "smtp"
    assert "ConnectionRefusedError" in unsent["failed"][0]["error"], unsent
    assert "through smtp not sent: ConnectionRefusedError" in logs


def _plugin():
    """plugins/automl_notify.py as the DAGs import it (the plugins folder on the path)."""
    if str(ROOT / "plugins") not in sys.path:
        sys.path.append(str(ROOT / "plugins"))
    return importlib.import_module("automl_notify")


def test_settings_from_the_environment_name_what_is_wrong():
    notify = _plugin()
    off = notify.settings({})
    assert not off.on and off.problems == () and off.kinds == notify.KINDS
    on = notify.settings({"AUTOML_NOTIFY": "smtp,slack", "AUTOML_NOTIFY_EMAIL_TO": "a@x.org; b@x.org",
                          "AUTOML_NOTIFY_SMTP_CONN": "mail", "AUTOML_NOTIFY_SLACK_CONN": "chat",
                          "AUTOML_NOTIFY_KINDS": "failed, approval_waiting"})
    assert on == notify.Settings(channels=("smtp", "slack"), kinds=("failed", "approval_waiting"), smtp_conn="mail",
                                 email_to=("a@x.org", "b@x.org"), slack_conn="chat")
    wrong = notify.settings({"AUTOML_NOTIFY": "smtp,teams", "AUTOML_NOTIFY_KINDS": "drift,weather"})
    assert wrong.channels == ("smtp",) and wrong.problems == (
        "AUTOML_NOTIFY names an unknown channel 'teams' (known: smtp, slack)",
        "AUTOML_NOTIFY_KINDS names an unknown kind 'weather' (known: degraded, drift, estimate_missed, approval_waiting, failed)",
        "AUTOML_NOTIFY has smtp but AUTOML_NOTIFY_EMAIL_TO names no recipient")


@pytest.mark.parametrize("text", ["plain text", "a {{ var }} and {% if %} and {# c #}", "{% endraw %} {{ x }}"])
def test_texts_reach_the_notifiers_verbatim_through_their_jinja_rendering(text):
    import jinja2

    assert jinja2.Environment().from_string(_plugin()._verbatim(text)).render(x=1, var=2) == text


def test_nothing_configured_sends_nothing_and_says_so(monkeypatch, caplog):
    """Without AUTOML_NOTIFY both entry points return at once (before any Airflow import) and log it."""
    for var in ("AUTOML_NOTIFY", "AUTOML_NOTIFY_KINDS"):
        monkeypatch.delenv(var, raising=False)
    notify = _plugin()
    with caplog.at_level("INFO", logger=notify.log.name):
        assert notify.notify_alerts(monthly_result(), {}) == {"off": True, "messages": []}
        assert notify.on_step_failure({}) is None
    said = [r.getMessage() for r in caplog.records]
    assert said == ["notifications are off (AUTOML_NOTIFY is empty): loan_default 2018-03 alerts not sent: "
                    "degraded, drift, approval_waiting",
                    "notifications of failed steps are off (AUTOML_NOTIFY is empty)"], said

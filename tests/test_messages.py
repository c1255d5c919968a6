"""The notifications' text (automl_tasks.monitoring.messages): what each alert's message says, in plain
text, HTML and Slack mrkdwn, from a monthly result built with the job's own pieces (Health, alerts)."""

from __future__ import annotations

import pytest

from automl_tasks.monitoring import messages
from automl_tasks.monitoring.health import Health, alerts

MLFLOW_RUN = "http://127.0.0.1:5000/#/runs/month-run-1"
VERSION = "http://127.0.0.1:5000/#/models/loan_default/versions/4"
APPROVE = "http://127.0.0.1:8080/dags/monthly_retrain/runs/r1/tasks/approve/mapped/0/required_actions"
LINKS = {"MLflow run": MLFLOW_RUN, "Model version": VERSION, messages.APPROVAL_PAGE: APPROVE,
         "Not configured": None}


def monthly_result(*, degraded=True, dataset_drift=True, waiting=True, comparisons=True, metric="areaUnderROC"):
    """A monthly result as the job returns it (alerts from monitoring.health), with `comparisons` and
    `health` as in the month's record."""
    health = Health(metric, 0.8012, 0.7801, 0.8233, 0.8620, 0.01, degraded)
    drift = {"share_drifted": 0.5, "drifted_columns": ["salary_range", "car_value"], "threshold": 0.3,
             "dataset_drift": dataset_drift, "columns_checked": 4}
    found = alerts(health, drift, name="loan_default", month="2018-03", version="3")
    if waiting:
        found.append({"kind": "approval_waiting",
                      "message": "loan_default 2018-03: v4 waits for approval (rejected by default after 72 h)"})
    overall = {"metric": metric, "n_rows": 400, "candidate": 0.8350, "baseline": 0.8012, "delta": 0.0338,
               "raw_delta": 0.0338, "ci_low": 0.0121, "ci_high": 0.0562, "p_value": 0.002, "resamples": 2000,
               "segment": None, "confidence": 0.95, "note": None}
    return {"name": "loan_default", "month": "2018-03", "mode": "manual", "champion_before": "3",
            "alerts": found, "drift": drift, "health": health.to_json(),
            "comparisons": [overall, {**overall, "segment": "salary_range=low", "delta": -0.5}] if comparisons else [],
            "decision": {"status": "pending", "version": "4", "reasons": ["challenger better: CI above 0"],
                         "evidence_run_id": "month-run-1"},
            "champion_metric": 0.8012, "runs": {"month": "month-run-1"}}


def test_one_message_per_alert_kind_each_with_the_deltas_their_intervals_and_the_links():
    result = monthly_result()
    found = {m.kind: m for m in messages.alert_messages(result, LINKS)}
    assert list(found) == ["degraded", "drift", "approval_waiting"]
    assert found["degraded"].subject == "[automl] loan_default 2018-03: the champion degraded (v3)"
    assert found["drift"].subject == "[automl] loan_default 2018-03: the month's data drifted"
    assert found["approval_waiting"].subject == "[automl] loan_default 2018-03: a challenger waits for approval (v4)"

    degraded = found["degraded"].text
    # The alert's own words first: the champion's metric and interval against its reference.
    assert degraded.startswith("loan_default 2018-03: champion v3 areaUnderROC 0.8012 [95% CI 0.7801, 0.8233] "
                               "against 0.8620 at its promotion: degraded")
    # The champion's delta to its reference with the interval: 0.8012 - 0.8620, bounds likewise.
    assert ("delta -0.0608 (95% CI -0.0819 .. -0.0387); 0.8012 against 0.8620: beyond the allowed drop "
            "(monitoring.max_degradation 0.01)") in degraded
    # The challenger's overall comparison (not a segment's), with its CI.
    assert ("Challenger v4 vs champion v3 on the month's holdout (areaUnderROC, paired bootstrap, positive = "
            "better): delta +0.0338 (95% CI +0.0121 .. +0.0562); 0.8350 vs 0.8012 on 400 rows.") in degraded
    assert "-0.5000" not in degraded
    assert "Decision (manual mode): pending for v4: challenger better: CI above 0." in degraded
    assert "Other alerts this month: approval_waiting, drift." in degraded
    # The champion's numbers first in its own alert, the challenger's first in the approval.
    assert degraded.index("Champion on the month") < degraded.index("Challenger v4")
    waiting = found["approval_waiting"].text
    assert waiting.index("Challenger v4") < waiting.index("Champion on the month")

    drift = found["drift"].text
    assert drift.startswith("loan_default 2018-03: 50% of columns drifted (salary_range, car_value), threshold 30%")
    assert drift.count("salary_range, car_value") == 1     # the alert says it; no second drift line

    # Links: every configured one, none without a URL; the approval page only where one can answer,
    # and first there.
    assert found["degraded"].links == (("MLflow run", MLFLOW_RUN), ("Model version", VERSION))
    assert found["approval_waiting"].links[0] == (messages.APPROVAL_PAGE, APPROVE)
    assert f"- {messages.APPROVAL_PAGE}: {APPROVE}" in waiting and APPROVE not in degraded
    assert degraded.endswith(f"Links:\n- MLflow run: {MLFLOW_RUN}\n- Model version: {VERSION}")


def test_lower_is_better_metrics_orient_the_champions_delta():
    # rmse 0.8012 against 0.8620 is an improvement: the oriented delta is positive.
    result = monthly_result(degraded=False, metric="rmse", waiting=False, dataset_drift=True)
    line = messages.health_line(result)
    assert "delta +0.0608 (95% CI +0.0387 .. +0.0819)" in line and "within the allowed drop" in line


def test_what_the_result_lacks_is_left_out_not_invented():
    result = monthly_result(comparisons=False, waiting=False)
    del result["health"]
    [degraded, drift] = messages.alert_messages(result)
    assert "Challenger" not in degraded.text and "Champion on the month" not in degraded.text
    assert degraded.links == () and "Links:" not in degraded.text
    # No alert, no message; an alert kind the notifications do not know is refused by name.
    assert messages.alert_messages(monthly_result(degraded=False, dataset_drift=False, waiting=False)) == []
    with pytest.raises(ValueError, match="alert kind 'surprise' of loan_default 2018-03"):
        messages.alert_message(result, {"kind": "surprise", "message": "?"})


def test_a_comparison_without_an_interval_says_why():
    result = monthly_result()
    result["comparisons"][0].update(ci_low=None, ci_high=None)
    assert "delta +0.0338 (no interval (too few rows))" in messages.comparison_line(result)


def test_html_and_slack_renderings_escape_the_text_and_link_the_urls():
    result = monthly_result(waiting=False, dataset_drift=False)
    result["alerts"][0]["message"] += " <b>&</b>"
    [degraded] = messages.alert_messages(result, {"MLflow run": MLFLOW_RUN + "?a=1&b=2"})
    page = degraded.html()
    assert "&lt;b&gt;&amp;&lt;/b&gt;" in page and "<b>" not in page
    assert f'<li>MLflow run: <a href="{MLFLOW_RUN}?a=1&amp;b=2">' in page
    slack = degraded.slack()
    assert slack.startswith("*[automl] loan_default 2018-03: the champion degraded (v3)*\n\n")
    assert "&lt;b&gt;&amp;&lt;/b&gt;" in slack
    assert slack.endswith(f"<{MLFLOW_RUN}?a=1&b=2|MLflow run>")


def test_a_failed_step_names_the_dag_the_task_the_model_month_the_error_and_the_try():
    message = messages.failure_message(
        "monthly_retrain", "per_spec.evaluate", label="loan_default 2018-03",
        error="DataError: column 'salary_range' is missing in 2018-03", try_number=3,
        run_id="scheduled__2018-03", links={messages.TASK_LOG: "http://127.0.0.1:8080/log", "MLflow run": None})
    assert message.kind == "failed"
    assert message.subject == "[automl] a step failed: monthly_retrain.per_spec.evaluate [loan_default 2018-03]"
    assert message.text.startswith(
        "Task per_spec.evaluate of DAG monthly_retrain failed for loan_default 2018-03 (try 3) in run "
        "scheduled__2018-03.\n\nError: DataError: column 'salary_range' is missing in 2018-03")
    assert message.links == ((messages.TASK_LOG, "http://127.0.0.1:8080/log"),)
    bare = messages.failure_message("monthly_retrain", "list_specs")
    assert bare.subject == "[automl] a step failed: monthly_retrain.list_specs"
    assert "Error: not reported by Airflow." in bare.text

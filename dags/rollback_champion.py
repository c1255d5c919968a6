"""rollback_champion: triggered by hand, move a model's `champion` back to an earlier champion.

Thin wiring, the same calls as `automl-tasks rollback`: `check` reads what the rollback would do
(registry/rollback.check: the model and version exist, the version was champion before);
`confirm` asks a person (Approve / Reject; unanswered within AUTOML_ROLLBACK_TIMEOUT_HOURS,
default 24, it is rejected and nothing happens); `roll_back` moves the alias only if the
champion is still the one the question named, records the rollback in the alias ledger
(`automl-tasks history --aliases`) as `user:<who confirmed>` with the reason, and emits the
model's champion asset event with the new version, as a promotion does (plugins/champion_assets.py).
A refused rollback (the champion moved meanwhile) is recorded too, and fails the task at once.
"""

from __future__ import annotations

import os
from datetime import timedelta

import pendulum
from airflow.providers.standard.operators.hitl import ApprovalOperator
from airflow.sdk import Param, dag, task
from champion_assets import CHAMPION_MOVES, champion_asset   # plugins/
from dag_helpers import fail_at_once, respondent, retry_settings   # plugins/

from automl_tasks.errors import AutomlError   # standard library only: safe at parse time

TIMEOUT = timedelta(hours=float(os.environ.get("AUTOML_ROLLBACK_TIMEOUT_HOURS", "24")))
VERSION = r"^[0-9]+$"


def _question(plan: dict, reason: str) -> dict:
    """The confirmation's subject and body (markdown)."""
    subject = (f"Roll {plan['model']} champion back from v{plan['from_version']} "
               f"to v{plan['to_version']}?")
    lines = [f"Reason given: {reason}", "",
             f"Champion now: v{plan['champion']}; v{plan['to_version']} (registered for "
             f"{plan['month']}) was champion before. Former champions: "
             + ", ".join(f"v{v}" for v in plan["former"]) + ".", "",
             f"Approve moves `champion` to v{plan['to_version']} only if it is still "
             f"v{plan['from_version']}; otherwise the rollback is refused. Either way it is recorded "
             f"in the alias ledger (`automl-tasks history --model {plan['model']} --aliases`)."]
    if plan["champion"] != plan["from_version"]:
        lines += ["", f"**Warning**: the champion is v{plan['champion']} now, not v{plan['from_version']} "
                      "as this run was asked to replace: approving records a refused rollback."]
    return {"subject": subject, "body": "\n".join(lines)}


@dag(
    dag_id="rollback_champion",
    schedule=None,
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    default_args=retry_settings(),
    tags=["automl", "rollback"],
    params={
        "model": Param("", type="string", minLength=1, description="Registered model (the spec's name)"),
        "to_version": Param("", type="string", pattern=VERSION, description="The earlier champion to restore"),
        "from_version": Param(None, type=["null", "string"], pattern=VERSION,
                              description="The champion you are replacing, as you saw it; empty: the "
                                          "champion when the run starts"),
        "reason": Param("", type="string", minLength=1, maxLength=800,
                        description="Why (recorded in the alias ledger with who confirmed)"),
    },
)
def rollback_champion():
    @task(retries=0)
    def check(params=None) -> dict:
        from automl_tasks.registry import promotion, rollback, tracking

        tracking.configure()        # this task's process talks to the configured MLflow store
        with fail_at_once(AutomlError):
            expected = params.get("from_version") or promotion.current_champion(params["model"])
            plan = rollback.check(params["model"], params["to_version"], expected)
        return {**plan, **_question(plan, params["reason"])}

    plan = check()
    pull = "ti.xcom_pull(task_ids='check')"
    confirm = ApprovalOperator(
        task_id="confirm",
        subject=f"{{{{ {pull}['subject'] }}}}",
        body=f"{{{{ {pull}['body'] }}}}",
        defaults="Reject",              # what an unanswered question becomes at its timeout
        response_timeout=TIMEOUT,
        retries=0,                      # a person's answer, or the timeout's default
    )

    @task(outlets=[CHAMPION_MOVES])
    def roll_back(plan: dict, answer: dict, params=None, dag_run=None, run_id=None, outlet_events=None) -> dict:
        from automl_tasks.progress import stderr_as_info
        from automl_tasks.registry import rollback, tracking

        tracking.configure()
        person = respondent(answer)
        asker = getattr(dag_run, "triggering_user_name", None)
        by = person if asker in (None, person) else f"{person}, asked by {asker}"
        with fail_at_once(AutomlError), stderr_as_info():
            record = rollback.rollback(plan["model"], plan["to_version"], expected_current=plan["from_version"],
                                       decided_by=f"user:{person}", reason=f"{by} (Airflow): {params['reason']}",
                                       request_id=run_id)
        # The champion moved: the same event as a promotion's, on `automl://<model>/champion`.
        outlet_events[CHAMPION_MOVES].add(champion_asset(record.model), extra={
            "model": record.model, "version": record.version, "month": record.month,
            "previous": record.champion_before, "kind": "rollback"})
        return {"model": record.model, "status": record.status, "champion_before": record.champion_before,
                "champion_after": record.champion_after, "decided_by": record.decided_by}

    plan >> confirm
    roll_back(plan, confirm.output)


rollback_champion()

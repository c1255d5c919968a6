"""monthly_retrain: every month, for each model spec, monitor the champion, retrain, compare, decide.

Thin wiring only: one task per step of the library's monthly job (`pipelines.monthly.steps`,
the same list `automl-tasks monthly` runs in one process): check, ablation, monitor, tune,
compare, decide, then the approval and apply. Tasks pass the month's small state (spec path,
month, MLflow run ids), never data; a failed step is retried alone, and only the steps that
need Spark start it.
The month is the logical one (the run's data interval), so a backfill (catchup)
builds the history month by month, and a re-run month reuses its MLflow runs.

First month and catchup (docs/operations.md): the schedule starts at AUTOML_FIRST_MONTH
(YYYY-MM, the deployment's choice); unset or empty, at the current month: unpausing starts
no run for past months, and the current month runs once it is over. Catchup is bounded by
AUTOML_MAX_CATCHUP_MONTHS (default 12): a first month further back is moved up to that
bound, with a warning in the dag-processor's log of this file. To build older months,
backfill them: `airflow backfill create --dag-id monthly_retrain --from-date 2017-01-01
--to-date 2017-12-01` (the runs of the months 2017-01..2017-12), or raise the bound.

In `manual` promotion mode a person approves or rejects the challenger in the
Airflow UI (human-in-the-loop task) within the spec's `promotion.approval_timeout_hours`;
unanswered by then, the scheduler applies the default answer, Reject (`decided_by=timeout`).
`auto` and `shadow` are settled by the policy.
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import pendulum
from airflow.providers.standard.operators.hitl import HITLOperator
from airflow.sdk import Param, dag, get_current_context, task, task_group
from automl_notify import notify_alerts, on_step_failure      # plugins/: mail and Slack (docs/notifications.md)
from champion_assets import CHAMPION_MOVES, champion_asset   # plugins/: what a promotion updates
from dag_helpers import (deployment_dir, first_month, no_retry_on_bad_input, respondent, retry_settings, spark_task,
                         spec_and_month_params, step_timeout)
from month_runs import MonthRuns          # plugins/: run ids that name the month

SPECS_DIR = deployment_dir("AUTOML_SPECS_DIR", "specs")
SPECS_REPO = os.environ.get("AUTOML_SPECS_REPO")   # a git repo holding the specs, for develop vs master
# The first month the schedule (catchup) builds: the deployment's AUTOML_FIRST_MONTH; unset, the
# current month (no history). At most AUTOML_MAX_CATCHUP_MONTHS (12) back: further is moved up, logged.
FIRST_MONTH = first_month()
APPROVE, REJECT = "Approve", "Reject"
DECIDE = "per_spec.decide"          # its XCom: the month's result, what the approval shows
APPROVAL = "per_spec.approve_challenger"

# Operations (a deployment sets them in the environment: docs/operations.md); retries:
# dag_helpers.retry_settings. execution_timeout: the tuning (and a spec's ablation) fit models;
# the other steps read, score and log.
TUNE_TIMEOUT = timedelta(hours=float(os.environ.get("AUTOML_TUNE_TIMEOUT_HOURS", "6")))
STEP_TIMEOUT = step_timeout()
# The pool of the tasks that may start a Spark driver; its size caps the drivers across all runs.
SPARK_TASK = spark_task()
LONG_STEPS = ("ablation", "tune")


def _month(params, data_interval_start) -> str:
    """The Param month, else the month the run covers (its data interval; a backfill walks them)."""
    return params.get("month") or data_interval_start.strftime("%Y-%m")


# Each mapped task's display name: the spec's model and the month (empty if it failed before knowing).
LABEL = "{{ automl_label | default('') }}"


def _label(name: str, month: str) -> None:
    """Name this mapped task instance in the grid (its map_index_template renders LABEL)."""
    get_current_context()["automl_label"] = f"{name} {month}"


def _show_links(ti, result: dict) -> None:
    """The task's "MLflow run" (the month run) and "Model version" buttons: plugins/mlflow_links.py."""
    from automl_tasks.registry import links

    ti.xcom_push(links.XCOM_KEY, links.monthly_links(result))


def _apply_answer(result: dict, answer: dict) -> dict:
    """Record the person's answer, or the timeout's default, as the version's decision."""
    from automl_tasks.progress import stderr_as_info
    from automl_tasks.registry import promotion

    if answer.get("timed_out"):
        hours = result["approval_timeout_hours"]
        decided_by, reasons = "timeout", [f"nobody answered within {hours:g} h "
                                          "(promotion.approval_timeout_hours): rejected by "
                                          "default, the champion stays"]
    else:
        decided_by, reasons = f"user:{respondent(answer)}", None
    with stderr_as_info():
        decision = promotion.decide(result["name"], result["decision"]["version"],
                                    approve=answer["chosen_options"] == [APPROVE],
                                    decided_by=decided_by, reasons=reasons)
    return {"status": decision.status, "champion_after": decision.champion_after}


class ChallengerApproval(HITLOperator):
    """Asks a person only when the month's decision waits for one (manual mode, pending), for
    at most the spec's `promotion.approval_timeout_hours`; then the default, Reject, applies.

    Deciding here rather than with a short-circuit upstream: skipping inside a mapped
    task group does not reach the mapped instances under dag.test().
    """

    def execute(self, context):
        ti = context["ti"]
        result = ti.xcom_pull(task_ids=DECIDE, map_indexes=ti.map_index)
        _show_links(ti, result)
        if result["mode"] != "manual" or result["decision"]["status"] != "pending":
            self.log.info("decision %s by policy: nobody to ask", result["decision"]["status"])
            return None
        # Per spec, so known only now; Airflow 3.3's scheduler enforces it (its awaiting-input sweep).
        self.response_timeout = timedelta(hours=result["approval_timeout_hours"])
        return super().execute(context)

    def execute_complete(self, context, event):
        # The scheduler's sweep answers with the defaults and `timedout`, which the payload drops.
        return {**super().execute_complete(context, event), "timed_out": bool(event.get("timedout"))}


STEP_NAMES = ("check", "ablation", "monitor", "tune", "compare", "decide")   # steps.STEPS, by name


def _run_step(name: str, state: dict) -> dict:
    """One step of the library's monthly job in this task's process (and its Spark, if it needs one)."""
    from automl_tasks.pipelines.monthly import steps
    from automl_tasks.progress import stderr_as_info
    from automl_tasks.registry import tracking

    tracking.configure()        # this task's process talks to the configured MLflow store
    _label(state["name"], state["month"])
    with no_retry_on_bad_input(), stderr_as_info():
        return getattr(steps, name)(state, steps.context(state))


def _step_task(name: str):
    """The task of a step between check and decide: it takes the state and returns it, extended."""
    timeout = TUNE_TIMEOUT if name in LONG_STEPS else STEP_TIMEOUT

    @task(task_id=name, map_index_template=LABEL, execution_timeout=timeout, **SPARK_TASK)
    def step(state: dict, ti=None) -> dict:
        state = _run_step(name, state)
        _show_month_run(ti, state)
        return state

    return step


@task(map_index_template=LABEL, execution_timeout=STEP_TIMEOUT, **SPARK_TASK)
def check(spec_path: str, params=None, data_interval_start=None, run_id=None, ti=None) -> dict:
    """The month's state from the spec and the run's month, then every data check."""
    from automl_tasks.pipelines.monthly import steps
    from automl_tasks.spec import load_spec

    month = _month(params, data_interval_start)
    with no_retry_on_bad_input():
        spec = load_spec(spec_path)
    _label(spec.name, month)
    state = _run_step("check", steps.start(spec, month, mode=params.get("promotion"), dag_run_id=run_id))
    _show_month_run(ti, state)
    return state


@task(map_index_template=LABEL, execution_timeout=STEP_TIMEOUT)
def decide(state: dict, ti=None) -> dict:
    """The decision (no Spark): what the approval asks about, and what apply_decision applies."""
    from automl_tasks.spec import load_spec

    state = _run_step("decide", state)
    promotion = load_spec(state["spec"]).promotion
    result = {"name": state["name"], "mode": state["mode"],
              "approval_timeout_hours": promotion.approval_timeout_hours, **state["result"]}
    _show_links(ti, result)
    # degraded, drift, approval_waiting: each a message through the deployment's channels.
    notify_alerts(result, get_current_context(), approval_task_id=APPROVAL)
    return result


def _show_month_run(ti, state: dict) -> None:
    """The step's "MLflow run" button: the month run (plugins/mlflow_links.py)."""
    from automl_tasks.registry import links

    if state["runs"].get("month"):
        ti.xcom_push(links.XCOM_KEY, links.task_links(state["runs"]["month"]))


@dag(
    dag_id="monthly_retrain",
    # Data-interval semantics: the run that starts on Feb 1 covers January, whose data is complete.
    schedule=MonthRuns("@monthly", timezone="UTC"),
    start_date=pendulum.datetime(FIRST_MONTH.year, FIRST_MONTH.month, 1, tz="UTC"),
    catchup=True,
    max_active_runs=1,            # months in order: each month's champion is the previous decision's
    # A step's last failed try is a `failed` notification (AUTOML_NOTIFY: docs/notifications.md).
    default_args={**retry_settings(), "on_failure_callback": on_step_failure},
    tags=["automl", "monthly"],
    params={
        **spec_and_month_params(),
        "promotion": Param(None, type=["null", "string"], enum=[None, "auto", "manual", "shadow"],
                           description="Override the spec's promotion.mode"),
        "refs": Param(os.environ.get("AUTOML_COMPARE_REFS"), type=["null", "string"],
                      pattern=r"^[^,\s]+,[^,\s]+$",
                      description="candidate,baseline git refs (e.g. develop,master) of the specs repo "
                                  "(AUTOML_SPECS_REPO) to train and compare; empty: no branch comparison"),
    },
)
def monthly_retrain():
    @task
    def list_specs(params=None) -> list[str]:
        from automl_tasks.paths import specs_in

        with no_retry_on_bad_input():
            return specs_in(SPECS_DIR, params.get("spec"))

    @task_group
    def per_spec(spec_path: str):
        state = check(spec_path)
        for name in STEP_NAMES[1:-1]:
            state = _step_task(name)(state)
        result = decide(state)
        pull = f"ti.xcom_pull(task_ids='{DECIDE}', map_indexes=ti.map_index)"
        approval = ChallengerApproval(
            task_id="approve_challenger",
            subject=(f"Promote {{{{ {pull}['name'] }}}} v{{{{ {pull}['decision']['version'] }}}} "
                     f"for {{{{ {pull}['month'] }}}} to champion?"),
            body=f"{{{{ {pull}['decision']['summary'] }}}}",   # markdown: metrics, CIs, drift, links
            options=[APPROVE, REJECT],
            defaults=[REJECT],              # what an unanswered approval becomes at its timeout
            # From the XCom, not the context: a resumed approval does not run execute() again.
            map_index_template=f"{{{{ {pull}['name'] }}}} {{{{ {pull}['month'] }}}}",
            retries=0,                      # a person's answer, or the timeout's default: nothing to retry
        )

        @task(map_index_template=LABEL, outlets=[CHAMPION_MOVES])
        def apply_decision(result: dict, answer: dict | None, ti=None, outlet_events=None) -> dict:
            from automl_tasks.registry import tracking

            tracking.configure()        # this task's process talks to the configured MLflow store
            _label(result["name"], result["month"])
            _show_links(ti, result)
            if answer is None:  # settled by the policy in decide
                outcome = {"status": result["decision"]["status"], "champion_after": result["champion_after"]}
            else:
                outcome = _apply_answer(result, answer)
            version = result["decision"]["version"]
            if outcome["status"] == "approved" and outcome["champion_after"] == version:
                # The champion moved: schedule downstream work (scoring) on `automl://<model>/champion`.
                outlet_events[CHAMPION_MOVES].add(champion_asset(result["name"]), extra={
                    "model": result["name"], "version": version, "month": result["month"],
                    "previous": result["champion_before"]})
            return outcome

        @task(map_index_template=LABEL, execution_timeout=TUNE_TIMEOUT, **SPARK_TASK)
        def compare_refs(spec_path: str, params=None, data_interval_start=None, run_id=None, ti=None) -> dict:
            """Develop vs master: the spec as on two git refs, trained and compared on the month."""
            from airflow.sdk.exceptions import AirflowSkipException

            from automl_tasks.registry import tracking

            tracking.configure()        # this task's process talks to the configured MLflow store
            _label(Path(spec_path).stem, _month(params, data_interval_start))
            if not params.get("refs"):
                raise AirflowSkipException("no refs to compare (Param refs / AUTOML_COMPARE_REFS)")
            if not SPECS_REPO:
                raise AirflowSkipException("AUTOML_SPECS_REPO is not set: no git repo to read refs from")
            inside = os.path.relpath(os.path.realpath(spec_path), os.path.realpath(SPECS_REPO))
            if inside.startswith(".."):
                raise AirflowSkipException(f"{spec_path} is not inside AUTOML_SPECS_REPO {SPECS_REPO}")
            from automl_tasks.pipelines.branches import compare_branches
            from automl_tasks.pipelines.monthly.steps import evaluated_month
            from automl_tasks.progress import stderr_as_info
            from automl_tasks.registry import links
            from automl_tasks.spec import load_spec

            with no_retry_on_bad_input(), stderr_as_info():
                # Compared on the month the run evaluates: the newest with labels (labels.delay_months).
                month = evaluated_month(load_spec(spec_path), _month(params, data_interval_start))
                result = compare_branches(SPECS_REPO, inside, month,
                                          refs=tuple(params["refs"].split(",")), dag_run_id=run_id)
            ti.xcom_push(links.XCOM_KEY, links.task_links(result["run_id"]))
            return result

        result >> approval
        apply_decision(result, approval.output)
        compare_refs(spec_path)

    per_spec.expand(spec_path=list_specs())


monthly_retrain()

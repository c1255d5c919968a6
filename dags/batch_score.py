"""batch_score: the champion's predictions for a month, every month and whenever `champion` moves.

Thin wiring only: each mapped task makes the call `automl-tasks score` makes
(`pipelines.scoring.score_month`), which writes `<AUTOML_PREDICTIONS_DIR>/<model>/month=YYYY-MM/`
(default `$AUTOML_DATA_DIR/predictions`), replacing that month's partition whole (docs/scoring.md).

Two triggers, one DAG:
- the month timetable of monthly_retrain (plugins/month_runs.py): the run for a month starts once
  it is over and scores it, for every spec in AUTOML_SPECS_DIR, with the champion of that moment;
- a champion asset event (plugins/champion_assets.py: a promotion or a rollback): the moved
  model's month is scored again with the new champion (a promotion: the month it was decided on;
  a rollback: the newest month written), so the partition ends with the champion that won it.
A manual trigger takes the Params `spec` (empty: every spec) and `month` (empty: the run's month).

A DAG of its own rather than score_new_champion's: that one is the README's minimal example of
scheduling on the asset alias (it reports the version, nothing more); scoring also needs the
monthly timetable, Params and the Spark pool, and one place that decides what to (re)score.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import AssetOrTimeSchedule, dag, get_current_context, task
from champion_assets import CHAMPION_MOVES          # plugins/: what a promotion or rollback updates
from dag_helpers import (deployment_dir, first_month, no_retry_on_bad_input, retry_settings, spark_task,
                         spec_and_month_params, step_timeout)
from month_runs import MonthRuns                    # plugins/: run ids that name the month

SPECS_DIR = deployment_dir("AUTOML_SPECS_DIR", "specs")
FIRST_MONTH = first_month()
LABEL = "{{ automl_label | default('') }}"


@dag(
    dag_id="batch_score",
    # Data-interval semantics as monthly_retrain's: the run that starts on Feb 1 scores January.
    schedule=AssetOrTimeSchedule(timetable=MonthRuns("@monthly", timezone="UTC"), assets=[CHAMPION_MOVES]),
    start_date=pendulum.datetime(FIRST_MONTH.year, FIRST_MONTH.month, 1, tz="UTC"),
    catchup=False,                # past months are scored on request (Params), not all at once on unpause
    max_active_runs=1,            # one writer per partition at a time
    default_args=retry_settings(),
    tags=["automl", "scoring"],
    params=spec_and_month_params(),
)
def batch_score():
    @task
    def plan(params=None, data_interval_start=None, triggering_asset_events=None) -> list[dict]:
        """{spec, month} per mapped scoring task: from the champion events that started the run,
        else every spec (or the Param's) for the Param's or the run's month."""
        from automl_tasks.paths import specs_in

        moves = [event.extra for event in (triggering_asset_events or {}).get(CHAMPION_MOVES, [])]
        with no_retry_on_bad_input():
            specs = specs_in(SPECS_DIR, params.get("spec"))
            if moves:
                from automl_tasks.pipelines.scoring import jobs_for_champion_moves

                return jobs_for_champion_moves(specs, moves)
        month = params.get("month") or (data_interval_start and data_interval_start.strftime("%Y-%m"))
        if not month:
            from airflow.sdk.exceptions import AirflowFailException

            raise AirflowFailException("the run covers no month (no data interval): give the month Param")
        return [{"spec": spec, "month": month} for spec in specs]

    # Scoring reads the month through Spark: in the Spark pool, like monthly_retrain's steps.
    @task(map_index_template=LABEL, execution_timeout=step_timeout(), **spark_task())
    def score(job: dict) -> dict:
        from automl_tasks.pipelines.scoring import score_month
        from automl_tasks.progress import stderr_as_info
        from automl_tasks.registry import tracking
        from automl_tasks.spec import load_spec

        tracking.configure()        # this task's process talks to the configured MLflow store
        with no_retry_on_bad_input(), stderr_as_info():
            spec = load_spec(job["spec"])
            get_current_context()["automl_label"] = f"{spec.name} {job['month']}"
            return score_month(spec, job["month"])

    score.expand(job=plan())


batch_score()

"""The monthly job for one spec: check, monitor, retrain, compare, decide.

The job is a list of steps (`steps.STEPS`), each a function of small JSON-able state (spec
path, month, MLflow run ids) returning small JSON, so the Airflow DAG runs one task per step
and `automl-tasks monthly` runs the same list in one process (`run_monthly`). All data checks
run before anything is written; steps find their earlier MLflow runs by tags (month, kind,
data fingerprint, git commit, spec) and reuse them, so re-running a month, or one of its steps,
neither duplicates a registered version nor moves an alias twice.

The steps share one `MonthContext` per process; the month's record is a `records.MonthRecord`.
Finding and reusing runs, and the history read back from them, are in `month_runs`; the
holdout's rows, scores and comparisons in `holdout`; the evaluation runs in `evaluation`; the
decision in `decision`.
"""

from __future__ import annotations

import contextlib
from typing import Callable

from automl_tasks.pipelines.month_runs import Stopwatch
from automl_tasks.pipelines.monthly.steps import STEPS, context, start
from automl_tasks.progress import report
from automl_tasks.spec import ModelSpec


def run_monthly(spec: ModelSpec, month: str, *, promotion_mode: str | None = None, spark=None,
                progress: Callable[[str], None] = report, dag_run_id: str | None = None,
                wait_s: float = 0.0) -> dict:
    """Every step of the month for one spec, in this process (the CLI's path).

    One parent run per month (`monthly-<month>`, kind `decision`) holds the side-by-side
    metrics, the decision summary and record; its children are the monitor, tuning and
    comparison runs. A re-run with the same data, commit and spec reuses a complete month
    as recorded and resumes an interrupted one in place; the decision step is idempotent.
    Once the data checks pass, the run claims (model, month, branch) to its end: a second run
    of the same month waits up to `wait_s` for the first, then fails naming it (claims.ClaimHeld).
    """
    timings = Stopwatch()
    state = start(spec, month, mode=promotion_mode, dag_run_id=dag_run_id)
    ctx = context(state, spec=spec, progress=progress, spark=spark, wait_s=wait_s)
    with contextlib.ExitStack() as ctx.hold:
        for step in STEPS:
            state = step(state, ctx)
            timings.lap(step.__name__)
    return {**state["result"], "reused": state["complete"], "timings": timings.laps,
            "fit_seconds": state.get("fit_seconds")}

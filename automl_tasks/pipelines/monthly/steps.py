"""The monthly job as steps: check, ablation, monitor, tune, compare, decide.

Each step is `step(state, ctx) -> state`: `state` is small JSON (the spec's path, the month, the
promotion mode, MLflow run ids, the data's fingerprint), so Airflow runs one task per step and
passes it along; `ctx` is this process's `MonthContext` (Spark, the checked window and MLflow,
made on first use). Every step is idempotent: it finds and reuses its own earlier run (by tags
under the month run) and skips what a complete month already holds, so a retried step redoes
only itself. `automl-tasks monthly` runs the same list in one process (`run_monthly`).
"""

from __future__ import annotations

import contextlib
from typing import Callable

from automl_tasks.data.months import Month
from automl_tasks.errors import SpecError
from automl_tasks.pipelines import holdout
from automl_tasks.pipelines.month_runs import MonthContext, find_month_run, find_or_tune, recorded
from automl_tasks.pipelines.monthly import evaluation
from automl_tasks.pipelines.monthly.decision import settle
from automl_tasks.progress import report
from automl_tasks.registry import claims, promotion, tracking
from automl_tasks.spec import ModelSpec, check_month, load_spec
from automl_tasks.tuning import training_path

MONTH_CLAIM_TTL_S, MONTH_CLAIM_HEARTBEAT_S = 180.0, 30.0


def start(spec: ModelSpec, month: str, *, mode: str | None = None, dag_run_id: str | None = None) -> dict:
    """The state the first step takes: which spec (its file, when it has one), month and mode.

    With labels.delay_months N > 0 the run for `month` evaluates the month N before it (its
    `month`, the newest with labels) and monitors `month` itself (`monitored`)."""
    check_month(month)
    return {"spec": spec.origin.get("path"), "name": spec.name, "month": evaluated_month(spec, month),
            "monitored": month if spec.labels.delay_months else None,
            "mode": mode or spec.promotion.mode, "dag_run_id": dag_run_id, "runs": {}}


def evaluated_month(spec: ModelSpec, month: str) -> str:
    """The month the run for `month` evaluates: the newest with labels (labels.delay_months)."""
    return str(Month.parse(month) - spec.labels.delay_months)


def context(state: dict, *, spec: ModelSpec | None = None, progress: Callable[[str], None] = report,
            spark=None, wait_s: float = 0.0) -> MonthContext:
    """The context a step runs in: the spec loaded from the state's path unless given, and unchanged
    since the check step (its hash), and the data checked then (its fingerprint)."""
    spec = spec or load_spec(state["spec"])
    checked = state.get("spec_hash")
    if checked and tracking.spec_hash(spec) != checked:
        raise SpecError(f"the spec {state['spec']} changed since the month's checks: run {spec.name} "
                        f"{state['month']} again from its first step")
    return MonthContext(spec, state["month"], spark=spark, progress=progress, dag_run_id=state["dag_run_id"],
                        fingerprint=state.get("fingerprint"), wait_s=wait_s, monitored=state.get("monitored"))


def check(state: dict, ctx: MonthContext) -> dict:
    """Every data check (and the champion's schema against the data) before anything is written;
    then the month run, found (complete: reused whole; interrupted: resumed) or started."""
    import mlflow

    spec, month = ctx.spec, ctx.month
    training_path.check_spark_support(ctx.spark, spec.algorithms)
    champion = ctx.champion(promotion.current_champion(spec.name))
    prepared = ctx.prepared
    if champion is not None:
        holdout.check_schema(champion[1], prepared, month)
    with claimed(ctx):
        tags = tracking.run_tags(spec, "decision", month, prepared.fingerprint, ctx.dag_run_id)
        earlier = find_month_run(ctx.client, ctx.experiment, tags)
        record = recorded(ctx.client, earlier) if earlier is not None and earlier.info.status == "FINISHED" else None
        if record is not None:
            ctx.progress(f"{spec.name} {month}: reusing the month's runs ({earlier.info.run_id}); "
                         "same data, commit and spec")
            runs = record.runs
        else:
            with mlflow.start_run(run_id=earlier.info.run_id if earlier else None, experiment_id=ctx.experiment,
                                  run_name=f"monthly-{month}", tags=tags) as run:
                tracking.log_window_inputs(spec, prepared.window, prepared.fingerprint)
            runs = {"month": run.info.run_id}
    return {**state, "spec_hash": tags["automl.spec_hash"], "fingerprint": prepared.fingerprint,
            "champion": champion and champion[0], "complete": record is not None, "runs": runs,
            "window": evaluation.WindowFacts.of(prepared).to_json(),   # monitor and compare read it
            # What the tuning is warm-started from, so the tune step need not load the champion.
            "warm_start": champion and {champion[1].meta["algorithm"]: [champion[1].params]}}


def ablation(state: dict, ctx: MonthContext) -> dict:
    """The spec's feature ablation study for the month (its own run in `<name>/ablation`), if any."""
    spec = ctx.spec
    if state["complete"] or not (spec.ablation.candidates or spec.ablation.tables):
        return {**state, "ablation": None}
    from automl_tasks.ablation.study import run_ablation

    with claimed(ctx):
        study = run_ablation(spec, ctx.month, spark=ctx.spark, progress=ctx.progress, dag_run_id=ctx.dag_run_id)
    keep = ("feature", "delta", "ci_low", "ci_high", "verdict", "reason")
    return {**state, "ablation": {"run_id": study["run_id"],
                                  "results": [{k: r.get(k) for k in keep} for r in study["results"]]}}


def monitor(state: dict, ctx: MonthContext) -> dict:
    """Drift and the champion's score and health on the month (the monitor run)."""
    if state["complete"]:
        return state
    with claimed(ctx), _in_month_run(state):
        earlier = _finished_child(ctx, state, "evaluation")
        if earlier is not None and evaluation.MONITOR_ARTIFACT in _artifacts(ctx, earlier):
            ctx.progress(f"{ctx.spec.name} {ctx.month}: reusing the monitor run {earlier}")
            run_id = earlier
        else:
            run_id = evaluation.monitor(ctx, state)
    return {**state, "runs": {**state["runs"], "monitor": run_id}}


def tune(state: dict, ctx: MonthContext) -> dict:
    """The candidates, warm-started from the champion's params (the tuning run); reused when tuned."""
    if state["complete"]:
        return state
    with claimed(ctx), _in_month_run(state):
        tuned, reused = find_or_tune(ctx, warm_start=state["warm_start"], parent=state["runs"]["month"])
    return {**state, "runs": {**state["runs"], "tuning": tuned.run_id},
            "fit_seconds": None if reused else tuned.fit_seconds}


def compare(state: dict, ctx: MonthContext) -> dict:
    """New vs existing on the same holdout rows (the comparison run), then the month's record."""
    if state["complete"]:
        return state
    with claimed(ctx), _in_month_run(state) as run:
        record = recorded(ctx.client, run) or evaluation.compare(ctx, state)
    return {**state, "runs": record.runs}


def decide(state: dict, ctx: MonthContext) -> dict:
    """Register the winner as challenger with the record as evidence; auto/shadow settle it now."""
    record = recorded(ctx.client, ctx.client.get_run(state["runs"]["month"]))
    with claimed(ctx):
        return {**state, "result": settle(ctx, state["mode"], record)}


STEPS: tuple[Callable[[dict, MonthContext], dict], ...] = (check, ablation, monitor, tune, compare, decide)


def month_claim(ctx: MonthContext):
    """Hold (model, month, branch) while a step works on it: tags on the month's experiment."""
    import hashlib

    branch = ctx.spec.origin.get("branch", "none")
    scope = f"automl.claim.monthly.{ctx.month}.{hashlib.sha256(branch.encode()).hexdigest()[:10]}."
    board = claims.experiment_board(ctx.client, ctx.experiment, scope)
    return claims.hold(board, f"the monthly run of {ctx.spec.name} {ctx.month} ({branch})", wait_s=ctx.wait_s,
                       ttl_s=MONTH_CLAIM_TTL_S, heartbeat_s=MONTH_CLAIM_HEARTBEAT_S)


def claimed(ctx: MonthContext):
    """The month's claim for this step; kept to the end of the month when the context holds it."""
    if ctx.hold is None:
        return month_claim(ctx)
    if not ctx.claim_kept:
        ctx.hold.enter_context(month_claim(ctx))
        ctx.claim_kept = True
    return contextlib.nullcontext()


@contextlib.contextmanager
def _in_month_run(state: dict):
    """The month run, active for the step (its child runs nest under it)."""
    import mlflow

    with mlflow.start_run(run_id=state["runs"]["month"]) as run:
        yield run


def _finished_child(ctx: MonthContext, state: dict, kind: str) -> str | None:
    tags = tracking.run_tags(ctx.spec, kind, ctx.month, ctx.fingerprint)
    run = find_month_run(ctx.client, ctx.experiment, tags, finished=True, parent=state["runs"]["month"])
    return run and run.info.run_id


def _artifacts(ctx: MonthContext, run_id: str) -> set[str]:
    return {a.path for a in ctx.client.list_artifacts(run_id)}

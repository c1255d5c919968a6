"""The monthly job for one spec: check, monitor, retrain, compare, decide.

Each step is a function of small JSON-able inputs (spec, month, run ids) returning
small JSON, so the Airflow DAG and `automl-tasks monthly` call the same code. All
data checks run before anything is written; steps find their earlier MLflow runs
by tags (month, kind, data fingerprint, git commit) and reuse them, so re-running
a month neither duplicates a registered version nor moves an alias twice.

The steps share one `MonthContext` (the month's fixed facts); the month's record is a
`records.MonthRecord`. Finding and reusing runs, and the history read back from them, are in
`month_runs`; the holdout's rows, scores and comparisons in `holdout`.
"""

from __future__ import annotations

import dataclasses
import tempfile
from typing import Callable

from automl_tasks.data.months import Month, describe_months
from automl_tasks.data.prepare import load_frame
from automl_tasks.data.sources import MONTH_COL
from automl_tasks.evaluation.compare import Comparison
from automl_tasks.monitoring.health import alerts as month_alerts
from automl_tasks.monitoring.health import champion_health
from automl_tasks.pipelines.holdout import align_classes, champion_scores, check_schema, compare_models, holdout_rows
from automl_tasks.pipelines.month_runs import (PURPOSE, RECORD_ARTIFACT, MonthContext, Stopwatch, champion_trend,
                                               child, find_month_run, find_or_tune, recorded, series_key)
from automl_tasks.progress import report
from automl_tasks.registry import claims, promotion, tracking
from automl_tasks.registry import policy as gates
from automl_tasks.registry.champion import load_champion, load_run_model
from automl_tasks.registry.records import MonthRecord
from automl_tasks.spark import get_spark
from automl_tasks.spec import ModelSpec, check_month
from automl_tasks.tuning.job import prepare_for_tuning


def run_monthly(spec: ModelSpec, month: str, *, promotion_mode: str | None = None, spark=None,
                progress: Callable[[str], None] = report, dag_run_id: str | None = None,
                wait_s: float = 0.0) -> dict:
    """Everything the monthly DAG does for one spec and month, in one call (CLI path).

    One parent run per month (`monthly-<month>`, kind `decision`) holds the side-by-side
    metrics, the decision summary and record; its children are the monitor, tuning and
    comparison runs. A re-run with the same data, commit and spec reuses a complete month
    as recorded and resumes an interrupted one in place; the decision step is idempotent.
    Once the data checks pass, the run claims (model, month, branch): a second run of the
    same month waits up to `wait_s` for the first, then fails naming it (claims.ClaimHeld).
    """
    check_month(month)
    timings = Stopwatch()
    spark = spark or get_spark()
    client = tracking.client()
    champion = load_champion(spec.name)
    prepared = prepare_for_tuning(spark, spec, month)          # every data check, before any write
    if champion is not None:
        check_schema(champion[1], prepared, month)
    experiment = tracking.experiment_id(client, spec, PURPOSE)
    ctx = MonthContext(spec, month, prepared, client, experiment, spark, progress, dag_run_id, champion, timings)
    with month_claim(client, experiment, spec, month, wait_s=wait_s):
        return _run_claimed(ctx, promotion_mode or spec.promotion.mode)


MONTH_CLAIM_TTL_S, MONTH_CLAIM_HEARTBEAT_S = 180.0, 30.0


def month_claim(client, experiment: str, spec: ModelSpec, month: str, *, wait_s: float = 0.0):
    """Hold (model, month, branch) while a run works on it: tags on the month's experiment."""
    import hashlib

    branch = spec.origin.get("branch", "none")
    scope = f"automl.claim.monthly.{month}.{hashlib.sha256(branch.encode()).hexdigest()[:10]}."
    board = claims.experiment_board(client, experiment, scope)
    return claims.hold(board, f"the monthly run of {spec.name} {month} ({branch})", wait_s=wait_s,
                       ttl_s=MONTH_CLAIM_TTL_S, heartbeat_s=MONTH_CLAIM_HEARTBEAT_S)


def _run_claimed(ctx: MonthContext, mode: str) -> dict:
    import mlflow

    spec, month = ctx.spec, ctx.month
    tags = tracking.run_tags(spec, "decision", month, ctx.prepared.fingerprint, ctx.dag_run_id)
    earlier = find_month_run(ctx.client, ctx.experiment, tags)
    ctx.lap("checks")
    record = recorded(ctx.client, earlier) if earlier is not None and earlier.info.status == "FINISHED" else None
    fresh = record is None
    if not fresh:
        ctx.progress(f"{spec.name} {month}: reusing the month's runs ({earlier.info.run_id}); "
                     "same data, commit and spec")
    else:
        study = _ablation(ctx)
        ctx.lap("ablation")
        with mlflow.start_run(run_id=earlier.info.run_id if earlier else None, experiment_id=ctx.experiment,
                              run_name=f"monthly-{month}", tags=tags) as run:
            tracking.log_window_inputs(spec, ctx.prepared.window, ctx.prepared.fingerprint)
            record = dataclasses.replace(_evaluate(ctx, tags, run.info.run_id), ablation=study)
            mlflow.log_dict(record.to_json(), RECORD_ARTIFACT)   # last: the month's evaluation is complete
    result = _decide(ctx, mode, record)
    ctx.lap("decision")
    return {**result, "reused": not fresh, "timings": ctx.timings.laps,
            "fit_seconds": record.fit_seconds if fresh else None}


def _evaluate(ctx: MonthContext, tags: dict, parent: str) -> MonthRecord:
    """Monitor, retrain and compare inside the month's parent run; return the month's record."""
    import mlflow

    from automl_tasks.evaluation import plots
    from automl_tasks.monitoring.drift import drift_report, log_drift_to_mlflow, spark_sample_to_pandas

    spec, month, prepared, champion, client = ctx.spec, ctx.month, ctx.prepared, ctx.champion, ctx.client
    runs = {"month": parent}

    # 1. Drift and the champion's score on the new month.
    frame = load_frame(ctx.spark, spec)
    holdout_df, y, segments = holdout_rows(frame, spec, month, prepared.classes)
    features, cats = prepared.encoding.feature_names, list(prepared.encoding.categorical)
    numeric = [f for f in features if f not in cats]
    window_df = frame.where(frame[MONTH_COL].isin(list(prepared.window.train)))
    with child(client, ctx.experiment, tags, "evaluation", parent, f"monitor-{month}") as run:
        runs["monitor"] = run.info.run_id
        cap = spec.monitoring.max_rows
        reference, ref_fraction = spark_sample_to_pandas(window_df, features, cap, seed=spec.seed)
        current, cur_fraction = spark_sample_to_pandas(holdout_df, features, cap, seed=spec.seed)
        with tempfile.TemporaryDirectory() as tmp:
            drift = drift_report(reference, current, numerical=numeric, categorical=cats, out_dir=tmp,
                                 title=f"{spec.name} {month} vs {prepared.window.train[0]}..{prepared.window.train[-1]}")
            log_drift_to_mlflow(drift)
        mlflow.set_tags({"drift_spark_fraction_reference": str(ref_fraction),
                         "drift_spark_fraction_current": str(cur_fraction)})
        ctx.progress(f"{spec.name} {month}: drift share {drift.share_drifted:.2f} "
                     f"({', '.join(drift.drifted_columns) or 'no column'} drifted)")
        champion_metric, health = None, None
        if champion is not None:
            champion_pred = align_classes(champion[1].predict(holdout_df), champion[1].meta, prepared.classes)
            scores = champion_scores(spec, y, champion_pred, segments)
            champion_metric = scores["overall"]
            mlflow.log_metrics({series_key(spec.metric, k): v for k, v in scores.items()},
                               step=Month.parse(month).step)
            mlflow.set_tag("automl.champion_version", champion[0])
            mlflow.log_figure(champion_trend(client, ctx.experiment, spec, month, scores), "champion_trend.png")
            health = champion_health(spec.metric, spec.task, y, champion_pred, _reference(spec.name, champion[0]),
                                     spec.monitoring.max_degradation, seed=spec.seed)
            mlflow.log_metrics({"champion_ci_low": health.ci_low, "champion_ci_high": health.ci_high})
            mlflow.set_tag("automl.champion_health", "degraded" if health.degraded else "ok")
            ctx.progress(f"{spec.name} {month}: champion v{champion[0]} {health.describe()}")
    ctx.lap("monitor")

    # 2. Candidates, warm-started from the champion's params; reused when already tuned.
    warm = {champion[1].meta["algorithm"]: [champion[1].params]} if champion is not None else None
    tuned, reused = find_or_tune(ctx, warm_start=warm, parent=parent)
    runs["tuning"] = tuned.run_id
    best = tuned.best_entry
    ctx.lap("tuning")

    # 3. New vs existing on the same holdout rows, with paired bootstrap CIs.
    candidate = load_run_model(tuned.run_id, best.algorithm, best.model_uri)
    candidate_pred = candidate.predict(holdout_df)
    holdout_df.unpersist()
    comparisons: list[Comparison] = []
    with child(client, ctx.experiment, tags, "comparison", parent, f"compare-{month}") as run:
        runs["comparison"] = run.info.run_id
        if champion is not None:
            comparisons = compare_models(spec, y, candidate_pred, champion_pred, segments)
            mlflow.log_dict([c.to_dict() for c in comparisons], "comparison.json")
            mlflow.log_metrics({"delta": comparisons[0].delta, "ci_low": comparisons[0].ci_low,
                                "ci_high": comparisons[0].ci_high})
            mlflow.log_figure(plots.comparison_forest(comparisons), "comparison_forest.png")
        for fname, fig in plots.evaluation_figures(spec.task, y, candidate_pred, prepared.classes).items():
            mlflow.log_figure(fig, f"candidate/{fname}")
    verdict = gates.decide(comparisons, spec, best.holdout_value, gates.Evidence.of_labels(spec.task, y))
    ctx.lap("compare")

    drift_summary = {"share_drifted": drift.share_drifted, "drifted_columns": drift.drifted_columns,
                     "columns_checked": len(drift.columns), "reference": describe_months(prepared.window.train),
                     "threshold": spec.monitoring.drift_share,
                     "dataset_drift": drift.share_drifted >= spec.monitoring.drift_share}

    record = MonthRecord(
        month=month, metric=spec.metric, experiment_id=ctx.experiment, runs=runs,
        champion=None if champion is None else {"version": champion[0], "algorithm":
                                                 champion[1].meta["algorithm"], "metric": champion_metric},
        drift=drift_summary,
        window={"train": list(prepared.window.train),
                "train_rows": sum(prepared.row_counts[m] for m in prepared.window.train),
                "holdout": list(prepared.window.holdout_months), "holdout_rows": int(len(y))},
        leaderboard=tuned.leaderboard,
        best={"algorithm": best.algorithm, "model_uri": best.model_uri, "holdout_value": best.holdout_value,
              "cv_value": best.cv_value},
        comparisons=[c.to_dict() for c in comparisons],
        policy=verdict.to_json(),
        fit_seconds=None if reused else tuned.fit_seconds,
        duplicate_ids=prepared.duplicate_ids,       # data.duplicate_ids: warn, else None
        health=health and health.to_json(),
        alerts=month_alerts(health, drift_summary, name=spec.name, month=month,
                            version=champion and champion[0]),
    )
    _log_side_by_side(record)
    return record


def _reference(name: str, version: str) -> float | None:
    """The champion's holdout metric when it was promoted (its decision's evidence)."""
    decision = promotion.get_decision(name, version)
    return None if decision is None else decision.evidence.get("candidate_holdout")


def _waiting(spec: ModelSpec, mode: str, month: str, decision) -> list[dict]:
    """The `approval_waiting` alert: a person is asked (manual mode, pending)."""
    if mode != "manual" or decision.status != "pending":
        return []
    return [{"kind": "approval_waiting", "message": (
        f"{spec.name} {month}: v{decision.version} waits for approval (rejected by default after "
        f"{spec.promotion.approval_timeout_hours:g} h)")}]


def _ablation(ctx: MonthContext) -> dict | None:
    """The spec's feature ablation study for the month (its own run in `<name>/ablation`), if any."""
    spec = ctx.spec
    if not (spec.ablation.candidates or spec.ablation.tables):
        return None
    from automl_tasks.ablation.study import run_ablation

    study = run_ablation(spec, ctx.month, spark=ctx.spark, progress=ctx.progress, dag_run_id=ctx.dag_run_id)
    keep = ("feature", "delta", "ci_low", "ci_high", "verdict", "reason")
    return {"run_id": study["run_id"], "results": [{k: r.get(k) for k in keep} for r in study["results"]]}


def _log_side_by_side(record: MonthRecord) -> None:
    """Champion and every candidate on the month's holdout, as metrics of the month's run."""
    import mlflow

    metric = record.metric
    values = {f"{e.algorithm}_holdout_{metric}": e.holdout_value for e in record.leaderboard}
    values |= {f"{e.algorithm}_cv_{metric}": e.cv_value for e in record.leaderboard}
    if record.champion is not None:
        values[f"champion_{metric}"] = record.champion_metric
    if record.overall is not None:
        values |= {k: record.overall[k] for k in ("delta", "ci_low", "ci_high")}
    values["drift_share"] = record.drift["share_drifted"]
    mlflow.log_metrics({k: v for k, v in values.items() if v is not None})


def _decide(ctx: MonthContext, mode: str, record: MonthRecord) -> dict:
    """Register the winner as challenger with the record as evidence; auto/shadow settle it now."""
    from automl_tasks.registry import summary

    spec, month, progress = ctx.spec, ctx.month, ctx.progress
    best, runs = record.best, record.runs
    verdict = gates.Verdict.from_json(record.policy)
    approve = verdict.approve
    version = promotion.register_candidate(best["model_uri"], spec.name, month=month,
                                           run_id=runs["tuning"],
                                           tags={"automl.algorithm": best["algorithm"]})
    text = summary.decision_markdown(spec.name, version, mode, record)
    evidence = {"metric": spec.metric, "candidate": best["algorithm"],
                "candidate_holdout": best["holdout_value"],
                "champion_metric": record.champion_metric,
                "comparisons": record.comparisons, "policy_says": approve}
    decision = promotion.open_decision(spec.name, version, month=month, evidence=evidence,
                                       evidence_run_id=runs["month"], reasons=verdict.reasons,
                                       measured_against=record.champion_version)
    summary.publish(spec.name, version, runs["month"], text)
    if verdict.outcome == gates.INSUFFICIENT and decision.status == "pending":
        # In every mode: nobody is asked to approve, and nothing promoted, on thin evidence.
        decision = promotion.decide(spec.name, version, approve=False, decided_by="policy:evidence",
                                    status=promotion.INSUFFICIENT_EVIDENCE)
    elif mode == "auto" and decision.status == "pending":
        decision = promotion.decide(spec.name, version, approve=approve, decided_by="policy:auto")
    elif mode == "shadow" and decision.status == "pending":
        decision = promotion.decide(spec.name, version, approve=False, decided_by="policy:shadow",
                                    reasons=["shadow mode: compared and recorded, never promoted"])
    progress(f"{spec.name} {month}: decision {decision.status} for v{version} ({'; '.join(decision.reasons)})")
    settled = decision.status in promotion.SETTLED
    return {
        "month": month,
        # As the decision recorded them, so a re-run of an old month reports what happened then.
        "champion_before": decision.champion_before,
        "champion_after": decision.champion_after if settled else promotion.current_champion(spec.name),
        "decision": {"status": decision.status, "version": version, "reasons": decision.reasons,
                     "evidence_run_id": runs["month"], "policy_says": approve, "summary": text},
        "drift": record.drift,
        "champion_metric": record.champion_metric,
        "alerts": (record.alerts or []) + _waiting(spec, mode, month, decision),
        "candidates": {e.algorithm: e.holdout_value for e in record.leaderboard},
        "runs": runs,
    }

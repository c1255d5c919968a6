"""The month's evaluation work, inside its parent run: the monitor run (drift, the champion's score
and health on the month) and the comparison run (the candidate against the champion on the same
holdout rows), which ends with the month's record.

Each writes one child run of the month run; what the next step needs is an artifact of that run
(`monitor.json`, the month's `monthly.json`), so a step in another process finds it there.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass

from automl_tasks.data.months import Month, describe_months
from automl_tasks.data.prepare import Prepared, load_frame
from automl_tasks.data.sources import MONTH_COL
from automl_tasks.errors import DataError
from automl_tasks.evaluation.compare import Comparison
from automl_tasks.monitoring.health import alerts as month_alerts
from automl_tasks.monitoring.health import champion_health
from automl_tasks.pipelines.holdout import align_classes, champion_scores, compare_models, holdout_rows
from automl_tasks.pipelines.month_runs import (MONITOR_ARTIFACT, RECORD_ARTIFACT, MonthContext, champion_trend,
                                               child, series_key, tuning_of_run)
from automl_tasks.pipelines.monthly import unlabelled
from automl_tasks.registry import policy as gates
from automl_tasks.registry import promotion, tracking
from automl_tasks.registry.champion import load_run_model
from automl_tasks.registry.records import MonthRecord


@dataclass(frozen=True)
class WindowFacts:
    """What monitor and compare need of the window `check` prepared, carried in the step state:
    preparing it again is a Spark pass over the window per task (bench/RESULTS.md, the split's cost)."""
    train: list[str]
    holdout: list[str]
    row_counts: dict[str, int]
    features: list[str]
    categorical: list[str]
    classes: list | None
    duplicate_ids: dict | None

    @classmethod
    def of(cls, prepared: Prepared) -> WindowFacts:
        return cls(list(prepared.window.train), list(prepared.window.holdout_months), dict(prepared.row_counts),
                   list(prepared.encoding.feature_names), list(prepared.encoding.categorical), prepared.classes,
                   prepared.duplicate_ids)

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    def holdout_rows(self, ctx: MonthContext, frame):
        """The month's holdout rows and labels, checked against the rows `check` counted: the data
        may not change under a month."""
        holdout_df, y, segments = holdout_rows(frame, ctx.spec, ctx.month, self.classes)
        counted = sum(self.row_counts[m] for m in self.holdout)
        if len(y) != counted:
            holdout_df.unpersist()
            raise DataError(f"the data of {ctx.spec.name} {ctx.month} changed since the month's checks: the holdout "
                            f"{describe_months(self.holdout)} has {len(y)} rows, {counted} then; run the month "
                            "again from its first step")
        return holdout_df, y, segments


def monitor(ctx: MonthContext, state: dict) -> str:
    """Drift of the month against the training window, and the champion's score and health on the
    month, as the month run's monitor child; with labels.delay_months, also the month monitored
    without labels and the check of the estimate made for this one (`unlabelled`). Returns its run id."""
    import mlflow

    from automl_tasks.monitoring.drift import spark_sample_to_pandas

    spec, month, facts = ctx.spec, ctx.month, WindowFacts(**state["window"])
    champion = ctx.champion(state["champion"])
    frame = load_frame(ctx.spark, spec)
    holdout_df, y, segments = facts.holdout_rows(ctx, frame)
    features, cats = facts.features, facts.categorical
    numeric = [f for f in features if f not in cats]
    window_df = frame.where(frame[MONTH_COL].isin(facts.train))
    trained_on = describe_months(facts.train)
    with child(ctx.client, ctx.experiment, _tags(ctx), "evaluation", state["runs"]["month"], f"monitor-{month}") as run:
        cap = spec.monitoring.max_rows
        reference, ref_fraction = spark_sample_to_pandas(window_df, features, cap, seed=spec.seed,
                                                         rows=sum(facts.row_counts[m] for m in facts.train))
        current, cur_fraction = spark_sample_to_pandas(holdout_df, features, cap, seed=spec.seed, rows=len(y))
        drift_summary = unlabelled.feature_drift(ctx, reference, current, numeric=numeric, categorical=cats,
                                                 reference_label=trained_on, month=month)
        mlflow.set_tags({"drift_spark_fraction_reference": str(ref_fraction),
                         "drift_spark_fraction_current": str(cur_fraction)})
        champion_metric, health, champion_pred, encoded = None, None, None, None
        if champion is not None:
            encoded = champion[1].encode(holdout_df)
            champion_pred = align_classes(champion[1].predict_encoded(encoded), champion[1].meta, facts.classes)
            scores = champion_scores(spec, y, champion_pred, segments)
            champion_metric = scores["overall"]
            mlflow.log_metrics({series_key(spec.metric, k): v for k, v in scores.items()},
                               step=Month.parse(month).step)
            mlflow.set_tag("automl.champion_version", champion[0])
            mlflow.log_figure(champion_trend(ctx.client, ctx.experiment, spec, month, scores), "champion_trend.png")
            health = champion_health(spec.metric, spec.task, y, champion_pred, _reference(spec.name, champion[0]),
                                     spec.monitoring.max_degradation, seed=spec.seed)
            mlflow.log_metrics({"champion_ci_low": health.ci_low, "champion_ci_high": health.ci_high})
            mlflow.set_tag("automl.champion_health", "degraded" if health.degraded else "ok")
            ctx.progress(f"{spec.name} {month}: champion v{champion[0]} {health.describe()}")
        estimate_check = monitored = None
        if ctx.monitored:
            started = time.perf_counter()
            estimate_check = unlabelled.check_estimate(ctx, champion, champion_pred, holdout_df, y, facts.classes)
            estimator_reference = champion and unlabelled.reference(
                ctx, frame, champion, unlabelled.Reference(champion_pred, y, encoded, facts.classes, facts.holdout),
                window=facts.train, row_counts=facts.row_counts)
            monitored = unlabelled.monitor_unlabelled(
                ctx, frame, reference, numeric=numeric, categorical=cats, reference_label=trained_on,
                champion=champion, reference=estimator_reference)
            mlflow.log_metric("unlabelled_seconds", time.perf_counter() - started)   # what the delay costs
        holdout_df.unpersist()
        # With labels late, this month's drift was news when it was monitored N months ago: the
        # drift alert is the monitored month's.
        alerts = month_alerts(health, monitored["drift"] if monitored else drift_summary, name=spec.name,
                              month=ctx.monitored or month, version=champion and champion[0], health_month=month)
        mlflow.log_dict({"drift": drift_summary, "champion_metric": champion_metric,
                         "health": health and health.to_json(), "monitored": monitored,
                         "estimate_check": estimate_check,
                         "alerts": alerts + unlabelled.estimate_alerts(ctx, estimate_check)}, MONITOR_ARTIFACT)
        return run.info.run_id


def monitored(ctx: MonthContext, run_id: str) -> dict:
    """What a monitor run found (its MONITOR_ARTIFACT)."""
    import mlflow

    return json.loads(mlflow.artifacts.load_text(f"runs:/{run_id}/{MONITOR_ARTIFACT}"))


def compare(ctx: MonthContext, state: dict) -> MonthRecord:
    """The month's candidate against the champion on the same holdout rows, as the month run's
    comparison child; then the month's record, logged last on the month run."""
    import mlflow

    from automl_tasks.evaluation import plots

    spec, month, facts, runs = ctx.spec, ctx.month, WindowFacts(**state["window"]), dict(state["runs"])
    champion = ctx.champion(state["champion"])
    found = monitored(ctx, runs["monitor"])
    tuned = tuning_of_run(ctx.client.get_run(runs["tuning"]))
    best = tuned.best_entry
    holdout_df, y, segments = facts.holdout_rows(ctx, load_frame(ctx.spark, spec))
    candidate_pred = load_run_model(tuned.run_id, best.algorithm, best.model_uri).predict(holdout_df)
    champion_pred = (None if champion is None else
                     align_classes(champion[1].predict(holdout_df), champion[1].meta, facts.classes))
    holdout_df.unpersist()
    comparisons: list[Comparison] = []
    with child(ctx.client, ctx.experiment, _tags(ctx), "comparison", runs["month"], f"compare-{month}") as run:
        runs["comparison"] = run.info.run_id
        if champion is not None:
            comparisons = compare_models(spec, y, candidate_pred, champion_pred, segments)
            mlflow.log_dict([c.to_dict() for c in comparisons], "comparison.json")
            mlflow.log_metrics({"delta": comparisons[0].delta, "ci_low": comparisons[0].ci_low,
                                "ci_high": comparisons[0].ci_high})
            mlflow.log_figure(plots.comparison_forest(comparisons), "comparison_forest.png")
        for fname, fig in plots.evaluation_figures(spec.task, y, candidate_pred, facts.classes).items():
            mlflow.log_figure(fig, f"candidate/{fname}")
    verdict = gates.decide(comparisons, spec, best.holdout_value, gates.Evidence.of_labels(spec.task, y))
    record = MonthRecord(
        month=month, metric=spec.metric, experiment_id=ctx.experiment, runs=runs,
        champion=None if champion is None else {"version": champion[0], "algorithm":
                                                 champion[1].meta["algorithm"], "metric": found["champion_metric"]},
        drift=found["drift"],
        window={"train": facts.train, "train_rows": sum(facts.row_counts[m] for m in facts.train),
                "holdout": facts.holdout, "holdout_rows": int(len(y))},
        leaderboard=tuned.leaderboard,
        best={"algorithm": best.algorithm, "model_uri": best.model_uri, "holdout_value": best.holdout_value,
              "cv_value": best.cv_value},
        comparisons=[c.to_dict() for c in comparisons],
        policy=verdict.to_json(),
        fit_seconds=state.get("fit_seconds"),
        duplicate_ids=facts.duplicate_ids,          # data.duplicate_ids: warn, else None
        health=found["health"],
        alerts=found["alerts"],
        ablation=state.get("ablation"),
        monitored=found.get("monitored"),
        estimate_check=found.get("estimate_check"),
    )
    _log_side_by_side(record)
    mlflow.log_dict(record.to_json(), RECORD_ARTIFACT)   # last: the month's evaluation is complete
    return record


def _tags(ctx: MonthContext) -> dict:
    return tracking.run_tags(ctx.spec, "decision", ctx.month, ctx.fingerprint, ctx.dag_run_id)


def _reference(name: str, version: str) -> float | None:
    """The champion's holdout metric when it was promoted (its decision's evidence)."""
    decision = promotion.get_decision(name, version)
    return None if decision is None else decision.evidence.get("candidate_holdout")


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

"""The monthly job for one spec: check, monitor, retrain, compare, decide.

Each step is a function of small JSON-able inputs (spec, month, run ids) returning
small JSON, so the Airflow DAG and `automl-tasks monthly` call the same code. All
data checks run before anything is written; steps find their earlier MLflow runs
by tags (month, kind, data fingerprint, git commit) and reuse them, so re-running
a month neither duplicates a registered version nor moves an alias twice.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from automl_tasks import config
from automl_tasks.data.prepare import LABEL_COL, Prepared, canonical_label, load_frame, prepare
from automl_tasks.data.sources import MONTH_COL
from automl_tasks.data.windows import shift_month
from automl_tasks.errors import DataError
from automl_tasks.evaluation.compare import Comparison, compare_by_segment, paired_bootstrap
from automl_tasks.models import scoring
from automl_tasks.registry import promotion, tracking
from automl_tasks.spark import get_spark
from automl_tasks.spec import ModelSpec, check_month
from automl_tasks.tuning.job import tune

PURPOSE = "monthly"


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


@dataclass
class ScoredModel:
    """A model able to score raw rows: its Spark pipeline, its flavor model, its metadata."""
    meta: dict
    pipeline: object
    model: object
    params: dict

    def predict(self, df) -> np.ndarray:
        return scoring.predict(self.model, self.meta, scoring.encode(self.pipeline, self.meta, df))


def load_run_model(run_id: str, algorithm: str, model_uri: str) -> ScoredModel:
    """The model a tuning run exported: native metadata, preprocessing, flavor model."""
    import mlflow

    local = config.home() / "cache" / "runs" / run_id / algorithm   # run artifacts never change
    local.mkdir(parents=True, exist_ok=True)
    meta_path = mlflow.artifacts.download_artifacts(
        run_id=run_id, artifact_path=f"native/{algorithm}/metadata.json", dst_path=str(local))
    pipeline_dir = mlflow.artifacts.download_artifacts(
        run_id=run_id, artifact_path="preprocessing", dst_path=str(local))
    meta = json.loads(Path(meta_path).read_text())
    flavor = mlflow.xgboost if algorithm == "xgboost" else mlflow.lightgbm
    return ScoredModel(meta, scoring.load_pipeline(pipeline_dir), flavor.load_model(model_uri),
                       meta["params"])


def load_champion(name: str) -> tuple[str, ScoredModel] | None:
    version = promotion.current_champion(name)
    if version is None:
        return None
    mv = tracking.client().get_model_version(name, version)
    tags = mv.tags
    return version, load_run_model(tags["automl.source_run_id"], tags["automl.algorithm"],
                                   tags["automl.model_uri"])


def check_schema(champion: ScoredModel, prepared: Prepared, month: str) -> None:
    """The month's data must still carry every column the champion was trained on."""
    have = set(prepared.encoding.feature_names)
    missing = [f for f in champion.meta["feature_names"] if f not in have]
    if missing:
        raise DataError(f"month {month}: the champion needs feature {missing[0]!r}, "
                        "which the spec or the data no longer provides")
    if champion.meta["task"] != prepared.spec.task:
        raise DataError(f"the champion is a {champion.meta['task']} model; the spec says {prepared.spec.task}")


def _holdout(frame, spec: ModelSpec, month: str, classes: list | None):
    """The month's rows, cached so every model scores them in the same order, and their labels."""
    from pyspark.sql import functions as F

    label = (canonical_label(spec.data.label) if spec.task != "regression"
             else F.col(spec.data.label).try_cast("double"))
    df = frame.where(F.col(MONTH_COL) == month).withColumn(LABEL_COL, label).persist()
    segment = F.col(spec.segment).cast("string") if spec.segment else F.lit(None).cast("string")
    pdf = df.select(F.col(LABEL_COL).alias("y"), segment.alias("segment")).toPandas()
    if classes is None:
        y = pdf["y"].to_numpy(dtype=np.float64)
    else:
        index = {str(c): i for i, c in enumerate(classes)}
        y = np.array([index[v] for v in pdf["y"]], dtype=np.int64)
    segments = pdf["segment"].to_numpy(dtype=object) if spec.segment else None
    return df, y, segments


def _aligned(prediction: np.ndarray, meta: dict, classes: list | None) -> np.ndarray:
    """Reorder a classifier's probability columns to `classes` (the candidate's order)."""
    if classes is None or meta["classes"] == classes:
        return prediction
    index = {str(c): i for i, c in enumerate(meta["classes"])}
    missing = [c for c in classes if str(c) not in index]
    if missing:
        raise DataError(f"the baseline model never saw class {missing[0]!r}; compare on a common label set")
    return prediction[:, [index[str(c)] for c in classes]]


MIN_SEGMENT_ROWS = 30


def champion_scores(spec: ModelSpec, y, prediction, segments) -> dict[str, float]:
    """The champion's metric on the month, overall and per segment (segments of 30+ rows)."""
    from automl_tasks.evaluation.metrics import compute_metric

    scores = {"overall": compute_metric(spec.metric, spec.task, y, prediction)}
    if segments is not None:
        for value in sorted(set(segments) - {None}):
            rows = segments == value
            if rows.sum() >= MIN_SEGMENT_ROWS:
                scores[str(value)] = compute_metric(spec.metric, spec.task, y[rows], prediction[rows])
    return scores


def _series_key(metric: str, series: str) -> str:
    name = "".join(c if c.isalnum() or c in "_-." else "_" for c in series)
    return f"champion_{metric}" if series == "overall" else f"champion_{metric}.{name}"


def champion_trend(client, experiment: str, spec: ModelSpec, month: str, scores: dict[str, float]):
    """The champion's metric across every month monitored so far (this one included)."""
    from automl_tasks.evaluation import plots

    history: dict[str, dict[str, float]] = {}
    for run in client.search_runs([experiment], filter_string="tags.`automl.kind` = 'evaluation'",
                                  max_results=5000):
        seen = run.data.tags.get("automl.month")
        for series in scores:
            value = run.data.metrics.get(_series_key(spec.metric, series))
            if seen and seen != month and value is not None:
                history.setdefault(seen, {})[series] = value
    history[month] = scores
    months = sorted(history)
    return plots.metric_trend(months, {series: [history[m].get(series, float("nan")) for m in months]
                                       for series in scores}, spec.metric)


def _find_finished(client, experiment: str, kind: str, month: str, fingerprint: str, commit: str,
                   spec_hash: str):
    runs = client.search_runs(
        [experiment],
        filter_string=(f"tags.`automl.kind` = '{kind}' and tags.`automl.month` = '{month}' and "
                       f"tags.`automl.data_fingerprint` = '{fingerprint}' and "
                       f"tags.`automl.git_commit` = '{commit}' and "
                       f"tags.`automl.spec_hash` = '{spec_hash}' and attributes.status = 'FINISHED'"),
        order_by=["attributes.start_time DESC"], max_results=1)
    return runs[0] if runs else None


def _candidate_summary(client, run) -> dict:
    import mlflow

    board = json.loads(Path(mlflow.artifacts.download_artifacts(
        run_id=run.info.run_id, artifact_path="leaderboard.json")).read_text())
    best = run.data.tags["automl.best_algorithm"]
    return {"run_id": run.info.run_id, "leaderboard": board,
            "best": next(e for e in board if e["algorithm"] == best), "reused": True}


def tuned_candidates(client, experiment: str, spec: ModelSpec, prepared: Prepared, month: str, *,
                     spark, progress, warm_start=None, dag_run_id=None) -> dict:
    """The month's tuning for this spec's commit and data: a FINISHED run if there is one, else new."""
    commit = spec.origin.get("git_commit", "none")
    spec_hash = tracking.run_tags(spec, "tuning", month, None)["automl.spec_hash"]
    run = _find_finished(client, experiment, "tuning", month, prepared.fingerprint, commit, spec_hash)
    if run is not None:
        progress(f"{spec.name} {month}: {spec.origin.get('branch', 'none')} ({commit[:10]}): "
                 f"reusing tuning run {run.info.run_id}")
        return _candidate_summary(client, run)
    summary = tune(spec, month, spark=spark, progress=progress, purpose=PURPOSE, warm_start=warm_start,
                   dag_run_id=dag_run_id, prepared=prepared)
    best = next(e for e in summary["leaderboard"] if e["algorithm"] == summary["best"]["algorithm"])
    return {"run_id": summary["run_id"], "leaderboard": summary["leaderboard"], "best": best,
            "reused": False, "fit_seconds": summary["fit_seconds"]}


def compare_models(spec: ModelSpec, y, candidate, baseline, segments) -> list[Comparison]:
    """Paired bootstrap of candidate vs baseline: overall first, then per segment if the spec has one."""
    if segments is None:
        return [paired_bootstrap(spec.metric, spec.task, y, candidate, baseline, seed=spec.seed)]
    return compare_by_segment(spec.metric, spec.task, y, candidate, baseline, segments, seed=spec.seed)


def policy(comparisons: list[Comparison], spec: ModelSpec,
           candidate_value: float | None) -> tuple[bool, list[str]]:
    """The promotion gates from the spec; `comparisons` is empty when there is no champion yet.

    With a champion: the lower bound of the overall delta's 95% CI must reach
    min_improvement, and no segment's delta may fall below -max_segment_drop. Without
    one: the candidate's holdout metric must reach min_metric when the spec sets it.
    """
    from automl_tasks.evaluation.metrics import orientation

    gates = spec.promotion
    if not comparisons:
        if gates.min_metric is None:
            return True, ["no champion yet: the best candidate becomes the first champion"]
        if candidate_value is None:
            return False, [f"no champion yet and no holdout {spec.metric} to check min_metric against"]
        ok = orientation(spec.metric) * (candidate_value - gates.min_metric) >= 0
        word = "reaches" if ok else "does not reach"
        return ok, [f"no champion yet: candidate {spec.metric} {candidate_value:.4f} {word} "
                    f"min_metric {gates.min_metric}"]
    overall, segments = comparisons[0], comparisons[1:]
    ok = overall.ci_low >= gates.min_improvement
    reasons = [f"overall {overall.metric} delta {overall.delta:+.4f} (95% CI {overall.ci_low:+.4f}.."
               f"{overall.ci_high:+.4f}) {'clears' if ok else 'does not clear'} "
               f"min_improvement {gates.min_improvement} on the CI's lower bound"]
    for seg in segments:
        if seg.delta < -gates.max_segment_drop:
            ok = False
            reasons.append(f"segment {seg.segment}: delta {seg.delta:+.4f} is worse than "
                           f"-max_segment_drop {gates.max_segment_drop}")
    return ok, reasons


def run_monthly(spec: ModelSpec, month: str, *, promotion_mode: str | None = None, spark=None,
                progress: Callable[[str], None] = _stderr, dag_run_id: str | None = None) -> dict:
    """Everything the monthly DAG does for one spec and month, in one call (CLI path)."""
    import mlflow

    from automl_tasks.evaluation import plots
    from automl_tasks.monitoring.drift import drift_report, log_drift_to_mlflow, spark_sample_to_pandas

    check_month(month)
    timings = Stopwatch()
    mode = promotion_mode or spec.promotion.mode
    spark = spark or get_spark()
    client = tracking.client()
    champion = load_champion(spec.name)
    prepared = prepare(spark, spec, month)                     # every data check, before any write
    if champion is not None:
        check_schema(champion[1], prepared, month)
    experiment = tracking.experiment_id(client, spec, PURPOSE)
    tags = tracking.run_tags(spec, "evaluation", month, prepared.fingerprint, dag_run_id)
    runs: dict[str, str] = {}
    timings.lap("checks")

    # 1. Drift and the champion's score on the new month.
    frame = load_frame(spark, spec)
    holdout_df, y, segments = _holdout(frame, spec, month, prepared.classes)
    features, cats = prepared.encoding.feature_names, list(prepared.encoding.categorical)
    numeric = [f for f in features if f not in cats]
    window_df = frame.where(frame[MONTH_COL].isin(list(prepared.window.train)))
    with mlflow.start_run(experiment_id=experiment, run_name=f"monitor-{month}", tags=tags) as run:
        runs["monitor"] = run.info.run_id
        reference, ref_fraction = spark_sample_to_pandas(window_df, features, 50_000, seed=spec.seed)
        current, cur_fraction = spark_sample_to_pandas(holdout_df, features, 50_000, seed=spec.seed)
        with tempfile.TemporaryDirectory() as tmp:
            drift = drift_report(reference, current, numerical=numeric, categorical=cats, out_dir=tmp,
                                 title=f"{spec.name} {month} vs {prepared.window.train[0]}..{prepared.window.train[-1]}")
            log_drift_to_mlflow(drift)
        mlflow.set_tags({"drift_spark_fraction_reference": str(ref_fraction),
                         "drift_spark_fraction_current": str(cur_fraction)})
        progress(f"{spec.name} {month}: drift share {drift.share_drifted:.2f} "
                 f"({', '.join(drift.drifted_columns) or 'no column'} drifted)")
        champion_metric = None
        if champion is not None:
            champion_pred = _aligned(champion[1].predict(holdout_df), champion[1].meta, prepared.classes)
            scores = champion_scores(spec, y, champion_pred, segments)
            champion_metric = scores["overall"]
            mlflow.log_metrics({_series_key(spec.metric, k): v for k, v in scores.items()},
                               step=_month_step(month))
            mlflow.set_tag("automl.champion_version", champion[0])
            mlflow.log_figure(champion_trend(client, experiment, spec, month, scores), "champion_trend.png")
            progress(f"{spec.name} {month}: champion v{champion[0]} {spec.metric}={champion_metric:.4f}")

    timings.lap("monitor")

    # 2. Candidates, warm-started from the champion's params; reused when already tuned.
    warm = {champion[1].meta["algorithm"]: [champion[1].params]} if champion is not None else None
    candidates = tuned_candidates(client, experiment, spec, prepared, month, spark=spark,
                                  progress=progress, warm_start=warm, dag_run_id=dag_run_id)
    runs["tuning"] = candidates["run_id"]
    best = candidates["best"]
    timings.lap("tuning")

    # 3. New vs existing on the same holdout rows, with paired bootstrap CIs.
    candidate = load_run_model(candidates["run_id"], best["algorithm"], best["model_uri"])
    candidate_pred = candidate.predict(holdout_df)
    holdout_df.unpersist()
    with mlflow.start_run(experiment_id=experiment, run_name=f"compare-{month}",
                          tags={**tags, "automl.kind": "comparison"}) as run:
        runs["comparison"] = run.info.run_id
        if champion is not None:
            comparisons = compare_models(spec, y, candidate_pred, champion_pred, segments)
            mlflow.log_dict([c.to_dict() for c in comparisons], "comparison.json")
            mlflow.log_metrics({"delta": comparisons[0].delta, "ci_low": comparisons[0].ci_low,
                                "ci_high": comparisons[0].ci_high})
            mlflow.log_figure(plots.comparison_forest(comparisons), "comparison_forest.png")
        else:
            comparisons = []
        for fname, fig in plots.evaluation_figures(spec.task, y, candidate_pred, prepared.classes).items():
            mlflow.log_figure(fig, f"candidate/{fname}")
        approve, reasons = policy(comparisons, spec, best["holdout_value"])

    timings.lap("compare")

    # 4. The decision: register the winner as challenger; auto/shadow decide now, manual waits.
    evidence = {"metric": spec.metric, "candidate": best["algorithm"],
                "candidate_holdout": best["holdout_value"], "champion_metric": champion_metric,
                "comparisons": [c.to_dict() for c in comparisons], "policy_says": approve}
    version = promotion.register_candidate(best["model_uri"], spec.name, month=month,
                                           run_id=candidates["run_id"],
                                           tags={"automl.algorithm": best["algorithm"]})
    champion_before = promotion.current_champion(spec.name)
    decision = promotion.open_decision(spec.name, version, month=month, evidence=evidence,
                                       evidence_run_id=runs["comparison"], reasons=reasons)
    if mode == "auto" and decision.status == "pending":
        decision = promotion.decide(spec.name, version, approve=approve, decided_by="policy:auto")
    elif mode == "shadow" and decision.status == "pending":
        decision = promotion.decide(spec.name, version, approve=False, decided_by="policy:shadow",
                                    reasons=["shadow mode: compared and recorded, never promoted"])
    progress(f"{spec.name} {month}: decision {decision.status} for v{version} ({'; '.join(reasons)})")
    timings.lap("decision")
    return {
        "month": month,
        "champion_before": champion_before,
        "champion_after": promotion.current_champion(spec.name),
        "decision": {"status": decision.status, "version": version, "reasons": decision.reasons,
                     "evidence_run_id": runs["comparison"], "policy_says": approve},
        "drift": {"share_drifted": drift.share_drifted, "drifted_columns": drift.drifted_columns},
        "champion_metric": champion_metric,
        "candidates": {e["algorithm"]: e["holdout_value"] for e in candidates["leaderboard"]},
        "runs": runs,
        "timings": timings.laps,
        "fit_seconds": candidates.get("fit_seconds"),
    }


class Stopwatch:
    """Wall seconds per step, and the total, for the summary (and bench/monthly.py)."""

    def __init__(self):
        self.start = self.last = time.perf_counter()
        self.laps: dict[str, float] = {}

    def lap(self, step: str) -> None:
        now = time.perf_counter()
        self.laps[step] = round(now - self.last, 3)
        self.laps["total"] = round(now - self.start, 3)
        self.last = now


def _month_step(month: str) -> int:
    """Months as consecutive integers, so MLflow charts the champion's metric over time."""
    year, mon = map(int, month.split("-"))
    return year * 12 + mon - 1


def previous_month(month: str) -> str:
    return shift_month(month, -1)

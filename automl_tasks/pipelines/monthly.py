"""The monthly job for one spec: check, monitor, retrain, compare, decide.

Each step is a function of small JSON-able inputs (spec, month, run ids) returning
small JSON, so the Airflow DAG and `automl-tasks monthly` call the same code. All
data checks run before anything is written; steps find their earlier MLflow runs
by tags (month, kind, data fingerprint, git commit) and reuse them, so re-running
a month neither duplicates a registered version nor moves an alias twice.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np

from automl_tasks.data.labels import class_key
from automl_tasks.data.months import Month, describe_months, months_ending
from automl_tasks.data.prepare import LABEL_COL, Prepared, canonical_label, load_frame
from automl_tasks.data.sources import MONTH_COL
from automl_tasks.errors import DataError
from automl_tasks.evaluation.compare import Comparison, compare_by_segment, paired_bootstrap
from automl_tasks.formatting import number
from automl_tasks.progress import report
from automl_tasks.registry import claims, promotion, tracking
from automl_tasks.registry import policy as gates
from automl_tasks.registry.champion import ScoredModel, load_champion, load_run_model
from automl_tasks.spark import get_spark
from automl_tasks.spec import ModelSpec, check_month
from automl_tasks.tuning.job import prepare_for_tuning, tune

PURPOSE = "monthly"


def check_schema(champion: ScoredModel, prepared: Prepared, month: str) -> None:
    """The month's data must still carry every column the champion was trained on."""
    have = set(prepared.encoding.feature_names)
    missing = [f for f in champion.meta["feature_names"] if f not in have]
    if missing:
        raise DataError(f"month {month}: the champion needs feature {missing[0]!r}, "
                        "which the spec or the data no longer provides")
    if champion.meta["task"] != prepared.spec.task:
        raise DataError(f"the champion is a {champion.meta['task']} model; the spec says {prepared.spec.task}")


def holdout_rows(frame, spec: ModelSpec, month: str, classes: list | None):
    """The holdout's rows (window.holdout_months ending at `month`), cached so every model
    scores them in the same order, and their labels."""
    from pyspark.sql import functions as F


    label = (canonical_label(spec.data.label) if spec.task != "regression"
             else F.col(spec.data.label).try_cast("double"))
    held = list(months_ending(month, spec.window.holdout_months))
    df = frame.where(F.col(MONTH_COL).isin(held)).withColumn(LABEL_COL, label).persist()
    segment = F.col(spec.segment).cast("string") if spec.segment else F.lit(None).cast("string")
    pdf = df.select(F.col(LABEL_COL).alias("y"), segment.alias("segment")).toPandas()
    if classes is None:
        y = pdf["y"].to_numpy(dtype=np.float64)
    else:
        index = {class_key(c): i for i, c in enumerate(classes)}
        y = np.array([index[v] for v in pdf["y"]], dtype=np.int64)
    segments = pdf["segment"].to_numpy(dtype=object) if spec.segment else None
    return df, y, segments


def align_classes(prediction: np.ndarray, meta: dict, classes: list | None) -> np.ndarray:
    """Reorder a classifier's probability columns to `classes` (the candidate's order)."""
    if classes is None or meta["classes"] == classes:
        return prediction
    index = {class_key(c): i for i, c in enumerate(meta["classes"])}
    missing = [c for c in classes if class_key(c) not in index]
    if missing:
        raise DataError(f"the baseline model never saw class {missing[0]!r}; compare on a common label set")
    return prediction[:, [index[class_key(c)] for c in classes]]


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


def _find_run(client, experiment: str, tags: dict[str, str], *, finished: bool = False,
              parent: str | None = None):
    """The latest run carrying every tag in `tags` (the month, data, commit and spec keys)."""
    keys = ("automl.kind", "automl.month", "automl.data_fingerprint", "automl.git_commit",
            "automl.spec_hash")
    clauses = [f"tags.`{k}` = '{tags[k]}'" for k in keys]
    if finished:
        clauses.append("attributes.status = 'FINISHED'")
    if parent:
        clauses.append(f"tags.`mlflow.parentRunId` = '{parent}'")
    runs = client.search_runs([experiment], filter_string=" and ".join(clauses),
                              order_by=["attributes.start_time DESC"], max_results=1)
    return runs[0] if runs else None


def candidate_summary(client, run) -> dict:
    """A finished tuning run's leaderboard and best entry, in the shape `tuned_candidates` returns."""
    import mlflow

    board = json.loads(Path(mlflow.artifacts.download_artifacts(
        run_id=run.info.run_id, artifact_path="leaderboard.json")).read_text())
    best = run.data.tags["automl.best_algorithm"]
    return {"run_id": run.info.run_id, "leaderboard": board,
            "best": next(e for e in board if e["algorithm"] == best), "reused": True}


def tuned_candidates(client, experiment: str, spec: ModelSpec, prepared: Prepared, month: str, *,
                     spark, progress, warm_start=None, dag_run_id=None, parent: str | None = None) -> dict:
    """The month's tuning for this spec's commit and data: a FINISHED run if there is one, else
    new, or an interrupted one under `parent` (the month run) finished in place."""
    tags = tracking.run_tags(spec, "tuning", month, prepared.fingerprint)
    run = _find_run(client, experiment, tags, finished=True)
    if run is not None:
        progress(f"{spec.name} {month}: {tags['automl.branch']} ({tags['automl.git_commit'][:10]}): "
                 f"reusing tuning run {run.info.run_id}")
        return candidate_summary(client, run)
    interrupted = _find_run(client, experiment, tags, parent=parent) if parent else None
    if interrupted is not None:
        progress(f"{spec.name} {month}: resuming the interrupted tuning run {interrupted.info.run_id}")
    summary = tune(spec, month, spark=spark, progress=progress, purpose=PURPOSE, warm_start=warm_start,
                   dag_run_id=dag_run_id, prepared=prepared,
                   resume=interrupted.info.run_id if interrupted else None)
    best = next(e for e in summary["leaderboard"] if e["algorithm"] == summary["best"]["algorithm"])
    return {"run_id": summary["run_id"], "leaderboard": summary["leaderboard"], "best": best,
            "reused": False, "fit_seconds": summary["fit_seconds"]}


def compare_models(spec: ModelSpec, y, candidate, baseline, segments) -> list[Comparison]:
    """Paired bootstrap of candidate vs baseline: overall first, then per segment if the spec has one.

    Segments under `promotion.min_rows` get point estimates only; the others' intervals are
    Bonferroni-corrected across them (registry/policy.py), as the segment gate reads them.
    """
    if segments is None:
        return [paired_bootstrap(spec.metric, spec.task, y, candidate, baseline, seed=spec.seed)]
    _, sizes = np.unique(np.asarray(segments).astype(str), return_counts=True)
    min_rows = spec.promotion.min_rows
    return compare_by_segment(spec.metric, spec.task, y, candidate, baseline, segments, seed=spec.seed,
                              min_rows=min_rows,
                              segment_confidence=gates.segment_confidence(sizes.tolist(), min_rows))


RECORD_ARTIFACT = "monthly.json"   # written last in the month's run: its evaluation is complete


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
    with month_claim(client, experiment, spec, month, wait_s=wait_s):
        return _run_claimed(spec, month, promotion_mode or spec.promotion.mode, prepared, champion, client,
                            experiment, spark=spark, progress=progress, dag_run_id=dag_run_id, timings=timings)


MONTH_CLAIM_TTL_S, MONTH_CLAIM_HEARTBEAT_S = 180.0, 30.0


def month_claim(client, experiment: str, spec: ModelSpec, month: str, *, wait_s: float = 0.0):
    """Hold (model, month, branch) while a run works on it: tags on the month's experiment."""
    import hashlib

    branch = spec.origin.get("branch", "none")
    scope = f"automl.claim.monthly.{month}.{hashlib.sha256(branch.encode()).hexdigest()[:10]}."
    board = claims.experiment_board(client, experiment, scope)
    return claims.hold(board, f"the monthly run of {spec.name} {month} ({branch})", wait_s=wait_s,
                       ttl_s=MONTH_CLAIM_TTL_S, heartbeat_s=MONTH_CLAIM_HEARTBEAT_S)


def _run_claimed(spec: ModelSpec, month: str, mode: str, prepared: Prepared, champion, client,
                 experiment: str, *, spark, progress, dag_run_id, timings: Stopwatch) -> dict:
    import mlflow

    tags = tracking.run_tags(spec, "decision", month, prepared.fingerprint, dag_run_id)
    earlier = _find_run(client, experiment, tags)
    timings.lap("checks")
    record = _recorded(client, earlier) if earlier is not None and earlier.info.status == "FINISHED" else None
    fresh = record is None
    if not fresh:
        progress(f"{spec.name} {month}: reusing the month's runs ({earlier.info.run_id}); "
                 "same data, commit and spec")
    else:
        study = _ablation(spec, month, spark=spark, progress=progress, dag_run_id=dag_run_id)
        timings.lap("ablation")
        with mlflow.start_run(run_id=earlier.info.run_id if earlier else None, experiment_id=experiment,
                              run_name=f"monthly-{month}", tags=tags) as run:
            record = _evaluate(spec, month, prepared, champion, client, experiment, tags, run.info.run_id,
                               spark=spark, progress=progress, dag_run_id=dag_run_id, timings=timings)
            record["ablation"] = study
            mlflow.log_dict(record, RECORD_ARTIFACT)           # last: the month's evaluation is complete
    result = _decide(spec, month, mode, record, progress)
    timings.lap("decision")
    return {**result, "reused": not fresh, "timings": timings.laps,
            "fit_seconds": record["fit_seconds"] if fresh else None}


def _recorded(client, run) -> dict | None:
    """The evaluation a FINISHED month run recorded, or None if it never got that far."""
    import mlflow

    if RECORD_ARTIFACT not in {a.path for a in client.list_artifacts(run.info.run_id)}:
        return None
    return json.loads(mlflow.artifacts.load_text(f"runs:/{run.info.run_id}/{RECORD_ARTIFACT}"))


def _child(client, experiment: str, tags: dict, kind: str, parent: str, name: str):
    """Start (or resume in place, after an interrupted attempt) the month's `kind` child run."""
    import mlflow

    tags = {**tags, "automl.kind": kind}
    earlier = _find_run(client, experiment, tags, parent=parent)
    return mlflow.start_run(run_id=earlier.info.run_id if earlier else None, experiment_id=experiment,
                            run_name=name, tags=tags, nested=True)


def _evaluate(spec: ModelSpec, month: str, prepared: Prepared, champion, client, experiment: str,
              tags: dict, parent: str, *, spark, progress, dag_run_id, timings: Stopwatch) -> dict:
    """Monitor, retrain and compare inside the month's parent run; return the month's record."""
    import mlflow

    from automl_tasks.evaluation import plots
    from automl_tasks.monitoring.drift import drift_report, log_drift_to_mlflow, spark_sample_to_pandas

    runs = {"month": parent}

    # 1. Drift and the champion's score on the new month.
    frame = load_frame(spark, spec)
    holdout_df, y, segments = holdout_rows(frame, spec, month, prepared.classes)
    features, cats = prepared.encoding.feature_names, list(prepared.encoding.categorical)
    numeric = [f for f in features if f not in cats]
    window_df = frame.where(frame[MONTH_COL].isin(list(prepared.window.train)))
    with _child(client, experiment, tags, "evaluation", parent, f"monitor-{month}") as run:
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
        progress(f"{spec.name} {month}: drift share {drift.share_drifted:.2f} "
                 f"({', '.join(drift.drifted_columns) or 'no column'} drifted)")
        champion_metric = None
        if champion is not None:
            champion_pred = align_classes(champion[1].predict(holdout_df), champion[1].meta, prepared.classes)
            scores = champion_scores(spec, y, champion_pred, segments)
            champion_metric = scores["overall"]
            mlflow.log_metrics({_series_key(spec.metric, k): v for k, v in scores.items()},
                               step=Month.parse(month).step)
            mlflow.set_tag("automl.champion_version", champion[0])
            mlflow.log_figure(champion_trend(client, experiment, spec, month, scores), "champion_trend.png")
            progress(f"{spec.name} {month}: champion v{champion[0]} {spec.metric}={champion_metric:.4f}")
    timings.lap("monitor")

    # 2. Candidates, warm-started from the champion's params; reused when already tuned.
    warm = {champion[1].meta["algorithm"]: [champion[1].params]} if champion is not None else None
    candidates = tuned_candidates(client, experiment, spec, prepared, month, spark=spark,
                                  progress=progress, warm_start=warm, dag_run_id=dag_run_id,
                                  parent=parent)
    runs["tuning"] = candidates["run_id"]
    best = candidates["best"]
    timings.lap("tuning")

    # 3. New vs existing on the same holdout rows, with paired bootstrap CIs.
    candidate = load_run_model(candidates["run_id"], best["algorithm"], best["model_uri"])
    candidate_pred = candidate.predict(holdout_df)
    holdout_df.unpersist()
    comparisons: list[Comparison] = []
    with _child(client, experiment, tags, "comparison", parent, f"compare-{month}") as run:
        runs["comparison"] = run.info.run_id
        if champion is not None:
            comparisons = compare_models(spec, y, candidate_pred, champion_pred, segments)
            mlflow.log_dict([c.to_dict() for c in comparisons], "comparison.json")
            mlflow.log_metrics({"delta": comparisons[0].delta, "ci_low": comparisons[0].ci_low,
                                "ci_high": comparisons[0].ci_high})
            mlflow.log_figure(plots.comparison_forest(comparisons), "comparison_forest.png")
        for fname, fig in plots.evaluation_figures(spec.task, y, candidate_pred, prepared.classes).items():
            mlflow.log_figure(fig, f"candidate/{fname}")
    verdict = gates.decide(comparisons, spec, best["holdout_value"], gates.Evidence.of_labels(spec.task, y))
    timings.lap("compare")

    record = {
        "month": month, "metric": spec.metric, "experiment_id": experiment, "runs": runs,
        "champion": None if champion is None else {"version": champion[0], "algorithm":
                                                    champion[1].meta["algorithm"], "metric": champion_metric},
        "drift": {"share_drifted": drift.share_drifted, "drifted_columns": drift.drifted_columns,
                  "columns_checked": len(drift.columns), "reference": describe_months(prepared.window.train),
                  "threshold": spec.monitoring.drift_share,
                  "dataset_drift": drift.share_drifted >= spec.monitoring.drift_share},
        "window": {"train": list(prepared.window.train),
                   "train_rows": sum(prepared.row_counts[m] for m in prepared.window.train),
                   "holdout": list(prepared.window.holdout_months), "holdout_rows": int(len(y))},
        "leaderboard": [{k: e.get(k) for k in ("algorithm", "cv_value", "holdout_value", "baseline_value",
                                               "lift", "trials", "failed")} for e in candidates["leaderboard"]],
        "best": {k: best[k] for k in ("algorithm", "model_uri", "holdout_value", "cv_value")},
        "comparisons": [c.to_dict() for c in comparisons],
        "policy": verdict.to_dict(),
        "fit_seconds": candidates.get("fit_seconds"),
        "duplicate_ids": prepared.duplicate_ids,       # data.duplicate_ids: warn, else None
    }
    _log_side_by_side(record)
    return record


def _ablation(spec: ModelSpec, month: str, *, spark, progress, dag_run_id) -> dict | None:
    """The spec's feature ablation study for the month (its own run in `<name>/ablation`), if any."""
    if not (spec.ablation.candidates or spec.ablation.tables):
        return None
    from automl_tasks.ablation.study import run_ablation

    study = run_ablation(spec, month, spark=spark, progress=progress, dag_run_id=dag_run_id)
    keep = ("feature", "delta", "ci_low", "ci_high", "verdict", "reason")
    return {"run_id": study["run_id"], "results": [{k: r.get(k) for k in keep} for r in study["results"]]}


def _log_side_by_side(record: dict) -> None:
    """Champion and every candidate on the month's holdout, as metrics of the month's run."""
    import mlflow

    metric = record["metric"]
    values = {f"{e['algorithm']}_holdout_{metric}": e["holdout_value"] for e in record["leaderboard"]}
    values |= {f"{e['algorithm']}_cv_{metric}": e["cv_value"] for e in record["leaderboard"]}
    if record["champion"] is not None:
        values[f"champion_{metric}"] = record["champion"]["metric"]
    if record["comparisons"]:
        overall = record["comparisons"][0]
        values |= {k: overall[k] for k in ("delta", "ci_low", "ci_high")}
    values["drift_share"] = record["drift"]["share_drifted"]
    mlflow.log_metrics({k: v for k, v in values.items() if v is not None})


def _decide(spec: ModelSpec, month: str, mode: str, record: dict, progress) -> dict:
    """Register the winner as challenger with the record as evidence; auto/shadow settle it now."""
    from automl_tasks.registry import summary

    best, runs = record["best"], record["runs"]
    approve, reasons = record["policy"]["approve"], record["policy"]["reasons"]
    # Records written before the evidence gates carry approve and reasons only.
    outcome = record["policy"].get("outcome", gates.PROMOTE if approve else gates.KEEP)
    version = promotion.register_candidate(best["model_uri"], spec.name, month=month,
                                           run_id=runs["tuning"],
                                           tags={"automl.algorithm": best["algorithm"]})
    text = summary.decision_markdown(spec.name, version, mode, record)
    evidence = {"metric": spec.metric, "candidate": best["algorithm"],
                "candidate_holdout": best["holdout_value"],
                "champion_metric": (record["champion"] or {}).get("metric"),
                "comparisons": record["comparisons"], "policy_says": approve}
    decision = promotion.open_decision(spec.name, version, month=month, evidence=evidence,
                                       evidence_run_id=runs["month"], reasons=reasons,
                                       measured_against=(record["champion"] or {}).get("version"))
    summary.publish(spec.name, version, runs["month"], text)
    if outcome == gates.INSUFFICIENT and decision.status == "pending":
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
        "drift": record["drift"],
        "champion_metric": (record["champion"] or {}).get("metric"),
        "candidates": {e["algorithm"]: e["holdout_value"] for e in record["leaderboard"]},
        "runs": runs,
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


def history(name: str) -> list[dict]:
    """One row per month run so far: the champion's score, drift, the challenger, the decision.

    Read back from the month runs' records and the registry's decisions, so it shows what
    each month measured and decided, whoever ran it (DAG, CLI, backfill).
    """
    import mlflow

    client = tracking.client()
    experiment = client.get_experiment_by_name(f"{name}/{PURPOSE}")
    if experiment is None:
        return []
    runs = client.search_runs([experiment.experiment_id], max_results=5000,
                              filter_string="tags.`automl.kind` = 'decision' and attributes.status = 'FINISHED'",
                              order_by=["attributes.start_time DESC"])
    decisions = {(d.month, d.evidence_run_id): d for d in promotion.decision_history(name)}
    rows, seen = [], set()
    for run in runs:                       # newest first: a month re-run on new data shows its latest
        month = run.data.tags["automl.month"]
        if month in seen or RECORD_ARTIFACT not in {a.path for a in client.list_artifacts(run.info.run_id)}:
            continue
        seen.add(month)
        record = json.loads(mlflow.artifacts.load_text(f"runs:/{run.info.run_id}/{RECORD_ARTIFACT}"))
        decision = decisions.get((month, run.info.run_id))
        overall = record["comparisons"][0] if record["comparisons"] else None
        rows.append({
            "month": month, "metric": record["metric"], "champion": (record["champion"] or {}).get("version"),
            "champion_metric": (record["champion"] or {}).get("metric"),
            "drift_share": record["drift"]["share_drifted"],
            "challenger": record["best"]["algorithm"], "challenger_metric": record["best"]["holdout_value"],
            "delta": overall and overall["delta"], "ci_low": overall and overall["ci_low"],
            "ci_high": overall and overall["ci_high"],
            "version": decision and decision.version, "decision": decision.status if decision else "none",
            "champion_after": decision and decision.champion_after, "run_id": run.info.run_id,
        })
    return sorted(rows, key=lambda r: r["month"])


def format_history(rows: list[dict], metric: str = "metric") -> str:
    lines = [f"{'month':<8} {'champion':>8} {metric:>9} {'drift':>6}  {'challenger':<18} "
             f"{'delta [95% CI]':<27} {'decision':<25} {'champion after':>14}"]
    for r in rows:
        ci = (f"{number(r['delta'], True)} [{number(r['ci_low'], True)}, {number(r['ci_high'], True)}]"
              if r["delta"] is not None else "-")
        lines.append(f"{r['month']:<8} {('v' + r['champion']) if r['champion'] else '-':>8} "
                     f"{number(r['champion_metric']):>9} {r['drift_share']:>6.0%}  "
                     f"{r['challenger'] + ' ' + number(r['challenger_metric']):<18} {ci:<27} "
                     f"{r['decision'] + (' v' + r['version'] if r['version'] else ''):<25} "
                     f"{('v' + r['champion_after']) if r['champion_after'] else '-':>14}")
    return "\n".join(lines)

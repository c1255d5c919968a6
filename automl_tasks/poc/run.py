"""`run_poc`: one PoC on new data, from a request to MLflow, inside a time budget.

Order (each step's output is the next one's input):
  1. check the request and the data (request.resolve, data.prepare): nothing is written
     before they pass;
  2. explore: column profile, warnings, single-feature probes, Evidently's summary;
  3. open the MLflow run `<name>/poc` and log the exploration report;
  4. tune every algorithm with the tuning engine (nested run with its trials), each within
     its share of the budget;
  5. per candidate: out-of-fold evaluation, plots, fit summary, test predictions and the
     re-runnable spec (nested run `candidate-<algo>`); the best one (and the champion's
     alternative) first, the others after steps 6 and 7;
  6. with a champion for the name: the champion's algorithm vs the best alternative;
  7. with a segment column: per-segment models vs the global model;
  8. the leaderboard (CSV and MLflow table) and the summary.
Steps 5-7 are in poc/steps.py; they share a `PocContext`.

Budget: the clock starts when `run_poc` is called. Tuning gets the time left after the
exploration minus a reserve for steps 5-8: a fixed share until the first algorithm's fits are
measured, then what the measured fits say the out-of-fold evaluations need when that is less
(`steps.evaluation_reserve`), so the algorithms tuned later get the rest. Steps 5-8 skip (and
say so) what their measured cost estimate does not fit. On any error the Spark jobs are cancelled, the run
ends FAILED with the error as a tag, and the local output folder is removed.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from automl_tasks import config
from automl_tasks.data.labels import class_key
from automl_tasks.errors import DataError
from automl_tasks.formatting import number
from automl_tasks.models import algorithms
from automl_tasks.poc.request import PocRequest, resolve
from automl_tasks.poc.steps import (REPORT_SECONDS, PocContext, algorithm_check, evaluate_candidates,
                                    evaluation_reserve, segment_study)
from automl_tasks.progress import report
from automl_tasks.registry.records import LeaderboardEntry, TuningResult

PURPOSE = "poc"
MAX_EXPLORE_ROWS = 50_000
RESERVE_SHARE = 0.2             # of the time left after exploration, kept for steps 5-8
SEGMENT_RESERVE_SHARE = 0.15    # more when per-segment models are to be trained


@dataclass
class Budget:
    started: float
    total_s: float

    def left(self) -> float:
        return self.started + self.total_s - time.monotonic()

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def fits(self, estimate_s: float, keep_s: float = 0.0) -> bool:
        return self.left() - keep_s >= estimate_s


def run_poc(request: PocRequest, *, roots: list | None = None, spark=None,
            progress: Callable[[str], None] = report, dag_run_id: str | None = None,
            started: float | None = None) -> dict:
    """The whole PoC; returns the summary `automl-tasks poc --json` prints.

    On any error (or SIGTERM, which the CLI turns into SystemExit) the session's Spark jobs
    are cancelled before the error propagates, so no executor keeps fitting.
    """
    from automl_tasks.spark import cancel_jobs, get_spark

    budget = Budget(started if started is not None else time.monotonic(), float(request.time_budget_s))
    for module in ("evidently", "automl_tasks.evaluation.plots"):   # ~15 s of imports, done while
        preload(module)                                              # Spark reads and checks the data
    spark = spark or get_spark()
    try:
        return _checked_run(spark, request, budget, roots, progress, dag_run_id)
    except BaseException:
        cancel_jobs(spark)
        raise


def _checked_run(spark, request: PocRequest, budget: Budget, roots, progress, dag_run_id) -> dict:
    from automl_tasks.data.prepare import prepare
    from automl_tasks.spark import task_slots
    from automl_tasks.tuning import training_path
    from automl_tasks.tuning.validation import make_folds

    plan = resolve(spark, request, roots if roots is not None else config.data_roots())
    spec = plan.spec
    progress(f"{spec.name}: {plan.task_note}; metric {spec.metric}; algorithms {', '.join(spec.algorithms)}; "
             f"budget {budget.total_s:g}s")
    left_out = [a for a in algorithms.names_for(spec.task, poc_default=True) if a not in spec.algorithms]
    if not request.algorithms and left_out:     # the default set, on Spark Connect (`resolve`)
        progress(f"{spec.name}: {', '.join(left_out)} left out: {algorithms.connect_refusal(left_out)}")
    slots = task_slots(spark)
    prepared = prepare(spark, spec, decide=training_path.per_trial_only(spark, "the PoC", slots))
    if plan.test_df is not None:
        check_test_labels(plan.test_df, spec, prepared.classes)
    folds = make_folds(prepared.train, None, spec.validation, spec.task, prepared.window.train,
                       seed=spec.seed, classes=prepared.classes)
    timings = {"checks": round(budget.elapsed(), 2)}       # Spark start and imports included
    exploration = explore(spark, plan, prepared, slots, progress)
    timings["exploration"] = round(budget.elapsed() - timings["checks"], 2)

    import mlflow

    from automl_tasks.registry import tracking

    client = tracking.client()
    experiment = tracking.experiment_id(client, spec, PURPOSE)
    tags = tracking.run_tags(spec, PURPOSE, None, prepared.fingerprint, dag_run_id)
    with mlflow.start_run(experiment_id=experiment, run_name=f"poc-{spec.name}", tags=tags) as run:
        out = config.home() / "poc" / spec.name / run.info.run_id
        try:
            ctx = PocContext(spark, plan, prepared, folds, budget, slots, out, tags, progress)
            summary = _run(ctx, exploration, timings, dag_run_id)
        except BaseException as exc:
            client.set_tag(run.info.run_id, "automl.error", f"{type(exc).__name__}: {exc}"[:tracking.MAX_TAG])
            shutil.rmtree(out, ignore_errors=True)
            raise
    return summary


def preload(module: str) -> None:
    """Import `module` in a background thread (an import the main thread makes later waits for it)."""
    import importlib
    import threading

    def load():
        try:
            importlib.import_module(module)
        except Exception:  # the main thread's own import raises it where it matters
            pass

    threading.Thread(target=load, name=f"preload-{module}", daemon=True).start()


def check_test_labels(test_df, spec, classes: list | None) -> None:
    """A labelled test file: every label known to the training data and none missing."""
    from automl_tasks.data.prepare import label_column

    label = spec.data.label
    if label not in test_df.columns:
        return
    value = label_column(spec)
    missing = test_df.where(value.isNull()).count()
    if missing:
        raise DataError(f"test data label {label!r} is missing or not a number in {missing} row(s); "
                        "leave the column out to predict without scoring")
    if classes is not None:
        known = {class_key(c) for c in classes}
        seen = [r[0] for r in test_df.select(value.alias("v")).distinct().limit(1001).collect()]
        unseen = sorted(v for v in seen if v not in known)
        if unseen:
            raise DataError(f"test data label {label!r} has value {unseen[0]!r}, which the training data "
                            f"does not have (classes: {', '.join(map(str, classes))})")


def explore(spark, plan, prepared, slots: int, progress) -> dict:
    """Profile, warnings and the HTML report (not yet written anywhere)."""
    from automl_tasks.fitting import LEAK_METRIC
    from automl_tasks.monitoring.drift import spark_sample_to_pandas
    from automl_tasks.poc import explore as ex

    spec = plan.spec
    columns = list(plan.train_df.columns)
    pdf, fraction = spark_sample_to_pandas(plan.train_df, columns, MAX_EXPLORE_ROWS, seed=spec.seed)
    profiles = ex.profile_columns(pdf, plan.dtypes, spec.data.label, spec.segment)
    metric = LEAK_METRIC[spec.task]
    scores = ex.single_feature_scores(spark, prepared, metric, slots)
    found = ex.findings(profiles, len(pdf), spec.task, ex.label_shares(pdf, spec.data.label, spec.task),
                        scores, metric, spec.ablation.leakage_threshold)
    for f in found:
        progress(f"warning: {f.message}")
    note = plan.task_note + ("" if fraction == 1.0 else f"; profile of a {fraction:.1%} sample")
    page = ex.report_html(pdf, profiles, found, note, title=f"{spec.name}: data exploration")
    records = {**ex.to_records(profiles, found), "rows": len(pdf), "sample_fraction": fraction,
               "task_note": plan.task_note, "single_feature": {"metric": metric, "scores": scores}}
    return {"html": page, "records": records, "findings": found}


def _run(ctx: PocContext, exploration: dict, timings: dict, dag_run_id) -> dict:
    import mlflow

    from automl_tasks.tuning.job import tune

    plan, prepared, budget, out, progress = ctx.plan, ctx.prepared, ctx.budget, ctx.out, ctx.progress
    spec, request = plan.spec, plan.request
    out.mkdir(parents=True, exist_ok=True)
    mlflow.log_params({"task": spec.task, "metric": spec.metric, "label": spec.data.label,
                       "data": str(plan.data_path), "test": str(plan.test_path or "none"),
                       "segment": spec.segment or "none", "time_budget_s": budget.total_s,
                       "algorithms": ",".join(spec.algorithms), "validation": request.validation,
                       "rows": len(prepared.train.y), "features": len(prepared.encoding.feature_names)})
    mlflow.set_tags({"automl.task_note": plan.task_note[:500],
                     "automl.warnings": ",".join(sorted({f.kind for f in exploration["findings"]})) or "none"})
    explore_dir = out / "exploration"
    explore_dir.mkdir()
    (explore_dir / "exploration.html").write_text(exploration["html"], encoding="utf-8")
    (explore_dir / "profile.json").write_text(json.dumps(exploration["records"], indent=2, default=str))
    mlflow.log_artifacts(str(explore_dir), "exploration")

    left = budget.left()
    reserve = (RESERVE_SHARE + (SEGMENT_RESERVE_SHARE if spec.segment else 0.0)) * left + REPORT_SECONDS
    end = time.monotonic() + left
    progress(f"{spec.name}: {budget.elapsed():.0f}s used by checks and exploration; tuning until "
             f"{left - reserve:.0f}s from now, {reserve:.0f}s kept for evaluation and reports"
             + ("" if spec.segment else " (less once the fits are measured)"))
    # The per-segment study's cost is not measured by the tuning's fits: its share stays fixed.
    deadline = end - reserve if spec.segment else (
        lambda board: end - evaluation_reserve(board, len(spec.algorithms), ctx.folds.n_folds, reserve))
    defaults = {a: [algorithms.get(a).defaults] for a in spec.algorithms}
    tuned = TuningResult.from_json(tune(spec, None, spark=ctx.spark, progress=progress, purpose=PURPOSE,
                                        dag_run_id=dag_run_id, prepared=prepared, deadline=deadline,
                                        warm_start=defaults))
    timings["tuning"] = round(budget.elapsed() - sum(timings.values()), 2)

    # The candidates the algorithm check and the segment study need go first, then the checks,
    # then the other candidates: what the time budget cuts is the least needed.
    from automl_tasks.poc.algorithm_check import best_alternative, champion_config

    champion = champion_config(spec.name)
    alternative = champion and best_alternative(tuned.leaderboard, spec.metric, exclude=champion["algorithm"])
    first = {tuned.best["algorithm"]} | ({alternative.algorithm} if alternative else set())
    evaluated = evaluate_candidates(ctx, tuned, only=first)
    oofs = {a: c["oof"] for a, c in evaluated.items() if c.get("oof") is not None}
    check = algorithm_check(ctx, tuned, champion, alternative, oofs)
    segments = segment_study(ctx, tuned, oofs)
    evaluated.update(evaluate_candidates(ctx, tuned, skip=set(evaluated)))
    timings["evaluation"] = round(budget.elapsed() - sum(timings.values()), 2)   # steps 5-7

    board = leaderboard(tuned.leaderboard, evaluated, spec.metric)
    write_leaderboard(board, out)
    best = _best(tuned, evaluated)
    timings["total"] = round(budget.elapsed(), 2)
    summary = {
        "run_id": mlflow.active_run().info.run_id,
        "experiment": f"{spec.name}/{PURPOSE}",
        "name": spec.name, "task": spec.task, "task_note": plan.task_note, "metric": spec.metric,
        "leaderboard": board, "best": best,
        "warnings": [{"kind": f.kind, "column": f.column, "message": f.message} for f in exploration["findings"]],
        "algorithm_check": check, "segments": segments,
        "outputs": outputs(out, evaluated, check, segments),
        "tuning_run_id": tuned.run_id,
        "budget": {"time_budget_s": budget.total_s, "elapsed_s": round(budget.elapsed(), 2)},
        "timings": timings, "notes": plan.notes,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    mlflow.log_artifact(str(out / "summary.json"))
    mlflow.log_metric("elapsed_s", budget.elapsed())
    mlflow.set_tags({"automl.best_algorithm": best["algorithm"], "automl.status": "ok"})
    progress(format_leaderboard(board, spec.metric))
    return summary


# --- 8. leaderboard and outputs ------------------------------------------------------------------

def leaderboard(entries: list[LeaderboardEntry], evaluated: dict, metric: str) -> list[dict]:
    """One row per algorithm, best first; failed algorithms last with their status."""
    from automl_tasks.evaluation.metrics import orientation

    rows = []
    for e in entries:
        done = evaluated.get(e.algorithm, {})
        rows.append({"algorithm": e.algorithm, "metric": metric, "value": e.cv_value,
                     "fit_seconds": e.fit_seconds, "status": e.status, "trials": e.trials,
                     "failed_trials": e.failed, "oof_value": done.get("oof_value"),
                     "test_value": done.get("test_value"), "default_params_value": e.baseline_value,
                     "wall_seconds": e.wall_seconds, "params": e.params, "reason": e.reason})
    rows.sort(key=lambda r: (r["value"] is None, -orientation(metric) * (r["value"] or 0.0)))
    for rank, row in enumerate(rows, 1):
        row["rank"] = rank
    return rows


def write_leaderboard(board: list[dict], out: Path) -> None:
    import mlflow
    import pandas as pd

    table = pd.DataFrame([{**r, "params": json.dumps(r["params"], sort_keys=True)} for r in board])
    table.to_csv(out / "leaderboard.csv", index=False)
    mlflow.log_artifact(str(out / "leaderboard.csv"))
    mlflow.log_table(table, artifact_file="leaderboard.json")
    for row in board:
        if row["value"] is not None and math.isfinite(row["value"]):
            mlflow.log_metric(f"cv_{row['metric']}_{row['algorithm']}", row["value"])


def _best(tuned: TuningResult, evaluated: dict) -> dict:
    best = dict(tuned.best)
    done = evaluated.get(best["algorithm"], {})
    best.update(model_dir=tuned.model_dir, spec=done.get("files", {}).get("spec"),
                candidate_run_id=done.get("run_id"))
    return best


def outputs(out: Path, evaluated: dict, check, segments) -> dict:
    files = {"dir": str(out), "leaderboard": str(out / "leaderboard.csv"),
             "exploration": str(out / "exploration" / "exploration.html"), "summary": str(out / "summary.json"),
             "candidates": {a: c["files"] for a, c in evaluated.items()}}
    if check is not None:
        files["algorithm_check"] = str(out / "algorithm_check.json")
    if segments is not None and (out / "segments" / "segments.csv").exists():
        files["segments"] = str(out / "segments" / "segments.csv")
    return files


def format_leaderboard(board: list[dict], metric: str) -> str:
    def num(v):   # NaN too: an algorithm that could not be scored
        return number(None if isinstance(v, float) and not math.isfinite(v) else v, digits=5)

    lines = [f"{'rank':<5}{'algorithm':<21}{'cv ' + metric:>18}{'out-of-fold':>13}{'test':>10}{'fit s':>9}"]
    for r in board:
        lines.append(f"{r['rank']:<5}{r['algorithm']:<21}{num(r['value']) if r['status'] == 'ok' else 'failed':>18}"
                     f"{num(r['oof_value']):>13}{num(r['test_value']):>10}{r['fit_seconds'] or 0:>9.1f}")
    return "\n".join(lines)

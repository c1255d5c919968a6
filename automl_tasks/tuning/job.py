"""`tune`: the whole tuning job for one spec and month, as the CLI and the DAGs call it.

Order matters: every data check runs before the first MLflow call, so bad input
never leaves a run behind; once the parent run exists, any failure ends it FAILED.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import yaml

from automl_tasks import config, formatting
from automl_tasks.data.prepare import Prepared, prepare
from automl_tasks.errors import SpecError, TuningError
from automl_tasks.evaluation.metrics import is_better
from automl_tasks.models import algorithms, export, scoring
from automl_tasks.progress import report
from automl_tasks.registry import tracking
from automl_tasks.registry.records import LeaderboardEntry, TuningResult
from automl_tasks.spark import describe, get_spark, task_slots
from automl_tasks.spec import ModelSpec, check_month
from automl_tasks.tuning import data_parallel, training_path
from automl_tasks.tuning import space as spaces
from automl_tasks.tuning.runner import FitContext, stage
from automl_tasks.tuning.search import SearchHooks, TrialResult, lift, run_search
from automl_tasks.tuning.validation import make_folds

# The end of the tuning (a time.monotonic() value), given the leaderboard so far.
Deadline = Callable[[list[LeaderboardEntry]], float]


def prepare_for_tuning(spark, spec: ModelSpec, month: str | None = None, slots: int | None = None,
                       monitored: tuple[str, ...] = ()) -> Prepared:
    """`prepare` with the training path decided from the window's size and the spec's
    `training`: a window bound for the data-parallel path stays on Spark, never collected.
    Every caller that checks the data first and then hands `tune` the window uses this."""
    slots = slots or task_slots(spark)
    return prepare(spark, spec, month, decide=training_path.decider(spark, spec, slots), monitored=monitored)


def tune(spec: ModelSpec, month: str | None = None, algorithms: list[str] | None = None, *,
         spark=None, progress: Callable[[str], None] = report, purpose: str = "tuning",
         warm_start: dict[str, list[dict]] | None = None, dag_run_id: str | None = None,
         prepared: Prepared | None = None, deadline: float | Deadline | None = None,
         resume: str | None = None) -> dict:
    """Tune every (or the named) algorithm of `spec` on the window before `month`.

    Returns the summary the CLI prints with --json (`records.TuningResult.to_json()`): run_id,
    experiment, best, leaderboard, trials, model_dir. `prepared`: the checked, encoded window when the
    caller has it already (the monthly job checks the data before anything else).
    `deadline` (a `time.monotonic()` value): the whole tuning, refits included, should end
    by then; each algorithm's search gets an equal share of the time left (see `share_of`), and a
    Spark ML algorithm whose one trial cannot end by then is skipped (`_past_deadline`). A
    callable is asked again as each algorithm starts, with the leaderboard so far: a caller that
    keeps time back for work after the tuning can size it from the fits measured.
    `resume`: the run of an interrupted attempt of this same tuning, finished in place; the
    search runs again (seeded, so it proposes the same trials) and replaces its trial runs.
    """
    if month is not None:
        check_month(month)
    chosen = algorithms or list(spec.algorithms)
    unknown = [a for a in chosen if a not in spec.algorithms]
    if unknown:
        raise SpecError(f"algorithm {unknown[0]!r} is not in the spec (it has: {', '.join(spec.algorithms)})")
    spark = spark or get_spark()
    training_path.check_spark_support(spark, chosen)
    slots = task_slots(spark)
    if prepared is None:
        progress(f"{spec.name}: reading {spec.data.source} for month {month or 'all'}")
        prepared = prepare_for_tuning(spark, spec, month, slots)
    decision = prepared.training or training_path.caller_prepared(
        spark, spec, slots, len(prepared.train.y), len(prepared.encoding.feature_names))
    if prepared.frames is None:
        folds = make_folds(prepared.train, prepared.given, spec.validation, spec.task,
                           prepared.window.train, seed=spec.seed, classes=prepared.classes)
        staged = stage(spark, folds)
        n_rows, n_folds = len(prepared.train.y), folds.n_folds
    else:   # data-parallel: the window stays on Spark; folds are a column of it
        folds, staged = None, data_parallel.stage(prepared, slots)
        n_rows, n_folds = sum(prepared.row_counts[m] for m in prepared.window.train), staged.n_folds
    progress(f"{spec.name}: window {prepared.window.train[0]} to {prepared.window.train[-1]} "
             f"({n_rows} rows, {len(prepared.encoding.feature_names)} features), "
             f"holdout {prepared.window.describe_holdout()}, validation {spec.validation.method} "
             f"({n_folds} fold(s)), {slots} task slots")
    progress(f"{spec.name}: training path {decision.path} ({decision.reason})")

    import mlflow

    client = tracking.client()
    experiment = tracking.experiment_id(client, spec, purpose)
    tags = tracking.run_tags(spec, "tuning", month, prepared.fingerprint, dag_run_id)
    # Nested when a caller's run is active (the monthly job's month run).
    with mlflow.start_run(run_id=resume, experiment_id=experiment, run_name=f"tune-{month or 'all'}",
                          tags=tags, nested=mlflow.active_run() is not None) as run:
        if resume:
            tracking.clear_attempt(client, experiment, resume)
        try:
            ctx = TuningRun(spark=spark, spec=spec, month=month, chosen=tuple(chosen), prepared=prepared,
                            staged=staged, slots=slots, client=client, experiment=experiment,
                            run_id=run.info.run_id, tags=tags, progress=progress, warm_start=warm_start or {},
                            deadline=deadline, decision=decision, n_rows=n_rows, n_folds=n_folds,
                            purpose=purpose, threads=int(os.environ.get("AUTOML_THREADS_PER_TASK", "1")))
            return _run(ctx).to_json()
        except BaseException as exc:
            client.set_tag(run.info.run_id, "automl.error", f"{type(exc).__name__}: {exc}"[:tracking.MAX_TAG])
            raise
        finally:
            staged.release()


@dataclass(frozen=True)
class TuningRun:
    """The fixed facts of one tuning, once its parent run exists: what `_run` and each
    algorithm's finishing (`_finish_algorithm`) work from."""
    spark: object
    spec: ModelSpec
    month: str | None
    chosen: tuple[str, ...]             # the algorithms, in order
    prepared: Prepared
    staged: object                      # what the trials fit on (staged folds, or the Spark window)
    slots: int
    client: object                      # MlflowClient
    experiment: str
    run_id: str                         # the tuning's parent run
    tags: dict[str, str]
    progress: Callable[[str], None]
    warm_start: dict[str, list[dict]]
    deadline: float | Deadline | None
    decision: training_path.Decision
    n_rows: int
    n_folds: int
    purpose: str
    threads: int                        # threads per Spark task (AUTOML_THREADS_PER_TASK)

    @property
    def model_root(self) -> Path:
        return config.home() / "models" / self.spec.name / self.run_id


def _run(ctx: TuningRun) -> TuningResult:
    import mlflow

    spec, prepared, chosen, progress, deadline = ctx.spec, ctx.prepared, list(ctx.chosen), ctx.progress, ctx.deadline
    mlflow.log_params({
        "task": spec.task, "metric": spec.metric, "validation": spec.validation.method,
        "folds": ctx.n_folds, "train_months": ",".join(prepared.window.train),
        "holdout_month": prepared.window.holdout or "none", "train_rows": ctx.n_rows,
        "features": len(prepared.encoding.feature_names), "algorithms": ",".join(chosen),
        **ctx.decision.params(),
    })
    mlflow.set_tags({"automl.training_reason": ctx.decision.reason[:tracking.MAX_TAG],
                     "automl.spark": describe(ctx.spark)})
    mlflow.log_text(yaml.safe_dump(spec.model_dump(mode="json"), sort_keys=False), "spec.yaml")
    mlflow.log_dict(prepared.row_counts, "row_counts.json")
    tracking.log_window_inputs(spec, prepared.window, prepared.fingerprint)
    for algorithm in chosen:
        algo = spec.algorithms[algorithm]
        dims = spaces.parse_space(algorithm, algo.space)
        mlflow.log_dict({"search": algo.search, "space": spaces.describe(dims), "fixed": algo.fixed,
                         "trials": algo.trials, "time_budget_s": algo.time_budget_s},
                        f"search_space/{algorithm}.json")

    all_trials: list[TrialResult] = []
    baseline_seconds = 0.0
    leaderboard: list[LeaderboardEntry] = []
    logger = tracking.TrialLogger(ctx.client, ctx.experiment, ctx.run_id, ctx.tags, spec.metric)
    finishing: list[float] = []      # seconds each algorithm spent after its search (deadline planning)
    driver_wave: list[float] = []    # seconds one trial (a wave) plus finishing took, driver-fitted algorithms
    try:
        for index, algorithm in enumerate(chosen):
            fit = FitContext(ctx.staged, algorithm, spec.task, spec.metric,
                             tuple(prepared.encoding.categorical_idx), ctx.threads, spec.seed)
            algo = spec.algorithms[algorithm]
            ends = deadline(leaderboard) if callable(deadline) else deadline
            skipped = _past_deadline(algorithm, ends, driver_wave) if leaderboard else None
            if skipped:
                progress(f"{algorithm}: skipped: {skipped}")
                leaderboard.append(LeaderboardEntry(algorithm, status="skipped", reason=skipped, trials=0, failed=0))
                continue
            if ends is not None:
                budget = share_of(ends - time.monotonic(), chosen[index:], finishing, driver_wave)
                algo = algo.model_copy(update={"time_budget_s": budget})
                progress(f"{algorithm}: {budget:.1f}s of search time (deadline in "
                         f"{ends - time.monotonic():.0f}s, {len(chosen) - index} algorithm(s) left)")
            searched = time.monotonic()
            # The default-params baseline is queued with the first wave, so it fills idle slots.
            trials, baseline = run_search(ctx.spark, fit, algo, ctx.n_folds, ctx.slots, SearchHooks(progress, logger.submit),
                                          ctx.warm_start.get(algorithm), baseline=True)
            all_trials += trials
            started = time.monotonic()
            mlflow.log_dict([t.params for t in trials], f"parameter_grid/{algorithm}.json")
            entry = _finish_algorithm(ctx, algorithm, trials, baseline)
            baseline_seconds += baseline.seconds
            entry = _with_baseline(entry, baseline, spec.metric, progress)
            finishing.append(time.monotonic() - started)
            if algorithms.get(algorithm).fits_on_driver and trials:
                driver_wave.append((started - searched) / len(trials) + finishing[-1])
            leaderboard.append(dataclasses.replace(
                entry, wall_seconds=round(time.monotonic() - searched, 3),
                fit_seconds=round(sum(t.seconds for t in trials) + (entry.refit_seconds or 0.0) + baseline.seconds, 3)))
    finally:
        logger.close()

    _log_trials_table(all_trials, spec.metric)
    failed = sum(t.status == "FAILED" for t in all_trials)
    mlflow.log_metrics({"trials_total": len(all_trials), "trials_failed": failed})
    ranked = [e for e in leaderboard if e.ok]
    if not ranked:
        first = next((t.error for t in all_trials if t.error), "no trial ran")
        raise TuningError(f"all {len(all_trials)} trials failed; first error: {first.splitlines()[0]}")
    best = ranked[0]
    for entry in ranked[1:]:
        if is_better(spec.metric, entry.cv_value, best.cv_value):
            best = entry
    pipeline_dir = ctx.model_root / "preprocessing"
    scoring.save_pipeline(prepared.pipeline, pipeline_dir)
    mlflow.log_artifacts(str(pipeline_dir), "preprocessing")
    mlflow.log_dict([e.to_json() for e in leaderboard], "leaderboard.json")
    mlflow.set_tags({"automl.best_algorithm": best.algorithm, "automl.status": "ok"})
    mlflow.log_metric(f"best_{spec.metric}", best.cv_value)
    progress(format_leaderboard(leaderboard, spec.metric))
    return TuningResult(
        run_id=ctx.run_id,
        month=ctx.month,
        window=list(prepared.window.train),
        best={"algorithm": best.algorithm, "params": best.params, "metric": spec.metric,
              "value": best.cv_value, "holdout_value": best.holdout_value},
        leaderboard=leaderboard,
        trials={"total": len(all_trials), "failed": failed},
        # Time inside model fits, summed over Spark tasks (trials, baselines) and on the driver (refits).
        fit_seconds={"trials": round(sum(t.seconds for t in all_trials), 3),
                     "baselines": round(baseline_seconds, 3),
                     "refits": round(sum(e.refit_seconds or 0.0 for e in leaderboard), 3)},
        model_dir=best.model_dir,
        tracking_uri=config.tracking_uri(),
        experiment=f"{spec.name}/{ctx.purpose}",
        training_path=ctx.decision.path,
    )


FIRST_FINISH_GUESS_S = 3.0   # refit + default-params fit + export, before one has been measured
DRIVER_FIRST_GUESS_S = 30.0  # a Spark ML trial (3 folds on the driver) and its refit, before one has been measured


def _past_deadline(algorithm: str, deadline: float | None, driver_wave: list[float]) -> str | None:
    """Why `algorithm` cannot start before the deadline, or None.

    A driver-fitted (Spark ML) algorithm's single trial plus refit takes about what the
    quickest such algorithm took so far; one that would end past the deadline is skipped
    rather than overrun it. (The first algorithm always runs: a tuning returns a model.)
    """
    if deadline is None:
        return None
    left = deadline - time.monotonic()
    if left <= 0:
        return f"the deadline passed {-left:.0f}s ago"
    if algorithms.get(algorithm).fits_on_driver and driver_wave and left < min(driver_wave):
        return (f"{left:.0f}s left before the deadline; one trial of a Spark ML algorithm and its refit "
                f"took {min(driver_wave):.0f}s")
    return None


def minimum_of(algorithm: str, finishing: list[float], driver_wave: list[float]) -> float:
    """Seconds an algorithm needs at the least: a Spark ML one, one trial and its refit (as the
    quickest such algorithm so far took, else a first guess); a booster, its finishing."""
    if algorithms.get(algorithm).fits_on_driver:
        return min(driver_wave) if driver_wave else DRIVER_FIRST_GUESS_S
    return max(finishing) if finishing else FIRST_FINISH_GUESS_S


def share_of(left_s: float, remaining: list[str], finishing: list[float], driver_wave: list[float]) -> float:
    """Search seconds for `remaining[0]`: an equal share of the time left once every remaining
    algorithm's minimum (`minimum_of`) is kept back, so the boosters searched first leave the
    Spark ML algorithms after them time for their slow first trial.

    Time an algorithm leaves unused rolls over to the ones after it. Never below a tenth of
    a second: an algorithm that starts runs at least one wave of trials.
    """
    free = left_s - sum(minimum_of(a, finishing, driver_wave) for a in remaining)
    return max(0.1, free / len(remaining))


def _finish_algorithm(ctx: TuningRun, algorithm: str, trials: list[TrialResult],
                      baseline: TrialResult) -> LeaderboardEntry:
    """Refit the best config on the whole window, score the holdout, export and log the model.

    The library's default params (`baseline`, scored on the same folds) are a candidate too: a
    tuned config must beat them strictly to replace them, so tuning never makes a model worse
    in CV than doing nothing (`defaults_kept` says when it could not).
    """
    import mlflow

    prepared, staged, threads, progress = ctx.prepared, ctx.staged, ctx.threads, ctx.progress
    spec = prepared.spec
    done = [t for t in trials if t.status == "FINISHED"]
    if not done:
        progress(f"{algorithm}: every trial failed")
        return LeaderboardEntry(algorithm, status="failed", trials=len(trials), failed=len(trials))
    best = done[0]
    for trial in done[1:]:
        if is_better(spec.metric, trial.value, best.value):
            best = trial
    defaults_kept = baseline.status == "FINISHED" and not is_better(spec.metric, best.value, baseline.value)
    if defaults_kept:
        progress(f"{algorithm}: no tuned config beat the default params on the same folds (best tuned "
                 f"{spec.metric}={best.value:.4f}, defaults {baseline.value:.4f}): keeping the defaults")
        best = baseline
    started = time.perf_counter()
    model, holdout_value, example = _refit(algorithm, best.params, prepared, staged, threads)
    refit_seconds = time.perf_counter() - started
    if holdout_value is not None:
        mlflow.log_metric(f"holdout_{spec.metric}_{algorithm}", holdout_value)
    mlflow.log_metric(f"cv_{spec.metric}_{algorithm}", best.value)
    native_dir = export.export_native(model, algorithm, prepared, best.params, ctx.model_root / algorithm,
                                      run_id=ctx.run_id)
    mlflow.log_artifacts(str(native_dir), f"native/{algorithm}")
    logged = export.log_flavor_model(model, algorithm, prepared, example)
    return LeaderboardEntry(algorithm, status="ok", trials=len(trials), failed=len(trials) - len(done),
                            cv_value=best.value, holdout_value=holdout_value, params=best.params,
                            best_trial=best.number, defaults_kept=defaults_kept, model_dir=str(native_dir),
                            model_uri=logged.model_uri, refit_seconds=round(refit_seconds, 3))


def _refit(algorithm, params, prepared: Prepared, staged, threads: int):
    """The config on the whole window, the holdout scored, by the staged window's own refit
    (`fitting.Window.refit`: on the driver, or data-parallel on Spark):
    (model, holdout value or None, input example)."""
    from automl_tasks import fitting

    spec = prepared.spec
    learner = fitting.Learner(algorithm, spec.task, tuple(prepared.encoding.categorical_idx), threads, spec.seed)
    refit = staged.refit(learner, params, prepared, spec.metric)
    return refit.model, refit.holdout_value, refit.example


def _with_baseline(entry: LeaderboardEntry, baseline: TrialResult, metric: str, progress) -> LeaderboardEntry:
    """Log the default-params CV metric and the tuned model's lift over it."""
    import mlflow

    algorithm = entry.algorithm
    if baseline.status == "FAILED":
        progress(f"{algorithm}: default params failed: {baseline.error.splitlines()[0][:160]}")
        mlflow.set_tag(f"automl.baseline_error.{algorithm}", baseline.error[:tracking.MAX_TAG])
        return dataclasses.replace(entry, baseline_value=None, lift=None)
    mlflow.log_metric(f"baseline_{metric}_{algorithm}", baseline.value)
    gained = None
    if entry.cv_value is not None:
        gained = lift(metric, entry.cv_value, baseline.value)
        mlflow.log_metric(f"lift_{metric}_{algorithm}", gained)
        progress(f"{algorithm}: default params {metric}={baseline.value:.4f}, tuned "
                 f"{entry.cv_value:.4f} (lift {gained:+.4f})")
    return dataclasses.replace(entry, baseline_value=baseline.value, lift=gained)


def _log_trials_table(trials: list[TrialResult], metric: str) -> None:
    import mlflow
    import pandas as pd

    if not trials:
        return
    table = pd.DataFrame([{
        "algorithm": t.algorithm, "trial": t.number, "status": t.status,
        metric: None if t.status == "FAILED" else t.value, "seconds": round(t.seconds, 3),
        "params": json.dumps(t.params, sort_keys=True), "error": (t.error or "").splitlines()[0] if t.error else "",
    } for t in trials])
    mlflow.log_table(table, artifact_file="trials.json")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "trials.csv"
        table.to_csv(path, index=False)
        mlflow.log_artifact(str(path))


def format_leaderboard(leaderboard: list[LeaderboardEntry], metric: str) -> str:
    def number(value, signed=False):
        return formatting.number(value, signed, digits=5)

    lines = [f"{'algorithm':<10} {'cv ' + metric:>18} {'holdout':>10} {'defaults':>10} {'lift':>9} "
             f"{'trials':>7} {'failed':>7}"]
    for e in leaderboard:
        cv = e.status if e.cv_value is None else number(e.cv_value)
        lines.append(f"{e.algorithm:<10} {cv:>18} {number(e.holdout_value):>10} "
                     f"{number(e.baseline_value):>10} {number(e.lift, signed=True):>9} "
                     f"{e.trials:>7} {e.failed:>7}" + ("  defaults kept" if e.defaults_kept else ""))
    return "\n".join(lines)

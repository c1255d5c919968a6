"""Feature ablation: does a candidate feature earn its place? (add-one, or drop-one).

One study = one spec and month. The base model (the spec's features, or the champion's
top-K by gain) and base+candidate are fitted with the same algorithm and params (the
champion's if there is one, else the spec's first algorithm with its `fixed` params) on
identical repeated stratified k-folds of the training window, so every fold gives a
paired delta; the interval is the corrected resampled t-test (see ablation/stats.py).
Each arm is also refitted on the whole window and scored on the out-of-time holdout.
A candidate that alone scores near perfect is flagged as likely leakage, never adopted.

Order, as in tuning/job.py: every check and every fit runs before the first MLflow
call, so bad input (or a failed base model) leaves no run behind. All fits of a study
(arm x repeat x fold, holdout refits, leakage probes) go to Spark as one wave.

Modules: plan.py (model, tables, candidates and their checks), fits.py (the folds and the
wave, through automl_tasks.fitting; the importance model), results.py (deltas, verdicts,
text), record.py (MLflow: reuse and logging); this one runs them in order.
"""

from __future__ import annotations

import os
import time
from typing import Callable

import numpy as np

from automl_tasks import fitting
from automl_tasks.ablation import fits, record
from automl_tasks.ablation import plan as plan_
from automl_tasks.ablation.fits import Design
from automl_tasks.ablation.plan import request, table_from_path
from automl_tasks.ablation.record import PURPOSE
from automl_tasks.ablation.results import format_results, result_line, study_results
from automl_tasks.errors import SpecError
from automl_tasks.progress import report
from automl_tasks.spec import JoinSpec, ModelSpec, check_month

DIRECTIONS = ("add", "drop")
# The job's public entries (the CLI, the DAG and the monthly job import them from here).
__all__ = ["run_ablation", "request", "table_from_path", "format_results", "DIRECTIONS", "PURPOSE"]


# --- the public entry -------------------------------------------------------------------

def run_ablation(spec: ModelSpec, month: str | None = None, *, candidates: list[str] | None = None,
                 tables: list[JoinSpec | dict] | None = None, repeats: int | None = None,
                 folds: int | None = None, direction: str = "add", spark=None,
                 progress: Callable[[str], None] = report, dag_run_id: str | None = None) -> dict:
    """Run one study and log it to MLflow (`<name>/ablation`); returns the --json summary.

    candidates: columns to try (default `ablation.candidates`, else every column of the
    candidate tables); tables: extra tables to join for the study (default
    `ablation.tables`); direction "drop": remove one base feature at a time instead.

    The options stay keyword arguments rather than one options object: the CLI, the DAG and
    the monthly job pass the few they set by name, and each has its default here.
    """
    from automl_tasks.data.prepare import prepare
    from automl_tasks.spark import get_spark, task_slots
    from automl_tasks.tuning import training_path

    if month is not None:
        check_month(month)
    if direction not in DIRECTIONS:
        raise SpecError(f"direction must be one of {', '.join(DIRECTIONS)}, got {direction!r}")
    repeats = repeats or spec.ablation.repeats
    folds = folds or spec.ablation.folds
    if repeats < 2 or folds < 2:
        raise SpecError(f"repeats ({repeats}) and folds ({folds}) must each be at least 2")
    tables = [t if isinstance(t, JoinSpec) else plan_.join_spec(spec, t) for t in
              (spec.ablation.tables if tables is None else tables)]
    spark = spark or get_spark()
    started = time.perf_counter()

    algorithm, params, params_source, champion_features = plan_.model_config(spec, progress)
    plan = plan_.make_plan(spark, spec, month, candidates, tables, direction, champion_features, progress)
    design = Design(direction, repeats, folds)
    study_spec = plan_.study_spec(spec, plan, direction)
    progress(f"{spec.name}: preparing the window for month {month or 'all'} "
             f"({len(plan.base)} base features, {len(plan.candidates)} candidates)")
    prepared = prepare(spark, study_spec, month,
                       decide=training_path.per_trial_only(spark, "the ablation study", task_slots(spark)))
    names = prepared.encoding.feature_names
    staged = fits.stage_design(spark, prepared, spec, design)
    learner = fitting.Learner(algorithm, spec.task, tuple(prepared.encoding.categorical_idx),
                              int(os.environ.get("AUTOML_THREADS_PER_TASK", "1")), spec.seed)
    key = record.study_key(plan, design, algorithm, params)
    earlier = record.earlier_study(spec, month, prepared.fingerprint, key)
    if earlier is not None:
        progress(f"{spec.name}: the same study (data, spec, candidates, design) already ran as run "
                 f"{earlier['run_id']}; reusing it")
        return earlier
    arms = fits.arm_columns(names, plan, direction)
    tasks = fits.wave_fits(arms, spec, params, design, prepared.holdout is not None)
    slots = task_slots(spark)
    progress(f"{spec.name}: {len(tasks)} fits (base and {len(plan.candidates)} {direction}-one arms x "
             f"{repeats}x{folds} folds, holdout refits, leakage probes) as one wave of Spark tasks "
             f"on {slots} slots")
    wave_started = time.perf_counter()
    values = fits.run_wave(spark, staged, learner, tasks, slots)
    wave_seconds = time.perf_counter() - wave_started
    progress(f"{spec.name}: wave done in {wave_seconds:.1f}s "
             f"({sum(v['seconds'] for v in values.values()):.1f}s of fitting)")

    results, base = study_results(spec, plan, design, values)
    imp = fits.importance_table(prepared, algorithm, params, spec.seed,
                                exclude=[r["feature"] for r in results if r["leakage"] or r["delta"] is None])
    ranks = {row["feature"]: row["rank"] for row in imp}
    for r in results:
        r["importance_rank"] = ranks.get(r["feature"])
    results.sort(key=lambda r: -np.inf if r["delta"] is None else -r["delta"])
    for r in results:
        progress(result_line(r))

    summary = {
        "run_id": None, "reused": False, "experiment": f"{spec.name}/{PURPOSE}", "month": month,
        "direction": direction,
        "metric": spec.metric, "algorithm": algorithm, "params": params, "params_source": params_source,
        "design": {"repeats": repeats, "folds": folds, "pairs": repeats * folds,
                   "interval": "Nadeau-Bengio corrected resampled t-test, 95%",
                   "leakage_metric": fitting.LEAK_METRIC[spec.task],
                   "leakage_threshold": spec.ablation.leakage_threshold,
                   "min_effect": spec.ablation.min_effect},
        "window": list(prepared.window.train), "holdout_month": prepared.window.holdout,
        "train_rows": int(len(prepared.train.y)),
        "tables": plan.table_report,
        "base": base, "results": results, "importance": imp,
        "seconds": {"wave": round(wave_seconds, 2),
                    "fits": round(sum(v["seconds"] for v in values.values()), 2)},
    }
    summary["run_id"] = record.log_study(spec, month, prepared.fingerprint, dag_run_id, key, summary, progress)
    summary["seconds"]["total"] = round(time.perf_counter() - started, 2)
    return summary

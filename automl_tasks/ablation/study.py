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
"""

from __future__ import annotations

import functools
import json
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from automl_tasks.ablation.stats import Interval, corrected_t, verdict
from automl_tasks.errors import DataError, SpecError, TuningError
from automl_tasks.formatting import number
from automl_tasks.progress import report
from automl_tasks.spec import JoinSpec, ModelSpec, ValidationSpec, check_month

PURPOSE = "ablation"
DIRECTIONS = ("add", "drop")
# Scale-free scores for the leakage probe (the spec's metric may be rmse or logLoss).
LEAK_METRIC = {"binary": "areaUnderROC", "multiclass": "accuracy", "regression": "r2"}
HOLDOUT = -1            # task fold: fit on every window row, score the holdout month
HOLDOUT_ROW = -2        # fold id of the holdout rows (never train in any fold)
MAX_SHAP_ROWS = 5000


@dataclass(frozen=True)
class StudyContext:
    """What every fit of one study shares (small: travels with the wave)."""
    data: object                     # tuning.runner.stage(): the staged design
    algorithm: str
    task: str
    params: dict
    categorical: tuple[int, ...]     # columns of the staged X that are categorical
    threads_per_task: int
    seed: int


@dataclass(frozen=True)
class FitTask:
    columns: tuple[int, ...]
    metric: str
    repeat: int
    fold: int                        # HOLDOUT: the whole window, scored on the holdout month
    observed_only: bool = False      # fit and score only rows where the (single) column is not null


@dataclass
class Plan:
    """The study after its checks: what to fit, and candidates already settled by a check."""
    base: list[str]
    candidates: list[str]            # to fit
    settled: dict[str, str]          # candidate -> reason it is rejected without a fit
    tables: list[JoinSpec]
    table_report: list[dict] = field(default_factory=list)


# --- the public entry -------------------------------------------------------------------

def run_ablation(spec: ModelSpec, month: str | None = None, *, candidates: list[str] | None = None,
                 tables: list[JoinSpec | dict] | None = None, repeats: int | None = None,
                 folds: int | None = None, direction: str = "add", spark=None,
                 progress: Callable[[str], None] = report, dag_run_id: str | None = None) -> dict:
    """Run one study and log it to MLflow (`<name>/ablation`); returns the --json summary.

    candidates: columns to try (default `ablation.candidates`, else every column of the
    candidate tables); tables: extra tables to join for the study (default
    `ablation.tables`); direction "drop": remove one base feature at a time instead.
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
    tables = [t if isinstance(t, JoinSpec) else _join_spec(spec, t) for t in
              (spec.ablation.tables if tables is None else tables)]
    spark = spark or get_spark()
    started = time.perf_counter()

    algorithm, params, params_source, champion_features = _model_config(spec, progress)
    plan = _plan(spark, spec, month, candidates, tables, direction, champion_features, progress)
    study_spec = _study_spec(spec, plan, direction)
    progress(f"{spec.name}: preparing the window for month {month or 'all'} "
             f"({len(plan.base)} base features, {len(plan.candidates)} candidates)")
    prepared = prepare(spark, study_spec, month,
                       decide=training_path.per_trial_only(spark, "the ablation study", task_slots(spark)))
    names = prepared.encoding.feature_names
    staged, ratio = _stage_design(spark, prepared, spec, repeats, folds)
    ctx = StudyContext(staged, algorithm, spec.task, params, tuple(prepared.encoding.categorical_idx),
                       int(os.environ.get("AUTOML_THREADS_PER_TASK", "1")), spec.seed)
    key = study_key(plan, direction, repeats, folds, algorithm, params, spec)
    earlier = _earlier_study(spec, month, prepared.fingerprint, key)
    if earlier is not None:
        progress(f"{spec.name}: the same study (data, spec, candidates, design) already ran as run "
                 f"{earlier['run_id']}; reusing it")
        return earlier
    arms = _arms(names, plan, direction)
    tasks = _tasks(arms, spec, repeats, folds, prepared.holdout is not None)
    slots = task_slots(spark)
    progress(f"{spec.name}: {len(tasks)} fits (base and {len(plan.candidates)} {direction}-one arms x "
             f"{repeats}x{folds} folds, holdout refits, leakage probes) as one wave of Spark tasks "
             f"on {slots} slots")
    wave_started = time.perf_counter()
    values = run_fits(spark, ctx, tasks, slots)
    wave_seconds = time.perf_counter() - wave_started
    progress(f"{spec.name}: wave done in {wave_seconds:.1f}s "
             f"({sum(v['seconds'] for v in values.values()):.1f}s of fitting)")

    results, base = _results(spec, plan, arms, tasks, values, repeats, folds, ratio, direction)
    imp = importance_table(prepared, algorithm, params, spec.seed,
                           exclude=[r["feature"] for r in results if r["leakage"] or r["delta"] is None])
    ranks = {row["feature"]: row["rank"] for row in imp}
    for r in results:
        r["importance_rank"] = ranks.get(r["feature"])
    results.sort(key=lambda r: -np.inf if r["delta"] is None else -r["delta"])
    for r in results:
        progress(_result_line(r))

    summary = {
        "run_id": None, "reused": False, "experiment": f"{spec.name}/{PURPOSE}", "month": month,
        "direction": direction,
        "metric": spec.metric, "algorithm": algorithm, "params": params, "params_source": params_source,
        "design": {"repeats": repeats, "folds": folds, "pairs": repeats * folds,
                   "interval": "Nadeau-Bengio corrected resampled t-test, 95%",
                   "leakage_metric": LEAK_METRIC[spec.task],
                   "leakage_threshold": spec.ablation.leakage_threshold,
                   "min_effect": spec.ablation.min_effect},
        "window": list(prepared.window.train), "holdout_month": prepared.window.holdout,
        "train_rows": int(len(prepared.train.y)),
        "tables": plan.table_report,
        "base": base, "results": results, "importance": imp,
        "seconds": {"wave": round(wave_seconds, 2),
                    "fits": round(sum(v["seconds"] for v in values.values()), 2)},
    }
    summary["run_id"] = _log_study(spec, month, prepared.fingerprint, dag_run_id, key, summary, progress)
    summary["seconds"]["total"] = round(time.perf_counter() - started, 2)
    return summary


def _join_spec(spec: ModelSpec, raw: dict) -> JoinSpec:
    """A candidate table given as a dict; as_of compares with the data's timestamp by default."""
    join = JoinSpec.model_validate(raw)
    if join.as_of and not join.timestamp:
        if not spec.data.timestamp:
            raise SpecError(f"table {join.source}: as_of needs data.timestamp in the spec")
        join.timestamp = spec.data.timestamp
    return join


def table_from_path(spark, spec: ModelSpec, source: str, on: str, as_of: str | None = None) -> JoinSpec:
    """A --table/--on pair: point-in-time when `as_of` is given or the table has an `as_of` column."""
    from automl_tasks.data.sources import read_source

    keys = [k.strip() for k in on.split(",") if k.strip()]
    if not keys:
        raise SpecError(f"table {source}: --on names no key column")
    if ":" not in source:             # a local path: one spelling per file, so a re-run is recognised
        source = str(Path(source).resolve())
    if as_of is None and "as_of" in read_source(spark, source).columns and spec.data.timestamp:
        as_of = "as_of"
    return _join_spec(spec, {"source": source, "on": keys[0] if len(keys) == 1 else keys, "as_of": as_of})


def request(spark, spec: ModelSpec, *, candidates: str | None, table: str | None, on: str | None,
            as_of: str | None = None) -> tuple[list[str] | None, list[JoinSpec] | None]:
    """A study as a person asks for it (CLI flags, DAG form): comma lists and one optional table."""
    if bool(table) != bool(on):
        raise SpecError("table and on go together: the candidate table and its join key(s)")
    names = [c.strip() for c in (candidates or "").split(",") if c.strip()] or None
    return names, [table_from_path(spark, spec, table, on, as_of)] if table else None


# --- model: the champion's, else the spec's ---------------------------------------------

def _model_config(spec: ModelSpec, progress) -> tuple[str, dict, str, list[str] | None]:
    """(algorithm, params, where they came from, champion's features by gain or None)."""
    from automl_tasks.models import adapters
    from automl_tasks.registry import promotion

    version = promotion.current_champion(spec.name)
    if version is not None:
        from automl_tasks.registry.champion import load_champion

        version, champion = load_champion(spec.name)
        algorithm, names = champion.meta["algorithm"], champion.meta["feature_names"]
        gains = adapters.importance(champion.model, algorithm, names)
        by_gain = sorted(names, key=lambda f: -gains[f])
        progress(f"{spec.name}: using champion v{version}'s {algorithm} params")
        return algorithm, dict(champion.params), f"champion v{version}", by_gain
    algorithm = next(iter(spec.algorithms))
    params = dict(spec.algorithms[algorithm].fixed)
    progress(f"{spec.name}: no champion; using {algorithm} with the spec's fixed params {params or '(defaults)'}")
    return algorithm, params, "spec", None


# --- plan: candidates, tables, checks ---------------------------------------------------

def _plan(spark, spec: ModelSpec, month, candidates, tables, direction, champion_features, progress) -> Plan:
    """Resolve base and candidates on the joined data; settle the ones a check rejects."""
    from automl_tasks.data.prepare import load_frame, resolve_columns
    from automl_tasks.data.sources import MONTH_COL, join_tables, read_source

    data = spec.data
    frame = load_frame(spark, spec)
    own_columns = dict(frame.dtypes)
    report: list[dict] = []
    frame = join_tables(spark, frame, tables, report)
    for entry in report:
        how = (f"point-in-time on {entry['as_of']} <= {data.timestamp}: never a value from after the row's time"
               if entry["point_in_time"] else "plain left join")
        progress(f"{spec.name}: table {entry['source']} joined on {', '.join(entry['keys'])} ({how}); "
                 f"match rate {entry['match_rate']:.1%} ({entry['matched']}/{entry['rows']} rows)")
    dtypes = dict(frame.dtypes)

    reserved = {data.label, data.timestamp, data.month_column, data.id, MONTH_COL} - {None}
    table_columns = []
    for join in tables:
        keys = [join.on] if isinstance(join.on, str) else list(join.on)
        table_columns += [c for c in read_source(spark, join.source).columns
                          if c not in keys and c != join.as_of and c not in table_columns]
    if candidates is None:
        candidates = list(spec.ablation.candidates) or (table_columns if direction == "add" else None)
    if direction == "add" and not candidates:
        raise SpecError("no candidate features: pass candidates (--candidates), a candidate table "
                        "(--table/--on), or list ablation.candidates / ablation.tables in the spec")
    if candidates is not None and len(set(candidates)) != len(candidates):
        raise SpecError(f"candidates list a feature twice: {', '.join(candidates)}")

    if spec.features is None and direction == "add":   # all columns but the candidates
        base, _ = resolve_columns(spec, {c: t for c, t in own_columns.items() if c not in set(candidates)})
    else:
        base, _ = resolve_columns(spec, own_columns)
    if champion_features is not None and spec.ablation.top_k:
        base = [f for f in champion_features if f in dtypes][:spec.ablation.top_k]
        progress(f"{spec.name}: base = the champion's top {len(base)} features by gain: {', '.join(base)}")

    if direction == "drop":
        candidates = list(base) if candidates is None else candidates
        unknown = [c for c in candidates if c not in base]
        if unknown:
            raise SpecError(f"drop candidate {unknown[0]!r} is not a base feature ({', '.join(base)})")
        if len(base) < 2:
            raise SpecError("drop-one needs at least two base features")
        return Plan(base, list(candidates), {}, tables, report)

    for c in candidates:
        if c in reserved:
            raise SpecError(f"candidate {c!r} is the label, time or id column")
        if c in base:
            raise SpecError(f"candidate {c!r} is already a base feature")
        if c not in dtypes:
            where = f" or the candidate tables ({', '.join(t.source for t in tables)})" if tables else ""
            raise DataError(f"candidate {c!r} is not a column of the data{where}; "
                            f"columns: {', '.join(c2 for c2 in dtypes if c2 != MONTH_COL)}")
    settled = _check_candidates(frame, spec, month, base, candidates, dtypes)
    for c, reason in settled.items():
        progress(f"{spec.name}: candidate {c!r} rejected without a fit: {reason}")
    return Plan(base, [c for c in candidates if c not in settled], settled, tables, report)


def _check_candidates(frame, spec: ModelSpec, month, base, candidates, dtypes) -> dict[str, str]:
    """All-null, constant, or identical to a base feature, over the training window's rows."""
    from pyspark.sql import functions as F

    from automl_tasks.data.sources import MONTH_COL
    from automl_tasks.data.windows import select_window

    counts = {r[0]: r[1] for r in frame.groupBy(MONTH_COL).count().collect()}
    window = select_window(counts, month, spec.window.train_months,
                           holdout_count=spec.window.holdout_months)
    rows = frame.where(F.col(MONTH_COL).isin(list(window.train)))
    aggs = []
    for i, c in enumerate(candidates):
        aggs += [F.count(F.col(c)).alias(f"n{i}"), F.countDistinct(F.col(c)).alias(f"d{i}")]
        for j, b in enumerate(base):
            if dtypes[b] == dtypes[c] or {dtypes[b], dtypes[c]} <= {"double", "float", "int", "bigint"}:
                same = F.col(c).cast("double").eqNullSafe(F.col(b).cast("double")) \
                    if dtypes[c] != "string" else F.col(c).eqNullSafe(F.col(b))
                aggs.append(F.sum((~same).cast("long")).alias(f"x{i}_{j}"))
    row = rows.agg(*aggs).first().asDict()
    months = f"{window.train[0]} to {window.train[-1]}"
    settled = {}
    for i, c in enumerate(candidates):
        if row[f"n{i}"] == 0:
            settled[c] = f"null in every row of the training window ({months})"
        elif row[f"d{i}"] <= 1:
            settled[c] = f"constant over the training window ({months})"
        else:
            twin = next((b for j, b in enumerate(base) if row.get(f"x{i}_{j}") == 0), None)
            if twin is not None:
                settled[c] = f"identical to base feature {twin!r} in every row of the window"
    return settled


def _study_spec(spec: ModelSpec, plan: Plan, direction: str) -> ModelSpec:
    """The spec the study prepares: base + candidates as features, candidate tables joined."""
    features = list(plan.base) + ([c for c in plan.candidates] if direction == "add" else [])
    categorical = spec.categorical
    if categorical is not None:
        categorical = [c for c in categorical if c in features]
    data = spec.data.model_copy(update={"join": [*spec.data.join, *plan.tables]})
    # impute none: both libraries route missing values natively, and the leakage probe can
    # score a candidate on the rows where it is observed (a table matching 95% of rows would
    # otherwise cap a perfectly leaky column's single-feature AUC near 0.95).
    study = spec.model_copy(update={"features": features, "categorical": categorical, "data": data,
                                    "impute": "none"})
    study.origin = spec.origin
    return study


# --- design: repeated folds, arms, tasks -------------------------------------------------

def _stage_design(spark, prepared, spec: ModelSpec, repeats: int, folds: int) -> tuple[object, float]:
    """Stage X (window rows, then holdout rows) with one fold-id row per repeat; returns
    (staged data, n_test/n_train) for the variance correction."""
    from automl_tasks.tuning.runner import stage
    from automl_tasks.tuning.validation import Folds, make_folds

    cv = ValidationSpec(method="cv", folds=folds)
    ids = [make_folds(prepared.train, None, cv, spec.task, prepared.window.train, seed=spec.seed + r,
                      classes=prepared.classes).fold_ids for r in range(repeats)]
    X, y = prepared.train.X, prepared.train.y
    if prepared.holdout is not None and len(prepared.holdout.y):
        X, y = np.vstack([X, prepared.holdout.X]), np.concatenate([y, prepared.holdout.y])
        ids = [np.concatenate([f, np.full(len(prepared.holdout.y), HOLDOUT_ROW)]) for f in ids]
    # runner.stage ships X, y, fold_ids; here fold_ids is (repeats, rows).
    staged = stage(spark, Folds(X, y, np.vstack(ids), folds, np.ones(len(y), dtype=bool), "repeated-cv"))
    return staged, 1.0 / (folds - 1)


def _arms(names: list[str], plan: Plan, direction: str) -> dict[str, tuple[int, ...]]:
    """Column sets by arm name: 'base', '+f' (add) or '-f' (drop), and 'alone:f' probes."""
    index = {n: i for i, n in enumerate(names)}
    base = tuple(index[f] for f in plan.base)
    arms = {"base": base}
    for c in plan.candidates:
        if direction == "add":
            arms[f"+{c}"] = base + (index[c],)
        else:
            arms[f"-{c}"] = tuple(i for i in base if i != index[c])
        arms[f"alone:{c}"] = (index[c],)
    return arms


def _tasks(arms, spec: ModelSpec, repeats, folds, has_holdout) -> dict[tuple[str, int, int], FitTask]:
    tasks = {}
    for arm, columns in arms.items():
        if arm.startswith("alone:"):   # leakage probe: one repeat is enough to see near-perfect
            for f in range(folds):
                tasks[(arm, 0, f)] = FitTask(columns, LEAK_METRIC[spec.task], 0, f, observed_only=True)
            continue
        for r in range(repeats):
            for f in range(folds):
                tasks[(arm, r, f)] = FitTask(columns, spec.metric, r, f)
        if has_holdout:
            tasks[(arm, 0, HOLDOUT)] = FitTask(columns, spec.metric, 0, HOLDOUT)
    return tasks


# --- the Spark wave -----------------------------------------------------------------------

def fit_task(ctx: StudyContext, task: FitTask) -> tuple[float, float, int, int]:
    """Fit the task's columns on its training rows and score its validation rows:
    (value, seconds, n_fit, n_valid), as tuning.runner.run_tasks expects."""
    from automl_tasks.evaluation.metrics import compute_metric
    from automl_tasks.models import adapters
    from automl_tasks.tuning.runner import load_staged

    data = load_staged(ctx.data)
    ids = data["fold_ids"][task.repeat]
    if task.fold == HOLDOUT:
        fit_rows, valid_rows = ids >= 0, ids == HOLDOUT_ROW
    else:
        fit_rows, valid_rows = (ids >= 0) & (ids != task.fold), ids == task.fold
    columns = list(task.columns)
    X = data["X"][:, columns]
    if task.observed_only:   # leakage probe: only rows where the single feature is known
        observed = ~np.isnan(X[:, 0])
        fit_rows, valid_rows = fit_rows & observed, valid_rows & observed
    categorical = [j for j, c in enumerate(columns) if c in ctx.categorical]
    start = time.perf_counter()
    model = adapters.fit(ctx.algorithm, ctx.task, ctx.params, X[fit_rows], data["y"][fit_rows],
                         categorical, n_threads=ctx.threads_per_task, seed=ctx.seed)
    value = compute_metric(task.metric, ctx.task, data["y"][valid_rows],
                           adapters.predict(model, ctx.task, X[valid_rows]))
    return float(value), time.perf_counter() - start, int(fit_rows.sum()), int(valid_rows.sum())


def run_fits(spark, ctx: StudyContext, tasks: dict, slots: int) -> dict:
    """Every fit as a Spark task in one job; returns {task key: {value, seconds, error}}.

    A few tasks per partition (4 partitions per slot) keeps Spark's per-task overhead
    small while a slow partition still cannot hold the wave for long.
    """
    from automl_tasks.tuning.runner import run_tasks

    keys = list(tasks)
    ordered = [tasks[k] for k in keys]
    rows = run_tasks(spark, functools.partial(fit_task, ctx), ordered, min(len(keys), 4 * slots))
    out = {}
    for row in rows:
        value = row["value"]
        out[keys[row["task"]]] = {"value": None if value is None or value != value else value,
                                  "seconds": row["seconds"], "error": row["error"]}
    return out


# --- results -----------------------------------------------------------------------------

def _results(spec, plan: Plan, arms, tasks, values, repeats, folds, ratio, direction):
    from automl_tasks.evaluation.metrics import orientation

    sign = orientation(spec.metric)

    def series(arm):
        return np.array([values[(arm, r, f)]["value"] if values[(arm, r, f)]["value"] is not None
                         else np.nan for r in range(repeats) for f in range(folds)], dtype=float)

    def errors(arm):
        return [v["error"] for (a, _, _), v in values.items() if a == arm and v["error"]]

    base_errors = errors("base")
    if base_errors:
        raise TuningError(f"the base model failed in {len(base_errors)} fit(s); first error: "
                          f"{base_errors[0].splitlines()[0]}")
    base_cv = series("base")
    base_holdout = values.get(("base", 0, HOLDOUT), {}).get("value")
    base = {"features": list(plan.base), "value": float(np.mean(base_cv)), "holdout_value": base_holdout}

    results = []
    for c in plan.candidates:
        arm = f"+{c}" if direction == "add" else f"-{c}"
        alone = [values[(f"alone:{c}", 0, f)]["value"] for f in range(folds)]
        alone_value = float(np.mean(alone)) if all(v is not None for v in alone) else None
        row = {"feature": c, "delta": None, "ci_low": None, "ci_high": None, "p_value": None,
               "holdout_delta": None, "arm_value": None, "alone_value": alone_value,
               "leakage": bool(alone_value is not None and alone_value >= spec.ablation.leakage_threshold),
               "fold_deltas": []}
        failed = errors(arm)
        arm_cv = series(arm)
        # add: (base+f) - base; drop: base - (base-f). Positive = the feature helps.
        deltas = sign * (arm_cv - base_cv) if direction == "add" else sign * (base_cv - arm_cv)
        if np.isfinite(deltas).sum() >= 2:
            interval: Interval = corrected_t(deltas, ratio)
            row.update(delta=interval.delta, ci_low=interval.ci_low, ci_high=interval.ci_high,
                       p_value=interval.p_value, arm_value=float(np.nanmean(arm_cv)),
                       fold_deltas=[None if not np.isfinite(d) else float(d) for d in deltas])
            arm_holdout = values.get((arm, 0, HOLDOUT), {}).get("value")
            if arm_holdout is not None and base_holdout is not None:
                diff = arm_holdout - base_holdout
                row["holdout_delta"] = float(sign * (diff if direction == "add" else -diff))
        if row["leakage"]:
            row["verdict"] = "reject"
            row["reason"] = (f"likely leakage: alone it scores {LEAK_METRIC[spec.task]} {alone_value:.4f} "
                             f">= {spec.ablation.leakage_threshold:g}")
        elif failed:
            row["verdict"] = "inconclusive"
            row["reason"] = f"{len(failed)} fit(s) failed; first error: {failed[0].splitlines()[0][:300]}"
        elif row["delta"] is None:
            row["verdict"], row["reason"] = "inconclusive", "too few finite fold scores for an interval"
        else:
            row["verdict"], row["reason"] = verdict(interval, spec.ablation.min_effect)
        results.append(row)
    for c, reason in plan.settled.items():
        results.append({"feature": c, "delta": None, "ci_low": None, "ci_high": None, "p_value": None,
                        "holdout_delta": None, "arm_value": None, "alone_value": None, "leakage": False,
                        "fold_deltas": [], "verdict": "reject", "reason": reason})
    return results, base


def _result_line(r: dict) -> str:
    if r["delta"] is None:
        return f"  {r['feature']:<24} {r['verdict']:<12} {r['reason']}"
    return (f"  {r['feature']:<24} {r['verdict']:<12} delta {number(r['delta'], True)} "
            f"[{number(r['ci_low'], True)}, {number(r['ci_high'], True)}] p={r['p_value']:.3g} "
            f"holdout {number(r['holdout_delta'], True)}"
            + (f"  ({r['reason']})" if r["leakage"] else ""))


# --- importance: gain and native TreeSHAP --------------------------------------------------

def shap_values(model, algorithm: str, X: np.ndarray) -> np.ndarray:
    """Mean |SHAP| per feature from the library's own TreeSHAP (classes summed)."""
    from automl_tasks.models import algorithms

    tree_shap = algorithms.get(algorithm).shap
    if tree_shap is None:
        raise SpecError(f"algorithm {algorithm!r} has no native TreeSHAP, which the ablation study's "
                        "importance table needs")
    contrib = tree_shap(model, X)
    p = X.shape[1]
    contrib = contrib.reshape(X.shape[0], -1, p + 1)[:, :, :p]   # (rows, classes, features); bias dropped
    return np.abs(contrib).sum(axis=1).mean(axis=0)


def importance_table(prepared, algorithm: str, params: dict, seed: int, exclude=()) -> list[dict]:
    """Gain and mean |SHAP| of one model on the base and every candidate (leaky ones left out)."""
    from automl_tasks.models import adapters

    enc = prepared.encoding
    keep = [i for i, f in enumerate(enc.feature_names) if f not in set(exclude)]
    names = [enc.feature_names[i] for i in keep]
    categorical = [j for j, i in enumerate(keep) if i in set(enc.categorical_idx)]
    X = prepared.train.X[:, keep]
    model = adapters.fit(algorithm, prepared.spec.task, params, X, prepared.train.y, categorical,
                         n_threads=os.cpu_count() or 1, seed=seed)
    explain = prepared.holdout.X[:, keep] if prepared.holdout is not None and len(prepared.holdout.y) else X
    if len(explain) > MAX_SHAP_ROWS:
        explain = explain[np.random.default_rng(seed).choice(len(explain), MAX_SHAP_ROWS, replace=False)]
    gain = adapters.importance(model, algorithm, names)
    shap = shap_values(model, algorithm, explain)
    rows = [{"feature": f, "gain": float(gain[f]), "shap": float(s)} for f, s in zip(names, shap)]
    rows.sort(key=lambda r: -r["shap"])
    for rank, row in enumerate(rows, 1):
        row["rank"] = rank
    return rows


# --- MLflow -------------------------------------------------------------------------------

def study_key(plan: Plan, direction, repeats, folds, algorithm, params, spec: ModelSpec) -> str:
    """What makes two studies the same beyond the data and spec: tagged, so a re-run reuses."""
    import hashlib

    payload = {"base": plan.base, "candidates": plan.candidates, "settled": plan.settled,
               "tables": [t.model_dump(mode="json") for t in plan.tables], "direction": direction,
               "repeats": repeats, "folds": folds, "algorithm": algorithm, "params": params}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _earlier_study(spec: ModelSpec, month, fingerprint, key: str) -> dict | None:
    """The summary of a finished study with the same tags (DAG retries, re-runs), or None."""
    import mlflow

    from automl_tasks.registry import tracking

    client = tracking.client()
    experiment = client.get_experiment_by_name(f"{spec.name}/{PURPOSE}")
    if experiment is None:
        return None
    tags = {**tracking.run_tags(spec, "ablation", month, fingerprint), "automl.study_key": key,
            "automl.status": "ok"}
    tags = {k: v for k, v in tags.items() if k not in tracking.AIRFLOW_TAGS}
    query = " and ".join(f"tags.`{k}` = '{v}'" for k, v in tags.items())
    runs = client.search_runs([experiment.experiment_id], f"{query} and attributes.status = 'FINISHED'",
                              order_by=["attributes.start_time DESC"], max_results=1)
    if not runs:
        return None
    run_id = runs[0].info.run_id
    summary = mlflow.artifacts.load_dict(f"runs:/{run_id}/study.json")
    return {**summary, "run_id": run_id, "reused": True}


def _log_study(spec: ModelSpec, month, fingerprint, dag_run_id, key: str, summary: dict, progress) -> str:
    """Parent run with the table, CSV, plots; one nested run per candidate. Returns the run id."""
    import mlflow
    import pandas as pd

    from automl_tasks.ablation import plots
    from automl_tasks.registry import tracking

    client = tracking.client()
    experiment = tracking.experiment_id(client, spec, PURPOSE)
    tags = {**tracking.run_tags(spec, "ablation", month, fingerprint, dag_run_id),
            "automl.direction": summary["direction"], "automl.study_key": key}
    metric = spec.metric
    with mlflow.start_run(experiment_id=experiment, run_name=f"ablation-{month or 'all'}", tags=tags,
                          nested=mlflow.active_run() is not None) as run:
        try:
            design = summary["design"]
            mlflow.log_params({
                "metric": metric, "direction": summary["direction"], "algorithm": summary["algorithm"],
                "params": json.dumps(summary["params"], sort_keys=True), "params_source": summary["params_source"],
                "repeats": design["repeats"], "folds": design["folds"], "interval": design["interval"],
                "min_effect": design["min_effect"], "leakage_threshold": design["leakage_threshold"],
                "base_features": ",".join(summary["base"]["features"])[:6000],
                "train_months": ",".join(summary["window"]), "holdout_month": summary["holdout_month"] or "none",
            })
            mlflow.log_metric(f"base_{metric}", summary["base"]["value"])
            if summary["base"]["holdout_value"] is not None:
                mlflow.log_metric(f"base_holdout_{metric}", summary["base"]["holdout_value"])
            mlflow.log_dict(summary["tables"], "tables.json")
            table = pd.DataFrame([{k: v for k, v in r.items() if k != "fold_deltas"}
                                  for r in summary["results"]])
            mlflow.log_table(table, artifact_file="results.json")
            importance = pd.DataFrame(summary["importance"])
            mlflow.log_table(importance, artifact_file="importance.json")
            with tempfile.TemporaryDirectory() as tmp:
                table.to_csv(Path(tmp) / "results.csv", index=False)
                importance.to_csv(Path(tmp) / "importance.csv", index=False)
                mlflow.log_artifact(str(Path(tmp) / "results.csv"))
                mlflow.log_artifact(str(Path(tmp) / "importance.csv"))
            measured = [r for r in summary["results"] if r["delta"] is not None]
            if measured:
                mlflow.log_figure(plots.delta_chart(measured, metric, summary["direction"]), "deltas.png")
            mlflow.log_figure(plots.importance_chart(summary["importance"]), "importance.png")
            for r in summary["results"]:
                _log_candidate(client, experiment, run.info.run_id, tags, r, metric)
            mlflow.log_dict({k: v for k, v in summary.items() if k != "run_id"}, "study.json")
            mlflow.set_tags({"automl.status": "ok",
                             "automl.adopted": ",".join(r["feature"] for r in summary["results"]
                                                        if r["verdict"] == "adopt")[:tracking.MAX_TAG]})
        except BaseException as exc:
            client.set_tag(run.info.run_id, "automl.error", f"{type(exc).__name__}: {exc}"[:tracking.MAX_TAG])
            raise
    progress(f"{spec.name}: study logged as run {run.info.run_id} in {spec.name}/{PURPOSE}")
    return run.info.run_id


def _log_candidate(client, experiment: str, parent: str, tags: dict, r: dict, metric: str) -> None:
    from mlflow.entities import Metric, Param, RunTag
    from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

    from automl_tasks.registry import tracking

    run = client.create_run(experiment, run_name=r["feature"], tags={
        **tags, "automl.kind": "ablation_candidate", "automl.feature": r["feature"],
        "automl.verdict": r["verdict"], MLFLOW_PARENT_RUN_ID: parent})
    now = int(time.time() * 1000)
    metrics = [Metric(k, float(r[k]), now, 0) for k in
               ("delta", "ci_low", "ci_high", "p_value", "holdout_delta", "alone_value", "importance_rank")
               if r.get(k) is not None]
    if r.get("arm_value") is not None:
        metrics.append(Metric(metric, r["arm_value"], now, 0))
    metrics += [Metric("fold_delta", d, now, i) for i, d in enumerate(r["fold_deltas"]) if d is not None]
    client.log_batch(run.info.run_id, metrics=metrics,
                     params=[Param("feature", r["feature"]), Param("verdict", r["verdict"])],
                     tags=[RunTag("automl.reason", r["reason"][:tracking.MAX_TAG]),
                           RunTag("automl.leakage", str(r["leakage"]).lower())])
    client.set_terminated(run.info.run_id)


def format_results(summary: dict) -> str:
    """The study as the CLI prints it: base, then one line per candidate, best first."""
    base = summary["base"]
    hold = "" if base["holdout_value"] is None else f", holdout {base['holdout_value']:.4f}"
    lines = [f"base ({len(base['features'])} features): {summary['metric']} {base['value']:.4f}{hold}; "
             f"{summary['algorithm']} params from {summary['params_source']}; "
             f"{summary['design']['repeats']}x{summary['design']['folds']} folds"]
    lines += [_result_line(r) for r in summary["results"]]
    lines.append(f"run {summary['run_id']} in experiment {summary['experiment']}")
    return "\n".join(lines)

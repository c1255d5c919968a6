"""Bench feature ablation: 10 candidates in one study vs 10 one-candidate studies.

    nice -n 10 .venv/bin/python bench/ablation.py [--rows-per-month 2000] [--repeats 5]
        [--folds 3] [--end-to-end] [--work DIR]

Fitting phase (always): one study's data is prepared and staged once, then the same
fits are timed three ways:
  A. one wave: every (arm, repeat, fold) fit of the 10-candidate study as Spark tasks
     in one job (what run_ablation does);
  B. 10 waves: 10 one-candidate studies one after another, each its own Spark wave
     (base arm refitted in each, as separate studies do);
  C. 10 sequential studies on the driver: the fits of B in a plain loop, one thread
     per fit like a Spark task (the "train, join, retrain" notebook baseline).
--end-to-end also times run_ablation itself: one call with 10 candidates vs 10 calls
with one candidate each (data checks, joins, prepare and MLflow logging included).

Data: demo data, 8 months (6 train, 1 holdout); base = 5 loan features; candidates =
the other 5 loan features and the 5 bureau columns (point-in-time join). Benchmarks
measure; nothing here asserts a time. The load average is printed around each phase.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

BASE = ["income", "debt_ratio", "loan_length", "age", "employment"]
LOAN_CANDIDATES = ["loan_amount", "car_value", "salary_range", "region", "purpose"]
BUREAU = ["bureau_score", "num_late_payments", "noise_1", "noise_2", "days_to_default_flag"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows-per-month", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--folds", type=int, default=3)
    parser.add_argument("--end-to-end", action="store_true")
    parser.add_argument("--work", help="work folder (default: a temporary one)")
    args = parser.parse_args()
    work = Path(args.work or tempfile.mkdtemp(prefix="bench-ablation-"))
    os.environ["AUTOML_HOME"] = str(work / "home")
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    os.environ.setdefault("SPARK_MASTER", "local[*]")

    import yaml

    from automl_tasks import fitting
    from automl_tasks.ablation import fits, study
    from automl_tasks.ablation import plan as plan_
    from automl_tasks.data.demo import write_demo_data
    from automl_tasks.data.prepare import prepare
    from automl_tasks.spark import get_spark, task_slots
    from automl_tasks.spec import load_spec

    paths = write_demo_data(work / "data", n_months=8, rows_per_month=args.rows_per_month, seed=0)
    spec_path = work / "spec.yaml"
    spec_path.write_text(yaml.safe_dump({
        "name": "bench_ablation", "task": "binary",
        "data": {"source": paths["loans"], "label": "default", "timestamp": "timestamp", "id": "id"},
        "features": BASE, "window": {"train_months": 6}, "metric": "areaUnderROC",
        "algorithms": {"xgboost": {"search": "grid", "space": {"max_depth": [4]},
                                   "fixed": {"n_estimators": 100, "max_depth": 4}}},
        "ablation": {"tables": [{"source": paths["bureau"], "on": "id", "as_of": "as_of"}],
                     "candidates": LOAN_CANDIDATES + BUREAU, "repeats": args.repeats, "folds": args.folds},
    }, sort_keys=False))
    spec = load_spec(spec_path)
    month = "2017-08"
    quiet = lambda line: None  # noqa: E731
    spark = get_spark("bench-ablation")
    slots = task_slots(spark)

    design = fits.Design("add", args.repeats, args.folds)
    algorithm, params, _, _ = plan_.model_config(spec, quiet)
    plan = plan_.make_plan(spark, spec, month, None, spec.ablation.tables, "add", None, quiet)
    prepared = prepare(spark, plan_.study_spec(spec, plan, "add"), month)
    staged = fits.stage_design(spark, prepared, spec, design)
    learner = fitting.Learner(algorithm, spec.task, tuple(prepared.encoding.categorical_idx), 1, spec.seed)
    names = prepared.encoding.feature_names
    has_holdout = prepared.holdout is not None

    def tasks_for(candidates):
        sub = plan_.Plan(plan.base, candidates, {}, plan.tables)
        return fits.wave_fits(fits.arm_columns(names, sub, "add"), spec, params, design, has_holdout)

    fits.run_wave(spark, staged, learner, tasks_for(plan.candidates[:1]), slots)   # warm the Python workers
    results = {"rows_train": int(len(prepared.train.y)), "slots": slots, "candidates": len(plan.candidates),
               "repeats": args.repeats, "folds": args.folds}

    def timed(name, fn):
        load = os.getloadavg()[0]
        start = time.perf_counter()
        count = fn()   # fits run (A-C) or candidate results (E2E)
        results[name] = {"seconds": round(time.perf_counter() - start, 2), "count": count,
                         "load_before": round(load, 2)}
        print(f"{name}: {results[name]}", file=sys.stderr, flush=True)

    all_tasks = tasks_for(plan.candidates)
    timed("A_one_wave", lambda: len(fits.run_wave(spark, staged, learner, all_tasks, slots)))

    def waves():
        n = 0
        for c in plan.candidates:
            n += len(fits.run_wave(spark, staged, learner, tasks_for([c]), slots))
        return n
    timed("B_wave_per_study", waves)

    def driver_loop():
        n = 0
        for c in plan.candidates:
            for fit in tasks_for([c]).values():
                staged.fit_score(learner, fit)
                n += 1
        return n
    timed("C_sequential_driver", driver_loop)

    if args.end_to_end:
        timed("E2E_one_study", lambda: len(study.run_ablation(spec, month, spark=spark, progress=quiet)["results"]))
        timed("E2E_ten_studies", lambda: sum(
            len(study.run_ablation(spec, month, candidates=[c], spark=spark, progress=quiet)["results"])
            for c in plan.candidates))

    a = results["A_one_wave"]["seconds"]
    for key in ("B_wave_per_study", "C_sequential_driver", "E2E_ten_studies"):
        if key in results:
            base = results["E2E_one_study"]["seconds"] if key.startswith("E2E") else a
            results[key]["speedup_of_one_study"] = round(results[key]["seconds"] / base, 2)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()

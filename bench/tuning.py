"""Bench the tuning engine against the usual ways to grid-search XGBoost/LightGBM on Spark.

    nice -n 10 .venv/bin/python bench/tuning.py [--rows 200000] [--repeats 2]
        [--algorithms xgboost lightgbm] [--skip-crossvalidator] [--json FILE]
    # item 7's memory run: 2M rows, where `training: auto` picks the data-parallel path
    nice -n 10 .venv/bin/python bench/tuning.py --rows 2000000 --methods ours --repeats 1 \
        --values-per-axis 2 --json FILE

One process, side by side, on the same data (ROWS x 30: 26 numeric and 4 string
categorical columns, binary label), the same 16-point grid and 3-fold CV:

  ours         automl_tasks.tuning.tune(): the public API, everything included (Spark read,
               checks, encoding, staging, the 48 fold fits as Spark tasks, the default-params
               baseline, the refit on the whole window, MLflow logging of every trial).
  floor        the same 48 fold fits in a bare joblib loop over the arrays ours encoded,
               already in memory, 2 processes x 1 thread (all cores): the fitting work alone.
  gridsearch   sklearn GridSearchCV(n_jobs=2) over the same estimator, on ours' folds
               (PredefinedSplit), so its best params must equal ours.
  crossval     Spark ML CrossValidator(parallelism=2) + SparkXGBClassifier over
               StringIndexer + VectorAssembler (xgboost only: LightGBM has no Spark ML
               estimator here, see RESULTS.md). Its folds are its own.

Methods run interleaved in each repeat (ours, floor, gridsearch, crossval), so a load
spike from the shared machine hits all of them; medians and minima are reported, with
peak RSS of the whole process tree (driver, JVM, Python workers) per method, and each
part's own peak (`peak_rss_mib_by_kind`). Nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(Path(__file__).resolve().parent)]

GRIDS = {  # 16 points each; n_estimators fixed so every fit does the same amount of boosting
    "xgboost": {"max_depth": [3, 5, 7, 9], "learning_rate": [0.03, 0.1, 0.2, 0.3]},
    "lightgbm": {"num_leaves": [7, 15, 31, 63], "learning_rate": [0.03, 0.1, 0.2, 0.3]},
}
N_ESTIMATORS, FOLDS, SEED = 100, 3, 7
METHODS = ["ours", "floor", "gridsearch", "crossvalidator"]
CATEGORIES = {"region": 12, "channel": 5, "product": 30, "tier": 3}
N_NUMERIC = 26


def make_data(path: Path, rows: int) -> Path:
    """Synthetic loans: a nonlinear label from a few numeric and categorical columns, 6 months."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(SEED)
    frame = pd.DataFrame({f"x{i:02d}": rng.normal(size=rows) for i in range(N_NUMERIC)})
    codes = {name: rng.integers(0, k, rows) for name, k in CATEGORIES.items()}
    for name, k in CATEGORIES.items():
        frame[name] = np.array([f"{name}_{j}" for j in range(k)])[codes[name]]
    effect = rng.normal(scale=0.8, size=CATEGORIES["product"])[codes["product"]]
    logit = (0.9 * frame.x00 - 0.7 * frame.x01 * frame.x02 + 0.6 * np.sin(2 * frame.x03)
             + 0.5 * (frame.x04 > 0.5) + effect + 0.3 * (codes["region"] % 3) - 1.0)
    frame["label"] = (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(int)
    months = pd.date_range("2018-01-01", periods=6, freq="MS")
    frame["timestamp"] = months[rng.integers(0, len(months), rows)] + pd.to_timedelta(
        rng.integers(0, 27 * 86400, rows), unit="s")
    frame["timestamp"] = frame["timestamp"].astype("datetime64[us]")
    frame["id"] = np.arange(rows)
    path.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(path / "part-0.parquet", index=False)
    return path


def spec_for(data: Path, algorithm: str):
    import yaml

    from automl_tasks.spec import parse_spec

    features = [f"x{i:02d}" for i in range(N_NUMERIC)] + list(CATEGORIES)
    return parse_spec(yaml.safe_dump({
        "name": f"bench_tuning_{algorithm}", "task": "binary",
        "data": {"source": str(data), "label": "label", "timestamp": "timestamp", "id": "id"},
        "features": features, "window": {"train_months": 6}, "metric": "areaUnderROC",
        "validation": {"method": "cv", "folds": FOLDS}, "seed": SEED,
        "algorithms": {algorithm: {"search": "grid", "space": GRIDS[algorithm],
                                   "fixed": {"n_estimators": N_ESTIMATORS}}},
    }), "bench/tuning.py")


def grid_points(algorithm: str) -> list[dict]:
    from sklearn.model_selection import ParameterGrid

    return [dict(p, n_estimators=N_ESTIMATORS) for p in ParameterGrid(GRIDS[algorithm])]


def smaller_grids(values_per_axis: int) -> None:
    """Keep the middle `values_per_axis` values of each axis (the memory run: its footprint does
    not depend on how many points are fitted one after the other)."""
    for grid in GRIDS.values():
        for axis, values in grid.items():
            start = (len(values) - values_per_axis) // 2
            grid[axis] = values[start:start + values_per_axis]


# ---------------------------------------------------------------- methods

def run_ours(spark, spec) -> dict:
    from automl_tasks.tuning.job import tune

    summary = tune(spec, spark=spark, progress=lambda line: None)
    best = summary["best"]
    return {"best_params": _grid_params(best["params"], spec), "best_cv": best["value"],
            "fit_seconds": summary["fit_seconds"], "training_path": summary["training_path"]}


def encoded(spark, spec):
    """The arrays and folds ours tunes on (same code path, so the fits are identical)."""
    from automl_tasks.data.prepare import prepare
    from automl_tasks.tuning.validation import make_folds

    prepared = prepare(spark, spec)
    folds = make_folds(prepared.train, prepared.given, spec.validation, spec.task,
                       prepared.window.train, seed=spec.seed, classes=prepared.classes)
    return folds, list(prepared.encoding.categorical_idx)


def _one_fit(algorithm, params, X, y, fold_ids, fold, categorical):
    from automl_tasks.evaluation.metrics import compute_metric
    from automl_tasks.models import adapters

    train, valid = fold_ids != fold, fold_ids == fold
    model = adapters.fit(algorithm, "binary", params, X[train], y[train], categorical, n_threads=1, seed=SEED)
    return compute_metric("areaUnderROC", "binary", y[valid], adapters.predict(model, "binary", X[valid]))


def run_floor(algorithm, folds, categorical) -> dict:
    from joblib import Parallel, delayed

    points = grid_points(algorithm)
    jobs = [(p, f) for p in points for f in range(folds.n_folds)]
    values = Parallel(n_jobs=os.cpu_count())(
        delayed(_one_fit)(algorithm, p, folds.X, folds.y, folds.fold_ids, f, categorical) for p, f in jobs)
    means = [statistics.fmean(values[i * folds.n_folds:(i + 1) * folds.n_folds]) for i in range(len(points))]
    best = max(range(len(points)), key=means.__getitem__)
    return {"best_params": _grid_params(points[best]), "best_cv": means[best]}


def run_gridsearch(algorithm, folds, categorical) -> dict:
    import importlib

    from sklearn.model_selection import GridSearchCV, PredefinedSplit

    family = importlib.import_module(f"automl_tasks.models.algorithms.{algorithm}")   # its estimator
    estimator = family.estimator("binary", {"n_estimators": N_ESTIMATORS}, 1, SEED, categorical,
                                 folds.X.shape[1])
    fit_params = {"categorical_feature": categorical} if algorithm == "lightgbm" else {}
    search = GridSearchCV(estimator, GRIDS[algorithm], scoring="roc_auc", n_jobs=2,
                          cv=PredefinedSplit(folds.fold_ids), refit=False)
    search.fit(folds.X, folds.y, **fit_params)
    return {"best_params": _grid_params(search.best_params_), "best_cv": float(search.best_score_)}


def run_crossvalidator(spark, data: Path) -> dict:
    from pyspark.ml import Pipeline
    from pyspark.ml.evaluation import BinaryClassificationEvaluator
    from pyspark.ml.feature import StringIndexer, VectorAssembler
    from pyspark.ml.tuning import CrossValidator, ParamGridBuilder
    from xgboost.spark import SparkXGBClassifier

    frame = spark.read.parquet(str(data))
    indexed = [f"{c}_idx" for c in CATEGORIES]
    numeric = [f"x{i:02d}" for i in range(N_NUMERIC)]
    xgb = SparkXGBClassifier(features_col="features", label_col="label", n_estimators=N_ESTIMATORS,
                             num_workers=1, random_state=SEED)
    grid = ParamGridBuilder()
    for name, values in GRIDS["xgboost"].items():
        grid = grid.addGrid(xgb.getParam(name), values)
    pipeline = Pipeline(stages=[
        StringIndexer(inputCols=list(CATEGORIES), outputCols=indexed, handleInvalid="keep"),
        VectorAssembler(inputCols=numeric + indexed, outputCol="features", handleInvalid="keep"),
        xgb])
    # The grid is over the pipeline's last stage; CrossValidator refits the indexers per fold.
    cv = CrossValidator(estimator=pipeline, estimatorParamMaps=grid.build(), numFolds=FOLDS,
                        evaluator=BinaryClassificationEvaluator(labelCol="label"), parallelism=2, seed=SEED)
    model = cv.fit(frame)
    best = max(range(len(model.avgMetrics)), key=model.avgMetrics.__getitem__)
    params = {p.name: v for p, v in model.getEstimatorParamMaps()[best].items()}
    return {"best_params": _grid_params(params), "best_cv": float(model.avgMetrics[best])}


def _grid_params(params: dict, spec=None) -> dict:
    """Just the grid's own keys, as plain floats/ints, so methods compare equal."""
    keys = {k for grid in GRIDS.values() for k in grid}
    return {k: (round(float(v), 6) if isinstance(v, float) else int(v)) for k, v in sorted(params.items())
            if k in keys}


# ---------------------------------------------------------------- driver

def timed(name: str, fn, out: dict, sampler) -> None:
    load = os.getloadavg()[0]
    sampler.peak_tree, sampler.peak_by_kind = 0, {}
    sampler.sample()
    start = time.perf_counter()
    result = fn()
    seconds = time.perf_counter() - start
    sampler.sample()
    out.setdefault(name, []).append({**result, "seconds": round(seconds, 2), "load_before": round(load, 2),
                                     "peak_rss_mib": round(sampler.peak_tree / 2**20),
                                     "peak_rss_mib_by_kind": {k: round(v / 2**20) for k, v in
                                                              sampler.peak_by_kind.items()}})
    print(f"  {name}: {seconds:.1f} s, best {result['best_params']} cv {result['best_cv']:.4f}, "
          f"peak RSS {sampler.peak_tree / 2**30:.2f} GiB (load {load:.1f})", file=sys.stderr, flush=True)


def summarize(runs: dict[str, list[dict]]) -> dict:
    med = {m: statistics.median(r["seconds"] for r in rs) for m, rs in runs.items()}
    out = {m: {"median_s": round(med[m], 2), "min_s": min(r["seconds"] for r in rs),
               "peak_rss_mib": max(r["peak_rss_mib"] for r in rs), "best_params": rs[-1]["best_params"],
               "best_cv": round(rs[-1]["best_cv"], 5)} for m, rs in runs.items()}
    if "ours" in med:
        for m in med:
            out[m]["ours_speedup"] = round(med[m] / med["ours"], 2)   # > 1: ours is faster
        if "floor" in med:
            out["ours"]["over_floor"] = round(med["ours"] / med["floor"], 2)
    if "ours" in out and "gridsearch" in out:
        out["same_best_as_gridsearch"] = out["ours"]["best_params"] == out["gridsearch"]["best_params"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--algorithms", nargs="+", default=["xgboost", "lightgbm"], choices=list(GRIDS))
    parser.add_argument("--methods", nargs="+", default=METHODS, choices=METHODS,
                        help="which methods to run (crossvalidator: xgboost only)")
    parser.add_argument("--skip-crossvalidator", action="store_true")
    parser.add_argument("--values-per-axis", type=int, choices=[1, 2, 3, 4], default=4,
                        help="grid values per axis (4: the 16-point grid; fewer for the 2M-row memory run)")
    parser.add_argument("--work", help="work folder (default: a temporary one)")
    parser.add_argument("--json", type=Path, help="write every measurement here")
    args = parser.parse_args()
    methods = [m for m in args.methods if not (m == "crossvalidator" and args.skip_crossvalidator)]
    smaller_grids(args.values_per_axis)
    work = Path(args.work or tempfile.mkdtemp(prefix="bench-tuning-"))
    os.environ["AUTOML_HOME"] = str(work / "home")
    os.environ.pop("MLFLOW_TRACKING_URI", None)     # the embedded SQLite store, as `make demo`
    os.environ.setdefault("SPARK_MASTER", f"local[{os.cpu_count()}]")

    from monthly import Sampler, machine

    from automl_tasks.spark import get_spark

    data = make_data(work / "data", args.rows)
    spark = get_spark("bench-tuning")
    sampler = Sampler()
    sampler.start()
    report = {"machine": machine(None), "rows": args.rows, "grid_points": args.values_per_axis ** 2, "folds": FOLDS,
              "n_estimators": N_ESTIMATORS, "results": {}}
    for algorithm in args.algorithms:
        spec = spec_for(data, algorithm)
        # The floor and GridSearchCV fit ours' arrays; ours alone collects nothing up front (at 2M
        # rows it trains data-parallel and the window must not reach the driver).
        if set(methods) & {"floor", "gridsearch"}:
            folds, categorical = encoded(spark, spec)
        runs: dict[str, list[dict]] = {}
        for repeat in range(args.repeats):
            print(f"{algorithm} repeat {repeat + 1}/{args.repeats}", file=sys.stderr, flush=True)
            for method in methods:
                if method == "crossvalidator" and algorithm != "xgboost":
                    continue
                timed(method, {
                    "ours": lambda: run_ours(spark, spec),
                    "floor": lambda: run_floor(algorithm, folds, categorical),
                    "gridsearch": lambda: run_gridsearch(algorithm, folds, categorical),
                    "crossvalidator": lambda: run_crossvalidator(spark, data),
                }[method], runs, sampler)
        report["results"][algorithm] = {"runs": runs, "summary": summarize(runs)}
        print(json.dumps(report["results"][algorithm]["summary"], indent=2), flush=True)
    sampler.stop_event.set()
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    spark.stop()


if __name__ == "__main__":
    main()

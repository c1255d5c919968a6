"""Estimated performance without labels (issue 17), on the demo data with a planted covariate shift.

Accuracy: for each seed, the demo data (24 months x ROWS from 2017-01; debt_ratio rises in
COVARIATE months while its effect on the label stays; the concept shift at 2018-07). A
champion (xgboost, as the project fits it: adapters' defaults plus the params below) is trained
on 2017-05..2017-10. For every month M of 2018, as the monthly job does with delay_months 2,
the estimator is fitted on the labelled months since the champion's training, up to M - 2 and at
most --reference-months of them (one held-out chunk each), and estimates M; the realized metric
on M is then computed. Binary (`default`, areaUnderROC, CBPE) and regression (`loss`, rmse, DLE).
Reported per month kind (no shift, covariate shift, after the concept shift): the mean absolute
error of the estimate, the share of months whose realized value lies inside the interval and
the interval's mean width; and the estimator's time per month.

Time: the monthly job (`run_monthly`, local Spark, a SQLite MLflow store) on the same data for
three evaluated months, with delay_months 0 and 2 side by side in this process (two models);
the months with a champion give the monitor step's and the month's extra wall time.

    .venv/bin/python bench/estimation.py --seeds 10 [--reference-months K] [--skip-time] [--json F]
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

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from automl_tasks.data.months import Month  # noqa: E402 - standard library only
from automl_tasks.spec import LabelsSpec  # noqa: E402

ROWS = 2000
COVARIATE = ("2018-02", "2018-03", "2018-04")
CONCEPT = "2018-07"
TRAIN = [f"2017-{m:02d}" for m in range(5, 11)]      # ends before the first reference month
MONTHS = [f"2018-{m:02d}" for m in range(1, 13)]
DELAY = 2
FEATURES = ["income", "loan_amount", "loan_length", "car_value", "debt_ratio", "age", "credit_history_years",
            "salary_range", "region", "employment", "purpose"]
TASKS = {"binary": ("default", "areaUnderROC"), "regression": ("loss", "rmse")}


def _matrix(frame, categories: dict) -> np.ndarray:
    cols = []
    for f in FEATURES:
        if f in categories:
            cols.append(frame[f].map({c: i for i, c in enumerate(categories[f])}).astype(float).to_numpy())
        else:
            cols.append(frame[f].astype(float).to_numpy())
    return np.column_stack(cols)


def _champion(task: str, X: np.ndarray, y: np.ndarray):
    import xgboost as xgb

    params = {"n_estimators": 100, "max_depth": 4, "learning_rate": 0.1, "n_jobs": 1, "random_state": 0}
    model = xgb.XGBClassifier(**params) if task == "binary" else xgb.XGBRegressor(**params)
    return model.fit(X, y)


def _predict(task: str, model, X: np.ndarray) -> np.ndarray:
    return model.predict_proba(X) if task == "binary" else model.predict(X)


def reference_months(month: str, count: int) -> list[str]:
    """As the monthly job picks them (`earlier_months`): M - DELAY and, from the six months before
    it, those after the champion's training window, the newest `count` in all."""
    from automl_tasks.pipelines.monthly.unlabelled import earlier_months

    newest = Month.parse(month) - DELAY
    window = [str(newest - k) for k in range(6, 0, -1)]
    return earlier_months(window, str(Month.parse(TRAIN[-1]) + 1), count - 1) + [str(newest)]


def accuracy(seed: int, reference: int) -> list[dict]:
    """One row per (task, month): estimate, interval, realized, kind, seconds."""
    from automl_tasks.data.demo import generate_loans
    from automl_tasks.evaluation.metrics import compute_metric
    from automl_tasks.monitoring.estimation import fit_estimator

    loans = generate_loans(24, ROWS, start="2017-01", shift_month=CONCEPT, covariate_months=COVARIATE, seed=seed)
    categories = {f: sorted(loans[f].dropna().unique()) for f in FEATURES if loans[f].dtype == object}
    by_month = {m: part for m, part in loans.groupby("month")}
    rows = []
    for task, (label, metric) in TASKS.items():
        train = loans[loans["month"].isin(TRAIN)]
        model = _champion(task, _matrix(train, categories), train[label].to_numpy())
        scored = {}

        def score(month: str):
            if month not in scored:
                X = _matrix(by_month[month], categories)
                scored[month] = (X, _predict(task, model, X), by_month[month][label].to_numpy())
            return scored[month]

        for month in MONTHS:
            references = reference_months(month, reference)
            parts = [score(m) for m in references]
            ref_X, ref_pred, ref_y = (np.concatenate([p[i] for p in parts]) for i in range(3))
            groups = np.repeat(references, [len(p[2]) for p in parts]) if len(references) > 1 else None
            X, pred, y = score(month)
            started = time.perf_counter()
            estimate = fit_estimator(task, metric, reference_prediction=ref_pred, reference_y=ref_y,
                                     reference_features=ref_X, reference_groups=groups,
                                     seed=seed).estimate(pred, X)
            seconds = time.perf_counter() - started
            realized = compute_metric(metric, task, y, pred)
            kind = ("covariate" if month in COVARIATE else "concept" if month >= CONCEPT else "none")
            rows.append({"seed": seed, "task": task, "metric": metric, "month": month, "kind": kind,
                         "estimate": estimate.value, "ci_low": estimate.ci_low, "ci_high": estimate.ci_high,
                         "realized": realized, "inside": estimate.contains(realized), "seconds": seconds})
    return rows


def summarize(rows: list[dict]) -> list[dict]:
    out = []
    for task in TASKS:
        for kind in ("none", "covariate", "concept"):
            picked = [r for r in rows if r["task"] == task and r["kind"] == kind]
            if not picked:
                continue
            out.append({"task": task, "metric": picked[0]["metric"], "kind": kind, "months": len(picked),
                        "mae": statistics.fmean(abs(r["estimate"] - r["realized"]) for r in picked),
                        "coverage": statistics.fmean(r["inside"] for r in picked),
                        "width": statistics.fmean(r["ci_high"] - r["ci_low"] for r in picked),
                        "seconds": statistics.median(r["seconds"] for r in picked)})
    return out


def month_time() -> dict:
    """The monthly job with delay_months 0 and 2 on the same evaluated months, side by side."""
    import yaml

    from automl_tasks.data.demo import write_demo_data

    work = Path(tempfile.mkdtemp(prefix="bench-estimation-"))
    os.environ["AUTOML_HOME"] = str(work / "home")
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{work / 'mlflow.db'}"
    written = write_demo_data(work / "data", n_months=24, rows_per_month=ROWS, covariate_months=COVARIATE, seed=0)
    from automl_tasks.pipelines.monthly import run_monthly
    from automl_tasks.spark import get_spark
    from automl_tasks.spec import load_spec

    from mlflow import MlflowClient

    spark = get_spark()
    specs = {}
    for delay in (0, DELAY):
        raw = yaml.safe_load((ROOT / "bench" / "spec.yaml").read_text())     # the demo spec, frozen
        raw.update(name=f"bench_delay{delay}", labels={"delay_months": delay})
        raw["data"]["source"] = written["loans"]
        path = work / f"delay{delay}.yaml"
        path.write_text(yaml.safe_dump(raw))
        specs[delay] = load_spec(path)
    evaluated = ["2018-03", "2018-04", "2018-05"]
    timings = {0: [], DELAY: []}
    for i, month in enumerate(evaluated):
        for delay in (0, DELAY):          # side by side: the same month for both, one after the other
            run_for = str(Month.parse(month) + delay)
            result = run_monthly(specs[delay], run_for, promotion_mode="auto" if i == 0 else "shadow",
                                 spark=spark, progress=lambda line: None)
            monitor = MlflowClient().get_run(result["runs"]["monitor"]).data.metrics
            timings[delay].append({"evaluated": month, "run_for": run_for, **result["timings"],
                                   "unlabelled": monitor.get("unlabelled_seconds")})
    return {"rows_per_month": ROWS, "timings": timings}


def markdown(summary: list[dict], seeds: int, reference: int, timing: dict | None) -> str:
    lines = [f"Seeds: {seeds} (each: new data, new champion); {len(MONTHS)} months per seed and task; "
             f"{ROWS} rows a month; covariate shift {', '.join(COVARIATE)}; concept shift from {CONCEPT}; "
             f"reference: at most {reference} labelled month(s).", "",
             "| task (metric) | months | n | MAE of the estimate | realized inside the interval | mean width "
             "| estimator s/month |", "|---|---|---|---|---|---|---|"]
    for s in summary:
        lines.append(f"| {s['task']} ({s['metric']}) | {s['kind']} | {s['months']} | {s['mae']:.4f} | "
                     f"{s['coverage']:.0%} | {s['width']:.4f} | {s['seconds']:.2f} |")
    if timing:
        lines += ["", "| month evaluated | delay 0: monitor s | delay 2: monitor s | of which unlabelled s "
                      "| delay 0: month s | delay 2: month s |", "|---|---|---|---|---|---|"]
        for a, b in zip(timing["timings"][0][1:], timing["timings"][DELAY][1:]):
            lines.append(f"| {a['evaluated']} | {a['monitor']:.1f} | {b['monitor']:.1f} | {b['unlabelled']:.1f} | "
                         f"{a['total']:.1f} | {b['total']:.1f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--reference-months", type=int, default=LabelsSpec().reference_months,
                        help="the spec's labels.reference_months (1: the newest labelled month alone)")
    parser.add_argument("--skip-time", action="store_true")
    parser.add_argument("--json")
    args = parser.parse_args()
    rows = [r for seed in range(args.seeds) for r in accuracy(seed, args.reference_months)]
    summary = summarize(rows)
    timing = None if args.skip_time else month_time()
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows, "summary": summary, "time": timing}, indent=1))
    print(markdown(summary, args.seeds, args.reference_months, timing))


if __name__ == "__main__":
    main()

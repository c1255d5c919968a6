"""Bench the PoC against FLAML at an equal wall budget (issue 19, target 3), per task type.

    nice -n 10 .venv/bin/python bench/poc_flaml.py [--budget 180] [--rows 20000]
        [--tasks binary multiclass regression] [--sides ours flaml] [--seeds 5 6 7] [--work DIR] [--json FILE]

Data: the demo loans (data the project's tuning has not seen as a CSV), ROWS training rows and
a quarter as many test rows, without the time columns; the label per task: `default` (binary,
areaUnderROC), `grade` (multiclass, logLoss), `loss` (regression, rmse). Each of --seeds draws
the data again (the generator's seed): one run per side per draw.

Each side is one fresh process, timed from its start to its exit, with the same budget:
  ours   `automl-tasks poc --algorithms xgboost,lightgbm --validation cv:3 --test ... --json`
         (its budget covers start-up, checks, exploration, tuning and the candidates' steps);
  flaml  this file with --flaml-worker: imports, reads the CSVs, then `AutoML.fit` with
         estimator_list [xgboost, lgbm], eval_method cv, 3 folds, the task's metric and
         time_budget = the budget minus what the process has used so far.
The test metric is computed by automl_tasks.evaluation.metrics.compute_metric on each side's
test predictions. Reported: the test metric, the wall time and its share of the budget, and the
configs each evaluated. Nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

STARTED = time.monotonic()
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TASKS = {"binary": ("default", "areaUnderROC", "roc_auc"), "multiclass": ("grade", "logLoss", "log_loss"),
         "regression": ("loss", "rmse", "rmse")}
LABELS = [label for label, _, _ in TASKS.values()]


def write_data(work: Path, rows: int, task: str, seed: int = 5) -> tuple[Path, Path]:
    """`<task>_train.csv` and `<task>_test.csv` under `work`, the task's label the only label."""
    import pandas as pd

    from automl_tasks.data.demo import write_demo_data

    test_rows = rows // 4
    months = 12
    paths = write_demo_data(work / "demo", n_months=months, rows_per_month=-(-(rows + test_rows) // months), seed=seed)
    label = TASKS[task][0]
    frame = pd.read_parquet(paths["loans"]).drop(columns=["timestamp", "month", "id"]
                                                 + [c for c in LABELS if c != label])
    frame = frame.sample(frac=1.0, random_state=0).reset_index(drop=True)
    train, test = work / f"{task}_train.csv", work / f"{task}_test.csv"
    frame.iloc[:rows].to_csv(train, index=False)
    frame.iloc[rows:rows + test_rows].to_csv(test, index=False)
    return train, test


def run_ours(task: str, train: Path, test: Path, budget: float, work: Path) -> dict:
    from bench.poc import poc_env, run_once

    label, metric, _ = TASKS[task]
    env = poc_env(work / "home", work)
    cmd = [str(Path(sys.executable).with_name("automl-tasks")), "poc", "--data", str(train), "--test", str(test),
           "--label", label, "--task", task, "--metric", metric, "--algorithms", "xgboost,lightgbm",
           "--validation", "cv:3", "--time-budget", str(budget), "--json"]
    record = run_once(cmd, env, budget)
    if "best" in record:        # the best candidate by CV, as FLAML picks its own
        record.update(test=record["test"][record["best"]], configs=sum(record["trials"].values()))
    return record


def run_flaml(task: str, train: Path, test: Path, budget: float) -> dict:
    import subprocess

    started = time.monotonic()
    proc = subprocess.run([sys.executable, __file__, "--flaml-worker", task, str(train), str(test), str(budget)],
                          capture_output=True, text=True, check=False)
    wall = time.monotonic() - started
    if proc.returncode != 0:
        return {"wall_s": round(wall, 1), "exit_code": proc.returncode, "error": proc.stderr[-2000:]}
    return {"wall_s": round(wall, 1), "ratio": round(wall / budget, 3), **json.loads(proc.stdout)}


def flaml_worker(task: str, train: Path, test: Path, budget: float) -> None:
    """One FLAML run as a whole process: its budget is what is left of `budget` after start-up."""
    import numpy as np
    import pandas as pd
    from flaml import AutoML

    label, metric, flaml_metric = TASKS[task]
    train_df, test_df = pd.read_csv(train), pd.read_csv(test)
    X, y = train_df.drop(columns=[label]), train_df[label]
    automl = AutoML()
    left = max(1.0, budget - (time.monotonic() - STARTED))     # FLAML reads a budget <= 0 as none
    automl.fit(X, y, task="regression" if task == "regression" else "classification",
               estimator_list=["xgboost", "lgbm"], metric=flaml_metric, eval_method="cv", n_splits=3,
               time_budget=left, n_jobs=os.cpu_count(), seed=0, verbose=0)
    from automl_tasks.evaluation.metrics import compute_metric      # after the clock, as ours scores after its

    X_test, y_test = test_df.drop(columns=[label]), test_df[label].to_numpy()
    if task == "regression":
        prediction, truth = automl.predict(X_test), y_test
    else:
        classes = list(automl.classes_)
        prediction, truth = automl.predict_proba(X_test), np.array([classes.index(v) for v in y_test])
    print(json.dumps({"test": compute_metric(metric, task, truth, prediction), "configs": len(automl.config_history),
                      "algorithm": automl.best_estimator, "best_config": automl.best_config,
                      "best_cv_loss": automl.best_loss, "fit_budget_s": round(left, 1)}))


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--flaml-worker":
        task, train, test, budget = sys.argv[2:6]
        flaml_worker(task, Path(train), Path(test), float(budget))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=float, default=180.0)
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--tasks", nargs="+", choices=list(TASKS), default=list(TASKS))
    parser.add_argument("--sides", nargs="+", choices=["ours", "flaml"], default=["ours", "flaml"],
                        help="run only one side, e.g. ours after a change to the library")
    parser.add_argument("--seeds", nargs="+", type=int, default=[5],
                        help="data draws (default 5, the draw of every run before --seeds existed)")
    parser.add_argument("--work", help="work folder (default: a temporary one)")
    parser.add_argument("--json", help="write every measurement here")
    args = parser.parse_args()
    from bench.poc import emit

    work = Path(args.work or tempfile.mkdtemp(prefix="bench-poc-flaml-"))
    results = {"budget_s": args.budget, "rows": args.rows, "cpus": os.cpu_count(), "tasks": {}}
    for seed in args.seeds:
        for task in args.tasks:
            # One seed keeps the layout every earlier result has: {task: ...}; several: {"task seed N": ...}.
            key = task if len(args.seeds) == 1 else f"{task} seed {seed}"
            train, test = write_data(work / f"seed{seed}", args.rows, task, seed)
            results["tasks"][key] = {"metric": TASKS[task][1], "seed": seed}
            if "ours" in args.sides:
                results["tasks"][key]["ours"] = run_ours(task, train, test, args.budget, work / f"seed{seed}")
            if "flaml" in args.sides:
                results["tasks"][key]["flaml"] = run_flaml(task, train, test, args.budget)
            print(json.dumps({key: results["tasks"][key]}), file=sys.stderr, flush=True)
    emit(results, args.json)


if __name__ == "__main__":
    main()

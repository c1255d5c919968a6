"""The whole `automl-tasks tune` command against a GridSearchCV script, each as a process (issue 19, item 1).

    nice -n 10 .venv/bin/python bench/tune_command.py [--rows 60000] [--repeats 2] \
        [--trees before=/tmp/old-checkout after=.] [--store new|existing] [--json FILE]

The data has the shape a user brings to a first tune (ROWS x 7: 4 numeric columns, 3 string
categoricals, a binary label over 6 months). Each method runs as a new process, timed from
the outside, as a user runs it:

  ours (per tree)  `python -m automl_tasks.cli tune --spec S --json` with the tree on PYTHONPATH:
                   Spark start, the read and checks, the 16-point xgboost grid x 3 folds as
                   Spark tasks, the default-params baseline, the refit, MLflow (a SQLite store: new,
                   or with --store existing made before the timed command).
  gridsearch       a script: pandas reads the parquet, categoricals as codes, sklearn
                   GridSearchCV(n_jobs=2) over XGBClassifier (1 thread each), the same grid, 3
                   folds, roc_auc, refit on the whole window: the issue's peer.
  gridsearch-native  the same script with the model ours fits: the categoricals as pandas
                   categories, xgboost's native categorical splits (`enable_categorical`), which
                   cost about 1.5x a fit on codes. Against it the ratio counts ours' fixed costs only.

Methods run interleaved in each repeat, so a load spike hits all of them. Ours' stderr lines
are timestamped as they arrive: the profile (when the first progress line, the read, the
search and the end came) says where the fixed costs are. Nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GRID = {"max_depth": [3, 5, 7, 9], "learning_rate": [0.03, 0.1, 0.2, 0.3]}
N_ESTIMATORS, FOLDS, SEED = 100, 3, 7
CATEGORIES = {"region": 12, "channel": 5, "product": 30}
NUMERIC = ["x0", "x1", "x2", "x3"]

GRIDSEARCH = """
import json, sys, time
import pandas as pd
from sklearn.model_selection import GridSearchCV
from xgboost import XGBClassifier
frame = pd.read_parquet(sys.argv[1])
X = frame[%(features)r].copy()
for name in %(categories)r:
    X[name] = X[name].astype("category")%(codes)s
search = GridSearchCV(XGBClassifier(n_estimators=%(trees)d, tree_method="hist", n_jobs=1, random_state=%(seed)d,
                                    enable_categorical=%(native)s),
                      %(grid)r, cv=%(folds)d, scoring="roc_auc", n_jobs=2, refit=True)
search.fit(X, frame["label"])
print(json.dumps({"best_params": search.best_params_, "best_cv": search.best_score_}))
"""


def make_data(path: Path, rows: int) -> Path:
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(SEED)
    frame = pd.DataFrame({name: rng.normal(size=rows) for name in NUMERIC})
    codes = {name: rng.integers(0, k, rows) for name, k in CATEGORIES.items()}
    for name, k in CATEGORIES.items():
        frame[name] = np.array([f"{name}_{j}" for j in range(k)])[codes[name]]
    effect = rng.normal(scale=0.8, size=CATEGORIES["product"])[codes["product"]]
    logit = (0.9 * frame.x0 - 0.7 * frame.x1 * frame.x2 + 0.6 * np.sin(2 * frame.x3) + effect
             + 0.3 * (codes["region"] % 3) - 1.0)
    frame["label"] = (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(int)
    months = pd.date_range("2018-01-01", periods=6, freq="MS")
    frame["timestamp"] = (months[rng.integers(0, len(months), rows)]
                          + pd.to_timedelta(rng.integers(0, 27 * 86400, rows), unit="s")).astype("datetime64[us]")
    frame["id"] = np.arange(rows)
    path.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(path / "part-0.parquet", index=False)
    return path


def write_spec(work: Path, data: Path) -> Path:
    import yaml

    spec = {"name": "bench_tune_command", "task": "binary",
            "data": {"source": str(data), "label": "label", "timestamp": "timestamp", "id": "id"},
            "features": NUMERIC + list(CATEGORIES), "window": {"train_months": 6}, "metric": "areaUnderROC",
            "validation": {"method": "cv", "folds": FOLDS}, "seed": SEED,
            "algorithms": {"xgboost": {"search": "grid", "space": GRID, "fixed": {"n_estimators": N_ESTIMATORS}}}}
    path = work / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def _timed(cmd: list[str], env: dict, cwd: Path) -> tuple[float, str, list[tuple[float, str]]]:
    """Wall seconds, stdout, and each stderr line with the second it arrived."""
    started = time.monotonic()
    proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines = [(time.monotonic() - started, line.rstrip()) for line in proc.stderr]
    out = proc.stdout.read()
    if proc.wait() != 0:
        raise SystemExit(f"{cmd[:4]} failed:\n" + "\n".join(line for _, line in lines[-30:]))
    return time.monotonic() - started, out, lines


def run_ours(tree: Path, spec: Path, work: Path, store: str = "new") -> dict:
    home = Path(tempfile.mkdtemp(prefix="home-", dir=work))
    env = {**os.environ, "PYTHONPATH": str(tree), "AUTOML_HOME": str(home), "MLFLOW_DISABLE_TELEMETRY": "true"}
    env.pop("MLFLOW_TRACKING_URI", None)          # the embedded SQLite store, as `make demo`
    if store == "existing":                       # made by an untimed process: a user's later command
        subprocess.run([sys.executable, "-c", "import sys; from mlflow import MlflowClient; MlflowClient(sys.argv[1])",
                        f"sqlite:///{home / 'mlflow.db'}"], env=env, check=True, capture_output=True)
    seconds, out, lines = _timed([sys.executable, "-m", "automl_tasks.cli", "tune", "--spec", str(spec), "--json"], env,
                                cwd=tree)       # `-m` puts the working directory first on sys.path
    summary = json.loads(out)
    first = lambda text: next((round(t, 1) for t, line in lines if text in line), None)  # noqa: E731
    return {"seconds": seconds, "best_params": {k: summary["best"]["params"][k] for k in GRID},
            "best_cv": summary["best"]["value"], "fit_seconds": summary.get("fit_seconds"),
            "profile": {"first line": round(lines[0][0], 1) if lines else None, "reading": first("reading"),
                        "first trial": first(" trial "), "last line": round(lines[-1][0], 1) if lines else None}}


def run_gridsearch(data: Path, work: Path, native: bool = False) -> dict:
    script = GRIDSEARCH % {"features": NUMERIC + list(CATEGORIES), "categories": list(CATEGORIES),
                           "trees": N_ESTIMATORS, "seed": SEED, "grid": GRID, "folds": FOLDS,
                           "codes": "" if native else ".cat.codes", "native": native}
    seconds, out, _ = _timed([sys.executable, "-c", script, str(data / "part-0.parquet")], dict(os.environ), work)
    return {"seconds": seconds, **json.loads(out)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=60_000)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--trees", nargs="+", default=[f"ours={ROOT}"], metavar="LABEL=PATH",
                        help="checkouts of this project to time, each as its own method")
    parser.add_argument("--store", choices=["new", "existing"], default="new",
                        help="ours' MLflow store: made by the command (a first user) or before it (later commands)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    trees = dict(item.split("=", 1) for item in args.trees)
    work = Path(tempfile.mkdtemp(prefix="bench-tune-command-"))
    data = make_data(work / "data", args.rows)
    spec = write_spec(work, data)
    peers = {"gridsearch": False, "gridsearch-native": True}
    results: dict[str, list] = {label: [] for label in [*trees, *peers]}
    for repeat in range(args.repeats):
        for label, tree in trees.items():
            results[label].append(run_ours(Path(tree).resolve(), spec, work, args.store))
            print(f"repeat {repeat} {label}: {results[label][-1]['seconds']:.1f}s {results[label][-1]['profile']}",
                  file=sys.stderr)
        for label, native in peers.items():
            results[label].append(run_gridsearch(data, work, native))
            print(f"repeat {repeat} {label}: {results[label][-1]['seconds']:.1f}s", file=sys.stderr)
    peer, native = (statistics.median(r["seconds"] for r in results[p]) for p in peers)
    print(f"rows {args.rows}; load {os.getloadavg()[0]:.1f}; median seconds (ratio to gridsearch {peer:.1f}s, "
          f"to gridsearch-native {native:.1f}s):")
    for label, runs in results.items():
        median = statistics.median(r["seconds"] for r in runs)
        print(f"  {label:<17} {median:7.1f}s  {median / peer:4.2f}x  {median / native:4.2f}x  best {runs[0]['best_params']} "
              f"cv {runs[0]['best_cv']:.4f}" + (f"  profile {runs[0]['profile']}" if "profile" in runs[0] else ""))
    if args.json:
        args.json.write_text(json.dumps({"rows": args.rows, "results": results}, indent=1, default=str))


if __name__ == "__main__":
    main()

"""Bench the PoC's time budget: does `automl-tasks poc` end within budget + 10%, leaving nothing running?

    nice -n 10 .venv/bin/python bench/poc.py [--budgets 120 300] [--rows 2000] [--algorithms all]
        [--segment] [--kill-after 60] [--work DIR] [--json FILE]

Each run is a fresh `automl-tasks poc --json` process (Spark start, imports and the
exploration report included, as a user meets them) on demo loans written as a CSV
without its time columns (data the project has not seen). Measured per budget:
  wall_s       the process's wall time, start to exit;
  elapsed_s    the PoC's own clock (from the CLI's start; what the budget governs);
  ratio        wall_s / budget (the target: <= 1.10);
  phases       checks+exploration, tuning, candidates, checks (algorithm/segments);
  trials       per algorithm, and whether the out-of-fold evaluation fitted in;
  leftover     processes of the run's process group still alive 5 s after it exited.
--kill-after S also SIGTERMs one run S seconds in and times how long until its whole
process group (driver, JVM, Python workers) is gone. Nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.processes import group_alive  # noqa: E402


def write_data(work: Path, rows: int) -> Path:
    import pandas as pd

    from automl_tasks.data.demo import write_demo_data

    paths = write_demo_data(work / "demo", n_months=12, rows_per_month=max(200, rows // 10), seed=3)
    frame = pd.read_parquet(paths["loans"]).drop(columns=["timestamp", "grade", "loss"]).head(rows)
    out = work / "data" / "loans_train.csv"
    out.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(out, index=False)
    return out


def run_once(cmd: list[str], env: dict, budget: float, kill_after: float | None = None) -> dict:
    load = os.getloadavg()[0]
    started = time.monotonic()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    if kill_after is not None:
        time.sleep(kill_after)
        proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate()
    wall = time.monotonic() - started
    exited = time.monotonic()
    while group_alive(proc.pid) and time.monotonic() - exited < 60:
        time.sleep(0.2)
    gone_after = time.monotonic() - exited
    leftover = group_alive(proc.pid)
    if leftover:
        os.killpg(proc.pid, signal.SIGKILL)
    record = {"budget_s": budget, "exit_code": proc.returncode, "wall_s": round(wall, 1),
              "ratio": round(wall / budget, 3), "load_before": round(load, 2),
              "load_after": round(os.getloadavg()[0], 2), "group_gone_after_exit_s": round(gone_after, 1),
              "leftover": leftover}
    if kill_after is not None:
        record["killed_after_s"] = kill_after
        return record
    if proc.returncode != 0:
        record["error"] = err[-2000:]
        return record
    summary = json.loads(out)
    record.update(elapsed_s=summary["budget"]["elapsed_s"], phases=summary["timings"],
                  trials={r["algorithm"]: r["trials"] for r in summary["leaderboard"]},
                  out_of_fold={r["algorithm"]: r["oof_value"] is not None for r in summary["leaderboard"]},
                  best=summary["best"]["algorithm"], value=round(summary["best"]["value"], 4),
                  test={r["algorithm"]: r["test_value"] for r in summary["leaderboard"]},
                  params={r["algorithm"]: r.get("params") for r in summary["leaderboard"]})
    return record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budgets", type=float, nargs="+", default=[120.0, 300.0])
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--algorithms", default="all", help="comma-separated, or all")
    parser.add_argument("--segment", action="store_true", help="also per-segment models (column segment)")
    parser.add_argument("--kill-after", type=float, help="also SIGTERM one run this many seconds in")
    parser.add_argument("--work", help="work folder (default: a temporary one)")
    parser.add_argument("--json", help="write every measurement here")
    args = parser.parse_args()
    work = Path(args.work or tempfile.mkdtemp(prefix="bench-poc-"))
    data = write_data(work, args.rows)
    env = poc_env(work / "home", data.parent)
    base = [str(Path(sys.executable).with_name("automl-tasks")), "poc", "--data", str(data), "--label", "default",
            "--json"] + (["--algorithms", args.algorithms] if args.algorithms != "all" else []) \
        + (["--segment", "segment"] if args.segment else [])
    results = {"rows": args.rows, "cpus": os.cpu_count(), "runs": []}
    for budget in args.budgets:
        record = run_once([*base, "--time-budget", str(budget)], env, budget)
        results["runs"].append(record)
        print(json.dumps(record), file=sys.stderr, flush=True)
    if args.kill_after:
        record = run_once([*base, "--time-budget", str(max(args.budgets))], env, max(args.budgets),
                          kill_after=args.kill_after)
        results["kill"] = record
        print(json.dumps(record), file=sys.stderr, flush=True)
    emit(results, args.json)


def poc_env(home: Path, roots: Path) -> dict:
    """The environment of a measured `automl-tasks poc`: its own home and SQLite store, this
    checkout's code, local Spark unless SPARK_MASTER says otherwise."""
    env = {**os.environ, "AUTOML_HOME": str(home), "AUTOML_DATA_ROOTS": str(roots),
           "SPARK_MASTER": os.environ.get("SPARK_MASTER", "local[*]"), "PYTHONPATH": str(ROOT)}
    env.pop("MLFLOW_TRACKING_URI", None)
    return env


def emit(results: dict, path: str | None) -> None:
    """Every measurement as JSON on stdout, and into `path` when given."""
    text = json.dumps(results, indent=2)
    if path:
        Path(path).write_text(text)
    print(text)


if __name__ == "__main__":
    main()

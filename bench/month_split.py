"""What splitting the monthly DAG's month into one task per step costs (issue 15 item 8).

    nice -n 10 .venv/bin/python bench/month_split.py [--before 3da2168] [--after HEAD] [--repeats 2]
        [--stack-repeats 1] [--skip-dagtest] [--skip-stack] [--json PATH] [--out bench/RESULTS.md]
    .venv/bin/python bench/month_split.py --from-json A.json [B.json] [--out bench/RESULTS.md]

before = the month as ONE task (`per_spec.evaluate`), after = a task per step; each a `git worktree` of
its ref here (removed at the end; a directory is used as is). Demo data, the after tree's specs/
loan_default.yaml, promotion auto: 2018-01 unmeasured (makes the champion), 2018-02 measured, (a) by
the tree's `scripts/run_dag.py` (dag.test(), SQLite Airflow and MLflow; the first month's state copied
back per repeat), (b) through the tree's tests/support/stack.py `airflow_stack` (PostgreSQL, MLflow
with auth, LocalExecutor: a process per task; REST; wall = trigger to the run's end_date). Trees
alternate order. Children get a bytecode cache (as a production image has .pyc files) and a shim
(sitecustomize) timing the library's step calls, get_spark, prepare_for_tuning, load_champion, imports.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SECTION = "## The month as steps: what the split costs (bench/month_split.py)"
AUTO_START, AUTO_END = "<!-- month_split.py:auto:start -->", "<!-- month_split.py:auto:end -->"
DAG_ID, MODEL = "monthly_retrain", "loan_default"
FIRST, MONTH = ("2018-01", "2018-02-01T00:00:00+00:00"), ("2018-02", "2018-03-01T00:00:00+00:00")
STEPS = ("check", "ablation", "monitor", "tune", "compare", "decide", "approve_challenger", "apply_decision")
FOREIGN = ("AIRFLOW", "MLFLOW_", "AUTOML_", "SPARK_", "PYSPARK_", "BENCH_SPLIT")
SHIM = '''"""bench/month_split.py: wall seconds of a few calls, appended to $BENCH_SPLIT_SPANS."""
import json, os, sys, time
OUT, CUR, STEPS = os.environ.get("BENCH_SPLIT_SPANS"), [None], "check ablation monitor tune compare decide".split()
def rec(name, t0, s):
    with open(OUT, "a") as fh:
        fh.write(json.dumps({"pid": os.getpid(), "name": name, "step": CUR[0], "t0": t0, "s": s}) + "\\n")
def timed(name, fn):
    def wrapper(*a, **k):
        CUR[0] = name[5:] if name.startswith("step:") else CUR[0]
        t0, p = time.time(), time.perf_counter()
        try:
            return fn(*a, **k)
        finally:
            rec(name, t0, time.perf_counter() - p)
    return wrapper
def wrap(m, kind, *names):
    return [setattr(m, n, timed(kind or "step:" + n, getattr(m, n))) for n in names]
def lapped(fn):
    return lambda self, step: (fn(self, step), rec("lap:" + step, time.time(), self.laps[step]))[0]
HOOKS = {"automl_tasks.spark": lambda m: wrap(m, "spark", "get_spark"),
         "automl_tasks.tuning.job": lambda m: wrap(m, "prepare", "prepare_for_tuning"),
         "automl_tasks.registry.champion": lambda m: wrap(m, "champion", "load_champion"),
         "automl_tasks.pipelines.month_runs": lambda m: setattr(m.Stopwatch, "lap", lapped(m.Stopwatch.lap)),
         "automl_tasks.pipelines.monthly.steps": lambda m: wrap(m, None, *STEPS)}
IMPORTS = ("mlflow", "pyspark.sql", "xgboost", "lightgbm", "evidently")
class Finder:
    def find_spec(self, name, path, target=None):
        if name not in HOOKS and name not in IMPORTS:
            return None
        found = next((spec for f in sys.meta_path if f is not self and hasattr(f, "find_spec")
                      for spec in [f.find_spec(name, path, target)] if spec is not None), None)
        if found is not None and found.loader is not None:
            hook, run = HOOKS.pop(name, None), found.loader.exec_module
            run = timed("import:" + name, run) if name in IMPORTS else run
            found.loader.exec_module = lambda module: (run(module), hook and hook(module))[0]
        return found
OUT and sys.meta_path.insert(0, Finder())
'''


def _med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def _ts(text: str | None) -> float | None:
    return datetime.fromisoformat(text.replace(" ", "T")).timestamp() if text else None


def child_env(tree: Path, work: Path, **extra: str) -> dict[str, str]:
    """The caller's env minus anything pointing elsewhere, plus the tree, the shim and a bytecode cache."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(FOREIGN) and k not in ("PYTHONPATH", "PYTHONDONTWRITEBYTECODE")}
    return env | {"PATH": f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
                  "PYTHONPATH": f"{tree}{os.pathsep}{work / 'shim'}", "PYTHONPYCACHEPREFIX": str(work / "pycache"),
                  "MLFLOW_DISABLE_TELEMETRY": "true", "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false", **extra}


def spans_by_step(path: Path, tasks: dict, window=(0, float("inf"))) -> dict[str, dict[str, float]]:
    """{step or task: {kind: seconds}} of the records started in `window` by processes other than Spark's workers
    (they only import); outside a step call: the step its process ran (if one), else the task running then."""
    records = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
    main = {r["pid"] for r in records if not r["name"].startswith("import:")}
    records = [r for r in records if r["pid"] in main and window[0] <= r["t0"] <= window[1]]
    ran = {r["pid"]: r["name"][5:] for r in records if r["name"].startswith("step:")}
    out: dict[str, dict[str, float]] = {}
    for r in records:
        kind, step = r["name"].split(":")[0], r["step"] or ran.get(r["pid"])
        step = r["name"][4:] if kind == "lap" else step
        step = step or next((n for n, t in tasks.items() if t["start"] and t["start"] <= r["t0"] <= (t["end"] or 0)),
                            "(outside tasks)")
        out.setdefault(step, {})[kind] = round(out.get(step, {}).get(kind, 0.0) + r["s"], 3)
    return out


def dagtest(tree: Path, work: Path, state: Path, date: str, log: Path) -> dict:
    """One `run_dag.py` process for `date` on the state folder: wall, tasks, shim spans."""
    spans = log.with_suffix(".spans.jsonl")   # a fresh file per run
    env = child_env(tree, work, AIRFLOW_HOME=str(state / "airflow"), AUTOML_HOME=str(state / "home"),
                    AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{state / 'airflow' / 'airflow.db'}",
                    AIRFLOW__CORE__DAGS_FOLDER=str(tree / "dags"), AIRFLOW__CORE__PLUGINS_FOLDER=str(tree / "plugins"),
                    AIRFLOW__CORE__LOAD_EXAMPLES="False", AIRFLOW__CORE__UNIT_TEST_MODE="False",
                    AUTOML_SPECS_DIR=str(work / "specs"), AUTOML_FIRST_MONTH=FIRST[0], SPARK_MASTER="local[2]",
                    BENCH_SPLIT_SPANS=str(spans))
    load, t0 = os.getloadavg()[0], time.perf_counter()
    with open(log, "w") as fh:
        proc = subprocess.run([sys.executable, str(tree / "scripts" / "run_dag.py"), DAG_ID, "--date", date,
                               "--conf", '{"promotion": "auto"}'], env=env, cwd=tree, stdout=fh,
                              stderr=subprocess.STDOUT, timeout=3600)
    wall, text = time.perf_counter() - t0, log.read_text(errors="replace")
    results = [json.loads(line[7:]) for line in text.splitlines() if line.startswith("RESULT ")]
    if proc.returncode != 0 or not results or results[-1]["state"] != "success":
        raise RuntimeError(f"dag.test {tree.name} {date} failed (exit {proc.returncode}), {log}:\n{text[-3000:]}")
    with sqlite3.connect(state / "airflow" / "airflow.db") as db:
        run_id = db.execute("select run_id from dag_run where dag_id=? order by id desc", (DAG_ID,)).fetchone()[0]
        rows = db.execute("select task_id, start_date, end_date, duration, state from task_instance "
                          "where dag_id=? and run_id=?", (DAG_ID, run_id)).fetchall()
    tasks = {t.split(".")[-1]: {"start": _ts(s), "end": _ts(e), "duration": d, "state": st} for t, s, e, d, st in rows}
    return {"wall_s": round(wall, 2), "tasks": tasks, "spans": spans_by_step(spans, tasks),
            "load_avg_1m": [load, os.getloadavg()[0]]}


def dagtest_mode(trees: dict[str, Path], work: Path, repeats: int, progress) -> dict:
    """Per tree: a migrated Airflow home, the first month, its state kept; then the measured month."""
    template, out = work / "airflow-template", {name: [] for name in trees}
    if not (template / "airflow.db").exists():
        env = child_env(trees["after"], work, AIRFLOW_HOME=str(template), AIRFLOW__CORE__LOAD_EXAMPLES="False")
        subprocess.run([str(Path(sys.executable).with_name("airflow")), "db", "migrate"], env=env, check=True,
                       capture_output=True, timeout=900)
    for name, tree in trees.items():
        state = work / "dagtest" / name / "state"
        shutil.rmtree(state.parent, ignore_errors=True)
        shutil.copytree(template, state / "airflow")
        first = dagtest(tree, work, state, FIRST[1], state.parent / "first.log")
        progress(f"dag.test {name}: first month {FIRST[0]} (unmeasured) {first['wall_s']:.0f} s")
        shutil.copytree(state, state.parent / "snapshot")
    for r in range(repeats):
        for name in list(trees)[:: 1 if r % 2 == 0 else -1]:   # alternate the order
            state = work / "dagtest" / name / "state"
            shutil.rmtree(state)
            shutil.copytree(state.parent / "snapshot", state)
            run = dagtest(trees[name], work, state, MONTH[1], state.parent / f"measured-{r}.log")
            progress(f"dag.test {name} repeat {r + 1}: {run['wall_s']:.0f} s (load {run['load_avg_1m'][0]:.1f})")
            out[name].append(run)
    return out


def child_stack(out_path: str, specs_dir: str, root: str, shim: str) -> None:
    """In a subprocess with cwd = PYTHONPATH = the tree: its airflow_stack, both months over REST."""
    from urllib.parse import quote

    from tests.support import stack as stack_module

    # The tasks' environment: `_airflow_env` before the stack was derived from compose, `airflow_env` since.
    name = "_airflow_env" if hasattr(stack_module, "_airflow_env") else "airflow_env"
    original, result = getattr(stack_module, name), {"started": time.time()}
    setattr(stack_module, name, lambda *a, **k: (lambda env: {**env, "PYTHONPATH": env["PYTHONPATH"] + os.pathsep
                                                              + shim})(original(*a, **k)))
    with stack_module.airflow_stack(Path(root), specs_dir=Path(specs_dir), models=[MODEL]) as stack:
        api, result["stack_up_s"] = stack.airflow, round(time.time() - result["started"], 1)

        def wait(what, probe, limit_s, every_s=1.0):
            deadline = time.monotonic() + limit_s
            while (found := probe()) is None:
                stack.check_alive()
                if time.monotonic() > deadline:
                    raise RuntimeError(f"timed out waiting for {what}{stack.why()}")
                time.sleep(every_s)
            return found

        wait("the DAG's parse", lambda: True if api.get(f"/api/v2/dags/{DAG_ID}").status_code == 200 else None, 600, 3)
        api.call_json("PATCH", f"/api/v2/dags/{DAG_ID}", json={"is_paused": False})
        for month in (FIRST[0], MONTH[0]):
            conf = {"spec": f"{MODEL}.yaml", "month": month, "promotion": "auto"}
            load, triggered = os.getloadavg()[0], time.time()
            run = api.call_json("POST", f"/api/v2/dags/{DAG_ID}/dagRuns", json={"logical_date": None, "conf": conf})
            path = f"/api/v2/dags/{DAG_ID}/dagRuns/{quote(run['dag_run_id'], safe='')}"
            state = wait(f"run {month}", lambda: {"success": "success", "failed": "failed"}.get(
                api.get_json(path)["state"]), 2400)
            seen, run = time.time(), api.get_json(path)
            tis = api.get_json(path + "/taskInstances")["task_instances"]
            if state != "success":
                raise RuntimeError(f"{month}: {state} {[(t['task_id'], t['state']) for t in tis]}{stack.why()}")
            if month == FIRST[0]:
                result["first_wall_s"] = round(seen - triggered, 1)
                continue
            result |= {"wall_s": round(_ts(run["end_date"]) - triggered, 2), "seen_s": round(seen - triggered, 2),
                       "triggered": triggered, "end": _ts(run["end_date"]), "load_avg_1m": [load, os.getloadavg()[0]],
                       "tasks": {t["task_id"].split(".")[-1]: {"start": _ts(t["start_date"]), "end": _ts(
                           t["end_date"]), "duration": t["duration"], "state": t["state"]} for t in tis}}
        Path(out_path).write_text(json.dumps(result))


def stack_mode(trees: dict[str, Path], work: Path, repeats: int, progress) -> dict:
    out: dict[str, list] = {name: [] for name in trees}
    for r in range(repeats):
        for name in list(trees)[:: 1 if r % 2 == 0 else -1]:   # alternate the order
            folder = work / "stack" / f"{name}-{r}"
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir(parents=True)
            spans, result, log = folder / "spans.jsonl", folder / "result.json", folder / "driver.log"
            progress(f"stack {name} repeat {r + 1}: log {log}")
            with open(log, "w") as fh:
                proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), "_stack", str(result),
                                       str(work / "specs"), str(folder / "root"), str(work / "shim")],
                                      env=child_env(trees[name], work, BENCH_SPLIT_SPANS=str(spans)),
                                      cwd=trees[name], stdout=fh, stderr=subprocess.STDOUT, timeout=5400)
            got = json.loads(result.read_text()) if result.exists() else {}
            if proc.returncode != 0 or "wall_s" not in got:   # reported as such; (a) stands alone
                got = {"error": log.read_text(errors="replace")[-1500:]}
                progress(f"stack {name} repeat {r + 1} FAILED (exit {proc.returncode}):\n{got['error']}")
            else:
                got["spans"] = spans_by_step(spans, got["tasks"], (got["triggered"], got["end"]))
                progress(f"  {got['wall_s']:.0f} s (stack up {got['stack_up_s']:.0f} s, first month "
                         f"{got['first_wall_s']:.0f} s, load {got['load_avg_1m'][0]:.1f})")
            out[name].append(got)
    return out


PROBE = """import importlib, json, time
t0 = time.perf_counter(); importlib.import_module("mlflow"); t1 = time.perf_counter()
from automl_tasks.spark import get_spark; get_spark().range(1).count()
print(json.dumps({"import_mlflow_s": round(t1 - t0, 2), "spark_start_s": round(time.perf_counter() - t1, 2)}))
get_spark().stop()"""


def probe(tree: Path, work: Path, repeats: int) -> list[dict]:
    """A fresh process: import mlflow, then start local Spark and run its first job."""
    runs = []
    for _ in range(repeats):
        t = time.perf_counter()
        out = subprocess.run([sys.executable, "-c", PROBE], env=child_env(tree, work, SPARK_MASTER="local[2]"),
                             cwd=tree, capture_output=True, text=True, timeout=600, check=True)
        runs.append({**json.loads(out.stdout.splitlines()[-1]), "process_s": round(time.perf_counter() - t, 2)})
    return runs


def _idle(run: dict) -> float:
    """Seconds from trigger to the run's end in which no task ran (scheduling, queueing, hand-offs)."""
    busy, cursor = 0.0, run["triggered"]
    for a, b in sorted((t["start"], t["end"]) for t in run["tasks"].values() if t["start"] and t["end"]):
        a, b = max(a, cursor), min(b, run["end"])
        if b > a:
            busy, cursor = busy + b - a, b
    return max(0.0, run["end"] - run["triggered"] - busy)


def mode_table(title: str, runs: dict, scheduler: bool) -> list[str]:
    ok = {k: [r for r in v if "wall_s" in r] for k, v in runs.items()}
    if not all(ok.values()):
        errors = [r["error"][-600:] for v in runs.values() for r in v if "error" in r] + [""]
        return [f"**{title}**: no successful run of {[k for k, v in ok.items() if not v]}. {errors[0]}", ""]
    lines = [f"**{title}**. Wall = " + ("trigger over REST to the run's end_date" if scheduler else
                                         "the `run_dag.py` process (imports, DAG parse, the run)"), "",
             "| tree | wall s (median) | each run | sum of task durations | no task running | load 1-min at start |",
             "|---|---|---|---|---|---|"]
    for name in ("before", "after"):
        rs = ok[name]
        walls, loads = ", ".join(f"{r['wall_s']:.0f}" for r in rs), ", ".join(f"{r['load_avg_1m'][0]:.1f}" for r in rs)
        busy = _med([sum(t["duration"] or 0 for t in r["tasks"].values()) for r in rs])
        idle = f"{_med([_idle(r) for r in rs]):.0f}" if scheduler else "-"
        wall = _med([r["wall_s"] for r in rs])
        lines.append(f"| {name} | **{wall:.0f}** | {walls} | {busy:.0f} | {idle} | {loads} |")
    ratio = _med([r["wall_s"] for r in ok["after"]]) / _med([r["wall_s"] for r in ok["before"]])
    before = [(k, _med([r["spans"].get(k, {}).get("lap") for r in ok["before"]]))
              for k in ("checks", "ablation", "monitor", "tuning", "compare", "decision")]
    once = [(label, _med([sum(v.get(k, 0) for v in r["spans"].values()) for r in ok["before"]])) for k, label in
            (("spark", "Spark start"), ("prepare", "prepare"), ("champion", "champion load"), ("import", "imports"))]
    lines += ["", f"after / before = **{ratio:.2f}x** (medians).", "", "Before, `per_spec.evaluate` took "
              f"{_med([r['tasks']['evaluate']['duration'] for r in ok['before']]):.0f} s; run_monthly's steps in it "
              "(s): " + ", ".join(f"{k} {v:.1f}" for k, v in before if v is not None) + "; in all, once each: "
              + ", ".join(f"{k} {v:.1f}" for k, v in once if v is not None) + ".", "",
              "After, per task (median s). step = the library's step call; outside = duration - step (process "
              "start, DAG parse, imports before the step, Airflow); imports = mlflow, pyspark.sql, xgboost, "
              "lightgbm, evidently wherever in the task; Spark start, prepare, champion load: inside the step.", "",
              "| task | duration | step | outside | imports | Spark start | prepare | champion load | step's own "
              "work |",
              "|---|---|---|---|---|---|---|---|---|"]
    total = [0.0] * 8
    for step in STEPS:
        dur = _med([r["tasks"].get(step, {}).get("duration") for r in ok["after"]])
        if dur is None:
            continue
        c = {k: _med([r["spans"].get(step, {}).get(k, 0.0) for r in ok["after"]])
             for k in ("step", "import", "spark", "prepare", "champion")}
        row = [dur, c["step"], dur - c["step"], c["import"], c["spark"], c["prepare"], c["champion"],
               c["step"] - c["spark"] - c["prepare"] - c["champion"]]
        total = [x + y for x, y in zip(total, row)]
        lines.append(f"| {step} | " + " | ".join(f"{x:.1f}" for x in row) + " |")
    return lines + ["| **sum** | " + " | ".join(f"**{x:.1f}**" for x in total) + " |", ""]


def markdown(results: dict) -> str:
    m = results["machine"]
    lines = [f"Generated {m['date']}: before = {m['before']}, after = {m['after']}; {m['cpus']} cores, 1/5/15-min "
             f"load average {m['load_start']} at the start, {m.get('load_end')} at the end. Demo data, "
             f"{m['rows_per_month']} rows a month, spec `specs/loan_default.yaml`; {FIRST[0]} (unmeasured, makes "
             f"the champion) then {MONTH[0]} (measured), promotion auto.", ""]
    for key, title in (("dagtest", "(a) dag.test(): one process, every task in it"),
                       ("stack", "(b) The scheduler, LocalExecutor: one process per task")):
        lines += mode_table(title, results[key], key == "stack") if results.get(key) else []
    p = {k: _med([x[k] for x in results.get("probe", [])]) for k in ("import_mlflow_s", "spark_start_s", "process_s")}
    lines += [f"Probe, a fresh process (after tree, median of {len(results['probe'])}): `import mlflow` "
              f"{p['import_mlflow_s']:.1f} s, then `get_spark()` + `spark.range(1).count()` {p['spark_start_s']:.1f}"
              f" s; the whole process {p['process_s']:.1f} s.", ""] if results.get("probe") else []
    return "\n".join(lines)


def write_section(path: Path, text: str) -> None:
    block, content = f"{AUTO_START}\n{text}\n{AUTO_END}", path.read_text() if path.exists() else "# Benchmarks\n"
    if AUTO_START in content and AUTO_END in content:
        content = re.sub(re.escape(AUTO_START) + ".*?" + re.escape(AUTO_END), lambda _: block, content, flags=re.S)
    elif SECTION in content:
        content = content.replace(SECTION, f"{SECTION}\n\n{block}\n", 1)
    else:
        content = content.rstrip() + f"\n\n{SECTION}\n\n{block}\n"
    path.write_text(content)


def setup(work: Path, refs: dict[str, str], rows: int) -> tuple[dict[str, Path], list[Path]]:
    """The two trees (the worktrees made here, to remove), the shim, the data and the spec."""
    import yaml

    trees, made = {}, []
    for name, ref in refs.items():
        trees[name] = Path(ref).resolve() if Path(ref).is_dir() else work / "trees" / name
        if not Path(ref).is_dir():
            subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(trees[name]), ref],
                           check=True, capture_output=True)
            made.append(trees[name])
    (work / "specs").mkdir(exist_ok=True)
    (work / "shim").mkdir(exist_ok=True)
    (work / "shim" / "sitecustomize.py").write_text(SHIM)
    sys.path.insert(0, str(trees["after"]))
    from automl_tasks.data.demo import write_demo_data

    written = write_demo_data(work / "data", n_months=24, rows_per_month=rows, seed=0)
    spec = yaml.safe_load((trees["after"] / "specs" / "loan_default.yaml").read_text())
    spec["data"]["source"] = written["loans"]
    (work / "specs" / f"{MODEL}.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    return trees, made


def measure(args, progress) -> dict:
    work = (args.work or Path(tempfile.mkdtemp(prefix="month-split-"))).resolve()
    work.mkdir(parents=True, exist_ok=True)
    progress(f"work folder {work}")
    refs = {"before": args.before, "after": args.after}
    commits = {n: subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", r], capture_output=True,
                                 text=True).stdout.strip() or r for n, r in refs.items()}
    results = {"machine": {"date": time.strftime("%Y-%m-%d %H:%M"), "cpus": os.cpu_count(), **commits,
                           "load_start": [round(x, 1) for x in os.getloadavg()], "rows_per_month": args.rows_per_month}}
    made: list[Path] = []
    save = lambda: args.json and args.json.write_text(json.dumps(results, indent=1))  # noqa: E731
    try:
        trees, made = setup(work, refs, args.rows_per_month)
        results["probe"] = probe(trees["after"], work, args.probe_repeats)
        if not args.skip_dagtest:
            results["dagtest"] = dagtest_mode(trees, work, args.repeats, progress)
            save()
        if not args.skip_stack:
            results["stack"] = stack_mode(trees, work, args.stack_repeats, progress)
    finally:
        results["machine"]["load_end"] = [round(x, 1) for x in os.getloadavg()]
        save()
        for tree in made:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)], capture_output=True)
        if not args.keep and not args.work:
            shutil.rmtree(work, ignore_errors=True)
    return results


def main() -> None:
    if sys.argv[1:2] == ["_stack"]:
        return child_stack(*sys.argv[2:6])
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for flag, kind, default, text in (
            ("--before", str, "3da2168", "ref (or directory) of the month as one task"),
            ("--after", str, "HEAD", "ref (or directory, e.g. .) of the month as steps"),
            ("--repeats", int, 2, "measured dag.test() months per tree"),
            ("--stack-repeats", int, 1, "measured scheduler months per tree"),
            ("--rows-per-month", int, 2000, "demo rows a month"), ("--probe-repeats", int, 2, "Spark probes"),
            ("--work", Path, None, "work folder (kept; default: a new temp folder, removed)"),
            ("--json", Path, None, "write every measurement here"),
            ("--out", Path, None, "rewrite the generated block of this file's month_split section")):
        parser.add_argument(flag, type=kind, default=default, help=text)
    [parser.add_argument(flag, action="store_true") for flag in ("--skip-dagtest", "--skip-stack", "--keep")]
    parser.add_argument("--from-json", type=Path, nargs="+", help="report earlier runs (later files' modes win)")
    args = parser.parse_args()

    progress = lambda line: print(f"[{time.strftime('%H:%M:%S')}] {line}", file=sys.stderr, flush=True)  # noqa: E731

    results: dict = {}
    for path in args.from_json or []:
        results |= {k: v for k, v in json.loads(path.read_text()).items() if v}
    text = markdown(results or measure(args, progress))
    print(text)
    if args.out:
        write_section(args.out, text)


if __name__ == "__main__":
    main()

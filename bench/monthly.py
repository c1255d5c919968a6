"""Bench the monthly job: one month end to end at a 1M- (and 100k-) row window, and DAG parse time.

    nice -n 10 .venv/bin/python bench/monthly.py [--rows 100000 1000000] [--repeats 3]
        [--parse-repeats 7] [--skip-monthly] [--skip-parse] [--work DIR] [--keep]
        [--json PATH] [--out bench/RESULTS.md]

What one measured run is (as in production, where each Airflow task is a fresh process):

1. Data: `write_demo_data` with 8 months from 2017-01 at ceil(rows / 6) rows a month, so
   the 6-month training window holds `rows` rows and the holdout month rows / 6 more.
2. A fresh AUTOML_HOME (fresh SQLite MLflow store, model cache, staging folder).
3. Process A (not measured): `run_monthly(spec, "2017-07", promotion_mode="auto")`, the
   first month of the store: it makes the first champion.
4. Process B (measured): a fresh interpreter imports the library, starts local Spark and
   calls `run_monthly(spec, "2017-08", promotion_mode="auto", spark=spark)`, the call the
   DAG's `evaluate` task makes, now with a champion to score, monitor and compare with.
   It records `timings` and `fit_seconds` from the result, wall time per library function
   (spans, see SPANS), peak RSS (driver and whole process tree) and CPU seconds.

Fitting wall time = (fit_seconds.trials + fit_seconds.baselines) / task slots + refits:
trial and baseline fold fits run as Spark tasks on `slots` slots at once (ideal packing),
refits run on the driver one after another. Each fold's seconds cover fit + predicting the
validation rows + the metric (timed around those in runner.fit_fold). Everything else in
run_monthly's total is "outside fitting", including idle slots when a wave's tasks do not
divide evenly over the slots.

DAG parse: a fresh interpreter per sample parses one file the way Airflow 3's DAG
processor does (pre-import the file's airflow modules, as the manager does before it
forks; then the stability check, a BundleDagBag with load_op_links=False, and
serialization), for dags/monthly_retrain.py and for a trivial one-task DAG as the peer.
"cold" samples skip the pre-import (the first parse in a new interpreter, as in tests).

Python bytecode: the machine sets PYTHONDONTWRITEBYTECODE, so a module without a .pyc compiles
from source at every import. `make install` writes the venv's .pyc files (uv --compile-bytecode,
since 2026-12-06; a venv installed before has none), but not the library's own, nor those of a
`--ref` export. The monthly runs therefore use a bytecode cache (PYTHONPYCACHEPREFIX under the
work folder, primed by an unmeasured tiny run first); the import and parse probes report both ways.

Benchmarks measure; nothing here asserts a time. The machine is shared and noisy: the
load average is recorded around every measured run, and medians and minima are reported.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import os
import platform
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCH = Path(__file__).resolve().parent
SPEC_TEMPLATE = BENCH / "spec.yaml"
SRC = ROOT            # the library measured: this work tree, or a `git archive` of --ref
START, N_MONTHS, TRAIN_MONTHS = "2017-01", 8, 6
FIRST_MONTH, MONTH = "2017-07", "2017-08"     # unmeasured (makes the champion), measured
STEPS = ("check", "ablation", "monitor", "tune", "compare", "decide")   # steps.STEPS
SECTION = "## Monthly job (bench/monthly.py)"
AUTO_START, AUTO_END = "<!-- monthly.py:auto:start -->", "<!-- monthly.py:auto:end -->"
HEAVY = ("pyspark", "mlflow", "xgboost", "lightgbm", "evidently", "pandas", "numpy", "sklearn")

TRIVIAL_DAG = '''"""Peer for the parse bench: one task, same decorators as the real DAG."""
import pendulum
from airflow.sdk import dag, task


@dag(dag_id="bench_trivial", schedule="@monthly", start_date=pendulum.datetime(2018, 7, 1, tz="UTC"),
     catchup=False)
def bench_trivial():
    @task
    def hello() -> int:
        return 1

    hello()


bench_trivial()
'''

# Library functions timed in the measured process: (module, attribute). Every module
# attribute holding the same function object gets the wrapper, so names imported with
# `from x import f` are covered. Spans nest: a span's path is its callers' spans + itself.
SPANS = [
    ("automl_tasks.pipelines.month_runs", "load_champion"),
    ("automl_tasks.pipelines.monthly.evaluation", "load_run_model"),
    ("automl_tasks.pipelines.holdout", "check_schema"),
    ("automl_tasks.pipelines.monthly.evaluation", "holdout_rows"),
    ("automl_tasks.pipelines.monthly.evaluation", "champion_trend"),
    ("automl_tasks.pipelines.month_runs", "find_or_tune"),
    ("automl_tasks.pipelines.monthly.evaluation", "compare_models"),
    ("automl_tasks.registry.champion", "ScoredModel.predict"),
    ("automl_tasks.data.prepare", "prepare"),
    ("automl_tasks.data.prepare", "load_frame"),
    ("automl_tasks.data.prepare", "to_matrix"),
    ("automl_tasks.data.prepare", "_check_feature_values"),    # before 2026-12-06; then:
    ("automl_tasks.data.checks", "month_facts"),
    ("automl_tasks.data.checks", "check_feature_values"),
    ("automl_tasks.data.prepare", "_label_classes"),
    ("automl_tasks.data.prepare", "_encoding"),
    ("automl_tasks.data.sources", "read_source"),
    ("automl_tasks.data.sources", "with_month"),
    ("automl_tasks.monitoring.drift", "spark_sample_to_pandas"),
    ("automl_tasks.monitoring.drift", "drift_report"),
    ("automl_tasks.monitoring.drift", "_run_evidently"),
    ("automl_tasks.monitoring.drift", "_write_html"),
    ("automl_tasks.monitoring.drift", "_write_json"),
    ("automl_tasks.monitoring.drift", "log_drift_to_mlflow"),
    ("automl_tasks.tuning.job", "tune"),
    ("automl_tasks.tuning.job", "_finish_algorithm"),
    ("automl_tasks.tuning.job", "_log_trials_table"),
    ("automl_tasks.tuning.job", "_with_baseline"),
    ("automl_tasks.tuning.validation", "make_folds"),
    ("automl_tasks.tuning.runner", "stage"),
    ("automl_tasks.tuning.runner", "run_wave"),
    ("automl_tasks.tuning.search", "run_search"),
    ("automl_tasks.registry.tracking", "TrialLogger.close"),
    ("automl_tasks.models.adapters", "fit"),
    ("automl_tasks.models.adapters", "predict"),
    ("automl_tasks.models.scoring", "encode"),
    ("automl_tasks.models.scoring", "load_pipeline"),
    ("automl_tasks.models.export", "export_native"),
    ("automl_tasks.models.export", "log_flavor_model"),
    ("automl_tasks.evaluation.plots", "evaluation_figures"),
    ("automl_tasks.evaluation.plots", "comparison_forest"),
    ("automl_tasks.evaluation.plots", "metric_trend"),
    ("automl_tasks.registry.promotion", "register_candidate"),
    ("automl_tasks.registry.promotion", "open_decision"),
    ("automl_tasks.registry.promotion", "decide"),
    ("automl_tasks.registry.promotion", "current_champion"),
    ("mlflow", "start_run"),
    ("mlflow.tracking.fluent", "end_run"),
    ("mlflow", "log_figure"),
    ("mlflow", "log_artifacts"),
    ("mlflow", "log_artifact"),
    ("mlflow", "log_table"),
    ("mlflow", "log_dict"),
    ("mlflow", "log_metrics"),
    ("mlflow", "register_model"),
    ("mlflow.artifacts", "download_artifacts"),
    ("mlflow.models", "infer_signature"),
    ("mlflow.xgboost", "log_model"),
    ("mlflow.lightgbm", "log_model"),
    ("mlflow.xgboost", "load_model"),
    ("mlflow.lightgbm", "load_model"),
    ("pyspark.ml.pipeline", "Pipeline.fit"),
    # Every Spark action, labelled by the library line that asked for it (outermost only).
    ("pyspark.sql.classic.dataframe", "DataFrame.collect"),
    ("pyspark.sql.classic.dataframe", "DataFrame.toPandas"),
    ("pyspark.sql.classic.dataframe", "DataFrame.count"),
    ("pyspark.sql.classic.dataframe", "DataFrame.first"),
    ("pyspark.sql.classic.dataframe", "DataFrame.take"),
    ("pyspark.sql.classic.dataframe", "DataFrame.head"),
    ("pyspark.ml.util", "MLWriter.save"),
]


# ---------------------------------------------------------------- measured process helpers

class _PostImport:
    """Meta path finder that runs a callback on a module right after its first import."""

    def __init__(self, callbacks):
        self.callbacks = callbacks

    def find_spec(self, name, path, target=None):
        if name not in self.callbacks:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(name, path, target)
            if spec is not None:
                break
        else:
            return None
        callback, loader = self.callbacks.pop(name), spec.loader
        original = loader.exec_module

        def exec_module(module):
            original(module)
            callback(module)

        loader.exec_module = exec_module
        return spec


class Spans:
    """Wall time per wrapped call, keyed by its path of enclosing spans (per thread)."""

    def __init__(self):
        self.local = threading.local()
        self.records: list[tuple[str, float, float, str]] = []   # path, start, seconds, thread

    def _stack(self) -> list[str]:
        if not hasattr(self.local, "stack"):
            self.local.stack = []
        return self.local.stack

    def install(self, targets) -> list[str]:
        """Wrap each target now if its module is loaded, else right after its first import.

        Deferring keeps the lazy imports (mlflow, pyspark.ml, evidently, matplotlib) inside
        run_monthly, where production pays them.
        """
        pending: dict[str, list[str]] = {}
        for module_name, attr in targets:
            if module_name in sys.modules:
                self._patch(sys.modules[module_name], module_name, attr)
            else:
                pending.setdefault(module_name, []).append(attr)
        if pending:
            sys.meta_path.insert(0, _PostImport({
                name: functools.partial(self._patch_all, name=name, attrs=attrs)
                for name, attrs in pending.items()}))
        return self.missing

    missing: list[str] = []

    def _patch_all(self, module, *, name: str, attrs: list[str]) -> None:
        for attr in attrs:
            self._patch(module, name, attr)

    def _patch(self, module, module_name: str, attr: str) -> None:
        owner, name = module, attr
        try:
            if "." in attr:
                cls_name, name = attr.split(".")
                owner = getattr(module, cls_name)
            original = getattr(owner, name)
        except AttributeError:
            self.missing = [*self.missing, f"{module_name}.{attr}"]
            return
        if module_name.startswith("automl_tasks"):
            label = attr
        elif module_name == "pyspark.sql.classic.dataframe":
            label = f"spark.{attr}"   # "spark.DataFrame.<action>": see _wrap
        elif module_name.startswith("pyspark"):
            label = f"spark.{attr}"
        elif module_name in ("mlflow.tracking.fluent", "mlflow.artifacts", "mlflow.models"):
            label = f"mlflow.{attr}"
        else:
            label = f"{module_name}.{attr}"
        wrapper = self._wrap(original, label)
        setattr(owner, name, wrapper)
        if "." not in attr:   # the same function imported by name into the library's modules
            for mod in list(sys.modules.values()):
                if mod is not None and mod is not module and getattr(mod, "__name__", "").startswith(
                        "automl_tasks"):
                    for key, value in list(vars(mod).items()):
                        if value is original:
                            setattr(mod, key, wrapper)

    def _wrap(self, fn, label: str):
        spans = self
        action = label.startswith("spark.DataFrame.")

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            stack = spans._stack()
            if action and stack and stack[-1].startswith("spark ") :
                return fn(*args, **kwargs)   # a Spark action inside another: time the outer one only
            name = label
            if action:   # which library line asked for it: "spark toPandas @ prepare.py:212"
                frame = sys._getframe(1)
                while frame is not None and "automl_tasks" not in frame.f_code.co_filename:
                    frame = frame.f_back
                where = (f"{Path(frame.f_code.co_filename).name}:{frame.f_lineno} {frame.f_code.co_name}"
                         if frame is not None else "?")
                name = f"spark {label.rsplit('.', 1)[1]} @ {where}"
            stack.append(name)
            started = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                spans.records.append(("/".join(stack), started, time.perf_counter() - started,
                                      threading.current_thread().name))
                stack.pop()
        return wrapper


class Sampler(threading.Thread):
    """Peak RSS of this process and of its whole tree (JVM, Python workers), every 0.2 s."""

    def __init__(self):
        super().__init__(daemon=True, name="bench-rss")
        import psutil

        self.psutil = psutil
        self.me = psutil.Process()
        self.peak_self = self.peak_tree = 0
        self.step = "start"
        self.peak_by_step: dict[str, int] = {}
        self.peak_by_kind: dict[str, int] = {}
        self.stop_event = threading.Event()

    def sample(self) -> None:
        rss_self = self.me.memory_info().rss
        kinds = {"driver": rss_self, "jvm": 0, "python_workers": 0, "other": 0}
        for child in self.me.children(recursive=True):
            try:
                kinds[_kind(child)] += child.memory_info().rss
            except self.psutil.Error:
                pass
        tree = sum(kinds.values())
        self.peak_self, self.peak_tree = max(self.peak_self, rss_self), max(self.peak_tree, tree)
        self.peak_by_step[self.step] = max(self.peak_by_step.get(self.step, 0), tree)
        for kind, rss in kinds.items():   # each kind's own peak (they need not coincide)
            self.peak_by_kind[kind] = max(self.peak_by_kind.get(kind, 0), rss)

    def run(self) -> None:
        while not self.stop_event.wait(0.2):
            try:
                self.sample()
            except Exception:   # a child exiting mid-sample
                pass

    def cpu_seconds(self) -> dict[int, float]:
        """User + system seconds per live process of the tree (JVM threads included)."""
        out = {}
        for proc in [self.me, *self.me.children(recursive=True)]:
            try:
                t = proc.cpu_times()
                out[proc.pid] = t.user + t.system
            except self.psutil.Error:
                pass
        return out


def _kind(proc) -> str:
    """Which part of a local Spark run a child process is: the JVM (driver and executors in
    one, local mode) or a PySpark worker (the executors' Python side, trials run there)."""
    name = proc.name()
    if name == "java":
        return "jvm"
    if name.startswith("python") and any("pyspark" in a for a in proc.cmdline()):
        return "python_workers"
    return "other"


def child_month(spec_path: str, month: str, out_path: str) -> None:
    """One month in this (fresh) process; writes the measurements as JSON to out_path."""
    t0 = time.perf_counter()
    sampler = Sampler()
    sampler.start()
    load_start = os.getloadavg()[0]
    from automl_tasks.pipelines import monthly
    from automl_tasks.spec import load_spec
    t_import = time.perf_counter() - t0

    from automl_tasks.spark import get_spark, task_slots
    t = time.perf_counter()
    spark = get_spark()
    spark.range(1).count()   # the JVM and its first job: what any first Spark call pays
    t_spark = time.perf_counter() - t
    slots = task_slots(spark)

    spans = Spans()
    missing = spans.install(SPANS)
    laps: list[tuple[str, float]] = []
    original_lap = monthly.Stopwatch.lap

    def lap(self, step):
        original_lap(self, step)
        laps.append((step, time.perf_counter()))
        following = STEPS[STEPS.index(step) + 1] if step in STEPS[:-1] else "after"
        sampler.sample()
        sampler.step = following

    monthly.Stopwatch.lap = lap
    spec = load_spec(spec_path)
    cpu_before = sampler.cpu_seconds()
    sampler.step = "check"
    called = time.perf_counter()
    result = monthly.run_monthly(spec, month, promotion_mode="auto", spark=spark)
    wall = time.perf_counter() - called
    cpu_after = sampler.cpu_seconds()
    sampler.sample()
    sampler.stop_event.set()
    cpu = sum(v - cpu_before.get(pid, 0.0) for pid, v in cpu_after.items())
    boundaries = [("check", called)] + [(s, t) for s, t in laps]
    out = {
        "month": month, "slots": slots, "master": spark.sparkContext.master,
        "library": str(Path(monthly.__file__).resolve().parents[2]),
        "import_s": round(t_import, 3), "spark_start_s": round(t_spark, 3), "run_wall_s": round(wall, 3),
        "timings": result["timings"], "fit_seconds": result["fit_seconds"],
        "decision": result["decision"]["status"], "champion_metric": result["champion_metric"],
        "candidates": result["candidates"],
        "cpu_s": round(cpu, 1),
        "peak_rss_driver_mb": round(max(sampler.peak_self, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
                                    / 2**20),
        "peak_rss_tree_mb": round(sampler.peak_tree / 2**20),
        "peak_rss_tree_by_step_mb": {k: round(v / 2**20) for k, v in sampler.peak_by_step.items()},
        "load_avg_1m": [load_start, os.getloadavg()[0]],
        "spans": _aggregate(spans.records, boundaries),
        "spans_missing": missing,
        "train_rows": None,
    }
    Path(out_path).write_text(json.dumps(out, indent=1, default=str))
    spark.stop()


def _aggregate(records, boundaries) -> dict[str, dict[str, dict[str, float]]]:
    """{step: {path: {"s": seconds, "n": calls}}}; main-thread spans assigned by their end time."""
    ends = [(step, t) for step, t in boundaries[1:]]
    out: dict[str, dict[str, dict[str, float]]] = {}
    for path, started, seconds, thread in records:
        finished = started + seconds
        step = next((s for s, t in ends if finished <= t + 1e-6), "after")
        if thread != "MainThread":
            step = f"{step} (thread {thread})"
        entry = out.setdefault(step, {}).setdefault(path, {"s": 0.0, "n": 0,
                                                           "t0": round(started - boundaries[0][1], 3)})
        entry["s"] = round(entry["s"] + seconds, 4)
        entry["n"] += 1
    return out


# ---------------------------------------------------------------- probes (fresh processes)

def child_parse(dag_file: str, mode: str, out_path: str, warmup_file: str) -> None:
    """Parse one DAG file as Airflow 3's DAG processor does.

    mode "warm": first parse another (trivial) file, so the parsing machinery is loaded as in
    a long-running DAG processor, then pre-import the file's airflow modules (the manager
    does this before it forks the parsing child), then time the parse: the cost that recurs
    every min_file_process_interval. mode "cold": the first parse in a fresh interpreter.
    """
    before = set(sys.modules)
    t0 = time.perf_counter()
    import structlog
    from airflow.dag_processing.dagbag import BundleDagBag
    from airflow.dag_processing.processor import _pre_import_airflow_modules, _serialize_dags
    from airflow.utils.dag_version_inflation_checker import check_dag_file_stability
    t_core = time.perf_counter() - t0
    log = structlog.get_logger("bench")
    t = time.perf_counter()
    if mode == "warm":
        _serialize_dags(BundleDagBag(dag_folder=warmup_file, bundle_path=Path(warmup_file).parent,
                                     bundle_name="warmup", load_op_links=False), log)
    t_warmup = time.perf_counter() - t
    t = time.perf_counter()
    if mode == "warm":
        _pre_import_airflow_modules(dag_file, log)
    t_pre = time.perf_counter() - t
    loaded = set(sys.modules)
    t = time.perf_counter()
    check_dag_file_stability(dag_file)
    t_check = time.perf_counter()
    bag = BundleDagBag(dag_folder=dag_file, bundle_path=Path(dag_file).parent, bundle_name="bench",
                       load_op_links=False)
    t_bag = time.perf_counter()
    serialized, errors = _serialize_dags(bag, log)
    t_parse = time.perf_counter() - t
    stats = [s.duration for s in bag.dagbag_stats]
    new = set(sys.modules) - loaded
    heavy = sorted({m.split(".")[0] for m in set(sys.modules) - before if m.split(".")[0] in HEAVY})
    Path(out_path).write_text(json.dumps({
        "core_import_s": t_core, "warmup_parse_s": t_warmup, "pre_import_s": t_pre, "parse_s": t_parse,
        "stability_check_s": t_check - t, "dagbag_s": t_bag - t_check, "serialize_s": t_parse - (t_bag - t),
        "new_modules": sorted({".".join(m.split(".")[:3]) for m in new}),
        "dagbag_duration_s": sum(getattr(s, "total_seconds", lambda: s)() for s in stats),
        "dags": sorted(bag.dag_ids), "import_errors": {**bag.import_errors, **errors},
        "serialized": len(serialized), "modules_during_parse": len(new), "heavy_loaded": heavy,
    }))


IMPORTS = ["automl_tasks.pipelines.monthly", "pyspark.sql", "mlflow", "pyspark.ml", "xgboost", "lightgbm",
           "optuna", "matplotlib.pyplot", "evidently"]


def child_imports(out_path: str) -> None:
    """Seconds per import, in the order the monthly process pays them (each after the previous)."""
    import importlib

    out = {}
    for name in IMPORTS:
        t = time.perf_counter()
        importlib.import_module(name)
        if name == "evidently":
            importlib.import_module("evidently.presets")
        out[name] = time.perf_counter() - t
    Path(out_path).write_text(json.dumps(out))


# ---------------------------------------------------------------- orchestration

def env_for(home: Path | None, bytecode: str, pycache: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("MLFLOW_TRACKING_URI", "PYTHONDONTWRITEBYTECODE", "PYTHONPYCACHEPREFIX",
                        "SPARK_REMOTE", "AUTOML_STAGING_DIR")}
    env["MLFLOW_DISABLE_TELEMETRY"] = "true"
    env["PYTHONPATH"] = str(SRC)   # ahead of the venv's editable install of the work tree
    if home is not None:
        env["AUTOML_HOME"] = str(home)
    if bytecode == "cached":
        env["PYTHONPYCACHEPREFIX"] = str(pycache)
    else:   # as this machine is set up: compile every import from source
        env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def run_child(args: list[str], env: dict[str, str], log: Path, cwd: Path) -> float:
    started = time.perf_counter()
    with open(log, "ab") as fh:
        proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), *args], env=env, cwd=cwd,
                              stdout=fh, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        tail = log.read_text(errors="replace")[-4000:]
        raise SystemExit(f"child {args[:2]} failed (exit {proc.returncode}); log {log}:\n{tail}")
    return time.perf_counter() - started


def make_data(work: Path, rows: int) -> tuple[Path, int]:
    from automl_tasks.data.demo import write_demo_data

    per_month = math.ceil(rows / TRAIN_MONTHS)
    data = work / f"data-{rows}"
    if not (data / "loans" / f"{MONTH}.parquet").exists():
        write_demo_data(data, n_months=N_MONTHS, rows_per_month=per_month, start=START, seed=0)
    import yaml

    raw = yaml.safe_load(SPEC_TEMPLATE.read_text())
    raw["data"]["source"] = str(data / "loans")
    (data / "spec.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    return data, per_month


def wait_for_quiet(max_load: float | None, max_wait: float, progress) -> None:
    """Wait (up to max_wait s) until the 1-minute load average drops below max_load."""
    if max_load is None:
        return
    deadline = time.monotonic() + max_wait
    if os.getloadavg()[0] >= max_load:
        progress(f"  load average {os.getloadavg()[0]:.1f} >= {max_load}: waiting up to {max_wait:.0f}s")
    while os.getloadavg()[0] >= max_load and time.monotonic() < deadline:
        time.sleep(10)


def bench_size(work: Path, rows: int, repeats: int, pycache: Path, progress, max_load=None,
               max_wait=0.0) -> dict:
    """The first month once (unmeasured, it makes the champion), then `repeats` measured months,
    each in a fresh process on a fresh copy of the store as the first month left it."""
    data, per_month = make_data(work, rows)
    home, snapshot = work / f"home-{rows}", work / f"snapshot-{rows}"
    for path in (home, snapshot):
        shutil.rmtree(path, ignore_errors=True)
    home.mkdir(parents=True)
    env = env_for(home, "cached", pycache)
    logs = work / "logs"
    logs.mkdir(exist_ok=True)
    first = work / f"first-{rows}.json"
    progress(f"rows {rows}: first month {FIRST_MONTH} (unmeasured: makes the champion) ...")
    wall_first = run_child(["_month", str(data / "spec.yaml"), FIRST_MONTH, str(first)], env,
                           logs / f"{rows}-first.log", home)
    first_month = {k: v for k, v in json.loads(first.read_text()).items() if k != "spans"}
    first_month["process_wall_s"] = round(wall_first, 3)
    shutil.copytree(home, snapshot, symlinks=True)   # same path on restore: artifact URIs are absolute
    runs = []
    for r in range(repeats):
        shutil.rmtree(home)
        shutil.copytree(snapshot, home, symlinks=True)
        wait_for_quiet(max_load, max_wait, progress)
        measured = work / f"measured-{rows}-{r}.json"
        progress(f"rows {rows} repeat {r + 1}/{repeats}: measured month {MONTH} "
                 f"(load average {os.getloadavg()[0]:.1f}) ...")
        cpu0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        wall = run_child(["_month", str(data / "spec.yaml"), MONTH, str(measured)], env,
                         logs / f"{rows}-measured-{r}.log", home)
        cpu1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        run = json.loads(measured.read_text())
        run["process_wall_s"] = round(wall, 3)
        run["process_cpu_reaped_s"] = round((cpu1.ru_utime + cpu1.ru_stime) - (cpu0.ru_utime + cpu0.ru_stime), 1)
        run["first_month"] = first_month
        run.update(derived(run))
        runs.append(run)
        progress(f"  total {run['timings']['total']:.1f}s, fitting {run['fit_wall_s']:.1f}s, "
                 f"outside {100 * run['outside_share']:.1f}%, peak tree RSS {run['peak_rss_tree_mb']} MB, "
                 f"load {run['load_avg_1m'][0]:.1f}->{run['load_avg_1m'][1]:.1f}")
    shutil.rmtree(snapshot, ignore_errors=True)
    return {"rows": rows, "rows_per_month": per_month, "window_rows": per_month * TRAIN_MONTHS,
            "runs": runs}


def derived(run: dict) -> dict:
    fit, slots, total = run["fit_seconds"], run["slots"], run["timings"]["total"]
    fit_wall = (fit["trials"] + fit["baselines"]) / slots + fit["refits"]
    tuning_spans = run["spans"].get("tune", {})
    # The waves run on their own threads, overlapping; run_search (the caller's thread) spans them.
    waves = sum(v["s"] for p, v in tuning_spans.items() if p.endswith("/run_search"))
    task_wall = (fit["trials"] + fit["baselines"]) / slots
    process_total = run["import_s"] + run["spark_start_s"] + total
    return {
        "fit_wall_s": round(fit_wall, 2),
        "outside_s": round(total - fit_wall, 2),
        "outside_share": round(1 - fit_wall / total, 4),
        "outside_share_with_startup": round(1 - fit_wall / process_total, 4),
        "spark_waves_s": round(waves, 2),
        "wave_overhead_s": round(waves - task_wall, 2),
        "cpu_use": round(run["cpu_s"] / (run["run_wall_s"] * (os.cpu_count() or 1)), 3),
    }


def run_parse(work: Path, repeats: int, pycache: Path, progress) -> dict:
    dags = work / "dags"
    dags.mkdir(exist_ok=True)
    trivial = dags / "bench_trivial.py"
    trivial.write_text(TRIVIAL_DAG)
    warmup = work / "dags-warmup" / "bench_warmup.py"
    warmup.parent.mkdir(exist_ok=True)
    warmup.write_text(TRIVIAL_DAG.replace("bench_trivial", "bench_warmup"))
    home = work / "airflow"
    home.mkdir(exist_ok=True)
    files = {"monthly_retrain": str(SRC / "dags" / "monthly_retrain.py"), "trivial": str(trivial)}
    out: dict = {}
    for bytecode in ("cached", "none"):
        env = env_for(None, bytecode, pycache)
        env.update({"AIRFLOW_HOME": str(home), "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                    "AIRFLOW__CORE__UNIT_TEST_MODE": "False", "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
                    "AUTOML_SPECS_DIR": str(SRC / "specs")})
        for name, path in files.items():
            if bytecode == "cached":   # prime the bytecode cache
                run_child(["_parse", path, "cold", str(work / "parse.json"), str(warmup)], env,
                          work / "parse.log", work)
            for mode in ("warm", "cold"):
                samples = []
                for _ in range(repeats):
                    result = work / "parse.json"
                    wall = run_child(["_parse", path, mode, str(result), str(warmup)], env, work / "parse.log",
                                     work)
                    sample = json.loads(result.read_text())
                    sample["process_wall_s"] = wall
                    if sample["import_errors"] or not sample["dags"]:
                        raise SystemExit(f"{path}: import errors {sample['import_errors']}")
                    samples.append(sample)
                out[f"{name}/{mode}/{bytecode}"] = samples
                progress(f"parse {name} {mode} bytecode={bytecode}: median "
                         f"{1000 * statistics.median(s['parse_s'] for s in samples):.0f} ms")
        samples = []
        for _ in range(max(1, repeats // 2)):
            result = work / "imports.json"
            run_child(["_imports", str(result)], env, work / "imports.log", work)
            samples.append(json.loads(result.read_text()))
        out[f"imports/{bytecode}"] = samples
    return out


def prime(work: Path, pycache: Path, progress) -> None:
    """Unmeasured tiny run of both months: compiles the bytecode cache; doubles as a smoke test."""
    progress("priming the bytecode cache (tiny unmeasured run) ...")
    bench_size(work, 6_000, 1, pycache, lambda line: None)
    shutil.rmtree(work / "home-6000", ignore_errors=True)


# ---------------------------------------------------------------- report

def machine(ref: str | None) -> dict:
    import psutil

    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    versions = {}
    for name in ("pyspark", "xgboost", "lightgbm", "mlflow", "evidently", "apache-airflow"):
        try:
            from importlib import metadata
            versions[name] = metadata.version(name)
        except Exception:
            versions[name] = "?"
    commit = subprocess.run(["git", "rev-parse", "--short", ref or "HEAD"], cwd=ROOT, capture_output=True,
                            text=True).stdout.strip()
    dirty = [] if ref else subprocess.run(["git", "status", "--porcelain", "--", "automl_tasks", "dags"],
                                          cwd=ROOT, capture_output=True, text=True).stdout.split("\n")
    return {"cpus": os.cpu_count(), "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
            "cpu_model": cpu, "python": platform.python_version(), "versions": versions,
            "git_commit": commit, "ref": ref, "library_files_modified": [d[3:] for d in dirty if d.strip()],
            "nice": os.nice(0), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}


def _med(values) -> float:
    return statistics.median(values)


def _fmt(values, scale=1.0, digits=1, pct=False) -> str:
    values = [v * scale for v in values]
    unit = "%" if pct else ""
    if len(values) == 1:
        return f"{values[0]:.{digits}f}{unit}"
    return f"{_med(values):.{digits}f}{unit} ({min(values):.{digits}f}-{max(values):.{digits}f})"


def markdown(results: dict) -> str:
    lines = []
    m = results["machine"]
    lines += [f"Measured {m['date']} at commit {m['git_commit']}"
              + (f" (library files modified in the work tree: {', '.join(m['library_files_modified'])})"
                 if m["library_files_modified"] else "")
              + f"; {m['cpus']} cores ({m['cpu_model']}), {m['memory_gib']} GiB, shared and noisy "
              f"(other test runs on the machine; nice {m['nice']}). Python {m['python']}, "
              + ", ".join(f"{k} {v}" for k, v in m["versions"].items()) + ".", ""]
    sizes = results.get("sizes", [])
    if sizes:
        n = len(sizes[0]["runs"])
        lines += [f"One month end to end (`run_monthly(spec, '{MONTH}', promotion_mode='auto')`, with a "
                  f"champion from {FIRST_MONTH}), fresh process and MLflow store per run; "
                  f"{n} run(s) per size: median (min-max).", ""]
        head = "| | " + " | ".join(f"{s['window_rows']:,} rows" for s in sizes) + " |"
        lines += [head, "|---" * (len(sizes) + 1) + "|"]

        def row(label, key, **kw):
            lines.append(f"| {label} | " + " | ".join(_fmt([key(r) for r in s["runs"]], **kw) for s in sizes)
                         + " |")

        row("run_monthly total (s)", lambda r: r["timings"]["total"])
        for step in STEPS:
            row(f"&nbsp;&nbsp;{step} (s)", lambda r, st=step: r["timings"][st])
        row("fitting wall (s) = (trials+baselines)/slots + refits", lambda r: r["fit_wall_s"])
        row("&nbsp;&nbsp;trials, task-seconds", lambda r: r["fit_seconds"]["trials"])
        row("&nbsp;&nbsp;baselines, task-seconds", lambda r: r["fit_seconds"]["baselines"])
        row("&nbsp;&nbsp;refits on the driver (s)", lambda r: r["fit_seconds"]["refits"])
        row("**outside fitting, share of total** (target <20%)", lambda r: r["outside_share"], scale=100,
            pct=True)
        row("outside fitting (s)", lambda r: r["outside_s"])
        row("searches' wall (s): the Spark waves", lambda r: r["spark_waves_s"])
        row("&nbsp;&nbsp;of which idle slots + Spark and searcher overhead (s)", lambda r: r["wave_overhead_s"])
        row("process: imports (s)", lambda r: r["import_s"])
        row("process: Spark start (s)", lambda r: r["spark_start_s"])
        row("outside share incl. imports + Spark start", lambda r: r["outside_share_with_startup"], scale=100,
            pct=True)
        row("process wall, start to exit (s)", lambda r: r["process_wall_s"])
        row("CPU use of the process tree, of all cores (approx.)", lambda r: r["cpu_use"], scale=100, pct=True)
        row("peak RSS driver (MB)", lambda r: r["peak_rss_driver_mb"], digits=0)
        row("peak RSS process tree (MB, upper bound)", lambda r: r["peak_rss_tree_mb"], digits=0)
        row("first month (no champion) total (s)", lambda r: r["first_month"]["timings"]["total"])
        row("load average (1 min) at start", lambda r: r["load_avg_1m"][0], digits=2)
        row("load average (1 min) at end", lambda r: r["load_avg_1m"][1], digits=2)
        lines.append("")
        if len(sizes) >= 2:
            small, big = min(sizes, key=lambda s: s["rows"]), max(sizes, key=lambda s: s["rows"])
            for label, key in (("run_monthly total", lambda r: r["timings"]["total"]),
                               ("fitting wall", lambda r: r["fit_wall_s"]),
                               ("outside fitting", lambda r: r["outside_s"])):
                a, b = [key(r) for r in small["runs"]], [key(r) for r in big["runs"]]
                lines.append(f"- {big['window_rows']:,} vs {small['window_rows']:,} rows, {label}: "
                             f"{_med(b) / _med(a):.1f}x (medians), {min(b) / min(a):.1f}x (minima)"
                             + (" (target <=10x)" if label == "run_monthly total" else ""))
            lines.append("")
        for s in sizes:
            quiet = min(s["runs"], key=lambda r: r["timings"]["total"])
            lines += [f"Where the time goes, {s['window_rows']:,} rows, the fastest (least disturbed) run: "
                      f"total {quiet['timings']['total']:.1f} s, fitting {quiet['fit_wall_s']:.1f} s, outside "
                      f"{100 * quiet['outside_share']:.1f}%. Seconds per library call (indented = inside the "
                      "call above; calls under 0.3 s left out; `--json` has every run):", "", "```"]
            lines += span_table([quiet])
            lines += ["```", ""]
    parse = results.get("parse")
    if parse:
        lines += parse_markdown(parse)
    return "\n".join(lines)


def span_table(runs: list[dict], floor: float = 0.3) -> list[str]:
    """Per step: spans as a tree (children indented under their caller, siblings in call order),
    with "rest" = a span's time outside its child spans, and for the step, time outside any span."""
    out = []
    steps = []
    for r in runs:
        steps += [s for s in r["spans"] if s not in steps]

    def secs(step: str, path: str) -> float:
        return _med([r["spans"].get(step, {}).get(path, {"s": 0.0})["s"] for r in runs])

    for step in steps:
        first: dict[str, float] = {}
        for r in runs:
            for path, v in r["spans"].get(step, {}).items():
                first.setdefault(path, v.get("t0", 0.0))
        children: dict[str, list[str]] = {}
        for path in first:
            children.setdefault(path.rpartition("/")[0], []).append(path)
        known = step in STEPS
        if not known and not any(secs(step, p) >= floor for p in first):
            continue
        out.append(f"{step}  (step {_med([r['timings'][step] for r in runs]):.1f} s)" if known else step)

        def line(depth: int, label: str, value: float, calls: int | None = None) -> None:
            count = f"  x{calls}" if calls else ""
            out.append(f"  {'  ' * depth}{label:<{46 - 2 * depth}} {value:8.2f} s{count}")

        def walk(parent: str, depth: int) -> None:
            for path in sorted(children.get(parent, []), key=lambda q: first[q]):
                value = secs(step, path)
                if value < floor:
                    continue
                calls = max(r["spans"].get(step, {}).get(path, {"n": 0})["n"] for r in runs)
                line(depth, path.split("/")[-1], value, calls)
                if children.get(path):
                    walk(path, depth + 1)
                    rest = _med([r["spans"].get(step, {}).get(path, {"s": 0.0})["s"]
                                 - sum(r["spans"].get(step, {}).get(c, {"s": 0.0})["s"] for c in children[path])
                                 for r in runs])
                    if rest >= floor:
                        line(depth + 1, "(rest)", rest)

        walk("", 0)
        if known:
            other = [r["timings"][step] - sum(v["s"] for p, v in r["spans"].get(step, {}).items() if "/" not in p)
                     for r in runs]
            line(0, "(outside any span)", _med(other))
    return out


def parse_markdown(parse: dict) -> list[str]:
    def ms(key, field, fn=_med):
        return 1000 * fn([s[field] for s in parse[key]])

    n = len(parse["monthly_retrain/warm/cached"])
    lines = [f"DAG file parse: one fresh interpreter per sample, {n} samples per cell, median (min) ms. "
             "warm = steady state of a DAG processor (parsing machinery loaded, the file's airflow "
             "imports pre-imported), recurring every min_file_process_interval; cold = the first parse "
             "in a fresh interpreter. parse = stability check + DagBag (runs the file, builds and "
             "validates the DAG) + serialization.", "",
             "| bytecode | mode | monthly_retrain.py | trivial 1-task DAG | ratio (medians) |",
             "|---|---|---|---|---|"]
    for bytecode in ("cached", "none"):
        for mode in ("warm", "cold"):
            a, b = f"monthly_retrain/{mode}/{bytecode}", f"trivial/{mode}/{bytecode}"
            if a not in parse:
                continue
            lines.append(f"| {bytecode} | {mode} | {ms(a, 'parse_s'):.0f} ({ms(a, 'parse_s', min):.0f}) | "
                         f"{ms(b, 'parse_s'):.0f} ({ms(b, 'parse_s', min):.0f}) | "
                         f"{ms(a, 'parse_s') / ms(b, 'parse_s'):.2f}x |")
    w, t = "monthly_retrain/warm/cached", "trivial/warm/cached"
    lines += ["",
              f"- warm/cached split, monthly_retrain vs trivial (median ms): DagBag "
              f"{ms(w, 'dagbag_s'):.0f} vs {ms(t, 'dagbag_s'):.0f} (Airflow's own DagBag stat, as "
              f"`airflow dags report` shows it: {ms(w, 'dagbag_duration_s'):.0f} vs "
              f"{ms(t, 'dagbag_duration_s'):.0f}), serialization {ms(w, 'serialize_s'):.0f} vs "
              f"{ms(t, 'serialize_s'):.0f}, stability check {ms(w, 'stability_check_s'):.0f} vs "
              f"{ms(t, 'stability_check_s'):.0f}; pre-import of the file's airflow modules (once per "
              f"processor) {ms(w, 'pre_import_s'):.0f} vs {ms(t, 'pre_import_s'):.0f}.",
              f"- Importing airflow's DAG processing in a new interpreter (before any parse): "
              f"{ms(t, 'core_import_s'):.0f} ms with cached bytecode, "
              f"{ms('trivial/warm/none', 'core_import_s'):.0f} ms compiling from source.",
              f"- Heavy modules imported by parsing monthly_retrain.py: "
              f"{sorted({m for s in parse[w] + parse['monthly_retrain/cold/cached'] for m in s['heavy_loaded']}) or 'none'}"
              f" (checked: {', '.join(HEAVY)}).", ""]
    for bytecode in ("cached", "none"):
        key = f"imports/{bytecode}"
        if key in parse:
            lines.append(f"- Imports the monthly task process pays, bytecode {bytecode} (median s, each "
                         "after the ones before): " + ", ".join(
                             f"{name} {_med([s[name] for s in parse[key]]):.1f}" for name in IMPORTS))
    lines.append("")
    return lines


def write_section(path: Path, text: str) -> None:
    """Replace the auto block of the monthly section (or add the section) and keep the rest."""
    block = f"{AUTO_START}\n{text}\n{AUTO_END}"
    content = path.read_text() if path.exists() else "# Benchmarks\n"
    if AUTO_START in content and AUTO_END in content:
        content = re.sub(re.escape(AUTO_START) + ".*?" + re.escape(AUTO_END), lambda _: block, content,
                         flags=re.S)
    elif SECTION in content:
        content = content.replace(SECTION, f"{SECTION}\n\n{block}\n", 1)
    else:
        content = content.rstrip() + f"\n\n{SECTION}\n\n{block}\n"
    path.write_text(content)


def export(ref: str, dest: Path) -> None:
    """`git archive` of ref into dest; later imports of automl_tasks come from there."""
    global SRC
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    archive = subprocess.run(["git", "archive", ref], cwd=ROOT, capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    SRC = dest
    sys.path.insert(0, str(dest))


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "_month":
        return child_month(*sys.argv[2:5])
    if len(sys.argv) > 1 and sys.argv[1] == "_parse":
        return child_parse(*sys.argv[2:6])
    if len(sys.argv) > 1 and sys.argv[1] == "_imports":
        return child_imports(sys.argv[2])
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[100_000, 1_000_000],
                        help="training-window rows (6 months); the holdout month adds rows/6")
    parser.add_argument("--repeats", type=int, default=3, help="measured runs per size")
    parser.add_argument("--parse-repeats", type=int, default=7, help="fresh interpreters per parse case")
    parser.add_argument("--skip-monthly", action="store_true")
    parser.add_argument("--skip-parse", action="store_true")
    parser.add_argument("--max-load", type=float,
                        help="before each measured run, wait until the 1-min load average is below this")
    parser.add_argument("--max-wait", type=float, default=600, help="longest such wait (s)")
    parser.add_argument("--no-prime", action="store_true", help="skip the tiny bytecode-priming run")
    parser.add_argument("--ref", help="measure the library as committed at this git ref (a `git archive` "
                        "export in the work folder) instead of the work tree, e.g. HEAD")
    parser.add_argument("--work", type=Path, help="work folder (default: a new temp folder)")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    parser.add_argument("--json", type=Path, help="write all measurements as JSON here")
    parser.add_argument("--from-json", type=Path, help="print/write the report of an earlier --json")
    parser.add_argument("--out", type=Path, help="update the monthly section of this markdown file")
    args = parser.parse_args()

    def progress(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    if args.from_json:
        results = json.loads(args.from_json.read_text())
        for size in results["sizes"]:      # derived figures as this version defines them
            for run in size["runs"]:
                run.update(derived(run))
    else:
        work = args.work or Path(tempfile.mkdtemp(prefix="automl-bench-"))
        work.mkdir(parents=True, exist_ok=True)
        pycache = work / "pycache"
        progress(f"work folder {work}")
        if args.ref:
            export(args.ref, work / "src")
        results = {"machine": machine(args.ref), "sizes": [], "parse": None}
        try:
            if not args.skip_monthly:
                if not args.no_prime:
                    prime(work, pycache, progress)
                for rows in args.rows:
                    results["sizes"].append(bench_size(work, rows, args.repeats, pycache, progress,
                                                       args.max_load, args.max_wait))
                    if args.json:   # keep what is done if a later size fails
                        args.json.write_text(json.dumps(results, indent=1))
            if not args.skip_parse:
                results["parse"] = run_parse(work, args.parse_repeats, pycache, progress)
        finally:
            if args.json:
                args.json.write_text(json.dumps(results, indent=1))
            if not args.keep and not args.work:
                shutil.rmtree(work, ignore_errors=True)
    text = markdown(results)
    print(text)
    if args.out:
        write_section(args.out, text)


if __name__ == "__main__":
    main()

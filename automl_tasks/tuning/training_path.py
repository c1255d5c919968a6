"""Which training path a tuning takes: per-trial (the window copied to every task) or data-parallel.

per_trial: the window is collected to the driver as numpy, broadcast, and every
(trial, fold) is one Spark task fitting on its own copy: fast for windows that fit
a task slot many times over. data_parallel: the window stays a Spark DataFrame and
each fold of each trial trains across all executors (xgboost.spark, LightGBM's
socket-based data-parallel learner in barrier tasks): for windows one slot cannot hold.

`choose` is pure, so the rule is tested on numbers; `resources` reads them from Spark.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


PATHS = ("auto", "per_trial", "data_parallel")

# How many window-sized copies per_trial holds at its peak, in one task slot and on the driver.
# A task: the broadcast value, the fold's training rows (a copy: boolean indexing), the
# library's own dataset (quantized, smaller, rounded up) and the validation rows.
# The driver: the Arrow batches, the pandas frame, the numpy matrix and the pickled broadcast.
PER_TRIAL_COPIES = 4
# Share of a slot's (or the driver's) memory those copies may take: the rest is the JVM's
# own, Spark's execution and storage memory, the Python worker and fragmentation.
MEMORY_SHARE = 0.5
BYTES_PER_VALUE = 8          # the window is float64: features, label and fold id per row


@dataclass(frozen=True)
class Resources:
    slot_bytes: int              # memory one task slot may use
    driver_bytes: int
    slots: int                   # task slots across the executors (data-parallel workers)


@dataclass(frozen=True)
class Decision:
    path: str                    # per_trial | data_parallel
    requested: str               # what the spec asked: auto | per_trial | data_parallel
    reason: str
    window_bytes: int
    slot_bytes: int
    driver_bytes: int

    def params(self) -> dict:
        """What the tuning run logs, so a run says how it trained and why."""
        return {"training_path": self.path, "training_requested": self.requested,
                "training_window_mb": round(self.window_bytes / 2**20, 1),
                "training_slot_mb": round(self.slot_bytes / 2**20, 1),
                "training_driver_mb": round(self.driver_bytes / 2**20, 1)}


def window_bytes(rows: int, features: int) -> int:
    """The encoded window's size as numpy holds it: rows x (features + label + fold id) float64."""
    return rows * (features + 2) * BYTES_PER_VALUE


def per_trial_limit(slot_bytes: int, driver_bytes: int) -> int:
    """The largest window per_trial takes: PER_TRIAL_COPIES copies within MEMORY_SHARE of the
    smaller of a slot's and the driver's memory."""
    return int(MEMORY_SHARE * min(slot_bytes, driver_bytes) / PER_TRIAL_COPIES)


def choose(requested: str, window: int, slot_bytes: int, driver_bytes: int,
           blocker: str | None = None) -> Decision:
    """The path for a window of `window` bytes; an explicit request always wins.

    auto: per_trial while the window is within `per_trial_limit`, else data_parallel,
    unless `blocker` says why the spec cannot train data-parallel (then per_trial, and
    the reason says so: the tuning may then run out of memory, which the spec can fix).
    """
    if requested not in PATHS:
        raise ValueError(f"training must be one of {', '.join(PATHS)}, got {requested!r}")
    limit = per_trial_limit(slot_bytes, driver_bytes)
    mb = lambda n: f"{n / 2**20:.0f} MB"  # noqa: E731
    if requested != "auto":
        path, reason = requested, "set in the spec"
    elif window > limit and blocker:
        path, reason = "per_trial", (f"window {mb(window)} > per-trial limit {mb(limit)}, "
                                     f"but data_parallel is not possible: {blocker}")
    elif window <= limit:
        path, reason = "per_trial", f"window {mb(window)} <= per-trial limit {mb(limit)}"
    else:
        path, reason = "data_parallel", f"window {mb(window)} > per-trial limit {mb(limit)}"
    return Decision(path, requested, reason, window, slot_bytes, driver_bytes)


_UNITS = {"": 1, "b": 1, "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}


def parse_bytes(text: str) -> int:
    """Spark's memory strings: 512m, 4g, 1t, 2048 (plain numbers are MiB, as Spark reads them)."""
    match = re.fullmatch(r"\s*(\d+)\s*([kmgt]?)b?\s*", str(text).lower())
    if not match:
        raise ValueError(f"not a Spark memory size: {text!r}")
    number, unit = int(match[1]), match[2]
    return number * (_UNITS[unit] if unit else 2**20)


def resources(spark, slots: int) -> Resources:
    """Memory per task slot and on the driver, from the session's conf (Spark's defaults: 1g).

    Python tasks run outside the executor JVM's heap; `spark.executor.pyspark.memory`
    caps them when set, else the executor's memory stands in for it. A slot gets its
    executor's memory divided by the executor's cores. Local mode: the one executor is
    the driver, so its memory is shared by all `slots`.
    """
    conf = spark.conf
    driver = parse_bytes(conf.get("spark.driver.memory", "1g"))
    master = conf.get("spark.master", "local")
    if master.startswith("local"):
        return Resources(driver // max(1, slots), driver, slots)
    executor = parse_bytes(conf.get("spark.executor.pyspark.memory", None)
                           or conf.get("spark.executor.memory", "1g"))
    cores = int(conf.get("spark.executor.cores", "1") or 1)
    return Resources(executor // max(1, cores), driver, slots)


def decider(spark, spec, slots: int):
    """`prepare`'s `decide(rows, n_features)` for `spec` on this session."""
    from automl_tasks.errors import SpecError
    from automl_tasks.models import algorithms
    from automl_tasks.spark import is_connect
    from automl_tasks.spec import data_parallel_blocker

    have = resources(spark, slots)
    blocker = data_parallel_blocker(spec) or (
        algorithms.connect_refusal(spec.algorithms, data_parallel=True) if is_connect(spark) else None)
    if spec.training == "data_parallel" and blocker:
        raise SpecError(f"training: data_parallel: {blocker}")

    def decide(rows: int, n_features: int) -> Decision:
        return choose(spec.training, window_bytes(rows, n_features), have.slot_bytes, have.driver_bytes,
                      blocker)
    return decide


def check_spark_support(spark, names) -> None:
    """A SpecError, before anything is read or written, if `spark` cannot tune these algorithms
    (Spark Connect runs neither Spark ML's model logging nor every data-parallel trainer)."""
    from automl_tasks.errors import SpecError
    from automl_tasks.models import algorithms
    from automl_tasks.spark import is_connect

    refusal = algorithms.connect_refusal(names) if is_connect(spark) else None
    if refusal:
        raise SpecError(refusal)


def per_trial_only(spark, who: str, slots: int):
    """`prepare`'s `decide` for a job that has no data-parallel path (the ablation study, the PoC):
    the auto rule, with a DataError, before anything is collected, where it would choose data_parallel."""
    from automl_tasks.errors import DataError

    have = resources(spark, slots)

    def decide(rows: int, n_features: int) -> Decision:
        decision = choose("auto", window_bytes(rows, n_features), have.slot_bytes, have.driver_bytes)
        if decision.path == "data_parallel":
            raise DataError(f"{who} collects its window to the driver and copies it into every task slot, "
                            f"and this window is too big for that ({decision.reason}); give the driver and "
                            "executors more memory (spark.driver.memory, spark.executor.memory) or train on "
                            "fewer rows (a shorter window.train_months, a sample of the file)")
        return decision
    return decide


def caller_prepared(spark, spec, slots: int, rows: int, n_features: int) -> Decision:
    """The decision when a caller handed `tune` a window it had already collected (matrices).

    A spec that asks for data_parallel is refused rather than trained per trial against its
    word: its window is to be prepared by `tuning.job.prepare_for_tuning`."""
    from automl_tasks.errors import SpecError

    if spec.training == "data_parallel":
        raise SpecError(f"spec {spec.name!r} sets training: data_parallel, but its window was handed to "
                        "tune already collected as matrices; prepare it with tuning.job.prepare_for_tuning")
    have = resources(spark, slots)
    return Decision("per_trial", spec.training, "the caller prepared the window as matrices",
                    window_bytes(rows, n_features), have.slot_bytes, have.driver_bytes)

"""Waves of trials on real local Spark: the next wave is queued while one runs, and a search
that fails part-way cancels what it queued rather than leave executors fitting for nobody."""

from __future__ import annotations

import time

import numpy as np
import pytest

from automl_tasks.spec import AlgorithmSpec
from automl_tasks.tuning import search
from automl_tasks.tuning.runner import FitContext, stage
from automl_tasks.tuning.validation import Folds


@pytest.fixture(scope="module")
def ctx(spark):
    rng = np.random.default_rng(5)
    X = rng.normal(size=(20000, 8))
    y = (X[:, 0] + X[:, 1] * X[:, 2] + rng.normal(scale=0.5, size=len(X)) > 0).astype(np.int64)
    folds = Folds(X, y, np.arange(len(y)) % 2, 2, np.ones(len(y), dtype=bool), "cv")
    return FitContext(stage(spark, folds), "xgboost", "binary", "areaUnderROC", (), 1, 0)


def grid(*n_estimators: int, time_budget_s: float | None = None) -> AlgorithmSpec:
    # 2 slots, 2 folds: 4 trials a wave, so each value listed 4 times is one wave.
    return AlgorithmSpec(search="grid", space={"n_estimators": list(n_estimators), "reg_lambda": [1.0, 2.0, 3.0, 4.0]},
                         fixed={"max_depth": 6}, time_budget_s=time_budget_s)


def _search(spark, ctx, algo, **callbacks):
    trials, _ = search.run_search(spark, ctx, algo, 2, 2, search.SearchHooks(**callbacks))
    return trials


def _active_jobs(spark) -> list[int]:
    # The tracker learns that a job ended from Spark's listener bus, asynchronously: a wave
    # whose results are already back can still show as running until the bus is drained.
    spark.sparkContext._jsc.sc().listenerBus().waitUntilEmpty()
    return spark.sparkContext.statusTracker().getActiveJobsIds()


def _outcome(results):
    return sorted((tuple(sorted(r.params.items())), round(r.value, 9), r.status) for r in results)


def test_the_next_wave_runs_while_the_driver_handles_the_last(spark, ctx, monkeypatch):
    algo = grid(300, 350, 400)    # ~1 s a fit: a wave outlasts queueing the next
    seen: dict[int, list] = {}

    def searched(at_once: int):
        monkeypatch.setattr(search, "IN_FLIGHT_WAVES", at_once)
        seen[at_once] = []
        results = _search(spark, ctx, algo, on_wave=lambda wave: seen[at_once].append(_active_jobs(spark)))
        return _outcome(results)

    assert searched(2) == searched(1)            # same trials, same values, in either mode
    assert len(seen[2]) == len(seen[1]) == 3
    # While the driver logs a wave, the next one is already a running Spark job; one at a
    # time, nothing runs then (this is what the check would see without the queueing).
    assert all(seen[2][:-1]) and seen[2][-1] == []
    assert seen[1] == [[], [], []]


def test_a_search_failing_part_way_cancels_its_queued_wave(spark, ctx):
    tracker = spark.sparkContext.statusTracker()
    queued: list[int] = []

    def fail_on_first_result(line: str):
        queued.extend(_active_jobs(spark))     # the second (long) wave, queued behind the first
        raise RuntimeError("the driver failed while handling a result")

    with pytest.raises(RuntimeError, match="driver failed"):
        _search(spark, ctx, grid(300, 3000), progress=fail_on_first_result)
    assert queued, "the second wave was not running when the first wave's results came in"
    for job in queued:
        deadline = time.monotonic() + 120
        while tracker.getJobInfo(job).status == "RUNNING" and time.monotonic() < deadline:
            time.sleep(0.2)
        # Cancelled, not run to the end: a wave left behind would have SUCCEEDED.
        assert tracker.getJobInfo(job).status == "FAILED"
    assert tracker.getActiveJobsIds() == []


def test_a_time_budget_stops_starting_waves_once_it_is_spent(spark, ctx):
    lines: list[str] = []
    ample = _search(spark, ctx, grid(20, 30, 40, time_budget_s=3600), progress=lines.append)
    assert len(ample) == 12 and not any("time budget" in line for line in lines)
    lines.clear()
    # 1,000 trials (250 waves) for a 3 s budget: the budget, not the grid, ends this search.
    record: dict = {}
    short, _ = search.run_search(spark, ctx, grid(*range(20, 270), time_budget_s=3), 2, 2,
                                 search.SearchHooks(lines.append, record=record))
    waves = record["waves"]
    deadline = record["started"] + record["budget_s"]
    assert record["budget_s"] == 3 and record["out_of_time"] and len(short) < 1000
    assert lines[-1] == f"xgboost: time budget 3s reached after {len(short)} trials"
    # By the search's own record: every wave it ran, and none started at or after the deadline.
    assert [n for w in waves for n in w["trials"]] == [r.number for r in short] == list(range(len(short)))
    assert all(w["done"] is not None and w["submitted"] < deadline for w in waves), (deadline, waves)

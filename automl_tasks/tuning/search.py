"""Search strategies (grid, random, adaptive) driving waves of Spark trials.

A strategy proposes configs; the loop runs them a wave at a time on Spark, tells
the strategy the results, reports progress, and hands each finished wave to a
callback (the MLflow logger) so the driver never waits on logging.
"""

from __future__ import annotations

import math
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from automl_tasks.evaluation.metrics import METRICS, is_better, orientation, worst_value
from automl_tasks.spark import cancel_jobs
from automl_tasks.spec import AlgorithmSpec
from automl_tasks.tuning import space as spaces
from automl_tasks.tuning.runner import FitContext, fits_on_driver, run_wave
from automl_tasks.tuning.sweep import CoordinateSweep


@dataclass
class TrialResult:
    algorithm: str
    number: int
    params: dict
    value: float                      # mean over folds; NaN when failed
    fold_values: list[float]
    seconds: float                    # summed fit time over folds
    status: str                       # FINISHED | FAILED
    error: str | None = None
    warm_start: bool = False
    extra: dict = field(default_factory=dict)


class FixedList:
    """Grid and random search: the whole list is known up front."""

    def __init__(self, configs: list[dict]):
        self.configs, self.next = configs, 0

    @property
    def total(self) -> int | None:
        return len(self.configs)

    def ask(self, n: int) -> list[dict]:
        batch = self.configs[self.next:self.next + n]
        self.next += len(batch)
        return batch

    def tell(self, config: dict, value: float | None) -> None:
        pass


class Adaptive:
    """Optuna's TPE with a constant liar, so a wave can hold as many configs as free slots.

    Warm-start points come first, then a coordinate sweep (tuning/sweep.py) that tries each
    axis's ends (cold) or steps around the warm point, then TPE, which learns from them all.
    While the sweep waits for results in flight, `ask` proposes nothing: a TPE config filling
    the slot would be queued ahead of the sweep's next points and delay them by a whole wave.
    """

    def __init__(self, dims: list[spaces.Dimension], greater_is_better: bool, trials: int | None,
                 seed: int, warm_start: list[dict] | None = None):
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.total = trials
        self.dims = {d.name: _distribution(d) for d in dims}
        sampler = optuna.samplers.TPESampler(seed=seed, constant_liar=True, n_startup_trials=8)
        self.study = optuna.create_study(direction="maximize" if greater_is_better else "minimize",
                                         sampler=sampler)
        self.pending: dict[int, object] = {}
        self.warm: list[dict] = []
        for point in warm_start or []:
            known = {k: v for k, v in point.items() if k in self.dims and self.dims[k]._contains(
                self.dims[k].to_internal_repr(v))}
            if known and known not in self.warm:
                self.warm.append(known)
        self.queue = list(self.warm)
        self.sweep = CoordinateSweep(dims, greater_is_better, self.warm[0] if self.warm else None)
        self.asked = 0

    def ask(self, n: int) -> list[dict]:
        if self.total is not None:
            n = min(n, self.total - self.asked)
        configs = []
        for _ in range(max(0, n)):
            fixed = self.queue.pop(0) if self.queue else self.sweep.propose()
            if fixed is None and not self.sweep.finished and self.pending:
                break       # the sweep's next point waits for these results (never with none out)
            if fixed is not None:
                self.study.enqueue_trial(fixed)
            trial = self.study.ask(self.dims)
            config = dict(trial.params)
            self.pending[id(config)] = trial
            configs.append(config)
        self.asked += len(configs)
        return configs

    def tell(self, config: dict, value: float | None) -> None:
        from optuna.trial import TrialState

        trial = self.pending.pop(id(config))
        failed = value is None or math.isnan(value)
        self.sweep.tell(config, None if failed else value)
        if failed:
            self.study.tell(trial, state=TrialState.FAIL)
        else:
            self.study.tell(trial, value)


def _distribution(d: spaces.Dimension):
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    if d.kind == "choice":
        return CategoricalDistribution(list(d.choices))
    if d.kind == "int":
        return IntDistribution(int(d.low), int(d.high))
    return FloatDistribution(d.low, d.high, log=d.kind == "log")


def make_strategy(algorithm: str, algo: AlgorithmSpec, metric: str, warm_start: list[dict] | None):
    dims = spaces.parse_space(algorithm, algo.space)
    if algo.search == "grid":
        return FixedList(spaces.grid(dims)), dims
    if algo.search == "random":
        n = algo.trials if algo.trials is not None else 10_000
        return FixedList(spaces.random_configs(dims, n, algo.seed)), dims
    return Adaptive(dims, METRICS[metric].greater_is_better, algo.trials, algo.seed, warm_start), dims


IN_FLIGHT_WAVES = 2   # the next wave waits queued in Spark while one runs (see run_search)


@dataclass(frozen=True)
class SearchHooks:
    """What a search tells its caller as it goes."""
    progress: Callable[[str], None] = lambda line: None          # one line per trial, and the stop
    on_wave: Callable[[list[TrialResult]], None] = lambda wave: None   # each finished wave
    # Filled with the search's own account: `started` and each wave's `submitted`/`done`
    # (time.monotonic()), its trial numbers (-1: the baseline), `budget_s`, and `out_of_time`
    # (the budget stopped the search).
    record: dict | None = None


def run_search(spark, ctx: FitContext, algo: AlgorithmSpec, n_folds: int, slots: int,
               hooks: SearchHooks = SearchHooks(), warm_start: list[dict] | None = None,
               baseline: bool = False) -> tuple[list[TrialResult], TrialResult | None]:
    """Ask the strategy for configs a wave at a time, run each wave's folds as Spark tasks.

    Returns the trials and, with `baseline`, the library's default params (plus the spec's
    fixed ones) on the same folds, queued ahead of the first wave: what tuning bought (`lift`).

    Two waves are in flight at once: Spark queues the second wave's tasks behind the first's
    (FIFO), so slots the first wave's last tasks leave idle start the next wave at once
    rather than waiting for the driver to collect, log and ask. Waves fitted on the driver
    (Spark ML, the data-parallel path) each use every slot already: one at a time.
    """
    progress, on_wave, record = hooks.progress, hooks.on_wave, hooks.record
    strategy, _ = make_strategy(ctx.algorithm, algo, ctx.metric, warm_start)
    adaptive = isinstance(strategy, Adaptive)
    on_driver = fits_on_driver(ctx)
    # Fixed lists: a few tasks per slot per wave keeps slots busy; adaptive: one config per slot;
    # driver-fitted models: one config per wave, their folds run one after the other.
    if on_driver:
        wave_trials = 1
    else:
        wave_trials = slots if adaptive else max(1, math.ceil(4 * slots / n_folds))
    waves = _Waves(spark, ctx, n_folds, 1 if on_driver else IN_FLIGHT_WAVES)
    warm = getattr(strategy, "warm", [])
    results: list[TrialResult] = []
    best = worst_value(ctx.metric)
    start = time.monotonic()
    if record is not None:
        record.update(started=start, budget_s=algo.time_budget_s, waves=waves.log, out_of_time=False)
    out_of_time, asked, default = False, False, None
    try:
        if baseline:
            waves.submit(None, [dict(algo.fixed)], number=-1)
        while True:
            while waves.has_room() and not out_of_time:
                fits = _fits_budget(algo.time_budget_s, time.monotonic() - start, waves) if asked else True
                if fits is None:             # decided once the running wave's time is known
                    break
                if not fits:
                    out_of_time = True
                    break
                configs = strategy.ask(wave_trials)
                if not configs:
                    break
                waves.submit(configs, [{**algo.fixed, **c} for c in configs])
                asked = True
            if not waves.pending:
                break
            configs, wave = waves.next_done()
            if configs is None:
                default = wave[0]
                continue
            for config, result in zip(configs, wave):
                result.warm_start = config in warm
                strategy.tell(config, None if result.status == "FAILED" else result.value)
                results.append(result)
                if result.status == "FINISHED" and is_better(ctx.metric, result.value, best):
                    best = result.value
                progress(_progress_line(ctx, result, len(results), strategy.total, best, start,
                                        algo.time_budget_s))
            on_wave(wave)
    except BaseException:
        waves.abandon()
        raise
    waves.close()
    if record is not None:
        record["out_of_time"] = out_of_time
    if out_of_time:
        progress(f"{ctx.algorithm}: time budget {algo.time_budget_s:.0f}s reached after "
                 f"{len(results)} trials")
    return results, default


def _fits_budget(budget_s: float | None, elapsed: float, waves: _Waves) -> bool | None:
    """Whether one more wave may start after the first (which always runs): never past the
    budget, nor when (timed like the last wave, queued behind the ones in flight) it would end
    past it. None: no wave's time is known yet, so ask again when the running one is done."""
    if budget_s is None:
        return True
    if elapsed >= budget_s:
        return False
    if waves.last_seconds is None:
        return None
    return elapsed + (len(waves.pending) + 1) * waves.last_seconds <= budget_s


class _Waves:
    """Waves of trials running as Spark jobs from worker threads, oldest first.

    One wave at a time (driver-fitted waves) runs in the caller's thread. Otherwise each
    wave is a job group of its own: the next wave is handed to Spark only once the
    last one's job exists, so Spark's FIFO order is the waves' order; and a search that is
    abandoned (an error, a signal) cancels what it queued instead of leaving executors
    fitting for nobody.
    """

    def __init__(self, spark, ctx: FitContext, n_folds: int, at_once: int):
        self.spark, self.ctx, self.n_folds, self.at_once = spark, ctx, n_folds, at_once
        self.pool = ThreadPoolExecutor(at_once, thread_name_prefix=f"{ctx.algorithm}-wave")
        self.pending: list = []          # (configs, numbered, future, submitted at, job group)
        self.prefix = f"automl-{ctx.algorithm}-{id(self):x}"
        self.submitted = 0
        self.last_done: float | None = None
        self.last_seconds: float | None = None
        self.log: list[dict] = []        # every wave: trial numbers, submitted and done (monotonic)

    def has_room(self) -> bool:
        return len(self.pending) < self.at_once

    def submit(self, configs: list[dict] | None, params: list[dict], number: int | None = None) -> None:
        """Queue a wave; its trials are numbered in order unless `number` names the one trial."""
        if number is None:
            numbered = [(self.submitted + i, p) for i, p in enumerate(params)]
            self.submitted += len(numbered)
        else:
            numbered = [(number, params[0])]
        group = f"{self.prefix}-{numbered[0][0]}"
        self.log.append({"trials": [n for n, _ in numbered], "submitted": time.monotonic(), "done": None})
        if self.at_once == 1:
            # In this thread: a driver-fitted wave needs the caller's active SparkSession,
            # which PySpark keeps per thread. Nothing is queued, so nothing to cancel.
            future = Future()
            submitted = time.monotonic()
            future.set_result(run_wave(self.spark, self.ctx, numbered, self.n_folds))
            self.pending.append((configs, numbered, future, submitted, group))
            return
        future = self.pool.submit(self._run, numbered, group)
        self.pending.append((configs, numbered, future, time.monotonic(), group))
        self._wait_until_queued(group, future)

    def _run(self, numbered, group: str):
        sc = getattr(self.spark, "_sc", None)
        if sc is not None:      # thread-local: this thread's jobs join the group
            sc.setJobGroup(group, f"{self.ctx.algorithm} trials {numbered[0][0]}+", True)
        else:                   # Spark Connect: tags, also per thread
            self.spark.addTag(group)
        return run_wave(self.spark, self.ctx, numbered, self.n_folds)

    def _wait_until_queued(self, group: str, future, timeout_s: float = 60.0) -> None:
        """Until the wave's Spark job exists (or the wave is over): Spark runs queued jobs in
        the order they were submitted, and a later wave must not overtake an earlier one."""
        sc = getattr(self.spark, "_sc", None)
        if sc is None:                    # Spark Connect has no status tracker to ask
            return
        tracker = sc.statusTracker()
        deadline = time.monotonic() + timeout_s
        while not future.done() and not tracker.getJobIdsForGroup(group) and time.monotonic() < deadline:
            time.sleep(0.01)

    def next_done(self) -> tuple[list[dict] | None, list[TrialResult]]:
        """The oldest wave's configs and results (waits for it)."""
        configs, numbered, future, submitted, _ = self.pending.pop(0)
        rows = future.result()
        done = time.monotonic()
        next(w for w in self.log if w["done"] is None)["done"] = done     # waves end oldest first
        # A queued wave's clock starts when the wave before it is done, not when it was queued.
        self.last_seconds = done - max(submitted, self.last_done or submitted)
        self.last_done = done
        return configs, _collect(self.ctx.algorithm, numbered, rows, self.n_folds)

    def close(self) -> None:
        self.pool.shutdown()

    def abandon(self) -> None:
        """Cancel the queued and running waves' Spark jobs; do not wait for them."""
        self.pool.shutdown(wait=False, cancel_futures=True)
        for *_, group in self.pending:
            cancel_jobs(self.spark, group)
        self.pending.clear()


def lift(metric: str, tuned: float, baseline: float) -> float:
    """Tuned minus baseline, oriented so that positive means tuning helped."""
    return orientation(metric) * (tuned - baseline)


def _collect(algorithm: str, numbered, rows: list[dict], n_folds: int) -> list[TrialResult]:
    by_trial: dict[int, list[dict]] = {}
    for row in rows:
        by_trial.setdefault(row["trial"], []).append(row)
    out = []
    for number, params in numbered:
        folds = sorted(by_trial.get(number, []), key=lambda r: r["fold"])
        errors = [r["error"] for r in folds if r["error"]]
        values = [r["value"] for r in folds]
        failed = bool(errors) or len(folds) != n_folds
        out.append(TrialResult(
            algorithm=algorithm, number=number, params=params,
            value=float("nan") if failed else float(np.mean(values)),
            fold_values=values, seconds=float(sum(r["seconds"] for r in folds)),
            status="FAILED" if failed else "FINISHED",
            error=errors[0] if errors else (None if not failed else "missing fold results")))
    return out


def _progress_line(ctx: FitContext, result: TrialResult, done: int, total: int | None,
                   best: float, start: float, budget_s: float | None = None) -> str:
    """`xgboost trial 7/16 ... eta 40s`; when the time budget, not the count, ends the search
    (a PoC's count is only a ceiling), `trial 7 ... eta 95s (time budget)`: never a count that
    will not be reached, nor an eta from it."""
    elapsed = time.monotonic() - start
    by_count = elapsed / done * (total - done) if total else None
    by_budget = max(0.0, budget_s - elapsed) if budget_s else None
    if by_budget is not None and (by_count is None or by_budget < by_count):
        head, eta = f"{ctx.algorithm} trial {done}", f" eta {by_budget:.0f}s (time budget)"
    else:
        head = f"{ctx.algorithm} trial {done}/{total if total is not None else '?'}"
        eta = f" eta {by_count:.0f}s" if by_count is not None else ""
    if result.status == "FAILED":
        return f"{head} FAILED {result.error.splitlines()[0][:160]}"
    return f"{head} {ctx.metric}={result.value:.4f} best={best:.4f}{eta}"

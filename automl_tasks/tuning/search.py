"""Search strategies (grid, random, adaptive) driving waves of Spark trials.

A strategy proposes configs; the loop runs them a wave at a time on Spark, tells
the strategy the results, reports progress, and hands each finished wave to a
callback (the MLflow logger) so the driver never waits on logging.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from automl_tasks.evaluation.metrics import METRICS, is_better, orientation, worst_value
from automl_tasks.models.adapters import runs_on_driver
from automl_tasks.spec import AlgorithmSpec
from automl_tasks.tuning import space as spaces
from automl_tasks.tuning.runner import FitContext, run_wave


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
    """Optuna's TPE with a constant liar, so a wave can hold as many configs as free slots."""

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
            if known:
                self.study.enqueue_trial(known, skip_if_exists=True)
                self.warm.append(known)
        self.asked = 0

    def ask(self, n: int) -> list[dict]:
        if self.total is not None:
            n = min(n, self.total - self.asked)
        configs = []
        for _ in range(max(0, n)):
            trial = self.study.ask(self.dims)
            config = dict(trial.params)
            self.pending[id(config)] = trial
            configs.append(config)
        self.asked += len(configs)
        return configs

    def tell(self, config: dict, value: float | None) -> None:
        from optuna.trial import TrialState

        trial = self.pending.pop(id(config))
        if value is None or math.isnan(value):
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


def run_search(spark, ctx: FitContext, algo: AlgorithmSpec, n_folds: int, slots: int,
               progress: Callable[[str], None], on_wave: Callable[[list[TrialResult]], None],
               warm_start: list[dict] | None = None) -> list[TrialResult]:
    strategy, _ = make_strategy(ctx.algorithm, algo, ctx.metric, warm_start)
    adaptive = isinstance(strategy, Adaptive)
    # Fixed lists: a few tasks per slot per wave keeps slots busy; adaptive: one config per slot;
    # driver-fitted (Spark ML) models: one config per wave, their folds run one after the other.
    if runs_on_driver(ctx.algorithm):
        wave_trials = 1
    else:
        wave_trials = slots if adaptive else max(1, math.ceil(4 * slots / n_folds))
    results: list[TrialResult] = []
    best = worst_value(ctx.metric)
    start = time.monotonic()
    last_wave = 0.0
    while True:
        elapsed = time.monotonic() - start
        # Stop at the budget, or before a wave that (timed like the last one) would overrun it.
        if algo.time_budget_s is not None and (elapsed >= algo.time_budget_s or (
                results and elapsed + last_wave > algo.time_budget_s)):
            progress(f"{ctx.algorithm}: time budget {algo.time_budget_s:.0f}s reached after "
                     f"{len(results)} trials")
            break
        configs = strategy.ask(wave_trials)
        if not configs:
            break
        wave_started = time.monotonic()
        numbered = [(len(results) + i, {**algo.fixed, **c}) for i, c in enumerate(configs)]
        rows = run_wave(spark, ctx, numbered, n_folds)
        wave = _collect(ctx.algorithm, numbered, rows, n_folds)
        warm = getattr(strategy, "warm", [])
        for config, result in zip(configs, wave):
            result.params = {**algo.fixed, **config}
            result.warm_start = config in warm
            strategy.tell(config, None if result.status == "FAILED" else result.value)
            results.append(result)
            if result.status == "FINISHED" and is_better(ctx.metric, result.value, best):
                best = result.value
            progress(_progress_line(ctx, result, len(results), strategy.total, best, start))
        on_wave(wave)
        last_wave = time.monotonic() - wave_started
    return results


def run_baseline(spark, ctx: FitContext, algo: AlgorithmSpec, n_folds: int) -> TrialResult:
    """The library's default params (plus the spec's fixed ones) on the same folds: what tuning bought."""
    params = dict(algo.fixed)
    return _collect(ctx.algorithm, [(-1, params)], run_wave(spark, ctx, [(-1, params)], n_folds), n_folds)[0]


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
                   best: float, start: float) -> str:
    elapsed = time.monotonic() - start
    head = f"{ctx.algorithm} trial {done}/{total if total is not None else '?'}"
    if result.status == "FAILED":
        return f"{head} FAILED {result.error.splitlines()[0][:160]}"
    eta = f" eta {elapsed / done * (total - done):.0f}s" if total else ""
    return f"{head} {ctx.metric}={result.value:.4f} best={best:.4f}{eta}"

"""The paired bootstrap of a month's comparison, scored on one thread vs the pool (issue 19, item 2).

    nice -n 10 .venv/bin/python bench/bootstrap.py [--rows 167000] [--metric areaUnderROC] [--repeats 3]

What the monthly job's compare step runs at 1M rows: `compare_by_segment` over the holdout
(167k rows, 3 segments, 2,000 resamples) for one candidate against the champion. Each repeat
runs it with `resampling.THREADS = 1` and with the default (one thread per usable core),
interleaved, and checks that both give the same intervals. Prints seconds and the ratio;
nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def data(rows: int, metric: str, seed: int = 0):
    import numpy as np

    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, rows)
    signal = y + rng.normal(0, 1.5, rows)
    if metric in ("rmse", "mae", "r2"):
        return signal, signal + rng.normal(0, 0.5, rows), signal + rng.normal(0, 0.6, rows), \
            rng.choice(["a", "b", "c"], rows)

    def proba(noise):
        p1 = 1 / (1 + np.exp(-(signal + rng.normal(0, noise, rows))))
        return np.column_stack([1 - p1, p1])
    return y, proba(0.5), proba(0.6), rng.choice(["a", "b", "c"], rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=167_000)
    parser.add_argument("--metric", default="areaUnderROC")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    from automl_tasks.evaluation import compare, resampling

    task = "regression" if args.metric in ("rmse", "mae", "r2") else "binary"
    y, candidate, champion, segments = data(args.rows, args.metric)
    pool = resampling.THREADS
    seconds: dict[int, list[float]] = {1: [], pool: []}
    results = {}
    for _ in range(args.repeats):
        for threads in (1, pool):
            resampling.THREADS = threads
            start = time.perf_counter()
            results[threads] = compare.compare_by_segment(args.metric, task, y, candidate, champion, segments)
            seconds[threads].append(time.perf_counter() - start)
    same = [a.to_dict() for a in results[1]] == [b.to_dict() for b in results[pool]]
    one, many = statistics.median(seconds[1]), statistics.median(seconds[pool])
    print(f"{args.rows} rows, {args.metric}, overall + {len(results[1]) - 1} segments, 2000 resamples, "
          f"{args.repeats} repeats")
    print(f"1 thread:  median {one:.2f} s  ({', '.join(f'{s:.2f}' for s in seconds[1])})")
    print(f"{pool} threads: median {many:.2f} s  ({', '.join(f'{s:.2f}' for s in seconds[pool])})")
    print(f"ratio {many / one:.2f}; identical intervals: {same}")


if __name__ == "__main__":
    main()

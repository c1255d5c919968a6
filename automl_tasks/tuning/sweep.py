"""The adaptive search's start-up: a design over the ranges' ends, then a greedy axis sweep.

TPE starts from uniform random draws, which almost never land on a range's ends, and the
best boosting configs often sit there (fewest leaves, largest step, most regularisation:
bench/RESULTS.md, "Adaptive search"), often on a ridge across two axes (few leaves want a
large step, many leaves a small one). So the search starts:

  cold   with the box's centre and a two-level orthogonal array over each axis's ends (8 runs
         for up to 7 axes): every pair of axes meets all four combinations of its ends, so
         a ridge's good corner is among them; then, from the best of those, each axis is
         moved to its other end, one axis at a time;
  warm   with the warm-start point (last month's best), then each axis a quarter of its
         range either way.

Each move starts from the best config known when it is proposed, so gains add up axis by
axis; once every move is scored, one last point combines each axis's best gaining move.
Every point is a real trial that TPE learns from afterwards.
"""

from __future__ import annotations

import math

from automl_tasks.tuning.space import Dimension, config_key

WARM_STEP = 0.25   # share of a range (of its log for log ranges) a warm sweep moves either way


def centre(d: Dimension):
    if d.kind == "choice":
        return d.choices[0]
    if d.kind == "log":
        return math.sqrt(d.low * d.high)
    middle = (d.low + d.high) / 2
    return int(round(middle)) if d.kind == "int" else middle


def moves(d: Dimension, base, warm: bool) -> list:
    """The values axis `d` is moved to from `base` (never `base` itself)."""
    if d.kind == "choice":
        return [c for c in d.choices if c != base]
    if not warm:
        values = list(ends(d))
    elif d.kind == "log":
        span = WARM_STEP * math.log(d.high / d.low)
        values = [min(d.high, max(d.low, base * math.exp(s * span))) for s in (-1, 1)]
    else:
        span = WARM_STEP * (d.high - d.low)
        values = [min(d.high, max(d.low, base + s * span)) for s in (-1, 1)]
    if d.kind == "int":
        values = [int(round(v)) for v in values]
    out = []
    for v in values:
        if v != base and v not in out:
            out.append(v)
    return out


def ends(d: Dimension) -> tuple:
    if d.kind == "choice":
        return d.choices[0], d.choices[-1]
    if d.kind == "int":
        return int(d.low), int(d.high)
    return d.low, d.high


def orthogonal_array(dims: list[Dimension]) -> list[dict]:
    """Configs at the axes' ends from the columns of a Sylvester-Hadamard matrix: n runs, n the
    smallest power of two above the number of axes; every two axes see each pair of ends n/4 times."""
    n = 2 ** math.ceil(math.log2(len(dims) + 1))
    rows = [[1]]
    while len(rows) < n:
        rows = [r + r for r in rows] + [r + [-x for x in r] for r in rows]
    return [{d.name: ends(d)[row[j + 1] < 0] for j, d in enumerate(dims)} for row in rows]


class CoordinateSweep:
    """Proposes the start-up configs; `tell` it every result (of any config the search ran)."""

    def __init__(self, dims: list[Dimension], greater_is_better: bool, warm: dict | None = None):
        self.sign = 1.0 if greater_is_better else -1.0
        base = {d.name: centre(d) for d in dims}
        base.update(warm or {})
        axes = [d for d in dims if d.kind != "choice" or len(d.choices) > 1]
        design = [{**base, **corner} for corner in orthogonal_array(axes)] if axes else []
        # A warm point is proposed by the caller; the sweep then moves from it.
        self.start = [] if warm else [base] + [c for c in design if c != base]
        self.start_keys = {config_key(c) for c in self.start}
        self.moves = [(d.name, v) for d in dims for v in moves(d, base[d.name], warm is not None)]
        self.values: dict[tuple, float | None] = {}   # told configs: metric (None: failed)
        self.best: tuple[float, dict] | None = None
        self.parents: dict[tuple, tuple[str, tuple]] = {}   # move's key -> (axis, parent's key)
        self.gains: dict[str, tuple[float, object]] = {}    # axis -> (best gain, its value)
        self.proposed: set[tuple] = set()
        self.combined = False
        self.base = base

    @property
    def finished(self) -> bool:
        """Every start-up config has been proposed: `propose` returns None from now on."""
        return not self.start and not self.moves and self.combined

    def propose(self) -> dict | None:
        """The next start-up config, or None: the sweep is over, or waits for results."""
        if self.start:
            return self._mark(self.start.pop(0))
        if any(key not in self.values for key in self.start_keys):
            return None       # the moves start from the design's best: wait for all of it
        incumbent = self.best[1] if self.best else self.base
        while self.moves:
            axis, value = self.moves.pop(0)
            config = {**incumbent, axis: value}
            if config_key(config) not in self.proposed:
                self.parents[config_key(config)] = (axis, config_key(incumbent))
                return self._mark(config)
        if self.combined or any(key not in self.values for key in self.proposed):
            return None
        self.combined = True
        config = {**incumbent, **{axis: value for axis, (_, value) in self.gains.items()}}
        return None if config_key(config) in self.proposed else self._mark(config)

    def tell(self, config: dict, value: float | None) -> None:
        key = config_key(config)
        self.values[key] = value
        if value is None:
            return
        if self.best is None or self.sign * (value - self.best[0]) > 0:
            self.best = (value, dict(config))
        if key in self.parents:
            axis, parent = self.parents[key]
            before = self.values.get(parent)
            gain = None if before is None else self.sign * (value - before)
            if gain is not None and gain > 0 and gain > self.gains.get(axis, (0.0, None))[0]:
                self.gains[axis] = (gain, config[axis])

    def _mark(self, config: dict) -> dict:
        self.proposed.add(config_key(config))
        return config

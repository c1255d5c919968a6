"""Search spaces: the spec's `space` mapping, turned into concrete trial configs.

A space maps a parameter to one of:
  [a, b, c]            a list of values (grid axis, or a choice for random/adaptive)
  {int: [lo, hi]}      integers in [lo, hi]
  {uniform: [lo, hi]}  floats in [lo, hi]
  {log: [lo, hi]}      floats, log-uniform in [lo, hi] (lo > 0)
  {choice: [a, b]}     one of the values
  a scalar             fixed value
Grid search takes lists (and scalars) only.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from automl_tasks.errors import SpecError
from automl_tasks.models import algorithms


@dataclass(frozen=True)
class Dimension:
    name: str
    kind: str                  # int | uniform | log | choice
    low: float | None = None
    high: float | None = None
    choices: tuple = ()


def parse_space(algorithm: str, space: dict[str, Any]) -> list[Dimension]:
    dims = []
    for name, value in space.items():
        where = f"algorithms.{algorithm}.space.{name}"
        if isinstance(value, list):
            if not value:
                raise SpecError(f"{where}: empty list of values")
            dims.append(Dimension(name, "choice", choices=tuple(value)))
        elif isinstance(value, dict):
            if len(value) != 1:
                raise SpecError(f"{where}: give exactly one of int, uniform, log, choice; got {sorted(value)}")
            kind, arg = next(iter(value.items()))
            if kind == "choice":
                if not isinstance(arg, list) or not arg:
                    raise SpecError(f"{where}: choice needs a non-empty list")
                dims.append(Dimension(name, "choice", choices=tuple(arg)))
                continue
            if kind not in ("int", "uniform", "log"):
                raise SpecError(f"{where}: unknown distribution {kind!r}; use int, uniform, log or choice")
            if (not isinstance(arg, list) or len(arg) != 2
                    or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in arg)):
                raise SpecError(f"{where}: {kind} needs [low, high] numbers, got {arg!r}")
            low, high = arg
            if not low < high:
                raise SpecError(f"{where}: low must be below high, got [{low}, {high}]")
            if kind == "log" and low <= 0:
                raise SpecError(f"{where}: log range needs low > 0, got {low}")
            if kind == "int" and not (float(low).is_integer() and float(high).is_integer()):
                raise SpecError(f"{where}: int range needs whole numbers, got [{low}, {high}]")
            dims.append(Dimension(name, kind, float(low), float(high)))
        else:
            dims.append(Dimension(name, "choice", choices=(value,)))
    return dims


def check_space(algorithm: str, search: str, space: dict, fixed: dict) -> list[Dimension]:
    """Validate a space for the spec loader: known params, well-formed ranges, grid-compatible."""
    dims = parse_space(algorithm, space)
    if search == "grid":
        ranged = [d.name for d in dims if d.kind != "choice"]
        if ranged:
            raise SpecError(f"algorithms.{algorithm}.space.{ranged[0]}: grid search takes lists of "
                            "values; use search: random or adaptive for ranges")
    where = f"algorithms.{algorithm}"
    check_params(algorithm, [d.name for d in dims] + list(fixed), where=where)
    # A value of the wrong type would fail every trial: refuse it here. Values of the right type
    # that a library refuses (learning_rate -1, num_leaves 1) fail their own trials, which are
    # recorded as failed while the search goes on.
    for d in dims:
        if d.kind == "choice":
            for value in d.choices:
                _check_value(algorithm, d.name, value, where)
        else:
            _check_range(algorithm, d, where)
    for name, value in fixed.items():
        _check_value(algorithm, name, value, where)
    return dims


_TYPE_WORDS = {int: "integers", float: "numbers", str: "text", bool: "true or false"}


def check_params(algorithm: str, names, where: str) -> None:
    """Every name is one the algorithm's spec may set: known to it, and not set by the project."""
    family = algorithms.get(algorithm)
    allowed = family.params()
    for name in names:
        if name in family.reserved:
            raise SpecError(f"{where}: parameter {name!r} is set by automl_tasks and cannot be tuned")
        if name not in allowed:
            raise SpecError(f"{where}: unknown {algorithm} parameter {name!r}")


def param_types(algorithm: str) -> dict[str, tuple[type, bool]]:
    """Parameter -> (int, float, str or bool; whether None is accepted), as the algorithm's family
    reads it from its library (signatures, Param type converters, parameter constraints).
    Parameters of other types (dicts, callables, unions) are left to the library."""
    return algorithms.get(algorithm).param_types()


def _check_value(algorithm: str, name: str, value, where: str) -> None:
    """`value` (a listed or fixed one) is of the type the library takes for `name`."""
    kind, optional = param_types(algorithm).get(name, (None, False))
    if kind is None or (value is None and optional):
        return
    if kind is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    elif kind is int:   # bool is an int in Python, never in the libraries
        ok = isinstance(value, int) and not isinstance(value, bool)
    else:
        ok = isinstance(value, kind)
    if not ok:
        raise SpecError(f"{where}: parameter {name!r} takes {_TYPE_WORDS[kind]}, got {value!r}")


def _check_range(algorithm: str, d: Dimension, where: str) -> None:
    """An {int|uniform|log: [lo, hi]} range is for a numeric parameter; an integer one takes int only."""
    kind, _ = param_types(algorithm).get(d.name, (None, False))
    shown = f"{{{d.kind}: [{d.low:g}, {d.high:g}]}}"
    if kind in (str, bool):
        raise SpecError(f"{where}: parameter {d.name!r} takes {_TYPE_WORDS[kind]}, got the range {shown}")
    if kind is int and d.kind != "int":
        raise SpecError(f"{where}: parameter {d.name!r} takes integers, got {shown}; use {{int: [lo, hi]}}")


def grid(dims: list[Dimension]) -> list[dict]:
    names = [d.name for d in dims]
    return [dict(zip(names, combo)) for combo in itertools.product(*(d.choices for d in dims))]


def sample(dims: list[Dimension], rng: np.random.Generator) -> dict:
    config = {}
    for d in dims:
        if d.kind == "choice":
            config[d.name] = d.choices[int(rng.integers(len(d.choices)))]
        elif d.kind == "int":
            config[d.name] = int(rng.integers(int(d.low), int(d.high) + 1))
        elif d.kind == "uniform":
            config[d.name] = float(rng.uniform(d.low, d.high))
        else:
            config[d.name] = float(math.exp(rng.uniform(math.log(d.low), math.log(d.high))))
    return config


def config_key(config: dict) -> tuple:
    """A config's identity, hashable whatever its values are."""
    return tuple(sorted((k, repr(v)) for k, v in config.items()))


def random_configs(dims: list[Dimension], n: int, seed: int) -> list[dict]:
    rng = np.random.default_rng(seed)
    configs, seen = [], set()
    # Draw until n distinct configs (a small discrete space may hold fewer: stop there).
    for _ in range(n * 20):
        config = sample(dims, rng)
        key = config_key(config)
        if key not in seen:
            seen.add(key)
            configs.append(config)
        if len(configs) == n:
            break
    return configs


def describe(dims: list[Dimension]) -> dict:
    """JSON-friendly form for the logged search_space artifact."""
    return {d.name: ({"choice": list(d.choices)} if d.kind == "choice"
                     else {d.kind: [d.low, d.high]}) for d in dims}

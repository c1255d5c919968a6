"""A PoC request (form, file drop or CLI) checked and turned into a model spec.

Every check runs here, before anything is written: paths inside the data roots, the
label present with at least two values, the task (inferred when not given, and the
reason said), metric and algorithms valid for the task, the test data's columns equal
to the training data's, and a time budget that leaves room for one fit per algorithm.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from automl_tasks.errors import DataError, SpecError
from automl_tasks.models import algorithms as registry

MAX_INTEGER_CLASSES = 20          # an integer label with more values is a regression target
DEFAULT_BUDGET_S = 300.0
# The floor a budget must clear: exploration and reports, plus one wave per algorithm (each
# algorithm's `min_seconds`). Measured on a shared 2-core machine (bench/RESULTS.md): Spark
# start, checks and exploration take ~60-90 s.
FIXED_SECONDS = 60.0
# Every search is adaptive (Optuna TPE) over its algorithm's default space (sized for small
# data), stopped by its share of the time budget, not by its trial count. The libraries' own
# values on those axes (`defaults`) are every search's first trial, so a short budget still
# scores them.


@dataclass
class PocRequest:
    data: str
    label: str
    task: str | None = None
    metric: str | None = None
    time_budget_s: float = DEFAULT_BUDGET_S
    algorithms: list[str] | None = None
    validation: str = "cv"            # cv | cv:K | split | split:RATIO
    test: str | None = None
    segment: str | None = None
    name: str | None = None
    seed: int = 0
    max_trials: int | None = None     # per algorithm; default: as many as the budget allows


@dataclass
class Plan:
    """The checked request: the spec the PoC tunes, its data and what was inferred."""
    spec: object                      # ModelSpec
    request: PocRequest
    data_path: Path
    test_path: Path | None
    train_df: object                  # Spark DataFrame
    test_df: object | None
    dtypes: dict[str, str]
    task_note: str
    notes: list[str] = field(default_factory=list)


def poc_name(request: PocRequest, data_path: Path) -> str:
    """The request's name, else the file's (NAME of NAME_train.csv), made a valid spec name."""
    raw = request.name or re.sub(r"_train$", "", data_path.stem)
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", raw).strip("_") or "poc"
    return name


def infer_task(kind: str, values: list, n_distinct: int, label: str) -> tuple[str, str]:
    """(task, why) from the label's type and distinct values; `values` holds up to 1001 of them."""
    if n_distinct == 0:
        raise DataError(f"label {label!r} has no values (every row is null)")
    if n_distinct == 1:
        raise DataError(f"label {label!r} has a single value ({values[0]!r}) in every row: nothing to learn")
    if n_distinct == 2:
        return "binary", f"label {label!r} has 2 distinct values"
    if kind == "numeric":
        integral = all(float(v).is_integer() for v in values)
        if integral and n_distinct <= MAX_INTEGER_CLASSES:
            return "multiclass", (f"label {label!r} holds {n_distinct} integer values "
                                  f"(<= {MAX_INTEGER_CLASSES})")
        return "regression", f"label {label!r} is numeric with {n_distinct} distinct values"
    if n_distinct > 1000:
        raise DataError(f"label {label!r} is text with over 1000 distinct values: not a class label; "
                        "is it an ID, or a number stored as text?")
    return "multiclass", f"label {label!r} is text with {n_distinct} classes"


def parse_validation(text: str) -> dict:
    """cv (3 folds), cv:K, split (train ratio 0.7) or split:RATIO -> the spec's validation block."""
    method, _, arg = (text or "cv").strip().partition(":")
    try:
        if method == "cv":
            return {"method": "cv", "folds": int(arg) if arg else 3}
        if method == "split":
            return {"method": "split", "train_ratio": float(arg) if arg else 0.7}
    except ValueError:
        raise SpecError(f"validation {text!r}: {arg!r} is not a number") from None
    raise SpecError(f"validation {text!r}: use cv, cv:K (folds), split or split:RATIO (train share)")


def choose_algorithms(requested: list[str] | None, task: str, *, connect: bool = False) -> list[str]:
    """The request's algorithms, or the default set for `task`; `connect` (a Spark Connect session):
    without those that cannot run through it (defaults) or a SpecError saying why (requested)."""
    if not requested:
        return [a for a in registry.names_for(task, poc_default=True)
                if not (connect and registry.connect_refusal([a]))]
    unknown = [a for a in requested if a not in registry.names()]
    if unknown:
        raise SpecError(f"unknown algorithm {unknown[0]!r}; choose from {', '.join(registry.names())}")
    for name in requested:
        if not registry.get(name).fits(task):
            raise SpecError(registry.get(name).task_refusal())
    if connect and (refusal := registry.connect_refusal(requested)):
        raise SpecError(refusal)
    return list(dict.fromkeys(requested))


def minimum_budget(algorithms: list[str]) -> float:
    return FIXED_SECONDS + sum(registry.get(a).min_seconds for a in algorithms)


def check_budget(budget_s: float, algorithms: list[str]) -> None:
    need = minimum_budget(algorithms)
    if not budget_s or budget_s < need:
        raise SpecError(f"time budget {budget_s:g}s is too small for any fit of {len(algorithms)} "
                        f"algorithm(s) ({', '.join(algorithms)}): give at least {need:g}s "
                        f"({FIXED_SECONDS:g}s for exploration and reports, "
                        + ", ".join(f"{registry.get(a).min_seconds:g}s for {a}" for a in algorithms)
                        + "), or fewer algorithms")


def check_test_columns(train_columns: list[str], test_columns: list[str], label: str, test: Path) -> None:
    """The test data holds exactly the training data's columns (the label may be absent)."""
    missing = [c for c in train_columns if c not in test_columns and c != label]
    if missing:
        raise DataError(f"test data {test} lacks column {missing[0]!r} of the training data "
                        f"({len(missing)} missing: {', '.join(missing[:5])})")
    extra = [c for c in test_columns if c not in train_columns]
    if extra:
        raise DataError(f"test data {test} has column {extra[0]!r}, which the training data does not have")


def label_summary(df, label: str) -> tuple[list, int]:
    """Up to 1001 distinct non-null label values and how many there are (capped at 1001)."""
    from pyspark.sql import functions as F

    values = [r[0] for r in df.where(F.col(label).isNotNull()).select(label).distinct().limit(1001).collect()]
    return values, len(values)


def resolve(spark, request: PocRequest, roots: list) -> Plan:
    """Check the request against its data; DataError / SpecError name what is wrong."""
    from automl_tasks.data.sources import read_source
    from automl_tasks.evaluation.metrics import DEFAULT_METRIC, check_metric
    from automl_tasks.paths import inside_roots
    from automl_tasks.poc.explore import kind_of
    from automl_tasks.spec import ModelSpec, parse_spec  # noqa: F401 - ModelSpec names the type
    from automl_tasks.spark import is_connect

    if not request.label:
        raise SpecError("label is required: the column to predict")
    data_path = inside_roots(request.data, roots)
    test_path = inside_roots(request.test, roots) if request.test else None
    for path in filter(None, (data_path, test_path)):
        if not path.exists():
            raise DataError(f"data source {path} does not exist")
    train_df = read_source(spark, str(data_path))
    dtypes = dict(train_df.dtypes)
    if request.label not in dtypes:
        raise DataError(f"label column {request.label!r} is not in {data_path.name}; "
                        f"columns: {', '.join(dtypes)}")
    if request.segment and request.segment not in dtypes:
        raise DataError(f"segment column {request.segment!r} is not in {data_path.name}; "
                        f"columns: {', '.join(dtypes)}")
    if request.segment == request.label:
        raise SpecError(f"segment column {request.segment!r} is the label")
    test_df = None
    if test_path is not None:
        test_df = read_source(spark, str(test_path))
        check_test_columns(train_df.columns, test_df.columns, request.label, test_path)

    values, n_distinct = label_summary(train_df, request.label)
    inferred, why = infer_task(kind_of(dtypes[request.label]), values, n_distinct, request.label)
    if request.task:
        task, task_note = request.task, f"task {request.task} (given; the label suggests {inferred}: {why})"
    else:
        task, task_note = inferred, f"task {inferred} inferred: {why}"
    if task not in ("binary", "multiclass", "regression"):
        raise SpecError(f"task {task!r}: use binary, multiclass or regression")
    metric = request.metric or DEFAULT_METRIC[task]
    check_metric(metric, task)
    algorithms = choose_algorithms(request.algorithms, task, connect=is_connect(spark))
    check_budget(request.time_budget_s, algorithms)
    if request.max_trials is not None and request.max_trials < 1:
        raise SpecError(f"max_trials must be at least 1, got {request.max_trials}")

    raw = {
        "name": poc_name(request, data_path),
        "task": task,
        "data": {"source": str(data_path), "label": request.label},
        "metric": metric,
        "validation": parse_validation(request.validation),
        "seed": request.seed,
        "algorithms": {a: {"search": "adaptive", "trials": request.max_trials or 10_000, "seed": request.seed,
                           **registry.get(a).space} for a in algorithms},
    }
    if request.segment:
        raw["segment"] = request.segment
    dated = [c for c, t in dtypes.items() if c != request.label and kind_of(t) == "datetime"]
    if dated:   # a model cannot take a timestamp: left out (the exploration says so)
        raw["features"] = [c for c in dtypes if c != request.label and c not in dated]
    spec: ModelSpec = parse_spec(yaml.safe_dump(raw, sort_keys=False), where=f"poc request for {data_path.name}")
    notes = [f"date/time column {c!r} is left out of the features" for c in dated]
    if request.segment:
        notes.append(f"segment {request.segment!r} is also a feature of the global model")
    return Plan(spec, request, data_path, test_path, train_df, test_df, dtypes, task_note, notes)

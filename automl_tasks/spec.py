"""The model spec: the YAML contract users write (documented in docs/spec.md).

Loaded with pydantic so that every error names the field that is wrong.
A spec can be read from a file or from a git ref (`git show REF:path`).
"""

from __future__ import annotations

import os
import re
import subprocess
import zoneinfo
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from automl_tasks.data.months import Month
from automl_tasks.errors import SpecError
from automl_tasks.models import algorithms

Task = Literal["binary", "multiclass", "regression"]


class _Strict(BaseModel):
    # Unknown keys are typos far more often than intent: reject them.
    model_config = ConfigDict(extra="forbid")


class JoinSpec(_Strict):
    source: str
    on: str | list[str]
    as_of: str | None = None          # the table's time column: point-in-time join
    timestamp: str | None = None      # the data's time column as_of is compared with (default data.timestamp)


class CsvSpec(_Strict):
    """How CSV sources are read (data.csv)."""
    sep: str = Field(",", min_length=1, max_length=1)
    quote: str = Field('"', min_length=1, max_length=1)
    encoding: str = "UTF-8"
    header: bool = True


class DataSpec(_Strict):
    source: str
    label: str
    timestamp: str | None = None
    month_column: str | None = None
    id: str | None = None
    join: list[JoinSpec] = []
    format: Literal["parquet", "csv"] | None = None  # inferred from the path when omitted
    csv: CsvSpec = CsvSpec()
    timezone: str = "UTC"             # the zone whose calendar months the timestamps fall in
    # Two rows with one id in the month being evaluated: an error, or a warning with counts.
    duplicate_ids: Literal["error", "warn"] = "error"

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        # The IANA names (Python's tz database); Spark's JVM knows the same ones.
        if value not in zoneinfo.available_timezones():
            raise ValueError(f"unknown time zone {value!r}; use an IANA name such as UTC, "
                             "Europe/Paris or America/New_York")
        return value

    @model_validator(mode="after")
    def _one_time_column(self):
        if self.timestamp and self.month_column:
            raise ValueError("give either data.timestamp or data.month_column, not both")
        return self

    @model_validator(mode="after")
    def _label_has_its_own_column(self):
        for field in ("timestamp", "month_column", "id"):
            if getattr(self, field) == self.label:
                raise ValueError(f"data.label and data.{field} are both {self.label!r}; "
                                 "the label needs a column of its own")
        return self


class WindowSpec(_Strict):
    train_months: int = Field(6, ge=1, le=120)
    holdout_months: int = Field(1, ge=1, le=12)


class ValidationSpec(_Strict):
    method: Literal["cv", "split", "given", "time"] = "cv"
    folds: int = Field(3, ge=2, le=10)
    train_ratio: float = 0.7
    path: str | None = None          # method: given
    months: int = Field(1, ge=1)     # method: time — the last N window months validate

    @field_validator("train_ratio")
    @classmethod
    def _ratio(cls, value: float) -> float:
        if not 0.0 < value < 1.0:
            raise ValueError(f"train_ratio must be strictly between 0 and 1, got {value}")
        return value

    @model_validator(mode="after")
    def _given_needs_path(self):
        if self.method == "given" and not self.path:
            raise ValueError("validation.method 'given' needs validation.path (the validation source)")
        return self


class AlgorithmSpec(_Strict):
    search: Literal["grid", "random", "adaptive"] = "grid"
    space: dict[str, Any] = {}
    trials: int | None = Field(None, ge=1, le=10_000)
    time_budget_s: float | None = Field(None, gt=0)
    seed: int = 0
    fixed: dict[str, Any] = {}       # params passed to every trial, not searched

    @model_validator(mode="after")
    def _budget(self):
        if self.search in ("random", "adaptive") and self.trials is None and self.time_budget_s is None:
            self.trials = 20
        return self


class PromotionSpec(_Strict):
    """The evidence gates (registry/policy.py; docs/spec.md explains the defaults)."""
    mode: Literal["manual", "auto", "shadow"] = "manual"
    min_improvement: float = Field(0.0, ge=0.0, allow_inf_nan=False)   # the CI's lower bound must exceed it
    max_segment_drop: float = Field(0.01, ge=0.0, allow_inf_nan=False)
    min_metric: float | None = Field(None, allow_inf_nan=False)        # first month: the candidate must reach it
    min_rows: int = Field(200, ge=1)          # evaluated rows (overall, and per gated segment)
    min_class_rows: int = Field(20, ge=1)     # classification: rows of the rarest class
    # Manual mode: an approval nobody answers within this many hours is rejected (the champion
    # stays), so one unanswered question never holds up the months after it.
    approval_timeout_hours: float = Field(72.0, gt=0.0, allow_inf_nan=False)


class MonitoringSpec(_Strict):
    # Drift reports sample each side down to this many rows (the fraction is logged).
    max_rows: int = Field(50_000, ge=1000)
    # The month drifts as a whole when at least this share of its columns drift (Evidently's
    # dataset-drift default).
    drift_share: float = Field(0.5, gt=0.0, le=1.0)
    # The champion is `degraded` when its month's interval lies wholly worse than its holdout
    # metric at promotion by more than this (monitoring/health.py).
    max_degradation: float = Field(0.02, ge=0.0, allow_inf_nan=False)


class LabelsSpec(_Strict):
    # Months between a month's end and its labels' arrival. N > 0: the run for month M monitors M
    # (drift, prediction drift, estimated metric) and evaluates M - N, the newest labelled month.
    delay_months: int = Field(0, ge=0, le=24)
    # The estimate's reference: the champion's newest labelled months after its own training
    # (the evaluated month included), at most this many; its interval carries their differences.
    reference_months: int = Field(6, ge=1, le=24)


class AblationSpec(_Strict):
    """Feature ablation studies (automl_tasks.ablation): what to try and when to adopt."""
    candidates: list[str] = []       # columns to try one at a time (in the data or in `tables`)
    tables: list[JoinSpec] = []      # candidate tables, joined for the study only
    repeats: int = Field(5, ge=2, le=50)
    folds: int = Field(3, ge=2, le=10)
    min_effect: float = Field(0.0, ge=0)          # adopt only if the mean oriented delta reaches it
    leakage_threshold: float = Field(0.97, gt=0.5, le=1.0)
    top_k: int | None = Field(None, ge=1)         # base = the champion's top-K features by gain


class ModelSpec(_Strict):
    name: str
    task: Task
    data: DataSpec
    features: list[str] | None = None
    categorical: list[str] | None = None
    segment: str | None = None
    window: WindowSpec = WindowSpec()
    metric: str | None = None
    validation: ValidationSpec = ValidationSpec()
    algorithms: dict[str, AlgorithmSpec]
    promotion: PromotionSpec = PromotionSpec()
    monitoring: MonitoringSpec = MonitoringSpec()
    labels: LabelsSpec = LabelsSpec()
    ablation: AblationSpec = AblationSpec()
    impute: Literal["median", "mean", "none"] = "median"
    # How trials train: per_trial (each task its own copy of the window), data_parallel (each
    # fit across all executors), auto (by the window's size: tuning/training_path.py).
    training: Literal["auto", "per_trial", "data_parallel"] = "auto"
    seed: int = 0

    # Where the spec came from: set by the loaders, not by users.
    origin: dict[str, str] = Field(default_factory=dict, exclude=True)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", value):
            raise ValueError(f"name may hold letters, digits, '_', '.', '-' only; got {value!r}")
        return value

    @field_validator("algorithms")
    @classmethod
    def _known_algorithms(cls, value: dict) -> dict:
        if not value:
            raise ValueError(f"list at least one algorithm ({', '.join(algorithms.names())})")
        unknown = sorted(set(value) - set(algorithms.names()))
        if unknown:
            raise ValueError(f"unknown algorithm {unknown[0]!r}; known: {', '.join(algorithms.names())}")
        return value

    @model_validator(mode="after")
    def _checks(self):
        from automl_tasks.evaluation.metrics import DEFAULT_METRIC, check_metric
        from automl_tasks.tuning.space import check_space

        if self.metric is None:
            self.metric = DEFAULT_METRIC[self.task]
        check_metric(self.metric, self.task)
        for algorithm, algo_spec in self.algorithms.items():
            check_space(algorithm, algo_spec.search, algo_spec.space, algo_spec.fixed)
        for algorithm in self.algorithms:
            if not algorithms.get(algorithm).fits(self.task):
                raise ValueError(algorithms.get(algorithm).task_refusal())
        if self.validation.method == "time" and not (self.data.timestamp or self.data.month_column):
            raise ValueError("validation.method 'time' needs data.timestamp or data.month_column")
        if self.validation.method == "time" and self.validation.months >= self.window.train_months:
            raise ValueError(
                f"validation.months ({self.validation.months}) must be below "
                f"window.train_months ({self.window.train_months}) so some months remain to train on")
        reserved = {self.data.label, self.data.timestamp, self.data.month_column, self.data.id} - {None}
        for field in ("features", "categorical"):
            clash = sorted(set(getattr(self, field) or ()) & reserved)
            if clash:
                raise ValueError(f"{field} lists {clash[0]!r}, which is the label, time or id column")
        for join in [*self.data.join, *self.ablation.tables]:
            if join.as_of and not join.timestamp:
                if not self.data.timestamp:
                    raise ValueError(f"join {join.source}: as_of needs data.timestamp (or join.timestamp), "
                                     "the row time it is compared with")
                join.timestamp = self.data.timestamp
        if self.training == "data_parallel":
            blocker = data_parallel_blocker(self)
            if blocker:
                raise ValueError(f"training: data_parallel: {blocker}")
        if self.features is not None and self.categorical is not None:
            extra = sorted(set(self.categorical) - set(self.features))
            if extra:
                raise ValueError(f"categorical lists {extra[0]!r}, which is not in features")
        return self


def data_parallel_blocker(spec: ModelSpec) -> str | None:
    """Why `spec` cannot train data-parallel, or None (auto then keeps per_trial)."""
    others = [a for a in spec.algorithms if a not in algorithms.data_parallel_names()]
    if others:
        return (f"algorithm {others[0]!r} has no data-parallel path (only "
                f"{', '.join(algorithms.data_parallel_names())})")
    if spec.validation.method == "given":
        return "validation.method 'given' is not supported (use cv, split or time)"
    return None


def _format_error(exc: ValidationError, where: str) -> SpecError:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown field (check the spelling)"
        parts.append(f"{loc}: {msg}" if loc else msg)
    return SpecError(f"invalid spec {where}: " + "; ".join(parts))


def parse_spec(text: str, where: str = "<text>", origin: dict[str, str] | None = None) -> ModelSpec:
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise SpecError(f"spec {where} is not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise SpecError(f"spec {where} must be a YAML mapping, got {type(raw).__name__}")
    try:
        spec = ModelSpec.model_validate(raw)
    except ValidationError as exc:
        raise _format_error(exc, where) from None
    except SpecError as exc:
        raise SpecError(f"invalid spec {where}: {exc}") from None
    spec.origin = origin or {}
    return spec


def _git(args: list[str], cwd: Path) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return None
    return out.stdout.strip()


def load_spec(path: str | Path) -> ModelSpec:
    """Load a spec file; relative data paths resolve against the spec's folder."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise SpecError(f"cannot read spec {path}: {exc.strerror}") from None
    folder = path.resolve().parent
    origin = {
        "path": str(path.resolve()),
        # A deployment may name the branch it runs (its checkout may not be a git repo).
        "branch": os.environ.get("AUTOML_BRANCH") or _git(["rev-parse", "--abbrev-ref", "HEAD"], folder) or "none",
        "git_commit": _git(["rev-parse", "HEAD"], folder) or "none",
    }
    return _resolve_paths(parse_spec(text, str(path), origin), folder)


def load_spec_at_ref(repo: str | Path, ref: str, path: str) -> ModelSpec:
    """Load a spec as it is on a git ref, e.g. develop vs master, with the commit it came from."""
    repo = Path(repo).resolve()
    commit = _git(["rev-parse", "--verify", f"{ref}^{{commit}}"], repo)
    if commit is None:
        raise SpecError(f"git ref {ref!r} not found in {repo}")
    text = _git(["show", f"{commit}:{path}"], repo)
    if text is None:
        raise SpecError(f"spec {path!r} does not exist at {ref} ({commit[:10]}) in {repo}")
    origin = {"path": path, "branch": ref, "git_commit": commit}
    return _resolve_paths(parse_spec(text, f"{ref}:{path}", origin), (repo / path).parent)


def _resolve(source: str, folder: Path) -> str:
    if source.startswith("table:") or "://" in source or Path(source).is_absolute():
        return source
    return str((folder / source).resolve())


def _resolve_paths(spec: ModelSpec, folder: Path) -> ModelSpec:
    spec.data.source = _resolve(spec.data.source, folder)
    for join in [*spec.data.join, *spec.ablation.tables]:
        join.source = _resolve(join.source, folder)
    if spec.validation.path:
        spec.validation.path = _resolve(spec.validation.path, folder)
    return spec


def check_month(month: str) -> str:
    """`month` unchanged (the jobs' --month), or a SpecError naming it: data/months.py's rule."""
    Month.parse(month)
    return month

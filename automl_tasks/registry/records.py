"""The records the jobs write and read back: a leaderboard entry, a tuning result, a month
record and a promotion decision.

Each is a frozen dataclass with one `to_json()` (the dict written to MLflow, returned to
XCom and printed by the CLI's --json, keys in the order they have always had) and one
`from_json(dict)`, which also reads what older versions stored: a field those lacked is
None (`Decision`: as the registry always read it), and keys it does not know are ignored.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field


def _known(cls, data: dict) -> dict:
    """`data`'s values for `cls`'s fields; a missing one is None."""
    return {f.name: data.get(f.name) for f in dataclasses.fields(cls)}


@dataclass(frozen=True)
class LeaderboardEntry:
    """One algorithm of a tuning: `status` ok (a model was refit and exported), failed (every
    trial failed) or skipped (the deadline left no time; `reason` says why)."""
    algorithm: str
    status: str | None = None           # None only in a month record's copy, which omits it
    trials: int | None = None
    failed: int | None = None
    cv_value: float | None = None       # the best config's mean CV metric
    holdout_value: float | None = None  # the refit model on the holdout
    params: dict | None = None
    model_dir: str | None = None        # the native export
    model_uri: str | None = None        # the MLflow flavor model
    baseline_value: float | None = None  # the library's default params on the same folds
    lift: float | None = None           # tuned over defaults, oriented: positive = better
    best_trial: int | None = None       # ok only; -1 when the defaults were kept
    defaults_kept: bool | None = None   # ok only
    refit_seconds: float | None = None  # ok only
    reason: str | None = None           # skipped only
    wall_seconds: float | None = None   # not for skipped: search to export, wall time
    fit_seconds: float | None = None    # not for skipped: inside model fits, summed

    # The fields only some entries have, omitted from the JSON when None.
    OPTIONAL = ("best_trial", "defaults_kept", "refit_seconds", "reason", "wall_seconds", "fit_seconds")
    ORDER = ("algorithm", "trials", "failed", "status", "cv_value", "holdout_value", "params", "best_trial",
             "defaults_kept", "model_dir", "model_uri", "refit_seconds", "baseline_value", "lift",
             "wall_seconds", "fit_seconds")
    SKIPPED_ORDER = ("algorithm", "status", "reason", "trials", "failed", "cv_value", "holdout_value", "params",
                     "model_dir", "model_uri", "baseline_value", "lift")

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def to_json(self) -> dict:
        order = self.SKIPPED_ORDER if self.status == "skipped" else self.ORDER
        return {k: getattr(self, k) for k in order
                if k not in self.OPTIONAL or getattr(self, k) is not None}

    @classmethod
    def from_json(cls, data: dict) -> LeaderboardEntry:
        return cls(**_known(cls, data))


@dataclass(frozen=True)
class TuningResult:
    """What `tuning.job.tune` returns (as `to_json()`, the CLI's `tune --json`).

    Read back from a finished tuning run (`pipelines.month_runs.tuning_of_run`), only
    `run_id`, `leaderboard` and `best["algorithm"]` are known; the rest is None.
    """
    run_id: str
    leaderboard: list[LeaderboardEntry]
    best: dict                      # algorithm, params, metric, value (mean CV), holdout_value
    month: str | None = None
    window: list[str] | None = None
    trials: dict | None = None      # total, failed
    fit_seconds: dict | None = None  # trials, baselines, refits
    model_dir: str | None = None
    tracking_uri: str | None = None
    experiment: str | None = None   # <name>/<purpose>
    training_path: str | None = None

    @property
    def best_entry(self) -> LeaderboardEntry:
        return next(e for e in self.leaderboard if e.algorithm == self.best["algorithm"])

    def to_json(self) -> dict:
        return {"run_id": self.run_id, "month": self.month, "window": self.window, "best": self.best,
                "leaderboard": [e.to_json() for e in self.leaderboard], "trials": self.trials,
                "fit_seconds": self.fit_seconds, "model_dir": self.model_dir,
                "tracking_uri": self.tracking_uri, "experiment": self.experiment,
                "training_path": self.training_path}

    @classmethod
    def from_json(cls, data: dict) -> TuningResult:
        return _with_leaderboard(cls, data)


@dataclass(frozen=True)
class MonthRecord:
    """The month's evaluation (`monthly.json` on the month run), written last, read by `history`.

    Records from before a field existed lack it: `window`, `fit_seconds`, `duplicate_ids`,
    `ablation` are then None, `drift` lacks `reference`..`dataset_drift`, `policy` holds
    `approve` and `reasons` only, leaderboard entries lack `baseline_value` and `lift`.
    """
    month: str
    metric: str
    experiment_id: str
    runs: dict[str, str]            # month, monitor, tuning, comparison: run ids
    champion: dict | None           # version, algorithm, metric; None before the first champion
    drift: dict
    leaderboard: list[LeaderboardEntry]
    best: dict                      # algorithm, model_uri, holdout_value, cv_value
    comparisons: list[dict]         # Comparison.to_dict(), overall first; empty without a champion
    policy: dict                    # policy.Verdict.to_json()
    window: dict | None = None      # train, train_rows, holdout, holdout_rows
    fit_seconds: dict | None = None  # a fresh tuning's; None when the tuning was reused
    duplicate_ids: dict | None = None
    ablation: dict | None = None    # run_id, results
    health: dict | None = None      # the champion's: monitoring.health.Health.to_json()
    alerts: list[dict] | None = None   # {kind, message}: degraded, drift, estimate_missed
    # labels.delay_months > 0 (pipelines/monthly/unlabelled.py): the month monitored without labels
    # (month, drift, prediction_drift, estimated, predictions) and the check of the estimate made
    # for this month (month, version, estimated, realized, error, inside).
    monitored: dict | None = None
    estimate_check: dict | None = None

    LEADERBOARD_FIELDS = ("algorithm", "cv_value", "holdout_value", "baseline_value", "lift", "trials", "failed")

    @property
    def champion_version(self) -> str | None:
        return (self.champion or {}).get("version")

    @property
    def champion_metric(self) -> float | None:
        return (self.champion or {}).get("metric")

    @property
    def overall(self) -> dict | None:
        """The overall comparison with the champion, or None without one."""
        return self.comparisons[0] if self.comparisons else None

    def to_json(self) -> dict:
        return {"month": self.month, "metric": self.metric, "experiment_id": self.experiment_id,
                "runs": self.runs, "champion": self.champion, "drift": self.drift, "window": self.window,
                "leaderboard": [{k: getattr(e, k) for k in self.LEADERBOARD_FIELDS} for e in self.leaderboard],
                "best": self.best, "comparisons": self.comparisons, "policy": self.policy,
                "fit_seconds": self.fit_seconds, "duplicate_ids": self.duplicate_ids, "ablation": self.ablation,
                "health": self.health, "alerts": self.alerts, "monitored": self.monitored,
                "estimate_check": self.estimate_check}

    @classmethod
    def from_json(cls, data: dict) -> MonthRecord:
        return _with_leaderboard(cls, data)


def _with_leaderboard(cls, data: dict):
    """`cls` (a record holding a leaderboard) from `data`, its entries as LeaderboardEntry."""
    return cls(**{**_known(cls, data), "leaderboard": [LeaderboardEntry.from_json(e) for e in data["leaderboard"]]})


@dataclass(frozen=True)
class Decision:
    """A promotion decision on a model version (registry/promotion.py says where it lives)."""
    model: str                      # registered model name (= spec name)
    version: str                    # the challenger's model version
    month: str                      # YYYY-MM the decision is for
    status: str                     # one of promotion.STATUSES
    decided_by: str | None          # "policy:auto", "user:alice", None while pending
    reasons: list[str]
    evidence_run_id: str | None     # the MLflow run holding the comparison evidence
    evidence: dict = field(default_factory=dict)
    champion_before: str | None = None
    champion_after: str | None = None
    created_at: str = ""
    decided_at: str | None = None

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> Decision:
        return cls(**_known(cls, data))

    @property
    def artifact_path(self) -> str:
        return f"decisions/{self.month}-v{self.version}.json"

"""The monthly job's MLflow runs: finding earlier ones to reuse or resume, the month's
record on its run, the champion's trend across months (pipelines/history.py reads the month
table back from them).

Runs are found by tags (`tracking.find_run`): the month, kind, data fingerprint, git commit
and spec hash, so a re-run with the same data, commit and spec finds what it made before.
"""

from __future__ import annotations

import contextlib
import functools
import json
import time
from pathlib import Path
from typing import Callable

from automl_tasks.data.prepare import Prepared
from automl_tasks.errors import DataError
from automl_tasks.progress import report
from automl_tasks.registry import tracking
from automl_tasks.registry.champion import ScoredModel, load_champion
from automl_tasks.registry.records import LeaderboardEntry, MonthRecord, TuningResult
from automl_tasks.spec import ModelSpec
from automl_tasks.tuning.job import prepare_for_tuning, tune

PURPOSE = "monthly"
RECORD_ARTIFACT = "monthly.json"   # written last in the month's run: its evaluation is complete
MONITOR_ARTIFACT = "monitor.json"   # the monitor run's findings, written last: the run is complete
# What makes a run the same as an earlier one: never who started it (tracking.AIRFLOW_TAGS).
REUSE_KEYS = ("automl.kind", "automl.month", "automl.data_fingerprint", "automl.git_commit", "automl.spec_hash")


class Stopwatch:
    """Wall seconds per step, and the total, for the summary (and bench/monthly.py)."""

    def __init__(self):
        self.start = self.last = time.perf_counter()
        self.laps: dict[str, float] = {}

    def lap(self, step: str) -> None:
        now = time.perf_counter()
        self.laps[step] = round(now - self.last, 3)
        self.laps["total"] = round(now - self.start, 3)
        self.last = now


class MonthContext:
    """The facts of one spec's month that the steps of the monthly job (and the branches job) work
    from. Spark, the checked window (`prepared`), MLflow and the champion are made on first use and
    kept: one process running every step (the CLI) pays for each once, and an Airflow task running
    one step starts Spark only if that step needs it.

    `fingerprint`: the data's fingerprint when an earlier step checked it; the window prepared
    here must match it (the data may not change under a month). `hold`: where the monthly job
    keeps its claim from the first step that writes to the end (None: each step claims for itself).
    `monitored`: the month monitored without labels (labels.delay_months after `month`), or None.
    """

    def __init__(self, spec: ModelSpec, month: str, *, prepared: Prepared | None = None, spark=None,
                 progress: Callable[[str], None] = report, dag_run_id: str | None = None,
                 fingerprint: str | None = None, wait_s: float = 0.0, monitored: str | None = None):
        self.spec, self.month, self.progress, self.dag_run_id = spec, month, progress, dag_run_id
        self.monitored = monitored
        self.checked_fingerprint, self.wait_s = fingerprint, wait_s
        self.hold: contextlib.ExitStack | None = None
        self.claim_kept = False
        self._champions: dict[str, ScoredModel] = {}
        if prepared is not None:
            self.__dict__["prepared"] = prepared
        if spark is not None:
            self.__dict__["spark"] = spark

    @functools.cached_property
    def spark(self):
        from automl_tasks.spark import get_spark

        return get_spark()

    @functools.cached_property
    def prepared(self) -> Prepared:
        prepared = prepare_for_tuning(self.spark, self.spec, self.month,
                                      monitored=(self.monitored,) if self.monitored else ())
        if self.checked_fingerprint and prepared.fingerprint != self.checked_fingerprint:
            raise DataError(f"the data of {self.spec.name} {self.month} changed since the month's checks "
                            f"(fingerprint {self.checked_fingerprint} then, {prepared.fingerprint} now): "
                            "run the month again from its first step")
        return prepared

    @property
    def fingerprint(self) -> str:
        return self.checked_fingerprint or self.prepared.fingerprint

    @functools.cached_property
    def client(self):
        return tracking.client()

    @functools.cached_property
    def experiment(self) -> str:
        """The `<name>/monthly` experiment id."""
        return tracking.experiment_id(self.client, self.spec, PURPOSE)

    def champion(self, version: str | None) -> tuple[str, ScoredModel] | None:
        """(version, model) of the champion `version` (None: no champion), loaded once."""
        if version is None:
            return None
        if version not in self._champions:
            self.spark   # noqa: B018 - its Spark pipeline loads into this process's session
            self._champions[version] = load_champion(self.spec.name, version)[1]
        return version, self._champions[version]


def find_or_tune(ctx: MonthContext, *, warm_start=None, parent: str | None = None) -> tuple[TuningResult, bool]:
    """The month's tuning for this spec's commit and data, and whether it was reused: a FINISHED
    run if there is one, else new, or an interrupted one under `parent` (the month run) finished
    in place."""
    spec, month = ctx.spec, ctx.month
    tags = tracking.run_tags(spec, "tuning", month, ctx.fingerprint)
    run = find_month_run(ctx.client, ctx.experiment, tags, finished=True)
    if run is not None:
        ctx.progress(f"{spec.name} {month}: {tags['automl.branch']} ({tags['automl.git_commit'][:10]}): "
                     f"reusing tuning run {run.info.run_id}")
        return tuning_of_run(run), True
    interrupted = find_month_run(ctx.client, ctx.experiment, tags, parent=parent) if parent else None
    if interrupted is not None:
        ctx.progress(f"{spec.name} {month}: resuming the interrupted tuning run {interrupted.info.run_id}")
    summary = tune(spec, month, spark=ctx.spark, progress=ctx.progress, purpose=PURPOSE, warm_start=warm_start,
                   dag_run_id=ctx.dag_run_id, prepared=ctx.prepared,
                   resume=interrupted.info.run_id if interrupted else None)
    return TuningResult.from_json(summary), False


def find_month_run(client, experiment: str, tags: dict[str, str], *, finished: bool = False,
                   parent: str | None = None):
    """The latest run carrying the reuse keys of `tags`, under `parent` if given, or None."""
    keys = {k: tags[k] for k in REUSE_KEYS}
    if parent:
        keys["mlflow.parentRunId"] = parent
    return tracking.find_run(client, [experiment], keys, finished=finished)


def recorded(client, run) -> MonthRecord | None:
    """The evaluation a month run recorded, or None if it never got that far."""
    import mlflow

    if RECORD_ARTIFACT not in {a.path for a in client.list_artifacts(run.info.run_id)}:
        return None
    return MonthRecord.from_json(json.loads(mlflow.artifacts.load_text(f"runs:/{run.info.run_id}/{RECORD_ARTIFACT}")))


def child(client, experiment: str, tags: dict, kind: str, parent: str, name: str):
    """Start (or resume in place, after an interrupted attempt) the month's `kind` child run."""
    import mlflow

    tags = {**tags, "automl.kind": kind}
    earlier = find_month_run(client, experiment, tags, parent=parent)
    return mlflow.start_run(run_id=earlier.info.run_id if earlier else None, experiment_id=experiment,
                            run_name=name, tags=tags, nested=True)


def tuning_of_run(run) -> TuningResult:
    """A finished tuning run's leaderboard and best algorithm (the rest of its result is not kept)."""
    import mlflow

    board = json.loads(Path(mlflow.artifacts.download_artifacts(
        run_id=run.info.run_id, artifact_path="leaderboard.json")).read_text())
    return TuningResult(run_id=run.info.run_id, leaderboard=[LeaderboardEntry.from_json(e) for e in board],
                        best={"algorithm": run.data.tags["automl.best_algorithm"]})


def series_key(metric: str, series: str) -> str:
    """The monitor run's metric of the champion's score on one series (overall or a segment)."""
    name = "".join(c if c.isalnum() or c in "_-." else "_" for c in series)
    return f"champion_{metric}" if series == "overall" else f"champion_{metric}.{name}"


def champion_trend(client, experiment: str, spec: ModelSpec, month: str, scores: dict[str, float]):
    """The champion's metric across every month monitored so far (this one included)."""
    from automl_tasks.evaluation import plots

    history: dict[str, dict[str, float]] = {}
    for run in tracking.find_runs(client, [experiment], {"automl.kind": "evaluation"}):
        seen = run.data.tags.get("automl.month")
        for series in scores:
            value = run.data.metrics.get(series_key(spec.metric, series))
            if seen and seen != month and value is not None:
                history.setdefault(seen, {})[series] = value
    history[month] = scores
    months = sorted(history)
    return plots.metric_trend(months, {series: [history[m].get(series, float("nan")) for m in months]
                                       for series in scores}, spec.metric)

"""Months without labels yet (spec `labels.delay_months` N > 0): the newest month monitored, and
the estimate made for a month checked once its labels land.

The run for month M evaluates E = M - N, the newest month with labels (`evaluation.monitor`,
`compare`, the decision: all as with N = 0) and, in the same monitor run, monitors M here: its
features' drift against the training window, the champion's prediction drift (its scores on M
against its scores on the reference) and its estimated metric on M (monitoring/estimation.py).
The reference is the champion's newest labelled months out of its own sample: E and the window's
months since the champion's candidate month, at most labels.reference_months, one held-out chunk
each, so the interval carries how the champion's metric varies from month to month. The scores
are the ones served (`automl-tasks score` wrote M for this champion) when they exist, else the
champion's.

When the run for M + N evaluates M, `check_estimate` puts the realized metric of the version
the estimate was made for beside it; a realized value outside the estimate's interval is the
`estimate_missed` alert, a concept shift the estimate could not see (docs/estimation.md).
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass

import numpy as np

from automl_tasks.data.months import Month, describe_months
from automl_tasks.data.sources import MONTH_COL
from automl_tasks.errors import AutomlError
from automl_tasks.monitoring.messages import ESTIMATE_MISSED
from automl_tasks.pipelines.holdout import align_classes
from automl_tasks.pipelines.month_runs import MONITOR_ARTIFACT, MonthContext
from automl_tasks.registry import tracking

MONITORED_TAG = "automl.monitored_month"     # on the monitor run that monitored that month


@dataclass(frozen=True)
class Reference:
    """The champion on labelled months out of its sample: what its estimator is fitted on."""
    prediction: np.ndarray          # classes aligned to `classes`
    y: np.ndarray
    features: np.ndarray            # the champion's encoded inputs (DLE reads them)
    classes: list | None
    months: list[str]               # the reference months, oldest first
    groups: np.ndarray | None = None     # each row's month; None: a single month

    @property
    def label(self) -> str:
        return describe_months(self.months)


def earlier_months(window: list[str], since: str | None, room: int) -> list[str]:
    """The newest `room` months of the training `window` from `since` on (the champion's candidate
    month: the first it was not trained on); none without `since` (a version registered by hand)."""
    if not since or room <= 0:
        return []
    return [m for m in window if m >= since][-room:]


def reference(ctx: MonthContext, frame, champion, evaluated: Reference, *, window: list[str],
              row_counts: dict[str, int]) -> Reference:
    """`evaluated` (the champion on the evaluated months) with the window's months since the
    champion's candidate month before it, newest first up to labels.reference_months in all
    (those sampled to about monitoring.max_rows rows)."""
    from automl_tasks.pipelines.holdout import labelled_rows
    from automl_tasks.registry.promotion import CANDIDATE_MONTH

    spec, (version, model) = ctx.spec, champion
    since = ctx.client.get_model_version(spec.name, version).tags.get(CANDIDATE_MONTH)
    earlier = earlier_months(window, since, spec.labels.reference_months - len(evaluated.months))
    if not earlier:
        return evaluated
    total = sum(row_counts[m] for m in earlier)
    rows, y, _, months = labelled_rows(frame, spec, earlier, evaluated.classes,
                                       fraction=min(1.0, spec.monitoring.max_rows / total))
    try:
        X = model.encode(rows)
        prediction = align_classes(model.predict_encoded(X), model.meta, evaluated.classes)
    finally:
        rows.unpersist()
    groups = np.concatenate([months, np.full(evaluated.y.size, evaluated.label, dtype=object)])
    return Reference(np.concatenate([prediction, evaluated.prediction]), np.concatenate([y, evaluated.y]),
                     np.concatenate([X, evaluated.features]), evaluated.classes, earlier + evaluated.months,
                     groups)


def feature_drift(ctx: MonthContext, reference, current, *, numeric: list[str], categorical: list[str],
                  reference_label: str, month: str, prefix: str = "") -> dict:
    """Evidently's drift of the `current` sample against `reference` (pandas), logged into the
    active run (names prefixed by `prefix`); the month record's drift summary."""
    from automl_tasks.monitoring.drift import drift_report, log_drift_to_mlflow

    spec = ctx.spec
    with tempfile.TemporaryDirectory() as tmp:
        drift = drift_report(reference, current, numerical=numeric, categorical=categorical, out_dir=tmp,
                             title=f"{spec.name} {month} vs {reference_label}")
        log_drift_to_mlflow(drift, prefix=prefix)
    ctx.progress(f"{spec.name} {month}: drift share {drift.share_drifted:.2f} "
                 f"({', '.join(drift.drifted_columns) or 'no column'} drifted)")
    return {"share_drifted": drift.share_drifted, "drifted_columns": drift.drifted_columns,
            "columns_checked": len(drift.columns), "reference": reference_label,
            "threshold": spec.monitoring.drift_share,
            "dataset_drift": drift.share_drifted >= spec.monitoring.drift_share}


def monitor_unlabelled(ctx: MonthContext, frame, window_sample, *, numeric: list[str], categorical: list[str],
                       reference_label: str, champion, reference: Reference | None) -> dict:
    """Month `ctx.monitored`, which has no labels: drift, prediction drift and the estimated metric
    (the last two need a champion), logged into the active monitor run; its `monitored` summary."""
    import mlflow
    from pyspark.sql import functions as F

    from automl_tasks.monitoring.drift import spark_sample_to_pandas
    from automl_tasks.monitoring.estimation import fit_estimator

    spec, month = ctx.spec, ctx.monitored
    mlflow.set_tag(MONITORED_TAG, month)
    rows = frame.where(F.col(MONTH_COL) == month).persist()
    try:
        current, _ = spark_sample_to_pandas(rows, numeric + categorical, spec.monitoring.max_rows, seed=spec.seed)
        found = {"month": month, "drift": feature_drift(ctx, window_sample, current, numeric=numeric,
                                                        categorical=categorical, reference_label=reference_label,
                                                        month=month, prefix="monitored_"),
                 "prediction_drift": None, "estimated": None, "predictions": None}
        if champion is None or reference is None:
            return found
        version, model = champion
        X, ids = model.encode(rows, carry=spec.data.id) if spec.data.id else (model.encode(rows), None)
    finally:
        rows.unpersist()
    prediction, found["predictions"] = _served_or_scored(ctx, version, model, X, ids)
    prediction = align_classes(prediction, model.meta, reference.classes)
    found["prediction_drift"] = prediction_drift(ctx, reference, prediction, month)
    estimate = fit_estimator(spec.task, spec.metric, reference_prediction=reference.prediction,
                             reference_y=reference.y, reference_features=reference.features,
                             reference_groups=reference.groups, seed=spec.seed).estimate(prediction, X)
    found["estimated"] = {**estimate.to_dict(), "version": version, "reference": reference.label}
    mlflow.log_metrics({f"estimated_{spec.metric}": estimate.value, f"estimated_{spec.metric}_ci_low": estimate.ci_low,
                        f"estimated_{spec.metric}_ci_high": estimate.ci_high}, step=Month.parse(month).step)
    source = "the stored predictions" if found["predictions"] == "served" else "scored now"
    ctx.progress(f"{spec.name} {month}: champion v{version} estimated {spec.metric} {estimate.value:.4f} "
                 f"[{estimate.ci_low:.4f}, {estimate.ci_high:.4f}] ({estimate.method} on {reference.label}, "
                 f"{estimate.rows} rows, {source})")
    return found


def _served_or_scored(ctx: MonthContext, version: str, model, X: np.ndarray, ids) -> tuple[np.ndarray, str]:
    """The scores `automl-tasks score` stored for the month and this version, in the rows' order,
    when they cover every row ("served"); else the champion's own ("scored")."""
    from automl_tasks.pipelines.scoring import output_of, served

    table = served(ctx.spec.name, ctx.monitored, version) if ids is not None else None
    if table is not None:
        indexed = table.drop_duplicates(ctx.spec.data.id).set_index(ctx.spec.data.id)
        if indexed.index.isin(ids).all() and np.isin(ids, indexed.index).all():     # the same rows
            return output_of(model.meta, indexed.loc[ids]), "served"
        ctx.progress(f"{ctx.spec.name} {ctx.monitored}: the stored predictions of v{version} cover "
                     f"{len(table)} rows, the month has {len(ids)}: scoring with the champion instead")
    return model.predict_encoded(X), "scored"


def prediction_drift(ctx: MonthContext, reference: Reference, prediction: np.ndarray, month: str) -> dict:
    """The champion's scores on `month` against its scores on the reference months (a drift test
    per score column: P(1), each class's probability, or the value)."""
    import pandas as pd

    from automl_tasks.monitoring.drift import drift_report, log_drift_to_mlflow
    from automl_tasks.pipelines.scoring import score_columns

    meta = {"task": ctx.spec.task, "classes": reference.classes}
    before = pd.DataFrame(score_columns(meta, reference.prediction))
    now = pd.DataFrame(score_columns(meta, prediction))
    with tempfile.TemporaryDirectory() as tmp:
        drift = drift_report(before, now, numerical=list(now.columns), categorical=[], out_dir=tmp,
                             title=f"{ctx.spec.name} {month}: the champion's scores vs {reference.label}")
        log_drift_to_mlflow(drift, prefix="prediction_")
    column = (drift.drifted_columns or list(now.columns))[0]
    info = drift.columns[column]
    ctx.progress(f"{ctx.spec.name} {month}: prediction drift {'yes' if drift.drifted_columns else 'no'} "
                 f"({column}: {info['method']} {info['score']:.4f}, threshold {info['threshold']:g})")
    return {"score": info["score"], "drifted": bool(drift.drifted_columns), "column": column,
            "method": info["method"], "threshold": info["threshold"], "reference": reference.label,
            "columns": {c: {k: v[k] for k in ("score", "drifted")} for c, v in drift.columns.items()}}


def check_estimate(ctx: MonthContext, champion, champion_prediction, holdout_df, y, classes) -> dict | None:
    """The estimate made for this (now labelled) month N months ago, beside the metric it
    turned out to have for the version it was made for; None if no estimate was made."""
    import mlflow

    from automl_tasks.evaluation.metrics import compute_metric

    spec, month = ctx.spec, ctx.month
    earlier = _estimate_for(ctx, month)
    if earlier is None:
        return None
    run_id, estimated = earlier
    version = estimated["version"]
    checked = {"month": month, "version": version, "estimated_in": run_id,
               "estimated": {k: estimated[k] for k in ("value", "ci_low", "ci_high", "method")}}
    try:
        model = champion[1] if champion and champion[0] == version else ctx.champion(version)[1]
    except AutomlError as exc:       # the version can no longer be loaded: recorded, not guessed
        return {**checked, "realized": None, "error": None, "inside": None, "note": str(exc)}
    prediction = (champion_prediction if champion and champion[0] == version
                  else align_classes(model.predict(holdout_df), model.meta, classes))
    realized = compute_metric(spec.metric, spec.task, y, prediction)
    error = realized - estimated["value"]
    inside = bool(estimated["ci_low"] <= realized <= estimated["ci_high"])
    mlflow.log_metrics({f"realized_{spec.metric}": realized, "estimate_error": error}, step=Month.parse(month).step)
    ctx.progress(f"{spec.name} {month}: v{version} realized {spec.metric} {realized:.4f}, estimated "
                 f"{estimated['value']:.4f} [{estimated['ci_low']:.4f}, {estimated['ci_high']:.4f}]: "
                 + ("inside the interval" if inside else "outside the interval (estimate_missed)"))
    return {**checked, "realized": realized, "error": error, "inside": inside}


def estimate_alerts(ctx: MonthContext, checked: dict | None) -> list[dict]:
    """`estimate_missed` when the realized metric lies outside the estimate's interval."""
    if not checked or checked.get("inside") is not False:
        return []
    est = checked["estimated"]
    return [{"kind": ESTIMATE_MISSED, "message": (
        f"{ctx.spec.name} {checked['month']}: v{checked['version']}'s realized {ctx.spec.metric} "
        f"{checked['realized']:.4f} lies outside the estimate made before its labels landed, "
        f"{est['value']:.4f} [{est['ci_low']:.4f}, {est['ci_high']:.4f}]: the relation between the "
        "features and the label changed (concept shift), which an estimate without labels cannot see")}]


def _estimate_for(ctx: MonthContext, month: str) -> tuple[str, dict] | None:
    """(monitor run id, its estimate) of the newest finished monitor run that estimated `month`."""
    import mlflow

    for run in tracking.find_runs(ctx.client, [ctx.experiment], {"automl.kind": "evaluation", MONITORED_TAG: month},
                                  finished=True, max_results=20):
        found = json.loads(mlflow.artifacts.load_text(f"runs:/{run.info.run_id}/{MONITOR_ARTIFACT}"))
        estimated = (found.get("monitored") or {}).get("estimated")
        if estimated:
            return run.info.run_id, estimated
    return None

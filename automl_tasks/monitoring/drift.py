"""Data drift and quality checks: one Evidently report per month window.

`drift_report` compares the month (current) with the training window (reference)
in one Evidently 0.7 report (`DataDriftPreset` + `DataSummaryPreset`), writes it as
HTML and JSON, and returns a `DriftResult` parsed from Evidently's own output:

- per-column score, method and threshold: the `ValueDrift` metrics
  (`snapshot.dict()["metrics"]`: `config.column/method/threshold`, `value`);
- per-column verdict: the `ValueDrift` tests (`snapshot.dict()["tests"]`, id
  "drift", status FAIL = drifted). Evidently's methods disagree on direction
  (p-values drift below the threshold, distances above), so the verdict is read
  from Evidently rather than re-derived from the score;
- number of drifted columns: the `DriftedColumnsCount` metric (`value.count`; its
  `value.share` equals `share_drifted` unless there are all-null columns).

Evidently picks the method per column from the reference's row count: above 1,000
rows distances (Wasserstein for numbers, Jensen-Shannon for categories and numbers with
<= 5 values; threshold 0.1), otherwise p-values (K-S, chi-square, or a Z-test for two
values; threshold 0.05). Its chi-square takes the reference shares as exact, so
on small samples it flags stable categories more often than 5% of the time.

A column that is entirely null in the current month (or in the reference) cannot
be tested (Evidently raises "An empty column ... was provided"). It is left out of
the drift preset, still shown in the summary, and recorded as drifted with method
"all_null", score NaN and a note; `share_drifted` counts it. A column null in both
frames has nothing that changed and is recorded as not drifted.

Evidently takes ~13 s to import, so it is imported inside functions only: Airflow
parses DAG files that import this module.
"""

from __future__ import annotations

import html
import json
import logging
import math
import re
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from automl_tasks.errors import DataError

if TYPE_CHECKING:  # pandas is imported by callers that pass frames, not by DAG parsing
    import pandas as pd

log = logging.getLogger(__name__)

HTML_NAME = "drift_report.html"
JSON_NAME = "drift_report.json"
ALL_NULL = "all_null"
_VALUE_DRIFT = "evidently:metric_v2:ValueDrift"
_DRIFTED_COUNT = "evidently:metric_v2:DriftedColumnsCount"


@dataclass
class DriftResult:
    share_drifted: float                 # drifted columns / checked columns
    drifted_columns: list[str]           # sorted
    columns: dict[str, dict]             # {"score", "drifted", "method", "threshold"} (+ "note")
    reference_rows: int
    current_rows: int
    sample_fraction: dict[str, float]    # {"reference": f, "current": f}; 1.0 = no sampling
    html_path: str
    json_path: str
    title: str | None = None

    def to_dict(self) -> dict:
        """JSON-friendly summary (NaN scores become None; no file paths)."""
        return {
            "title": self.title,
            "share_drifted": self.share_drifted,
            "drifted_columns": list(self.drifted_columns),
            "columns": _finite(self.columns),
            "reference_rows": self.reference_rows,
            "current_rows": self.current_rows,
            "sample_fraction": dict(self.sample_fraction),
        }




# -- sampling ---------------------------------------------------------------

def sample_frame(df: pd.DataFrame, max_rows: int, seed: int = 0) -> tuple[pd.DataFrame, float]:
    """Rows of `df` capped at `max_rows` (same rows for the same seed) and the fraction kept."""
    if max_rows < 1:
        raise DataError(f"max_rows must be at least 1, got {max_rows}")
    if len(df) <= max_rows:
        return df, 1.0
    return df.sample(n=max_rows, random_state=seed), max_rows / len(df)


def spark_sample_to_pandas(df, columns: list[str], max_rows: int, seed: int = 0, rows: int | None = None
                           ) -> tuple[pd.DataFrame, float]:
    """Spark DataFrame -> pandas with at most `max_rows` rows, and the sampling fraction.

    `sample` is Bernoulli (about fraction * count rows, Spark Connect friendly);
    `limit` trims its small overshoot so the driver never collects more than the cap.
    `rows`: the frame's row count when the caller already knows it (saves a Spark job).
    """
    if max_rows < 1:
        raise DataError(f"max_rows must be at least 1, got {max_rows}")
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise DataError(f"column(s) {missing} not in the Spark DataFrame (has {df.columns})")
    selected = df.select(*columns)
    count = selected.count() if rows is None else rows
    fraction = 1.0 if count == 0 else min(1.0, max_rows / count)
    if fraction < 1.0:
        selected = selected.sample(fraction=fraction, seed=seed).limit(max_rows)
    return selected.toPandas(), fraction


# -- validation ---------------------------------------------------------------

def _check_inputs(reference: pd.DataFrame, current: pd.DataFrame,
                  numerical: list[str], categorical: list[str]) -> None:
    from pandas.api.types import is_numeric_dtype

    columns = list(numerical) + list(categorical)
    if not columns:
        raise DataError("drift report needs at least one numerical or categorical column")
    both = sorted(set(numerical) & set(categorical))
    if both:
        raise DataError(f"column(s) {both} listed as both numerical and categorical")
    repeated = sorted({c for c in columns if columns.count(c) > 1})
    if repeated:
        raise DataError(f"column(s) {repeated} listed more than once")
    for name, frame in (("reference", reference), ("current", current)):
        missing = [c for c in columns if c not in frame.columns]
        if missing:
            raise DataError(f"column(s) {missing} missing from the {name} frame")
        if len(frame) == 0:
            raise DataError(f"the {name} frame is empty (0 rows)")
        for col in numerical:
            values = frame[col]
            if not (is_numeric_dtype(values) or values.isna().all()):
                raise DataError(f"numerical column {col!r} has dtype {values.dtype} in the "
                                f"{name} frame; list it as categorical or cast it")


def _all_null_columns(reference: pd.DataFrame, current: pd.DataFrame,
                      columns: list[str]) -> dict[str, dict]:
    """Entries for columns Evidently cannot test because one side has no values."""
    entries = {}
    for col in columns:
        ref_empty, cur_empty = reference[col].isna().all(), current[col].isna().all()
        if not (ref_empty or cur_empty):
            continue
        where = "both frames" if ref_empty and cur_empty else (
            "the current frame" if cur_empty else "the reference frame")
        entries[col] = {"score": float("nan"), "drifted": not (ref_empty and cur_empty),
                        "method": ALL_NULL, "threshold": float("nan"),
                        "note": f"entirely null in {where}"}
    return entries


# -- report -------------------------------------------------------------------

def drift_report(reference: pd.DataFrame, current: pd.DataFrame, *, numerical: list[str],
                 categorical: list[str], out_dir, max_rows: int = 50_000, seed: int = 0,
                 title: str | None = None) -> DriftResult:
    """Run Evidently's drift + summary report; write drift_report.html/.json into `out_dir`."""
    _check_inputs(reference, current, numerical, categorical)
    columns = list(numerical) + list(categorical)
    ref, ref_fraction = sample_frame(reference[columns], max_rows, seed)
    cur, cur_fraction = sample_frame(current[columns], max_rows, seed)
    all_null = _all_null_columns(ref, cur, columns)
    testable = [c for c in columns if c not in all_null]

    started = time.monotonic()
    snapshot = _run_evidently(ref, cur, numerical, categorical, testable, title)
    report = snapshot.dict()
    per_column = _value_drift_columns(report)
    drifted_count = _drifted_count(report) if testable else 0
    per_column.update(all_null)
    per_column = {c: per_column[c] for c in columns}  # keep the caller's column order
    drifted = sorted(c for c, info in per_column.items() if info["drifted"])
    if drifted_count != sum(per_column[c]["drifted"] for c in testable):
        log.warning("Evidently's drifted-column count %s differs from its per-column tests %s",
                    drifted_count, [c for c in drifted if c in testable])

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    result = DriftResult(
        share_drifted=len(drifted) / len(columns),
        drifted_columns=drifted,
        columns=per_column,
        reference_rows=len(ref),
        current_rows=len(cur),
        sample_fraction={"reference": ref_fraction, "current": cur_fraction},
        html_path=str(out / HTML_NAME),
        json_path=str(out / JSON_NAME),
        title=title,
    )
    _write_html(snapshot, result.html_path, title)
    _write_json(result, report)
    log.info("drift report %s: %d/%d columns drifted %s (%d vs %d rows) in %.1fs",
             title or "", len(drifted), len(columns), drifted, len(ref), len(cur),
             time.monotonic() - started)
    return result


def _run_evidently(ref: pd.DataFrame, cur: pd.DataFrame, numerical: list[str],
                   categorical: list[str], testable: list[str], title: str | None):
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    definition = DataDefinition(numerical_columns=list(numerical),
                                categorical_columns=list(categorical))
    # include_tests=True is what makes ValueDrift emit its drifted/not-drifted verdict.
    presets = [DataDriftPreset(columns=testable)] if testable else []
    report = Report(presets + [_summary_preset(list(numerical) + list(categorical))],
                    include_tests=True)
    with warnings.catch_warnings():
        # Summary stats of an all-null column divide 0 by 0; the column is reported anyway.
        warnings.simplefilter("ignore", RuntimeWarning)
        return report.run(current_data=Dataset.from_pandas(cur, data_definition=definition),
                          reference_data=Dataset.from_pandas(ref, data_definition=definition),
                          name=title)


def _summary_preset(columns: list[str]):
    """DataSummaryPreset without its default tests.

    Its defaults compare min/max/mean/quantiles with the reference at +-10%, which fails
    on any centred or slightly shifted column and on a 6-month vs 1-month row count. Every
    per-column test list is given as [] explicitly: `include_tests=False` alone crashes in
    evidently 0.7.23 when rendering a categorical column with <= 3 labels (the preset
    renders metrics built with tests=None but computed them with tests=[]: KeyError).
    One test remains: the preset's RowTestSummary hard-codes RowCount() with its default
    "row count equals the reference +-10%", shown in the HTML; nothing here reads it.
    """
    import dataclasses

    from evidently.presets import DataSummaryPreset
    from evidently.presets.dataset_stats import ValueStatsTests

    no_tests = ValueStatsTests(**{f.name: [] for f in dataclasses.fields(ValueStatsTests)})
    return DataSummaryPreset(include_tests=False, row_count_tests=[],
                             column_tests={c: no_tests for c in columns})


def summary_html(frame: pd.DataFrame, *, numerical: list[str], categorical: list[str],
                 title: str | None = None) -> str:
    """Evidently's data summary of one frame (no reference): per-column stats, as an HTML page."""
    from evidently import DataDefinition, Dataset, Report

    columns = list(numerical) + list(categorical)
    if not columns:
        raise DataError("data summary needs at least one numerical or categorical column")
    definition = DataDefinition(numerical_columns=list(numerical), categorical_columns=list(categorical))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)   # stats of an all-null column: 0 / 0
        snapshot = Report([_summary_preset(columns)], include_tests=False).run(
            current_data=Dataset.from_pandas(frame[columns], data_definition=definition), name=title)
    page = snapshot.get_html_str(as_iframe=False)
    if title:
        page = page.replace("<head>", f"<head>\n<title>{html.escape(title)}</title>", 1)
    return page


def _value_drift_columns(report: dict) -> dict[str, dict]:
    """Per-column score/method/threshold from ValueDrift metrics, verdict from their tests."""
    verdicts = {}
    for test in report["tests"]:
        params = test.get("metric_config", {}).get("params", {})
        if test.get("id") == "drift" and params.get("type") == _VALUE_DRIFT:
            status = test["status"]  # a str Enum in dict(), a plain str once serialised
            verdicts[params["column"]] = getattr(status, "value", status) == "FAIL"
    columns = {}
    for metric in report["metrics"]:
        config = metric.get("config", {})
        if config.get("type") != _VALUE_DRIFT:
            continue
        name = config["column"]
        if name not in verdicts:
            raise RuntimeError(f"Evidently returned no drift verdict for column {name!r}")
        columns[name] = {"score": float(metric["value"]), "drifted": verdicts[name],
                         "method": config["method"], "threshold": float(config["threshold"])}
    return columns


def _drifted_count(report: dict) -> int:
    for metric in report["metrics"]:
        if metric.get("config", {}).get("type") == _DRIFTED_COUNT:
            return int(metric["value"]["count"])
    raise RuntimeError("Evidently's report has no DriftedColumnsCount metric")


def _write_html(snapshot, path: str, title: str | None) -> None:
    # save_html() silently writes nothing for a Path (it only handles str): write it here,
    # with a <title> since Evidently's page has none.
    page = snapshot.get_html_str(as_iframe=False)
    if title:
        page = page.replace("<head>", f"<head>\n<title>{html.escape(title)}</title>", 1)
    Path(path).write_text(page, encoding="utf-8")


def _write_json(result: DriftResult, report: dict) -> None:
    """Our summary plus Evidently's dict, as strict JSON (Evidently writes NaN for the
    stats of an all-null column; JSON.parse and jq reject that, so it becomes null)."""
    from evidently.legacy.utils.numpy_encoder import NumpyEncoder

    evidently = json.loads(json.dumps(report, cls=NumpyEncoder))  # numpy/enums -> plain
    payload = {"summary": result.to_dict(), "evidently": _finite(evidently)}
    Path(result.json_path).write_text(json.dumps(payload, allow_nan=False), encoding="utf-8")


def _finite(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


# -- MLflow -------------------------------------------------------------------

def _metric_key(name: str) -> str:
    """ASCII letters, digits, _ - . and space; anything else (slashes too: MLflow rejects
    keys that are not normalised paths, e.g. with "//") becomes "_"."""
    return re.sub(r"[^A-Za-z0-9_\-. ]", "_", name)


def drift_metrics(result: DriftResult) -> dict[str, float]:
    """{drift_share, drift_score.<col>}; all-null columns have no score and are left out."""
    metrics = {"drift_share": float(result.share_drifted)}
    for col, info in result.columns.items():
        if math.isnan(info["score"]):
            continue
        key = base = f"drift_score.{_metric_key(col)}"
        n = 2
        while key in metrics:  # two names that sanitise alike keep both scores
            key, n = f"{base}_{n}", n + 1
        metrics[key] = float(info["score"])
    return metrics


def log_drift_to_mlflow(result: DriftResult, *, step: int | None = None, prefix: str = "") -> None:
    """Log metrics, tags and the report files into the active MLflow run; `prefix` goes before
    every metric and tag name and the artifact folder (a second report in the same run).

    Sample fractions and drifted columns go in tags (not params) so re-running a month
    in the same run may overwrite them; params are immutable in MLflow.
    """
    import mlflow

    if mlflow.active_run() is None:
        raise RuntimeError("log_drift_to_mlflow needs an active MLflow run (mlflow.start_run())")
    mlflow.log_metrics({prefix + k: v for k, v in drift_metrics(result).items()}, step=step)
    tags = {f"drift_sample_fraction_{side}": str(f) for side, f in result.sample_fraction.items()}
    tags["drift_drifted_columns"] = ",".join(result.drifted_columns)[:5000]
    all_null = [c for c, info in result.columns.items() if info["method"] == ALL_NULL]
    if all_null:
        tags["drift_all_null_columns"] = ",".join(all_null)[:5000]
    mlflow.set_tags({prefix + k: v for k, v in tags.items()})
    for path in (result.html_path, result.json_path):
        mlflow.log_artifact(path, artifact_path=f"{prefix}drift")

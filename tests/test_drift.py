"""automl_tasks.monitoring.drift: real Evidently reports on small generated frames.

One 2,000-row report (shared by the module) carries a shifted numeric column, a shifted
categorical column, and two stable ones; one of the stable names needs sanitising for
MLflow. Each further report costs ~1-2 s after Evidently's ~13 s import, so there are
only two more: a sampled one (below 1,000 rows Evidently switches to p-value tests, whose
direction is the opposite of the distances') and one with all-null columns.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from automl_tasks.errors import DataError
from automl_tasks.monitoring.drift import (
    DriftResult, drift_report, log_drift_to_mlflow, sample_frame, spark_sample_to_pandas)

NUMERICAL = ["income", "age"]
CATEGORICAL = ["plan", "region/zone #"]
STABLE_ODD = "region/zone #"  # slash, space and '#': sanitised in the MLflow metric key


def make_frame(n: int, shifted: bool, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    plan_p = [0.7, 0.2, 0.1] if shifted else [1 / 3, 1 / 3, 1 / 3]
    return pd.DataFrame({
        "income": rng.normal(3.0 if shifted else 0.0, 1.0, n),
        "age": rng.normal(40.0, 10.0, n),
        "plan": rng.choice(["basic", "plus", "pro"], n, p=plan_p),
        "region/zone #": rng.choice(["north", "south", "east", "west"], n),
        "unused": np.arange(n),  # not listed: must not reach the report
    })


@pytest.fixture(scope="module")
def frames():
    return make_frame(2000, shifted=False, seed=1), make_frame(2000, shifted=True, seed=2)


@pytest.fixture(scope="module")
def result(frames, tmp_path_factory) -> DriftResult:
    reference, current = frames
    return drift_report(reference, current, numerical=NUMERICAL, categorical=CATEGORICAL,
                        out_dir=tmp_path_factory.mktemp("drift") / "2017-09", title="loans 2017-09")


def test_shifted_columns_flagged_and_stable_ones_not(result):
    assert result.drifted_columns == ["income", "plan"]
    assert result.share_drifted == pytest.approx(0.5)
    assert list(result.columns) == NUMERICAL + CATEGORICAL
    for col in ("age", STABLE_ODD):
        assert result.columns[col]["drifted"] is False
    # >1,000 rows: Evidently picks distances, drifted when score >= threshold.
    assert result.columns["income"]["method"] == "Wasserstein distance (normed)"
    assert result.columns["plan"]["method"] == "Jensen-Shannon distance"
    for info in result.columns.values():
        assert info["drifted"] == (info["score"] >= info["threshold"])
    assert (result.reference_rows, result.current_rows) == (2000, 2000)
    assert result.sample_fraction == {"reference": 1.0, "current": 1.0}


def test_html_and_json_written(result):
    page = open(result.html_path, encoding="utf-8").read()
    assert "<html" in page and "<title>loans 2017-09</title>" in page
    saved = json.loads(open(result.json_path, encoding="utf-8").read())
    assert saved["summary"] == json.loads(json.dumps(result.to_dict()))
    metric_types = {m["config"]["type"] for m in saved["evidently"]["metrics"]}
    assert "evidently:metric_v2:ValueDrift" in metric_types          # DataDriftPreset
    assert "evidently:metric_v2:MissingValueCount" in metric_types   # DataSummaryPreset
    assert "unused" not in json.dumps(saved["evidently"])


def test_sample_frame_caps_rows_deterministically():
    df = make_frame(1000, shifted=False, seed=3)
    same, fraction = sample_frame(df, max_rows=1000)
    assert same is df and fraction == 1.0
    a, fa = sample_frame(df, max_rows=250, seed=7)
    b, _ = sample_frame(df, max_rows=250, seed=7)
    c, _ = sample_frame(df, max_rows=250, seed=8)
    assert len(a) == 250 and fa == pytest.approx(0.25)
    assert a.index.equals(b.index) and not a.index.equals(c.index)


def test_sampled_report_records_fraction_and_reads_pvalue_verdicts(frames, tmp_path):
    reference, current = frames
    small = drift_report(reference, current, numerical=NUMERICAL, categorical=CATEGORICAL,
                         out_dir=tmp_path, max_rows=400, seed=5)
    assert small.sample_fraction == {"reference": pytest.approx(0.2), "current": pytest.approx(0.2)}
    assert (small.reference_rows, small.current_rows) == (400, 400)
    # <=1,000 rows: p-value tests, drifted when the score is *below* the threshold.
    assert small.columns["income"]["method"] == "K-S p_value"
    assert small.columns["plan"]["method"] == "chi-square p_value"
    # Only the shifted columns are asserted: on 400 rows a stable column fails a 5% test now
    # and then. Evidently's chi-square also takes the reference shares as exact (goodness of
    # fit, not a 2-sample test), so here the stable region gets p=0.009 (contingency: ~0.03).
    assert {"income", "plan"} <= set(small.drifted_columns)
    for info in small.columns.values():
        assert info["drifted"] == (info["score"] < info["threshold"])


def test_all_null_columns_recorded_not_crashing(frames, tmp_path):
    reference, current = frames
    current = current.assign(age=np.nan, both_null=np.nan, ref_null=1.0)
    reference = reference.assign(both_null=np.nan, ref_null=np.nan)
    res = drift_report(reference, current, numerical=NUMERICAL + ["both_null", "ref_null"],
                       categorical=CATEGORICAL, out_dir=tmp_path)
    age = res.columns["age"]
    assert age["method"] == "all_null" and age["drifted"] is True and math.isnan(age["score"])
    assert age["note"] == "entirely null in the current frame"
    assert res.columns["ref_null"]["drifted"] is True
    assert res.columns["both_null"] == pytest.approx(
        {"score": math.nan, "drifted": False, "method": "all_null", "threshold": math.nan,
         "note": "entirely null in both frames"}, nan_ok=True)
    assert res.drifted_columns == ["age", "income", "plan", "ref_null"]
    assert res.share_drifted == pytest.approx(4 / 6)
    assert res.to_dict()["columns"]["age"]["score"] is None
    json.loads(open(res.json_path, encoding="utf-8").read(),  # strict JSON: no NaN literal
               parse_constant=lambda c: pytest.fail(f"{c} in the JSON"))


@pytest.mark.parametrize("frame, message", [
    ("reference", "['plan'] missing from the reference frame"),
    ("current", "['plan'] missing from the current frame"),
])
def test_missing_column_names_column_and_frame(frames, tmp_path, frame, message):
    reference, current = frames
    if frame == "reference":
        reference = reference.drop(columns="plan")
    else:
        current = current.drop(columns="plan")
    with pytest.raises(DataError, match=message.replace("[", r"\[").replace("]", r"\]")):
        drift_report(reference, current, numerical=NUMERICAL, categorical=CATEGORICAL,
                     out_dir=tmp_path)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("frame", ["reference", "current"])
def test_empty_frame_is_an_error(frames, tmp_path, frame):
    reference, current = frames
    empty = {"reference": reference.iloc[:0], "current": current}
    if frame == "current":
        empty = {"reference": reference, "current": current.iloc[:0]}
    with pytest.raises(DataError, match=f"the {frame} frame is empty"):
        drift_report(empty["reference"], empty["current"], numerical=NUMERICAL,
                     categorical=CATEGORICAL, out_dir=tmp_path)


def test_bad_column_lists(frames, tmp_path):
    reference, current = frames
    with pytest.raises(DataError, match="both numerical and categorical"):
        drift_report(reference, current, numerical=["income", "plan"], categorical=["plan"],
                     out_dir=tmp_path)
    with pytest.raises(DataError, match=r"\['age'\] listed more than once"):
        drift_report(reference, current, numerical=["age", "age"], categorical=[], out_dir=tmp_path)
    with pytest.raises(DataError, match="at least one numerical or categorical column"):
        drift_report(reference, current, numerical=[], categorical=[], out_dir=tmp_path)
    with pytest.raises(DataError, match="numerical column 'plan' has dtype object"):
        drift_report(reference, current, numerical=["plan"], categorical=[], out_dir=tmp_path)


def test_log_drift_to_mlflow(result, tmp_path):
    import mlflow
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path}/m.db"
    mlflow.set_tracking_uri(uri)
    try:
        # Explicit artifact location: the default would be ./mlruns in the working directory.
        exp = mlflow.create_experiment("drift-test", artifact_location=(tmp_path / "art").as_uri())
        with mlflow.start_run(experiment_id=exp) as run:
            log_drift_to_mlflow(result, step=3)
    finally:
        mlflow.set_tracking_uri(None)

    client = MlflowClient(tracking_uri=uri)
    logged = client.get_run(run.info.run_id).data
    assert logged.metrics["drift_share"] == pytest.approx(0.5)
    assert logged.metrics["drift_score.income"] == pytest.approx(result.columns["income"]["score"])
    assert logged.metrics["drift_score.region_zone _"] == pytest.approx(
        result.columns[STABLE_ODD]["score"])
    assert len([k for k in logged.metrics if k.startswith("drift_score.")]) == 4
    assert client.get_metric_history(run.info.run_id, "drift_share")[0].step == 3
    assert logged.tags["drift_sample_fraction_reference"] == "1.0"
    assert logged.tags["drift_sample_fraction_current"] == "1.0"
    assert logged.tags["drift_drifted_columns"] == "income,plan"
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "drift")}
    assert artifacts == {"drift/drift_report.html", "drift/drift_report.json"}


def test_log_drift_needs_an_active_run(result):
    with pytest.raises(RuntimeError, match="active MLflow run"):
        log_drift_to_mlflow(result)


def test_spark_sample_to_pandas(spark):
    df = spark.range(1000).selectExpr("id", "id % 7 AS k", "CAST(id AS DOUBLE) * 0.5 AS v")
    sample, fraction = spark_sample_to_pandas(df, ["k", "v"], max_rows=100, seed=3)
    again, _ = spark_sample_to_pandas(df, ["k", "v"], max_rows=100, seed=3)
    assert fraction == pytest.approx(0.1)
    assert list(sample.columns) == ["k", "v"] and 0 < len(sample) <= 100
    pd.testing.assert_frame_equal(sample, again)
    # A row count the caller knows replaces Spark's count: the same fraction, the same rows.
    known, known_fraction = spark_sample_to_pandas(df, ["k", "v"], max_rows=100, seed=3, rows=1000)
    assert known_fraction == fraction
    pd.testing.assert_frame_equal(sample, known)
    halved, halved_fraction = spark_sample_to_pandas(df, ["k", "v"], max_rows=100, seed=3, rows=500)
    assert halved_fraction == pytest.approx(0.2)

    whole, fraction = spark_sample_to_pandas(df, ["v"], max_rows=5000)
    assert fraction == 1.0 and len(whole) == 1000

    with pytest.raises(DataError, match=r"\['nope'\] not in the Spark DataFrame"):
        spark_sample_to_pandas(df, ["v", "nope"], max_rows=10)

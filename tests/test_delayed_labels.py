"""Labels that arrive months late (spec labels.delay_months): the run for month M monitors M
without labels (drift, prediction drift, the champion's estimated metric) and evaluates M - N;
the estimate is checked against the realized metric once M's labels land."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import pandas as pd
import pytest
from mlflow import MlflowClient

from automl_tasks.data.months import Month
from automl_tasks.errors import DataError
from automl_tasks.pipelines.history import format_history, history
from automl_tasks.pipelines.monthly import run_monthly
from automl_tasks.pipelines.monthly.steps import start
from automl_tasks.pipelines.monthly.unlabelled import earlier_months
from automl_tasks.pipelines.scoring import PART, score_month
from automl_tasks.spec import load_spec
from tests.support.specs import write_spec

ONE_CONFIG = {"xgboost": {"search": "grid", "space": {"max_depth": [2], "n_estimators": [20]}}}


@pytest.fixture(scope="module")
def late_data(tmp_path_factory):
    """The demo data with the concept shift at 2017-09, 1,500 rows a month: enough rows that the
    estimate's interval (about +-0.03 AUC) is narrower than the shift's effect on the champion."""
    from automl_tasks.data.demo import write_demo_data

    out = tmp_path_factory.mktemp("late")
    write_demo_data(out, n_months=12, rows_per_month=1500, shift_month="2017-09", seed=1)
    return out


def _spec(demo_dir, task: str, name: str, delay: int):
    return load_spec(write_spec(demo_dir, task, filename=f"{name}.yaml", name=name, algorithms=ONE_CONFIG,
                                labels={"delay_months": delay}))


def _record(result: dict) -> dict:
    return json.loads(mlflow.artifacts.load_text(f"runs:/{result['runs']['month']}/monthly.json"))


def test_the_run_for_a_month_evaluates_the_month_its_labels_allow(tmp_path):
    spec = load_spec(write_spec(tmp_path, labels={"delay_months": 2}))
    assert (start(spec, "2018-01")["month"], start(spec, "2018-01")["monitored"]) == ("2017-11", "2018-01")
    assert (start(spec, "2018-03")["month"], start(spec, "2018-03")["monitored"]) == ("2018-01", "2018-03")
    undelayed = load_spec(write_spec(tmp_path, filename="now.yaml"))
    assert (start(undelayed, "2018-01")["month"], start(undelayed, "2018-01")["monitored"]) == ("2018-01", None)


def test_the_reference_is_the_champions_newest_months_out_of_its_sample():
    window = ["2017-01", "2017-02", "2017-03", "2017-04", "2017-05", "2017-06"]
    assert earlier_months(window, "2017-03", room=2) == ["2017-05", "2017-06"]
    assert earlier_months(window, "2017-05", room=5) == ["2017-05", "2017-06"]     # not before its candidate month
    assert earlier_months(window, "2017-07", room=5) == []           # a champion made on the evaluated month
    assert earlier_months(window, None, room=5) == []                # no candidate month: nothing assumed
    assert earlier_months(window, "2017-01", room=0) == []           # reference_months 1: the evaluated month


def test_estimates_are_made_without_labels_and_checked_when_they_land(late_data, spark, tracking):
    """Binary (CBPE), one month late, on the demo data whose concept shifts at 2017-09: the first
    champion is made in the run for 2017-07 and kept (shadow mode) while each run estimates the
    month it monitors and checks the estimate made a month earlier."""
    spec = _spec(late_data, "binary", "late_binary", delay=1)
    quiet = {"spark": spark, "progress": lambda line: None}
    runs = {m: run_monthly(spec, m, promotion_mode="auto" if m == "2017-07" else "shadow", **quiet)
            for m in ("2017-07", "2017-08", "2017-09", "2017-10")}

    for month, result in runs.items():
        assert result["monitored_month"] == month
        assert result["evaluated_month"] == result["month"] == str(Month.parse(month) - 1)
    first = runs["2017-07"]
    assert first["estimated"] is None and first["prediction_drift"] is None and first["estimate_check"] is None
    champion = first["champion_after"]
    assert champion is not None and all(runs[m]["champion_before"] == champion for m in ("2017-08", "2017-09"))

    estimated = runs["2017-08"]["estimated"]
    assert estimated["metric"] == "areaUnderROC" and estimated["method"] == "cbpe"
    assert estimated["version"] == champion and estimated["rows"] == 1500
    assert estimated["ci_low"] < estimated["value"] < estimated["ci_high"]
    assert runs["2017-08"]["estimate_check"] is None            # 2017-07 was estimated by nobody
    # The reference: the champion's labelled months since its candidate month 2017-06, the
    # evaluated month included; so one more month each run.
    assert [runs[m]["estimated"]["reference"] for m in ("2017-08", "2017-09", "2017-10")] == [
        "2017-06..2017-07", "2017-06..2017-08", "2017-06..2017-09"]
    drift = runs["2017-08"]["prediction_drift"]
    assert drift["column"] == "score" and drift["reference"] == "2017-06..2017-07"
    assert isinstance(drift["drifted"], bool)

    # The run for 2017-09 evaluates 2017-08: the estimate made a month ago beside the truth.
    checked = runs["2017-09"]["estimate_check"]
    assert checked["month"] == "2017-08" and checked["version"] == champion
    assert checked["estimated"]["value"] == estimated["value"]
    assert checked["realized"] == runs["2017-09"]["champion_metric"]      # same model, same rows
    assert checked["error"] == pytest.approx(checked["realized"] - estimated["value"])
    assert checked["inside"] == (estimated["ci_low"] <= checked["realized"] <= estimated["ci_high"])
    # The concept shift at 2017-09: estimated as the old relation predicts, missed by the truth.
    missed = runs["2017-10"]["estimate_check"]
    assert missed["month"] == "2017-09" and missed["inside"] is False, missed
    assert missed["realized"] < missed["estimated"]["ci_low"]
    [alert] = [a for a in runs["2017-10"]["alerts"] if a["kind"] == "estimate_missed"]
    assert alert["message"].startswith(f"late_binary 2017-09: v{champion}'s realized areaUnderROC ")
    assert any(a["kind"] == "estimate_missed" for a in runs["2017-09"]["alerts"]) == (not checked["inside"])
    assert _record(runs["2017-10"])["estimate_check"] == missed

    # MLflow: both series, month as step.
    client = MlflowClient(tracking)
    [est] = client.get_metric_history(runs["2017-08"]["runs"]["monitor"], "estimated_areaUnderROC")
    [real] = client.get_metric_history(runs["2017-09"]["runs"]["monitor"], "realized_areaUnderROC")
    assert est.step == real.step == Month.parse("2017-08").step
    assert (est.value, real.value) == (estimated["value"], checked["realized"])
    assert client.get_run(runs["2017-08"]["runs"]["monitor"]).data.metrics["unlabelled_seconds"] > 0

    rows = {r["month"]: r for r in history(spec.name)}
    assert sorted(rows) == ["2017-06", "2017-07", "2017-08", "2017-09", "2017-10"]
    assert rows["2017-08"]["estimated"]["value"] == estimated["value"]
    assert rows["2017-08"]["realized"] == checked["realized"]
    assert "estimate_missed" in rows["2017-09"]["alerts"]
    latest = rows["2017-10"]                                          # monitored, labels not landed
    assert latest["realized"] is None and latest["decision"] == "labels pending"
    assert latest["estimated"]["value"] == runs["2017-10"]["estimated"]["value"]
    table = format_history(list(rows.values()), "areaUnderROC")
    assert "estimated [95% CI]" in table and "labels pending" in table


def test_monitoring_reads_the_predictions_that_were_served(demo_dir, spark, tracking, tmp_path, monkeypatch):
    """Regression (DLE): `automl-tasks score` stored the month's predictions; the run that monitors
    the month reads those, not its own scores (here made to differ: all shifted by 10,000)."""
    monkeypatch.setenv("AUTOML_PREDICTIONS_DIR", str(tmp_path / "predictions"))
    spec = _spec(demo_dir, "regression", "late_loss", delay=1)
    quiet = {"spark": spark, "progress": lambda line: None}
    first = run_monthly(spec, "2017-07", promotion_mode="auto", **quiet)
    served = score_month(spec, "2017-08", spark=spark, progress=lambda line: None)
    assert served["version"] == first["champion_after"]
    stored = Path(served["path"]) / PART
    table = pd.read_parquet(stored)
    table["score"] += 10_000.0
    table.to_parquet(stored, index=False)

    result = run_monthly(spec, "2017-08", promotion_mode="shadow", **quiet)
    monitored = _record(result)["monitored"]
    assert monitored["predictions"] == "served"
    assert result["estimated"]["method"] == "dle" and result["estimated"]["metric"] == "rmse"
    assert result["prediction_drift"]["drifted"] is True


def test_a_monitored_month_without_rows_is_refused_before_anything_is_written(demo_dir, spark, tracking):
    spec = _spec(demo_dir, "binary", "late_beyond", delay=1)
    with pytest.raises(DataError) as err:
        run_monthly(spec, "2018-01", spark=spark, progress=lambda line: None)     # the data ends 2017-12
    assert "the monitored month 2018-01 (labels.delay_months 1 after 2017-12) has no rows" in str(err.value)
    assert "months with rows: 2017-01..2017-12" in str(err.value)
    assert MlflowClient(tracking).get_experiment_by_name("late_beyond/monthly") is None

"""The monthly job end to end: first champion, a pending challenger, an idempotent re-run."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import pytest
from mlflow import MlflowClient

from automl_tasks.errors import DataError
from automl_tasks.pipelines.monthly import run_monthly
from automl_tasks.registry import promotion
from automl_tasks.spec import load_spec
from tests.support.specs import write_spec


def test_monthly_job_decides_and_reruns_idempotently(demo_dir, spark, tracking):
    spec = load_spec(write_spec(demo_dir, "binary", filename="monthly.yaml", name="monthly_test",
                                segment="segment"))
    quiet = {"spark": spark, "progress": lambda line: None}

    first = run_monthly(spec, "2017-10", promotion_mode="auto", **quiet)
    assert first["champion_before"] is None
    assert first["decision"]["status"] == "approved" and first["champion_after"] == first["decision"]["version"]
    assert first["champion_metric"] is None and set(first["candidates"]) == {"xgboost", "lightgbm"}
    # Drift of 2017-10 against 2017-06..09, on the demo data's planted facts: incomes rise month
    # by month (loan amounts and car values scale with them); age, loan length, region,
    # employment and purpose are drawn alike every month (the late purpose comes in 2017-12).
    drift = first["drift"]
    assert "income" in drift["drifted_columns"], drift
    assert not {"age", "loan_length", "region", "employment", "purpose"} & set(drift["drifted_columns"]), drift
    assert drift["share_drifted"] == len(drift["drifted_columns"]) / len(spec.features)
    # The list is what the logged per-column scores say: on a 1,600-row reference Evidently
    # measures distances (Wasserstein, Jensen-Shannon), a column drifted above 0.1.
    client = MlflowClient(tracking)
    scores = {key.split(".", 1)[1]: value for key, value in
              client.get_run(first["runs"]["monitor"]).data.metrics.items() if key.startswith("drift_score.")}
    assert set(scores) == set(spec.features)
    assert sorted(c for c, score in scores.items() if score > 0.1) == drift["drifted_columns"], scores
    assert not first["reused"] and first["fit_seconds"]["trials"] > 0
    assert set(first["timings"]) == {"check", "ablation", "monitor", "tune", "compare", "decide",
                                   "total"}

    second = run_monthly(spec, "2017-11", promotion_mode="manual", **quiet)
    version = second["decision"]["version"]
    assert second["decision"]["status"] == "pending" and version != first["champion_after"]
    assert second["champion_before"] == second["champion_after"] == first["champion_after"]
    assert 0.0 < second["champion_metric"] < 1.0
    # The champion's health: measured against its holdout metric when 2017-10 promoted it.
    first_best = first["candidates"][promotion.get_decision(spec.name, first["champion_after"]).evidence["candidate"]]
    month_record = json.loads(mlflow.artifacts.load_text(f"runs:/{second['runs']['month']}/monthly.json"))
    health = month_record["health"]
    assert health["reference"] == first_best and health["value"] == second["champion_metric"]
    assert health["ci_low"] < health["value"] < health["ci_high"]
    assert health["degraded"] == (health["ci_high"] < first_best - spec.monitoring.max_degradation)
    waiting = [a for a in second["alerts"] if a["kind"] == "approval_waiting"]
    assert [a["message"] for a in waiting] == [
        f"monthly_test 2017-11: v{version} waits for approval (rejected by default after 72 h)"]
    month_run = client.get_run(second["decision"]["evidence_run_id"])
    assert month_run.info.run_id == second["runs"]["month"]
    # The UI opens the experiment on its runs; the month run lists its window and holdout as datasets.
    experiment_tags = client.get_experiment(month_run.info.experiment_id).tags
    assert experiment_tags["mlflow.experimentKind"] == "custom_model_development"
    inputs = {i.tags[0].value: i.dataset for i in month_run.inputs.dataset_inputs}
    assert {context: d.name for context, d in inputs.items()} == {
        "training": "monthly_test 2017-07..2017-10", "holdout": "monthly_test 2017-11"}
    assert inputs["training"].digest != inputs["holdout"].digest
    assert all(str(demo_dir / "loans") in d.source for d in inputs.values())
    tuning_inputs = client.get_run(second["runs"]["tuning"]).inputs.dataset_inputs
    assert {(i.dataset.name, i.dataset.digest) for i in tuning_inputs} == {(d.name, d.digest) for d in inputs.values()}
    assert month_run.data.tags["automl.kind"] == "decision" and month_run.data.tags["automl.month"] == "2017-11"
    side_by_side = month_run.data.metrics
    assert {"champion_areaUnderROC", "xgboost_holdout_areaUnderROC", "lightgbm_holdout_areaUnderROC",
            "ci_low", "delta", "drift_share"} <= set(side_by_side)
    assert {"monthly.json", "decision.md", "decisions"} <= {a.path for a in client.list_artifacts(month_run.info.run_id)}
    summary = second["decision"]["summary"]
    assert month_run.data.tags["mlflow.note.content"] == summary
    assert client.get_model_version(spec.name, version).description == summary
    assert f"champion v{first['champion_after']}" in summary and "| all |" in summary and "95% CI" in summary
    for step in ("monitor", "tuning", "comparison"):                         # children of the month run
        assert client.get_run(second["runs"][step]).data.tags["mlflow.parentRunId"] == month_run.info.run_id
    comparison = client.get_run(second["runs"]["comparison"])
    assert comparison.data.tags["automl.kind"] == "comparison" and "ci_low" in comparison.data.metrics
    assert {"comparison.json", "comparison_forest.png", "candidate"} <= {
        a.path for a in client.list_artifacts(comparison.info.run_id)}
    monitor = client.get_run(second["runs"]["monitor"])
    assert "drift_share" in monitor.data.metrics and "champion_areaUnderROC" in monitor.data.metrics
    assert any(k.startswith("champion_areaUnderROC.") for k in monitor.data.metrics)   # per segment
    history = client.get_metric_history(monitor.info.run_id, "champion_areaUnderROC")
    assert [m.step for m in history] == [2017 * 12 + 10]                                  # month as step
    assert {"champion_trend.png", "drift"} <= {a.path for a in client.list_artifacts(monitor.info.run_id)}

    # Re-running the month reuses every run and the registered version; nothing new is logged.
    experiment = client.get_experiment_by_name("monthly_test/monthly").experiment_id
    before = {r.info.run_id for r in client.search_runs([experiment], max_results=5000)}
    again = run_monthly(spec, "2017-11", promotion_mode="manual", **quiet)
    assert again["reused"] and again["runs"] == second["runs"]
    assert again["decision"]["version"] == version and again["decision"]["status"] == "pending"
    assert {r.info.run_id for r in client.search_runs([experiment], max_results=5000)} == before
    versions = client.search_model_versions(f"name = '{spec.name}'")
    assert len(versions) == 2
    assert promotion.current_champion(spec.name) == first["champion_after"]

    # A person approves: the champion moves once, to the challenger.
    decision = promotion.decide(spec.name, version, approve=True, decided_by="user:test")
    assert decision.status == "approved" and promotion.current_champion(spec.name) == version

    # A month with fewer evaluated rows than promotion.min_rows: recorded, nobody asked, nothing moves.
    thin = spec.model_copy(update={"promotion": spec.promotion.model_copy(update={"min_rows": 1000})})
    thin.origin = spec.origin
    result = run_monthly(thin, "2017-12", promotion_mode="manual", **quiet)
    assert result["decision"]["status"] == "insufficient_evidence"
    assert result["champion_before"] == result["champion_after"] == version
    assert "400 evaluated rows < min_rows 1000" in result["decision"]["reasons"][0]
    assert "**insufficient evidence: nothing is promoted** (decided by the `evidence` gate; 400 holdout rows" \
        in result["decision"]["summary"]
    assert client.get_registered_model(spec.name).aliases == {"champion": version}   # no challenger left
    assert promotion.get_decision(spec.name, result["decision"]["version"]).decided_by == "policy:evidence"

    # Bad input afterwards changes nothing.
    with pytest.raises(DataError, match="month 2019-01 is outside the data"):
        run_monthly(spec, "2019-01", promotion_mode="auto", **quiet)
    assert promotion.current_champion(spec.name) == version
    assert len(client.search_model_versions(f"name = '{spec.name}'")) == 3      # the thin month's included


@pytest.mark.parametrize("task, fmt", [("multiclass", "parquet"), ("regression", "csv")])
def test_monthly_job_on_other_tasks_and_a_csv_source(task, fmt, demo_dir, spark, tracking, tmp_path):
    """Multiclass (logLoss) and regression (rmse, lower is better), the CSV one with text timestamps."""
    from automl_tasks.data.demo import write_demo_data

    folder = demo_dir
    if fmt == "csv":
        folder = tmp_path / "csv"
        write_demo_data(folder, n_months=12, rows_per_month=400, shift_month="2017-09", seed=1, fmt="csv")
    one_point = {"xgboost": {"search": "grid", "space": {"max_depth": [3], "n_estimators": [20]}}}
    spec = load_spec(write_spec(folder, task, filename=f"monthly_{task}.yaml", name=f"monthly_{task}",
                                segment="segment", algorithms=one_point,
                                data={"source": "loans.csv" if fmt == "csv" else "loans"}))
    quiet = {"spark": spark, "progress": lambda line: None}
    first = run_monthly(spec, "2017-10", promotion_mode="auto", **quiet)
    second = run_monthly(spec, "2017-11", promotion_mode="shadow", **quiet)
    assert first["decision"]["status"] == "approved"
    assert second["decision"]["status"] == "rejected" and second["champion_after"] == first["champion_after"]
    assert second["champion_metric"] > 0 and second["candidates"]["xgboost"] > 0
    assert "| all | 400 |" in second["decision"]["summary"]
    worse = second["candidates"]["xgboost"] - second["champion_metric"]   # lower is better for both metrics
    client = MlflowClient(tracking)
    comparison = client.get_run(second["runs"]["comparison"]).data.metrics
    assert comparison["delta"] == pytest.approx(-worse, abs=1e-9)         # delta oriented: positive = better


def test_monthly_job_runs_the_specs_ablation_and_summarises_it(demo_dir, spark, tracking, tmp_path):
    one_point = {"xgboost": {"search": "grid", "space": {"max_depth": [3], "n_estimators": [20]}}}
    spec = load_spec(write_spec(demo_dir, "binary", filename="monthly_ablation.yaml", name="monthly_ablation",
                                algorithms=one_point,
                                ablation={"candidates": ["credit_history_years"], "repeats": 2, "folds": 2}))
    result = run_monthly(spec, "2017-10", promotion_mode="auto", spark=spark, progress=lambda line: None)
    summary = result["decision"]["summary"]
    assert "Feature ablation" in summary and "| credit_history_years |" in summary
    client = MlflowClient(tracking)
    record = json.loads(Path(client.download_artifacts(result["runs"]["month"], "monthly.json",
                                                       str(tmp_path))).read_text())
    study = client.get_run(record["ablation"]["run_id"])
    assert study.data.tags["automl.kind"] == "ablation" and study.data.tags["automl.month"] == "2017-10"
    assert [r["feature"] for r in record["ablation"]["results"]] == ["credit_history_years"]


def test_a_step_refuses_data_that_changed_since_the_checks(demo_dir, spark, tracking, tmp_path):
    """monitor and compare read the window's facts `check` recorded, not a second preparation; a
    holdout month that gained rows since then is refused, naming both counts, before any write."""
    import shutil

    from automl_tasks.pipelines.monthly import steps

    data = tmp_path / "data"
    shutil.copytree(demo_dir / "loans", data / "loans")
    spec = load_spec(write_spec(data, "binary", filename="changed.yaml", name="monthly_changed",
                                data={"source": str(data / "loans")}))
    state = steps.start(spec, "2017-10", mode="auto")
    state = steps.check(state, steps.context(state, spec=spec, spark=spark, progress=lambda line: None))
    assert state["window"]["holdout"] == ["2017-10"] and state["window"]["row_counts"]["2017-10"] == 400
    shutil.copy(data / "loans" / "2017-10.parquet", data / "loans" / "2017-10-late.parquet")  # rows arrive
    with pytest.raises(DataError, match=r"holdout 2017-10 has 800 rows, 400 then"):
        steps.monitor(state, steps.context(state, spec=spec, spark=spark, progress=lambda line: None))
    client = MlflowClient(tracking)
    experiment = client.get_experiment_by_name("monthly_changed/monthly").experiment_id
    kinds = [r.data.tags["automl.kind"] for r in client.search_runs([experiment])]
    assert kinds == ["decision"]      # the month run `check` started; no monitor run

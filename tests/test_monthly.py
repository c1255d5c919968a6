"""The monthly job end to end: first champion, a pending challenger, an idempotent re-run."""

from __future__ import annotations

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
    assert 0.0 <= first["drift"]["share_drifted"] <= 1.0

    second = run_monthly(spec, "2017-11", promotion_mode="manual", **quiet)
    version = second["decision"]["version"]
    assert second["decision"]["status"] == "pending" and version != first["champion_after"]
    assert second["champion_before"] == second["champion_after"] == first["champion_after"]
    assert 0.0 < second["champion_metric"] < 1.0
    client = MlflowClient(tracking)
    evidence = client.get_run(second["decision"]["evidence_run_id"])
    assert evidence.data.tags["automl.kind"] == "comparison" and "ci_low" in evidence.data.metrics
    artifacts = {a.path for a in client.list_artifacts(evidence.info.run_id)}
    assert {"comparison.json", "comparison_forest.png", "decisions"} <= artifacts
    monitor = client.get_run(second["runs"]["monitor"])
    assert "drift_share" in monitor.data.metrics and "champion_areaUnderROC" in monitor.data.metrics
    assert any(k.startswith("champion_areaUnderROC.") for k in monitor.data.metrics)   # per segment
    history = client.get_metric_history(monitor.info.run_id, "champion_areaUnderROC")
    assert [m.step for m in history] == [2017 * 12 + 10]                                  # month as step
    assert {"champion_trend.png", "drift"} <= {a.path for a in client.list_artifacts(monitor.info.run_id)}

    # Re-running the month reuses the tuning run and the registered version; no alias moves.
    again = run_monthly(spec, "2017-11", promotion_mode="manual", **quiet)
    assert again["runs"]["tuning"] == second["runs"]["tuning"]
    assert again["decision"]["version"] == version and again["decision"]["status"] == "pending"
    versions = client.search_model_versions(f"name = '{spec.name}'")
    assert len(versions) == 2
    assert promotion.current_champion(spec.name) == first["champion_after"]

    # A person approves: the champion moves once, to the challenger.
    decision = promotion.decide(spec.name, version, approve=True, decided_by="user:test")
    assert decision.status == "approved" and promotion.current_champion(spec.name) == version

    # Bad input afterwards changes nothing.
    with pytest.raises(DataError, match="month 2019-01 is outside the data"):
        run_monthly(spec, "2019-01", promotion_mode="auto", **quiet)
    assert promotion.current_champion(spec.name) == version
    assert len(client.search_model_versions(f"name = '{spec.name}'")) == 2

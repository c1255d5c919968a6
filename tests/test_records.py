"""The typed records (registry/records.py): their JSON is the shape the jobs always wrote, and
what older versions stored in MLflow still loads."""

from __future__ import annotations

import dataclasses
import json

import pytest

from automl_tasks.registry import policy
from automl_tasks.registry.records import Decision, LeaderboardEntry, MonthRecord, TuningResult

OK = {"algorithm": "xgboost", "trials": 2, "failed": 0, "status": "ok", "cv_value": 0.70, "holdout_value": 0.68,
      "params": {"max_depth": 2}, "best_trial": -1, "defaults_kept": True, "model_dir": "/m/xgboost",
      "model_uri": "models:/m-1", "refit_seconds": 0.5, "baseline_value": 0.70, "lift": 0.0,
      "wall_seconds": 3.25, "fit_seconds": 2.0}
FAILED = {"algorithm": "lightgbm", "trials": 2, "failed": 2, "status": "failed", "cv_value": None,
          "holdout_value": None, "params": None, "model_dir": None, "model_uri": None, "baseline_value": 0.61,
          "lift": None, "wall_seconds": 1.0, "fit_seconds": 0.75}
SKIPPED = {"algorithm": "spark_gbt", "status": "skipped", "reason": "the deadline passed 3s ago", "trials": 0,
           "failed": 0, "cv_value": None, "holdout_value": None, "params": None, "model_dir": None,
           "model_uri": None, "baseline_value": None, "lift": None}


@pytest.mark.parametrize("shape", [OK, FAILED, SKIPPED], ids=["ok", "failed", "skipped"])
def test_a_leaderboard_entry_keeps_each_shape_key_for_key_and_in_order(shape):
    entry = LeaderboardEntry.from_json(shape)
    assert list(entry.to_json().items()) == list(shape.items())
    assert LeaderboardEntry.from_json(json.loads(json.dumps(entry.to_json()))) == entry
    with pytest.raises(dataclasses.FrozenInstanceError):
        entry.status = "ok"


def test_the_entries_built_by_the_tuning_job_have_those_shapes():
    # As tuning/job.py builds them: skipped, failed (+ baseline, timings), ok (+ baseline, timings).
    skipped = LeaderboardEntry("spark_gbt", status="skipped", reason="the deadline passed 3s ago", trials=0, failed=0)
    assert skipped.to_json() == SKIPPED and list(skipped.to_json()) == list(SKIPPED)
    failed = dataclasses.replace(LeaderboardEntry("lightgbm", status="failed", trials=2, failed=2),
                                 baseline_value=0.61, lift=None, wall_seconds=1.0, fit_seconds=0.75)
    assert list(failed.to_json().items()) == list(FAILED.items())


def test_a_tuning_result_round_trips_and_names_its_best_entry():
    data = {"run_id": "r1", "month": "2017-10", "window": ["2017-06", "2017-07"],
            "best": {"algorithm": "xgboost", "params": {"max_depth": 2}, "metric": "areaUnderROC", "value": 0.7,
                     "holdout_value": 0.68},
            "leaderboard": [OK, FAILED], "trials": {"total": 4, "failed": 2},
            "fit_seconds": {"trials": 1.0, "baselines": 0.5, "refits": 0.5}, "model_dir": "/m/xgboost",
            "tracking_uri": "http://127.0.0.1:5000", "experiment": "loans/tuning", "training_path": "per_trial"}
    result = TuningResult.from_json(data)
    assert list(result.to_json().items()) == list(data.items())
    assert result.best_entry.model_uri == "models:/m-1"
    assert [e.ok for e in result.leaderboard] == [True, False]


NEW_RECORD = {
    "month": "2017-11", "metric": "areaUnderROC", "experiment_id": "7",
    "runs": {"month": "m", "monitor": "o", "tuning": "t", "comparison": "c"},
    "champion": {"version": "1", "algorithm": "xgboost", "metric": 0.64},
    "drift": {"share_drifted": 0.4, "drifted_columns": ["income"], "columns_checked": 10,
              "reference": "2017-07..2017-10", "threshold": 0.5, "dataset_drift": False},
    "window": {"train": ["2017-07"], "train_rows": 400, "holdout": ["2017-11"], "holdout_rows": 400},
    "leaderboard": [{"algorithm": "xgboost", "cv_value": 0.7, "holdout_value": 0.67, "baseline_value": 0.63,
                     "lift": 0.07, "trials": 2, "failed": 0}],
    "best": {"algorithm": "xgboost", "model_uri": "models:/m-2", "holdout_value": 0.67, "cv_value": 0.7},
    "comparisons": [{"segment": None, "delta": 0.03, "ci_low": -0.01, "ci_high": 0.07, "n_rows": 400,
                     "p_value": 0.1, "confidence": 0.95, "note": None}],
    "policy": {"approve": False, "outcome": "keep", "gate": "improvement", "reasons": ["not enough"],
               "rows": 400, "rarest_class_rows": 65},
    "fit_seconds": None, "duplicate_ids": None, "ablation": None,
    "health": {"metric": "areaUnderROC", "value": 0.64, "ci_low": 0.6, "ci_high": 0.68, "reference": 0.75,
               "max_degradation": 0.02, "degraded": True},
    "alerts": [{"kind": "degraded", "message": "loans 2018-07: champion v1 areaUnderROC 0.6400 ..."}],
    # labels.delay_months 2: the run for 2018-09 evaluated 2018-07 and monitored 2018-09.
    "monitored": {"month": "2018-09", "drift": {"share_drifted": 0.2, "drifted_columns": ["income"]},
                  "prediction_drift": {"score": 0.3, "drifted": False, "column": "score"},
                  "estimated": {"metric": "areaUnderROC", "value": 0.71, "ci_low": 0.66, "ci_high": 0.76,
                                "method": "cbpe", "rows": 400, "version": "1"}, "predictions": "scored"},
    "estimate_check": {"month": "2018-07", "version": "1", "estimated_in": "abc",
                       "estimated": {"value": 0.74, "ci_low": 0.7, "ci_high": 0.78, "method": "cbpe"},
                       "realized": 0.64, "error": -0.1, "inside": False},
}


def test_a_month_record_round_trips_key_for_key():
    record = MonthRecord.from_json(NEW_RECORD)
    assert list(record.to_json().items()) == list(NEW_RECORD.items())
    assert record.champion_version == "1" and record.champion_metric == 0.64
    assert record.overall["delta"] == 0.03
    assert policy.Verdict.from_json(record.policy).to_json() == NEW_RECORD["policy"]


def test_a_record_written_before_the_gates_window_and_baselines_still_loads_and_summarises():
    from automl_tasks.registry import summary

    old = {k: v for k, v in NEW_RECORD.items()
           if k not in ("window", "fit_seconds", "duplicate_ids", "ablation", "health", "alerts", "monitored",
                        "estimate_check")}
    old = {**old, "champion": None, "comparisons": [],
           "drift": {"share_drifted": 0.1, "drifted_columns": []},
           "policy": {"approve": True, "reasons": ["no champion yet"]},
           "leaderboard": [{"algorithm": "xgboost", "cv_value": 0.7, "holdout_value": 0.67, "trials": 2, "failed": 0}]}
    record = MonthRecord.from_json(old)
    assert record.window is None and record.ablation is None and record.overall is None
    assert record.champion_version is None and record.champion_metric is None
    assert record.leaderboard[0].baseline_value is None and record.leaderboard[0].lift is None
    verdict = policy.Verdict.from_json(record.policy)
    assert verdict.outcome == policy.PROMOTE and verdict.approve and verdict.gate is None
    assert policy.Verdict.from_json({"approve": False, "reasons": []}).outcome == policy.KEEP
    text = summary.decision_markdown("loans", "3", "auto", record)
    assert "Policy: **gates pass**" in text and "Trained on" not in text
    assert "Alert" not in text and "on the month:" not in text
    # A record with the champion's health shows it and its alerts.
    healthy = summary.decision_markdown("loans", "3", "manual", MonthRecord.from_json(NEW_RECORD))
    assert ("Champion v1 on the month: areaUnderROC 0.6400 [95% CI 0.6000, 0.6800] against 0.7500 at its "
            "promotion: degraded (monitoring.max_degradation 0.02).") in healthy
    assert "**Alert (degraded)**: loans 2018-07: champion v1" in healthy
    assert "| xgboost **(challenger)** | 0.6700 | 0.7000 | – | – |" in text
    assert "Drift: 10% of columns drifted." in text


def test_a_decision_round_trips_and_reads_old_tags_as_the_registry_always_did():
    decision = Decision(model="loans", version="2", month="2017-11", status="pending", decided_by=None,
                        reasons=["r"], evidence_run_id="m", evidence={"metric": "areaUnderROC"},
                        champion_before="1", created_at="2024-01-01T00:00:00.000+00:00")
    data = decision.to_json()
    assert list(data) == ["model", "version", "month", "status", "decided_by", "reasons", "evidence_run_id",
                          "evidence", "champion_before", "champion_after", "created_at", "decided_at"]
    assert Decision.from_json(json.loads(json.dumps(data))) == decision
    assert decision.artifact_path == "decisions/2017-11-v2.json"
    # A tag copy without the evidence (truncated) and extra keys: missing fields are None, extras ignored.
    slim = {k: v for k, v in data.items() if k not in ("evidence", "champion_after", "decided_at")}
    loaded = Decision.from_json({**slim, "truncated": True, "artifact": decision.artifact_path})
    assert loaded.evidence is None and loaded.champion_after is None and loaded.status == "pending"
    with pytest.raises(dataclasses.FrozenInstanceError):
        decision.status = "approved"

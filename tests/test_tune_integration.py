"""End to end against real parts: local Spark, a real MLflow server on loopback, the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow import MlflowClient

from automl_tasks.errors import TuningError
from automl_tasks.spec import load_spec
from automl_tasks.tuning.job import tune
from tests.support.specs import write_spec

CLI = str(Path(sys.executable).with_name("automl-tasks"))


def _cli(args, env):
    return subprocess.run([CLI, *args], capture_output=True, text=True, env=env, timeout=900)


def _env(tracking, tmp_path):
    return {**os.environ, "MLFLOW_TRACKING_URI": tracking, "AUTOML_HOME": str(tmp_path / "home"),
            "SPARK_MASTER": "local[2]"}


def _children(client, parent_run_id):
    parent = client.get_run(parent_run_id)
    return client.search_runs([parent.info.experiment_id],
                              filter_string=f"tags.mlflow.parentRunId = '{parent_run_id}'",
                              max_results=1000)


@pytest.mark.parametrize("task", ["binary", "multiclass", "regression"])
def test_cli_tune_json_for_each_task(task, demo_dir, tmp_path, tracking):
    """`automl-tasks tune --json` on data with timestamps and string categoricals, per task."""
    spec_path = write_spec(demo_dir, task, filename=f"cli_{task}.yaml")
    result = _cli(["tune", "--spec", str(spec_path), "--month", "2017-11", "--json"], _env(tracking, tmp_path))
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(result.stdout)
    assert summary["experiment"] == "loans_test/tuning"
    assert summary["best"]["algorithm"] in ("xgboost", "lightgbm")
    assert summary["trials"] == {"total": 4, "failed": 0}
    assert [e["algorithm"] for e in summary["leaderboard"]] == ["xgboost", "lightgbm"]
    assert all(e["holdout_value"] is not None for e in summary["leaderboard"])
    # What tuning bought: the default-params model's CV metric, and the lift over it.
    for e in summary["leaderboard"]:
        assert e["baseline_value"] is not None
        sign = -1 if summary["best"]["metric"] in ("logLoss", "rmse", "mse", "mae", "mape") else 1
        assert e["lift"] == pytest.approx(sign * (e["cv_value"] - e["baseline_value"]))
    assert Path(summary["model_dir"], "metadata.json").exists()
    assert "xgboost trial 2/2" in result.stderr and "lightgbm trial 2/2" in result.stderr
    assert "xgboost: default params" in result.stderr

    client = MlflowClient(tracking)
    parent = client.get_run(summary["run_id"])
    assert parent.info.status == "FINISHED"
    assert f"baseline_{summary['best']['metric']}_xgboost" in parent.data.metrics
    assert parent.data.tags["automl.kind"] == "tuning" and parent.data.tags["automl.month"] == "2017-11"
    assert len(parent.data.tags["automl.data_fingerprint"]) == 16
    children = _children(client, summary["run_id"])
    assert len(children) == 4
    assert all(c.info.status == "FINISHED" and c.data.tags["automl.kind"] == "trial" for c in children)
    metric = summary["best"]["metric"]
    assert all(metric in c.data.metrics and f"{metric}_fold2" in c.data.metrics for c in children)
    best_child = max(children, key=lambda c: c.data.metrics[metric] * (1 if metric == "areaUnderROC" else -1))
    best_entry = next(e for e in summary["leaderboard"] if e["algorithm"] == summary["best"]["algorithm"])
    if best_entry["defaults_kept"]:      # no trial beat the defaults: the best is the baseline's score
        assert summary["best"]["value"] == pytest.approx(
            parent.data.metrics[f"baseline_{metric}_{summary['best']['algorithm']}"])
        assert summary["best"]["value"] == best_entry["baseline_value"] and best_entry["lift"] == 0.0
    else:
        assert best_child.data.metrics[metric] == pytest.approx(summary["best"]["value"])
    artifacts = {a.path for a in client.list_artifacts(summary["run_id"])}
    assert {"trials.json", "trials.csv", "search_space", "parameter_grid", "native", "spec.yaml",
            "preprocessing", "leaderboard.json"} <= artifacts
    grid = json.loads(Path(client.download_artifacts(summary["run_id"], "parameter_grid/xgboost.json",
                                                     str(tmp_path))).read_text())
    assert grid == [{"max_depth": 2, "n_estimators": 20}, {"max_depth": 4, "n_estimators": 20}]


def test_cli_bad_input_is_one_line_and_exit_2(demo_dir, tmp_path, tracking):
    spec_path = write_spec(demo_dir, "binary", filename="cli_bad.yaml", metric="rmse")
    result = _cli(["tune", "--spec", str(spec_path), "--json"], _env(tracking, tmp_path))
    assert result.returncode == 2 and result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith("error: invalid spec") and "metric 'rmse'" in lines[-1]


def test_failed_trials_are_recorded_and_the_search_goes_on(demo_dir, spark, tracking, tmp_path):
    spec = load_spec(write_spec(demo_dir, "binary", filename="failing.yaml", algorithms={
        "xgboost": {"search": "grid", "space": {"learning_rate": [0.1, -1.0], "n_estimators": [10]}}}))
    lines = []
    summary = tune(spec, "2017-11", spark=spark, progress=lines.append)
    assert summary["trials"] == {"total": 2, "failed": 1}
    assert summary["best"]["params"]["learning_rate"] == 0.1
    assert any("trial 2/2 FAILED" in line for line in lines)
    client = MlflowClient(tracking)
    failed = [c for c in _children(client, summary["run_id"]) if c.info.status == "FAILED"]
    assert len(failed) == 1 and failed[0].data.params["learning_rate"] == "-1.0"
    assert "eta" in failed[0].data.tags["automl.error"].lower() or "learning" in failed[0].data.tags["automl.error"]


def test_all_trials_failing_is_one_clear_error(demo_dir, spark, tracking):
    spec = load_spec(write_spec(demo_dir, "binary", filename="all_fail.yaml", algorithms={
        "lightgbm": {"search": "grid", "space": {"num_leaves": [1], "n_estimators": [10]}}}))
    with pytest.raises(TuningError, match=r"all 1 trials failed; first error: .*num_leaves"):
        tune(spec, "2017-11", spark=spark, progress=lambda line: None)
    client = MlflowClient(tracking)
    experiment = client.get_experiment_by_name("loans_test/tuning")
    runs = client.search_runs([experiment.experiment_id])
    assert runs and all(r.info.status != "RUNNING" for r in runs)
    parent = next(r for r in runs if r.data.tags.get("automl.kind") == "tuning")
    assert parent.info.status == "FAILED" and "all 1 trials failed" in parent.data.tags["automl.error"]


def test_a_tuned_config_that_does_not_beat_the_defaults_does_not_replace_them(demo_dir, spark, tracking):
    """The library's defaults are a candidate too (issue 19): a grid of configs that cannot split
    (min_child_weight above the window's total hessian: constant scores, AUC 0.5) loses to them on
    the same folds, so the defaults are refit and exported, the lift is 0, never negative, and the
    leaderboard says so; a grid that beats them replaces them."""
    weak = load_spec(write_spec(demo_dir, "binary", filename="weak_grid.yaml", name="weak_grid", algorithms={
        "xgboost": {"search": "grid", "space": {"min_child_weight": [5000.0, 9000.0], "n_estimators": [5]}}}))
    lines: list[str] = []
    summary = tune(weak, "2017-11", spark=spark, progress=lines.append)
    [entry] = summary["leaderboard"]
    assert entry["defaults_kept"] is True and entry["params"] == {} and entry["best_trial"] == -1
    assert entry["cv_value"] == entry["baseline_value"] and entry["lift"] == 0.0
    assert any("no tuned config beat the default params" in line and "keeping the defaults" in line
               for line in lines), lines
    meta = json.loads((Path(entry["model_dir"]) / "metadata.json").read_text())
    assert meta["params"] == {}                                   # the exported model is the defaults'
    strong = load_spec(write_spec(demo_dir, "binary", filename="strong_grid.yaml", name="weak_grid", algorithms={
        "xgboost": {"search": "grid", "space": {"max_depth": [2], "n_estimators": [60],
                                                "learning_rate": [0.05]}}}))
    [entry] = tune(strong, "2017-11", spark=spark, progress=lines.append)["leaderboard"]
    assert entry["defaults_kept"] is False and entry["lift"] > 0 and entry["params"]["max_depth"] == 2

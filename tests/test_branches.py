"""Develop vs master end to end: specs committed to a throwaway git repo, real Spark and MLflow."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
import yaml
from mlflow import MlflowClient

from automl_tasks.data.demo import write_specs_repo
from automl_tasks.data.prepare import load_frame
from automl_tasks.errors import DataError, SpecError
from automl_tasks.pipelines.branches import _check_same_rows, _ordered, compare_branches, compare_deployments
from automl_tasks.pipelines.holdout import holdout_rows
from automl_tasks.spec import load_spec, load_spec_at_ref
from automl_tasks.tuning.job import tune
from tests.support.specs import FEATURES, spec_dict

SPEC = "specs/loans.yaml"
MONTH = "2017-11"
BASE_FEATURES = [f for f in FEATURES if f not in ("debt_ratio", "region")]
# One trial each, 20 trees: the point is the plumbing, not the search.
XGBOOST = {"xgboost": {"search": "grid", "space": {"max_depth": [3], "n_estimators": [20]}}}
LIGHTGBM = {"lightgbm": {"search": "random", "trials": 1,
                         "space": {"num_leaves": {"int": [8, 16]}, "n_estimators": [20]}}}
QUIET = {"progress": lambda line: None}


def _spec(demo_dir: Path, name: str, task: str = "binary", **override) -> dict:
    return spec_dict(task, name=name, **{"data": {"source": str(demo_dir / "loans")},
                                         "validation": {"method": "cv", "folds": 2},
                                         "algorithms": XGBOOST, **override})


def _branch_repo(root: Path, master: dict, develop: dict) -> dict[str, str]:
    """A repo whose master holds `master` at SPEC and whose develop (from master) holds `develop`."""
    return write_specs_repo(root, SPEC, {"master": master, "develop": develop})


def _nothing_logged(tracking: str, name: str) -> bool:
    client = MlflowClient(tracking)
    experiment = client.get_experiment_by_name(f"{name}/monthly")
    return experiment is None or not client.search_runs([experiment.experiment_id])


def test_develop_vs_master_on_the_same_month_and_rerun(tmp_path, demo_dir, spark, tracking):
    # develop adds debt_ratio and region (region turns risky after the demo's 2017-09 shift).
    commits = _branch_repo(
        tmp_path / "repo",
        master=_spec(demo_dir, "branches_test", features=BASE_FEATURES, segment="segment"),
        develop=_spec(demo_dir, "branches_test", features=FEATURES, segment="segment", algorithms=LIGHTGBM))
    result = compare_branches(tmp_path / "repo", SPEC, MONTH, spark=spark, **QUIET)

    assert set(result) == {"month", "refs", "comparison", "segments", "run_id", "winner", "reused"}
    assert result["reused"] is False
    assert result["month"] == MONTH and set(result["refs"]) == {"develop", "master"}
    json.dumps(result)   # small JSON, as a DAG task returns
    client = MlflowClient(tracking)
    for ref, algorithm in (("develop", "lightgbm"), ("master", "xgboost")):
        info = result["refs"][ref]
        assert info["commit"] == commits[ref] and info["algorithm"] == algorithm
        tags = client.get_run(info["run_id"]).data.tags
        assert tags["automl.kind"] == "tuning" and tags["automl.month"] == MONTH
        assert tags["automl.git_commit"] == commits[ref] and tags["automl.branch"] == ref

    # Both models scored the rows their tuning held out: same month, same rows, same values.
    overall = result["comparison"]
    assert overall["segment"] is None and overall["n_rows"] == 400
    assert overall["candidate"] == pytest.approx(result["refs"]["develop"]["holdout_value"], abs=1e-9)
    assert overall["baseline"] == pytest.approx(result["refs"]["master"]["holdout_value"], abs=1e-9)
    assert overall["ci_low"] <= overall["delta"] <= overall["ci_high"]
    assert [s["segment"] for s in result["segments"]] == ["premium", "retail", "sme"]
    assert sum(s["n_rows"] for s in result["segments"]) == 400
    expected = ("develop" if overall["ci_low"] > 0 else "master" if overall["ci_high"] < 0 else "tie")
    assert result["winner"] == expected

    run = client.get_run(result["run_id"])
    tags = run.data.tags
    assert tags["automl.kind"] == "comparison" and tags["automl.month"] == MONTH
    assert tags["automl.compare"] == "develop_vs_master"
    assert tags["automl.develop_commit"] == commits["develop"]
    assert tags["automl.master_commit"] == commits["master"]
    assert tags["automl.git_commit"] == commits["develop"] and tags["automl.branch"] == "develop"
    assert run.data.metrics["delta"] == pytest.approx(overall["delta"])
    assert {"ci_low", "ci_high"} <= set(run.data.metrics)
    artifacts = {a.path for a in client.list_artifacts(result["run_id"])}
    assert {"comparison.json", "comparison_forest.png", "branches.json"} <= artifacts
    experiment = client.get_experiment_by_name("branches_test/monthly")
    assert run.info.experiment_id == experiment.experiment_id

    # Re-running the month reuses both tuning runs and the comparison: nothing new is logged.
    # Whoever re-runs it (another DAG run here) gets the same comparison.
    again = compare_branches(tmp_path / "repo", SPEC, MONTH, spark=spark, dag_run_id="manual__again", **QUIET)
    assert again["reused"] is True and again["run_id"] == result["run_id"] and again["refs"] == result["refs"]
    for kind, count in (("tuning", 2), ("comparison", 1)):
        runs = client.search_runs([experiment.experiment_id], f"tags.`automl.kind` = '{kind}'")
        assert len(runs) == count, kind


def test_two_deployments_compared_by_their_branch_tags(tmp_path, demo_dir, spark, tracking):
    """Each deployment tunes its own spec; the comparison finds their runs by automl.branch."""
    repo = tmp_path / "repo"
    commits = _branch_repo(repo, master=_spec(demo_dir, "deploy_test", features=BASE_FEATURES),
                           develop=_spec(demo_dir, "deploy_test", features=FEATURES))
    tuned = {ref: tune(load_spec_at_ref(repo, ref, SPEC), MONTH, spark=spark, purpose="monthly", **QUIET)
             for ref in ("develop", "master")}
    spec = load_spec(repo / SPEC)

    result = compare_deployments(spec, MONTH, spark=spark, **QUIET)
    assert result["reused"] is False
    for ref in ("develop", "master"):
        assert result["refs"][ref]["run_id"] == tuned[ref]["run_id"]
        assert result["refs"][ref]["commit"] == commits[ref]
        assert result["refs"][ref]["holdout_value"] == pytest.approx(tuned[ref]["best"]["holdout_value"])
    overall = result["comparison"]
    assert overall["n_rows"] == 400 and overall["ci_low"] <= overall["delta"] <= overall["ci_high"]
    # The same two runs compared by the git-ref path: the very same comparison, reused.
    again = compare_branches(repo, SPEC, MONTH, spark=spark, **QUIET)
    assert again["reused"] is True and again["run_id"] == result["run_id"]

    with pytest.raises(DataError, match=r"no FINISHED tuning run for month 2017-12 tagged automl.branch='develop'"):
        compare_deployments(spec, "2017-12", spark=spark, **QUIET)


def test_specs_of_different_tasks_fail_before_anything_is_logged(tmp_path, demo_dir, tracking):
    _branch_repo(tmp_path / "repo", master=_spec(demo_dir, "branches_bad_task"),
                 develop=_spec(demo_dir, "branches_bad_task", "multiclass"))
    with pytest.raises(SpecError, match=r"task is 'binary' at master but 'multiclass' at develop"):
        compare_branches(tmp_path / "repo", SPEC, MONTH, **QUIET)
    assert _nothing_logged(tracking, "branches_bad_task")


def test_bad_data_in_either_spec_fails_before_anything_is_logged(tmp_path, demo_dir, spark, tracking):
    # develop is fine; master's data check fails only after develop's passed: still nothing written.
    _branch_repo(tmp_path / "repo",
                 master=_spec(demo_dir, "branches_bad_data", features=["income", "no_such_column"]),
                 develop=_spec(demo_dir, "branches_bad_data"))
    with pytest.raises(DataError, match="feature 'no_such_column' is not in the data"):
        compare_branches(tmp_path / "repo", SPEC, MONTH, spark=spark, **QUIET)
    assert _nothing_logged(tracking, "branches_bad_data")


def test_specs_reading_different_data_must_hold_out_the_same_rows(tmp_path, demo_dir, spark):
    """develop joins a table (its own frame, rows matched by id); a source missing a row is refused."""
    def spec(name, **data):
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump(_spec(demo_dir, name, data={"source": str(demo_dir / "loans"), **data})))
        return load_spec(path)

    def holdouts(specs):
        return [holdout_rows(_ordered(load_frame(spark, s), specs), s, MONTH, [0, 1]) for s in specs]

    binary = SimpleNamespace(classes=[0, 1])   # what _check_same_rows reads of Prepared
    plain = spec("plain")
    joined = spec("joined", join=[{"source": str(demo_dir / "bureau.parquet"), "on": "id"}])
    pair = holdouts([joined, plain])
    _check_same_rows([joined, plain], [binary, binary], pair, MONTH)
    assert list(pair[0][1]) == list(pair[1][1])

    short = tmp_path / "loans_short"
    shutil.copytree(demo_dir / "loans", short)
    month_file = short / f"{MONTH}.parquet"
    pd.read_parquet(month_file).iloc[1:].to_parquet(month_file, index=False, coerce_timestamps="us")
    missing_row = spec("short", source=str(short))
    unequal = holdouts([plain, missing_row])
    with pytest.raises(DataError, match=rf"month {MONTH}: the specs read different data .* 400 vs 399 rows"):
        _check_same_rows([plain, missing_row], [binary, binary], unequal, MONTH)
    for frame, _, _ in pair + unequal:
        frame.unpersist()

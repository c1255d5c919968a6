"""Batch scoring with the champion (`automl-tasks score`, pipelines/scoring.py, dags/batch_score.py)
against local Spark, a real MLflow server and the demo data.

The champion is a real tuning's best model, registered and promoted through the registry's own
calls (as the monthly job's decision step does). The predictions written are checked against the
champion's own, computed here by another public path: `load_champion` (the monitor step's: the
MLflow flavor model), where scoring uses the native export (the booster file). Both encode with
`models.scoring.encode`, which tests/test_scoring_encode.py holds to the Spark pipeline's matrix.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from automl_tasks.cli import main
from automl_tasks.data.prepare import load_frame
from automl_tasks.data.sources import MONTH_COL
from automl_tasks.pipelines.scoring import jobs_for_champion_moves, score_month, write_partition
from automl_tasks.registry import promotion, tracking
from automl_tasks.registry.champion import load_champion
from automl_tasks.spec import load_spec
from tests.support.dags import dag_env, run_dag
from tests.support.specs import FEATURES, write_spec

NAME = "score_test"
MONTH = "2017-12"         # after the champion's holdout month; it brings the late purpose (unseen in training)
ONE_CONFIG = {"xgboost": {"search": "grid", "space": {"max_depth": [3]}, "fixed": {"n_estimators": 20}},
              "lightgbm": {"search": "grid", "space": {"num_leaves": [7]}, "fixed": {"n_estimators": 20}}}
BINARY_COLUMNS = ["id", "score", "prediction", "model_name", "model_version", "run_id"]


def _spec_file(folder: Path, source: Path, task="binary", name=NAME, algorithm="xgboost", **override) -> Path:
    data = {"source": str(source), **override.pop("data", {})}
    return write_spec(folder, task, filename=f"{name}.yaml", name=name, algorithms={algorithm: ONE_CONFIG[algorithm]},
                      data=data, validation={"method": "cv", "folds": 2}, **override)


def _promote(spec, spark) -> dict:
    """Tune `spec` on the months before 2017-11, register the best model and make it champion."""
    from automl_tasks.tuning.job import tune

    tuned = tune(spec, "2017-11", progress=lambda line: None, spark=spark)
    best = tuned["leaderboard"][0]
    version = promotion.register_candidate(best["model_uri"], spec.name, month="2017-11", run_id=tuned["run_id"],
                                           tags={"automl.algorithm": best["algorithm"]})
    promotion.open_decision(spec.name, version, month="2017-11", evidence={}, evidence_run_id=None, reasons=["test"])
    promotion.decide(spec.name, version, approve=True, decided_by="policy:test")
    return {"version": version, "run_id": tuned["run_id"], "model_uri": best["model_uri"],
            "algorithm": best["algorithm"]}


def _with_store(mlflow_url: str, home: Path, work):
    """`work()` with the library pointed at the test server: the `tracking` fixture is per test, and
    the champion is made once per module."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", mlflow_url)
        mp.setenv("AUTOML_HOME", str(home))
        tracking.configure()
        try:
            return work()
        finally:
            tracking.unconfigure()


@pytest.fixture(scope="module")
def champion(mlflow_url, demo_dir, spark, tmp_path_factory) -> dict:
    """NAME's champion (binary, xgboost) and its spec file."""
    folder = tmp_path_factory.mktemp("score-spec")
    path = _spec_file(folder, demo_dir / "loans")
    promoted = _with_store(mlflow_url, folder / "home", lambda: _promote(load_spec(path), spark))
    return {**promoted, "spec": path}


def _reference(spark, spec, month: str) -> tuple[list, np.ndarray]:
    """(ids, predictions) of spec.name's champion on the month, by load_champion."""
    from pyspark.sql import functions as F

    _, model = load_champion(spec.name)
    rows = load_frame(spark, spec).where(F.col(MONTH_COL) == month).orderBy(spec.data.id).persist()
    try:
        return [r[0] for r in rows.select(spec.data.id).collect()], model.predict(rows)
    finally:
        rows.unpersist()


def _written(path: str | Path, ids: list) -> pd.DataFrame:
    """The partition's rows in the order of `ids`, after checking it holds each id exactly once."""
    table = pd.read_parquet(path)
    assert len(table) == len(ids) and sorted(table["id"]) == sorted(ids)
    return table.set_index("id").loc[ids]


def _cli(capsys, *argv) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_score_writes_the_champions_predictions_and_a_rerun_replaces_them(champion, spark, tracking, tmp_path,
                                                                          capsys):
    out = tmp_path / "predictions"
    code, stdout, err = _cli(capsys, "score", "--spec", str(champion["spec"]), "--month", MONTH,
                             "--out", str(out), "--json")
    assert code == 0, err
    result = json.loads(stdout)
    partition = out / NAME / f"month={MONTH}"
    assert result == {"model": NAME, "version": champion["version"], "month": MONTH, "rows": 400,
                      "path": str(partition), "columns": BINARY_COLUMNS, "run_id": champion["run_id"]}
    assert [p.name for p in partition.iterdir()] == ["part-00000.parquet"]

    ids, expected = _reference(spark, load_spec(champion["spec"]), MONTH)
    table = _written(partition, ids)
    assert list(table.reset_index().columns) == BINARY_COLUMNS
    np.testing.assert_allclose(table["score"].to_numpy(), expected[:, 1], rtol=0, atol=1e-9)
    assert (table["prediction"].to_numpy() == (expected[:, 1] > 0.5).astype(int)).all()
    assert set(table["model_name"]) == {NAME} and set(table["model_version"]) == {champion["version"]}
    assert set(table["run_id"]) == {champion["run_id"]}
    # Read as a dataset partitioned by month, as a downstream job would.
    dataset = spark.read.parquet(str(out / NAME))
    assert dataset.where(f"month = '{MONTH}'").count() == 400 and dataset.count() == 400

    # A second run replaces the partition whole: a file of an earlier write does not survive it.
    shutil.copy(partition / "part-00000.parquet", partition / "part-00001.parquet")
    again = score_month(load_spec(champion["spec"]), MONTH, out=out, spark=spark)
    assert again["rows"] == 400 and [p.name for p in partition.iterdir()] == ["part-00000.parquet"]
    assert [p.name for p in (out / NAME).iterdir()] == [f"month={MONTH}"]        # no staging folder left
    pd.testing.assert_frame_equal(_written(partition, ids), table)


def test_a_failed_write_leaves_the_previous_partition(tmp_path):
    good = pd.DataFrame({"id": [1, 2], "score": [0.1, 0.9]})
    partition = write_partition(good, tmp_path, NAME, MONTH)
    unwritable = pd.DataFrame({"id": [1, 2], "score": [0.5, {"not": "a number"}]})   # pyarrow refuses it
    with pytest.raises(Exception):
        write_partition(unwritable, tmp_path, NAME, MONTH)
    pd.testing.assert_frame_equal(pd.read_parquet(partition), good)
    assert [p.name for p in (tmp_path / NAME).iterdir()] == [f"month={MONTH}"]


def _copy_months(demo_dir: Path, folder: Path, change) -> Path:
    """The demo loans, each month's file passed through `change(month, frame)` (None: left out)."""
    folder.mkdir(parents=True)
    for path in sorted((demo_dir / "loans").glob("*.parquet")):
        frame = change(path.stem, pd.read_parquet(path))
        if frame is not None:
            frame.to_parquet(folder / path.name, index=False, coerce_timestamps="us")
    return folder


def test_a_month_without_labels_still_scores(champion, demo_dir, spark, tracking, tmp_path):
    """Null labels in the month, or no label column at all: the same predictions as with labels."""
    ids, expected = _reference(spark, load_spec(champion["spec"]), MONTH)

    def null_labels(month, frame):
        if month == MONTH:
            frame["default"] = pd.array([None] * len(frame), dtype="Int64")
        return frame

    def month_without_label(month, frame):
        return frame.drop(columns=["default"]) if month == MONTH else None

    for name, change in (("null_labels", null_labels), ("no_label_column", month_without_label)):
        source = _copy_months(demo_dir, tmp_path / name / "loans", change)
        spec = load_spec(_spec_file(tmp_path / name, source))
        assert ("default" in load_frame(spark, spec).columns) == (name == "null_labels")
        result = score_month(spec, MONTH, out=tmp_path / name / "out", spark=spark)
        table = _written(result["path"], ids)
        np.testing.assert_allclose(table["score"].to_numpy(), expected[:, 1], rtol=0, atol=1e-9, err_msg=name)


@pytest.mark.parametrize("task, algorithm", [("multiclass", "lightgbm"), ("regression", "xgboost")])
def test_multiclass_and_regression_columns(task, algorithm, demo_dir, spark, tracking, tmp_path):
    """Multiclass: one proba_<class> per class and the most probable class; regression: the value."""
    spec = load_spec(_spec_file(tmp_path, demo_dir / "loans", task=task, name=f"score_{task}", algorithm=algorithm))
    promoted = _promote(spec, spark)
    result = score_month(spec, MONTH, out=tmp_path / "out", spark=spark)
    ids, expected = _reference(spark, spec, MONTH)
    table = _written(result["path"], ids)
    if task == "multiclass":
        probas = ["proba_A", "proba_B", "proba_C"]                   # the demo's grades
        assert result["columns"] == ["id", *probas, "prediction", "model_name", "model_version", "run_id"]
        np.testing.assert_allclose(table[probas].to_numpy(), expected, rtol=0, atol=1e-9)
        assert list(table["prediction"]) == [["A", "B", "C"][i] for i in expected.argmax(axis=1)]
    else:
        assert result["columns"] == BINARY_COLUMNS
        np.testing.assert_allclose(table["score"].to_numpy(), expected, rtol=0, atol=1e-9)
        assert (table["prediction"] == table["score"]).all()
    assert set(table["model_version"]) == {promoted["version"]}


def _income_as_text(month, frame):
    """The month alone, its income written as text, one value not a number."""
    if month != MONTH:
        return None
    return frame.assign(income=frame["income"].astype(str).where(frame.index != 3, "n/a"))


DATA_CHANGES = {"no region": lambda month, frame: frame.drop(columns=["region"]), "income as text": _income_as_text}
BAD_INPUTS = [
    # (case; spec override: None for the champion's spec, a DATA_CHANGES key for its data changed, else
    # spec fields; CLI arguments after --spec; the message's distinctive part)
    ("bad month", None, ["--month", "2017-13"], "month must look like YYYY-MM, got '2017-13'"),
    ("model never registered", {"name": "score_unregistered"}, ["--month", MONTH],
     "no registered model 'score_unregistered'"),
    ("unknown version", None, ["--month", MONTH, "--version", "99"], f"model '{NAME}' has no version 99 (versions: 1)"),
    ("month without rows", None, ["--month", "2031-01"],
     "month 2031-01 is outside the data, which covers 2017-01 to 2017-12"),
    ("feature missing from the data", "no region", ["--month", MONTH],
     f"feature 'region' of {NAME} v1 is not in the data of {MONTH}; columns: id, timestamp, month, income"),
    ("spec lacks a feature of the champion", {"features": [f for f in FEATURES if f != "purpose"]},
     ["--month", MONTH], f"the spec's features differ from the champion's: {NAME} v1 has 'purpose', the spec not"),
    ("spec has a feature the champion lacks", {"features": [*FEATURES, "credit_history_years"]},
     ["--month", MONTH], "the spec's features differ from the champion's: the spec has 'credit_history_years', "
                         f"{NAME} v1 not"),
    ("another task", {"task": "regression"}, ["--month", MONTH],
     f"{NAME} v1 is a binary model; the spec says task regression"),
    ("no id column", {"data": {"id": None}}, ["--month", MONTH], "scoring writes one row per id: set data.id"),
    ("text in a numeric feature", "income as text", ["--month", MONTH],
     f"numeric feature 'income' has 1 non-numeric values in {MONTH} (e.g. 'n/a')"),
    ("categorical columns differ", {"categorical": ["region", "employment", "purpose"]}, ["--month", MONTH],
     f"the spec's categorical columns differ from the champion's: {NAME} v1 has 'salary_range', the spec not"),
]


@pytest.mark.parametrize("case, override, args, message", BAD_INPUTS, ids=[c[0] for c in BAD_INPUTS])
def test_bad_input_names_what_is_wrong_and_writes_nothing(case, override, args, message, champion, demo_dir, tracking,
                                                          tmp_path, capsys):
    assert champion["version"] == "1"       # the messages name v1
    if override is None:
        spec = champion["spec"]
    elif isinstance(override, str):
        spec = _spec_file(tmp_path, _copy_months(demo_dir, tmp_path / "loans", DATA_CHANGES[override]))
    else:
        spec = _spec_file(tmp_path, demo_dir / "loans", **override)
    out = tmp_path / "out"
    code, stdout, err = _cli(capsys, "score", "--spec", str(spec), *args, "--out", str(out), "--json")
    assert (code, stdout) == (2, ""), err
    assert err.strip().splitlines()[-1].startswith("error: ") and message in err, err
    assert not out.exists()


def test_no_champion_is_an_error_naming_the_model_and_a_version_scores_without_one(champion, demo_dir, spark,
                                                                                 tracking, tmp_path, capsys):
    """A registered version that was never promoted: refused without --version, scored with it."""
    name = "score_no_champion"
    version = promotion.register_candidate(champion["model_uri"], name, month="2017-11", run_id=champion["run_id"],
                                           tags={"automl.algorithm": champion["algorithm"]})
    spec = _spec_file(tmp_path, demo_dir / "loans", name=name)
    out = tmp_path / "out"
    code, stdout, err = _cli(capsys, "score", "--spec", str(spec), "--month", MONTH, "--out", str(out))
    assert (code, stdout) == (2, "") and f"error: model '{name}' has no champion" in err, err
    assert not out.exists()
    code, stdout, err = _cli(capsys, "score", "--spec", str(spec), "--month", MONTH, "--out", str(out),
                             "--version", version)
    assert code == 0, err
    assert stdout.startswith(f"{name} v{version} scored 400 rows of {MONTH}: {out / name / f'month={MONTH}'}")
    ids, expected = _reference(spark, load_spec(champion["spec"]), MONTH)     # the same model as NAME's champion
    table = _written(out / name / f"month={MONTH}", ids)
    np.testing.assert_allclose(table["score"].to_numpy(), expected[:, 1], rtol=0, atol=1e-9)


def test_champion_moves_choose_what_to_score_again(champion, tmp_path):
    """A promotion scores its month again; a rollback the newest month written; other models are not ours."""
    out = tmp_path / "out"
    for month in ("2017-11", MONTH):
        (out / NAME / f"month={month}").mkdir(parents=True)
    spec = str(champion["spec"])
    moves = [{"model": NAME, "version": "2", "month": "2017-11", "previous": "1"},
             {"model": "not_in_the_specs", "version": "4", "month": "2017-11", "previous": None},
             {"model": NAME, "version": "1", "month": "2017-09", "previous": "2", "kind": "rollback"},
             {"model": NAME, "version": "3", "month": MONTH, "previous": "1"}]
    assert jobs_for_champion_moves([spec], moves, out) == [{"spec": spec, "month": "2017-11"},
                                                           {"spec": spec, "month": MONTH}]
    rollback = [{"model": NAME, "version": "1", "month": "2017-09", "previous": "2", "kind": "rollback"}]
    assert jobs_for_champion_moves([spec], rollback, tmp_path / "nothing_written") == []


def test_batch_score_dag_scores_each_spec_for_the_runs_month(airflow_env, champion, spark, tracking, tmp_path):
    specs = tmp_path / "specs"
    specs.mkdir()
    shutil.copy(champion["spec"], specs / f"{NAME}.yaml")
    out = tmp_path / "predictions"
    env = dag_env(airflow_env, tracking, AUTOML_SPECS_DIR=str(specs), AUTOML_PREDICTIONS_DIR=str(out),
                  AUTOML_FIRST_MONTH="2017-12")
    # The run that starts on 2018-01-01 covers December 2017.
    [result] = run_dag("batch_score", ["2018-01-01T00:00:00+00:00"], {}, env)
    assert result["state"] == "success", result
    assert result["tasks"] == {"plan[-1]": "success", "score[0]": "success"}, result
    ids, expected = _reference(spark, load_spec(champion["spec"]), MONTH)
    table = _written(out / NAME / f"month={MONTH}", ids)
    np.testing.assert_allclose(table["score"].to_numpy(), expected[:, 1], rtol=0, atol=1e-9)
    assert set(table["model_version"]) == {champion["version"]}

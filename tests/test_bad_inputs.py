"""Bad input: a specific message, and no MLflow run left behind (certainly none RUNNING)."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from automl_tasks.data.demo import generate_loans
from automl_tasks.data.prepare import load_frame, prepare
from automl_tasks.errors import AutomlError, DataError, SpecError
from automl_tasks.spec import load_spec
from automl_tasks.tuning.job import tune
from tests.support.specs import spec_dict


@pytest.fixture(scope="module")
def loans() -> pd.DataFrame:
    return generate_loans(n_months=8, rows_per_month=150, start="2018-01", shift_month="2018-05", seed=3)


def _write(tmp_path, frame: pd.DataFrame, fmt="parquet") -> str:
    path = tmp_path / ("loans.csv" if fmt == "csv" else "loans.parquet")
    if fmt == "csv":
        frame.to_csv(path, index=False)
    else:
        frame.to_parquet(path, index=False, coerce_timestamps="us", allow_truncated_timestamps=True)
    return path.name


def _spec(tmp_path, source: str, **override):
    path = tmp_path / "spec.yaml"
    data = {"source": source, **override.pop("data", {})}
    path.write_text(yaml.safe_dump(spec_dict(data=data, **override)))
    return load_spec(path)


def _runs(tracking_uri) -> set[str]:
    """Ids of every run on the (session-shared) server: a failed call must add none."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri)
    experiments = client.search_experiments()
    return {r.info.run_id for r in client.search_runs([e.experiment_id for e in experiments],
                                                       max_results=50_000)} if experiments else set()


def _null_labels(df):
    df = df.copy()
    df["default"] = df["default"].astype("float")
    rows = [df.index[df["month"] == "2018-04"][0], df.index[df["month"] == "2018-07"][0]]
    df.loc[rows, "default"] = None
    return df


def _labels_not_landed(df):
    """The newest month's labels mostly still missing: 120 of its 150 rows."""
    df = df.copy()
    df["default"] = df["default"].astype("float")
    df.loc[df.index[df["month"] == "2018-07"][:120], "default"] = None
    return df


def _nan_labels(df):
    df = df.copy()
    df["default"] = df["default"].astype("float")
    df.loc[df.index[df["month"] == "2018-05"][:1], "default"] = np.nan
    return df


def _one_class(df):
    return df.assign(default=0)


def _text_in_numeric(df, month="2018-04"):
    # Parquet has one type per column: income is text in every month, numbers but for 3 rows.
    df = df.copy()
    df["income"] = df["income"].round(2).astype(str)
    df.loc[df.index[df["month"] == month][:3], "income"] = "n/a"
    return df


def _duplicate_ids(df):
    # The evaluated month's first id (901) on 3 rows, its second on 2: 2 ids, 5 rows.
    month = df[df["month"] == "2018-07"]
    return pd.concat([df, month.iloc[:2], month.iloc[:1]], ignore_index=True)


def _missing_month(df):
    return df[df["month"] != "2018-06"]


def _tiny(df):
    # 2 positives in the window: too few for 3 stratified folds
    window = df[df["month"].isin(["2018-03", "2018-04", "2018-05", "2018-06", "2018-07"])].copy()
    window["default"] = 0
    window.iloc[:2, window.columns.get_loc("default")] = 1
    return window


CASES = [
    # (id, frame transform, spec override, month, error class, expected message part)
    ("null label", _null_labels, {}, "2018-07", DataError,
     "label 'default' is missing (null or NaN) in 2 rows (2018-04: 1 of 150 (0.7%), 2018-07: 1 of 150 (0.7%)); if they arrive months late, set labels.delay_months"),
    ("labels not landed", _labels_not_landed, {"labels": {"delay_months": 1}}, "2018-07", DataError,
     "label 'default' is missing (null or NaN) in 120 rows (2018-07: 120 of 150 (80.0%)); labels arrive later than the spec says: raise labels.delay_months"),
    ("NaN label", _nan_labels, {}, "2018-07", DataError, "label 'default' is missing (null or NaN) in 1 rows"),
    ("one class", _one_class, {}, "2018-07", DataError, "label 'default' has a single class ('0')"),
    ("unknown feature", None, {"features": ["income", "salary"]}, "2018-07", DataError,
     "feature 'salary' is not in the data"),
    ("text in numeric", _text_in_numeric, {"categorical": ["region"]}, "2018-07", DataError,
     "numeric column 'income' has 3 non-numeric values (e.g. 'n/a')"),
    ("looks numeric", _text_in_numeric, {"features": ["income", "age"]}, "2018-07", DataError,
     "column 'income' looks numeric but has 3 non-numeric values"),
    # Only the evaluated month has the text: the window's encoding would fail on it inside Spark.
    ("text in holdout month", partial(_text_in_numeric, month="2018-07"),
     {"categorical": ["salary_range", "region", "employment", "purpose"]}, "2018-07", DataError,
     "numeric column 'income' has 3 non-numeric values in month 2018-07 (e.g. 'n/a')"),
    ("duplicate ids", _duplicate_ids, {}, "2018-07", DataError,
     "id column 'id' has 2 ids on more than one row in month 2018-07 (5 rows; e.g. 901 on 3 rows)"),
    ("empty month", _missing_month, {}, "2018-06", DataError, "month 2018-06 has no rows"),
    ("missing training month", _missing_month, {}, "2018-07", DataError, "training month 2018-06 has 0 rows"),
    ("too few rows for folds", _tiny, {}, "2018-07", DataError, "3-fold cv needs at least 3 per class"),
    ("month outside data", None, {}, "2019-03", DataError,
     "month 2019-03 is outside the data, which covers 2018-01 to 2018-08"),
    ("window shorter than asked", None, {"window": {"train_months": 6}}, "2018-04", DataError,
     "asks for 6 training months (2017-10 to 2018-03) but the data starts at 2018-01"),
    ("bad month format", None, {}, "2018-13", SpecError, "month must look like YYYY-MM, got '2018-13'"),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_data_is_a_specific_error_and_writes_nothing(case, loans, tmp_path, spark, tracking):
    _, transform, override, month, error, expected = case
    source = _write(tmp_path, transform(loans) if transform else loans)
    spec = _spec(tmp_path, source, **override)
    before = _runs(tracking)
    with pytest.raises(error) as err:
        tune(spec, month, spark=spark, progress=lambda line: None)
    assert expected in str(err.value)
    assert _runs(tracking) == before


def test_unreadable_sources(tmp_path, spark, tracking):
    before = _runs(tracking)
    with pytest.raises(DataError, match="does not exist"):
        tune(_spec(tmp_path, "nowhere.parquet"), "2018-07", spark=spark, progress=lambda line: None)
    (tmp_path / "broken.parquet").write_bytes(b"this is not parquet at all")
    with pytest.raises(DataError) as err:
        tune(_spec(tmp_path, "broken.parquet"), "2018-07", spark=spark, progress=lambda line: None)
    assert f"cannot read parquet source {tmp_path / 'broken.parquet'}: " in str(err.value)
    assert "Could not read footer" in str(err.value)       # Spark's reason, not py4j's call header
    assert _runs(tracking) == before


def test_duplicate_ids_with_warn_are_logged_and_counted(loans, tmp_path, spark, caplog):
    spec = _spec(tmp_path, _write(tmp_path, _duplicate_ids(loans)), data={"duplicate_ids": "warn"})
    with caplog.at_level(logging.WARNING, logger="automl_tasks.data.prepare"):
        prepared = prepare(spark, spec, "2018-07")
    assert prepared.duplicate_ids == {"ids": 2, "rows": 5, "months": ["2018-07"]}
    assert ("id column 'id' has 2 ids on more than one row in month 2018-07 (5 rows; e.g. 901 on 3 rows); "
            "evaluating them as they are (data.duplicate_ids: warn)") in caplog.text
    assert len(prepared.holdout.y) == 150 + 3
    clean = prepare(spark, _spec(tmp_path, _write(tmp_path, loans), data={"duplicate_ids": "warn"}), "2018-07")
    assert clean.duplicate_ids is None


def test_partition_with_another_column_type_is_named(loans, tmp_path, spark, tracking):
    """mergeSchema fails naming neither column nor file: the error says which partition differs."""
    for month, part in loans.groupby("month"):
        if month == "2018-08":
            part = part.assign(income=part["income"].astype(str))
        folder = tmp_path / "loans" / f"month={month}"
        folder.mkdir(parents=True)
        part.drop(columns=["month"]).to_parquet(folder / "part-0.parquet", index=False,
                                                coerce_timestamps="us", allow_truncated_timestamps=True)
    before = _runs(tracking)
    with pytest.raises(DataError) as err:
        tune(_spec(tmp_path, "loans"), "2018-07", spark=spark, progress=lambda line: None)
    odd = tmp_path / "loans" / "month=2018-08" / "part-0.parquet"
    assert str(err.value) == (
        f"cannot read parquet source {tmp_path / 'loans'}: "
        "column 'income' is double in month=2018-01..2018-07 but string in month=2018-08 "
        f"({odd}); rewrite that partition with one type")
    assert _runs(tracking) == before


def _latin1_csv(tmp_path, frame: pd.DataFrame) -> str:
    # A ;-separated latin-1 export whose text has the separator in it, quoted with '.
    frame = frame.assign(purpose=np.where(frame.index % 2 == 0, frame["purpose"], "café; crème"))
    frame.to_csv(tmp_path / "loans.csv", index=False, sep=";", quotechar="'", encoding="latin-1")
    return "loans.csv"


def test_csv_options_are_honoured(loans, tmp_path, spark):
    csv = {"sep": ";", "quote": "'", "encoding": "latin-1"}
    frame = load_frame(spark, _spec(tmp_path, _latin1_csv(tmp_path, loans), data={"csv": csv}))
    assert dict(frame.dtypes)["income"] == "double"
    got = frame.select("id", "purpose").toPandas().sort_values("id")
    assert got["purpose"].tolist() == np.where(loans.index % 2 == 0, loans["purpose"], "café; crème").tolist()


CSV_CASES = {
    # id: (columns renamed, data.csv, error class, expected message part)
    "encoding name": ({}, {"sep": ";", "encoding": "cp1252"}, SpecError,
                      "data.csv.encoding 'cp1252' is not one Spark reads CSV in"),
    "separator": ({}, {}, DataError, "reads as one column 'id;timestamp;month;income;"),
    "undecodable header": ({"region": "région"}, {"sep": ";"}, DataError, "is not UTF-8: its header has"),
}


@pytest.mark.parametrize("case", CSV_CASES.values(), ids=CSV_CASES.keys())
def test_csv_read_not_as_written_is_a_specific_error(case, loans, tmp_path, spark, tracking):
    renamed, csv, error, expected = case
    spec = _spec(tmp_path, _latin1_csv(tmp_path, loans.rename(columns=renamed)), data={"csv": csv})
    before = _runs(tracking)
    with pytest.raises(error) as err:
        tune(spec, "2018-07", spark=spark, progress=lambda line: None)
    assert expected in str(err.value)
    assert _runs(tracking) == before


def test_label_written_two_ways_is_one_class(loans, tmp_path, spark, tracking):
    """Old exports wrote `1.0`, new ones `1`: the same class, not two."""
    frame = loans.copy()
    old = frame["month"] < "2018-05"
    frame["default"] = np.where(old, frame["default"].map({0: "0.0", 1: "1.0"}), frame["default"].astype(str))
    spec = _spec(tmp_path, _write(tmp_path, frame, fmt="csv"),
                 algorithms={"xgboost": {"search": "grid", "space": {"n_estimators": [10]}}})
    result = tune(spec, "2018-07", spark=spark, progress=lambda line: None)
    assert result["trials"] == {"total": 1, "failed": 0}
    meta = json.loads((Path(result["model_dir"]) / "metadata.json").read_text())
    assert meta["classes"] == [0, 1]


def test_unknown_algorithm_requested(tmp_path, spark, tracking, loans):
    spec = _spec(tmp_path, _write(tmp_path, loans))
    with pytest.raises(SpecError, match="algorithm 'catboost' is not in the spec"):
        tune(spec, "2018-07", ["catboost"], spark=spark, progress=lambda line: None)
    assert issubclass(SpecError, AutomlError)


# --- manual-trigger Params and CLI arguments ------------------------------------------------

# (id, DAG, run conf, the first line of the error Airflow gives when the run is triggered)
PARAM_CASES = [
    ("monthly month", "monthly_retrain", {"month": "2018-13"},
     "Invalid input for param month: '2018-13' does not match '^\\\\d{4}-(0[1-9]|1[0-2])$'"),
    ("monthly promotion", "monthly_retrain", {"promotion": "yolo"},
     "Invalid input for param promotion: 'yolo' is not one of [None, 'auto', 'manual', 'shadow']"),
    ("monthly refs", "monthly_retrain", {"refs": "develop, master"},
     "Invalid input for param refs: 'develop, master' does not match '^[^,\\\\s]+,[^,\\\\s]+$'"),
    ("ablation spec", "feature_ablation", {}, "Invalid input for param spec: '' should be non-empty"),
    ("ablation repeats", "feature_ablation", {"spec": "a.yaml", "repeats": 1},
     "Invalid input for param repeats: 1 is less than the minimum of 2"),
    ("ablation direction", "feature_ablation", {"spec": "a.yaml", "direction": "sideways"},
     "Invalid input for param direction: 'sideways' is not one of ['add', 'drop']"),
    ("monthly ok", "monthly_retrain", {"month": "2018-06", "promotion": "auto", "refs": "develop,master"}, None),
    ("ablation ok", "feature_ablation", {"spec": "a.yaml", "month": "2018-06", "repeats": 3}, None),
]


@pytest.fixture(scope="module")
def param_errors(tmp_path_factory) -> dict[str, str | None]:
    """Each case's conf merged into its DAG's Params and validated as Airflow does when a run is
    created (`SerializedDAG.create_dagrun`: params.deep_merge(conf).validate()), on the DAGs as
    the api-server holds them (serialized). One process parses the two DAG files (only those:
    other DAGs' imports are not this test's business) for all cases."""
    root = Path(__file__).resolve().parents[1]
    probe = (
        "import json, sys\n"
        "from airflow.dag_processing.dagbag import DagBag\n"
        "from airflow.exceptions import ParamValidationError\n"
        "from airflow.serialization.serialized_objects import DagSerialization\n"
        "dags = {}\n"
        "for dag_id in ('monthly_retrain', 'feature_ablation'):\n"
        "    bag = DagBag(dag_folder=f'{sys.argv[2]}/{dag_id}.py')\n"
        "    assert not bag.import_errors, bag.import_errors\n"
        "    dags[dag_id] = DagSerialization.from_dict(DagSerialization.to_dict(bag.dags[dag_id]))\n"
        "out = {}\n"
        "for case, dag_id, conf in json.loads(sys.argv[1]):\n"
        "    dag = dags[dag_id]\n"
        "    try:\n"
        "        dag.params.deep_merge(conf).validate()\n"
        "        out[case] = None\n"
        "    except ParamValidationError as exc:\n"
        "        out[case] = str(exc).splitlines()[0]\n"
        "print('ERRORS ' + json.dumps(out))\n")
    home = tmp_path_factory.mktemp("airflow-params")
    env = {**os.environ, "AIRFLOW_HOME": str(home), "AIRFLOW__CORE__DAGS_FOLDER": str(root / "dags"),
           "AIRFLOW__CORE__PLUGINS_FOLDER": str(root / "plugins"), "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
           "AIRFLOW__CORE__UNIT_TEST_MODE": "False", "PYTHONPATH": str(root)}
    cases = json.dumps([case[:3] for case in PARAM_CASES])
    done = subprocess.run([sys.executable, "-c", probe, cases, str(root / "dags")], env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(next(line for line in done.stdout.splitlines() if line.startswith("ERRORS "))[7:])


@pytest.mark.parametrize("case", PARAM_CASES, ids=[c[0] for c in PARAM_CASES])
def test_dag_params_refuse_bad_values_when_triggered(case, param_errors):
    assert param_errors[case[0]] == case[3]


def test_cli_refuses_an_unknown_choice(capsys):
    from automl_tasks.cli import main

    with pytest.raises(SystemExit) as done:
        main(["monthly", "--spec", "specs/loan_default.yaml", "--month", "2018-01", "--promotion", "yolo"])
    assert done.value.code == 2
    assert ("automl-tasks monthly: error: argument --promotion: invalid choice: 'yolo' "
            "(choose from 'auto', 'manual', 'shadow')") in capsys.readouterr().err

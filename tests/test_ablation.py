"""Feature ablation: planted truth recovered, bad input refused before MLflow, point-in-time
joins never look ahead, MLflow layout; real Spark and a real MLflow server."""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

from automl_tasks.ablation.stats import Interval, corrected_t, verdict
from automl_tasks.ablation.study import run_ablation
from automl_tasks.errors import DataError, SpecError
from automl_tasks.spec import JoinSpec, load_spec
from tests.support.specs import FEATURES, write_spec

ROOT = Path(__file__).resolve().parents[1]
MONTH = "2017-12"
FAST = {"xgboost": {"search": "grid", "space": {"learning_rate": [0.1]},
                    "fixed": {"n_estimators": 60, "max_depth": 3}}}


def _spec(folder: Path, demo_dir: Path, name: str, **override):
    override = {"algorithms": FAST, **override}
    path = write_spec(folder, name=name, data={"source": str(demo_dir / "loans")},
                      window={"train_months": 6}, **override)
    return load_spec(path)


def _no_study(tracking: str, name: str) -> None:
    assert MlflowClient(tracking).get_experiment_by_name(f"{name}/ablation") is None


# --- statistics (pure) -------------------------------------------------------------------

def test_corrected_t_widens_the_naive_interval_by_the_nadeau_bengio_factor():
    deltas = np.array([0.02, 0.01, 0.03, 0.015, 0.025, 0.005])
    got = corrected_t(deltas, test_train_ratio=0.5)
    from scipy import stats

    se = np.sqrt((1 / 6 + 0.5) * deltas.var(ddof=1))
    half = stats.t.ppf(0.975, 5) * se
    assert got.delta == pytest.approx(deltas.mean())
    assert (got.ci_low, got.ci_high) == pytest.approx((deltas.mean() - half, deltas.mean() + half))
    assert got.p_value == pytest.approx(2 * stats.t.sf(deltas.mean() / se, 5))
    naive = stats.t.ppf(0.975, 5) * deltas.std(ddof=1) / np.sqrt(6)
    assert got.ci_high - got.ci_low > 2 * naive * 1.9   # sqrt((1/6 + 1/2) * 6) = 2


def test_verdicts_follow_the_interval_and_min_effect():
    def iv(d, lo, hi):
        return Interval(d, lo, hi, 0.01, 9, 0.01)

    assert verdict(iv(0.03, 0.01, 0.05), 0.005)[0] == "adopt"
    assert verdict(iv(0.004, 0.001, 0.007), 0.005)[0] == "inconclusive"   # real but maybe too small
    assert verdict(iv(0.001, -0.001, 0.003), 0.005)[0] == "reject"        # surely below min_effect
    assert verdict(iv(-0.02, -0.03, -0.01), 0.0)[0] == "reject"
    assert verdict(iv(0.0, -0.02, 0.02), 0.0)[0] == "inconclusive"
    with pytest.raises(ValueError, match="at least 2"):
        corrected_t([0.1], 0.5)


# --- point-in-time join ------------------------------------------------------------------

def test_point_in_time_join_takes_the_latest_value_known_at_the_row_time(spark, tmp_path):
    from automl_tasks.data.sources import join_tables

    ts = pd.Timestamp
    data = pd.DataFrame({"id": [1, 1, 2, 3, 4],
                         "timestamp": [ts("2020-01-10"), ts("2020-03-10"), ts("2020-02-01"),
                                       ts("2020-02-01"), ts("2020-02-01")]})
    table = pd.DataFrame({
        "id": [1, 1, 1, 2, 2, 3, 4],
        "as_of": [ts("2020-01-01"), ts("2020-02-01"), ts("2020-04-01"),   # id 1: two past, one future
                  ts("2020-02-01"), ts("2020-02-02"),                     # id 2: equal counts, later not
                  ts("2020-05-01"),                                       # id 3: only a future value
                  None],                                                  # id 4: unknown time
        "score": [10.0, 20.0, 99.0, 30.0, 98.0, 97.0, 96.0]})
    data.to_parquet(tmp_path / "data.parquet", coerce_timestamps="us")
    table.to_parquet(tmp_path / "table.parquet", coerce_timestamps="us")
    df = spark.read.parquet(str(tmp_path / "data.parquet"))
    join = JoinSpec(source=str(tmp_path / "table.parquet"), on="id", as_of="as_of", timestamp="timestamp")
    report: list[dict] = []
    out = join_tables(spark, df, [join], report).toPandas().sort_values(["id", "timestamp"])
    assert out["score"].tolist()[:3] == [10.0, 20.0, 30.0]
    assert out["score"].iloc[3:].isna().all()          # a later or undated value is never taken
    assert "as_of" not in out.columns and len(out) == len(data)
    assert report[0]["point_in_time"] and report[0]["matched"] == 3 and report[0]["match_rate"] == 0.6

    dupes = pd.concat([table, table.iloc[[0]]])
    dupes.to_parquet(tmp_path / "dupes.parquet", coerce_timestamps="us")
    with pytest.raises(DataError, match="multiply rows.*'id': 1"):
        join_tables(spark, df, [join.model_copy(update={"source": str(tmp_path / "dupes.parquet")})])
    with pytest.raises(DataError, match="as_of column 'seen_at' is not in"):
        join_tables(spark, df, [join.model_copy(update={"as_of": "seen_at"})])


def test_point_in_time_join_on_demo_bureau_nulls_the_late_rows(spark, demo_dir):
    from automl_tasks.data.sources import join_tables, read_source

    loans = pd.read_parquet(demo_dir / "loans")
    bureau = pd.read_parquet(demo_dir / "bureau.parquet")
    late = set(bureau.loc[bureau["as_of"].to_numpy() > loans.set_index("id").loc[bureau["id"], "timestamp"]
                          .to_numpy(), "id"])
    assert 0.02 < len(late) / len(bureau) < 0.1
    join = JoinSpec(source=str(demo_dir / "bureau.parquet"), on="id", as_of="as_of", timestamp="timestamp")
    out = join_tables(spark, read_source(spark, str(demo_dir / "loans")), [join]).select(
        "id", "bureau_score").toPandas()
    assert set(out.loc[out["bureau_score"].isna(), "id"]) == late


# --- the study -------------------------------------------------------------------------

def test_study_recovers_the_planted_truth_and_logs_it(spark, tracking, demo_dir, tmp_path):
    """Useful bureau columns adopted, noise not, the label copy flagged as leakage."""
    name = "ablation_truth"
    spec = _spec(tmp_path, demo_dir, name, ablation={
        "tables": [{"source": str(demo_dir / "bureau.parquet"), "on": "id", "as_of": "as_of"}],
        "repeats": 4, "folds": 3, "min_effect": 0.002})
    lines: list[str] = []
    out = run_ablation(spec, MONTH, spark=spark, progress=lines.append)

    by = {r["feature"]: r for r in out["results"]}
    assert set(by) == {"bureau_score", "num_late_payments", "noise_1", "noise_2", "days_to_default_flag"}
    assert by["bureau_score"]["verdict"] == "adopt" and by["num_late_payments"]["verdict"] == "adopt"
    assert by["noise_1"]["verdict"] != "adopt" and by["noise_2"]["verdict"] != "adopt"
    leak = by["days_to_default_flag"]
    assert leak["leakage"] and leak["verdict"] == "reject" and "leakage" in leak["reason"]
    assert leak["importance_rank"] is None                      # left out of the importance model
    assert by["bureau_score"]["importance_rank"] < by["noise_2"]["importance_rank"]
    for r in out["results"]:
        assert len(r["fold_deltas"]) == 12 and r["delta"] == pytest.approx(np.mean(r["fold_deltas"]))
        assert (r["p_value"] < 0.05) == (r["ci_low"] > 0 or r["ci_high"] < 0), r   # the test agrees with the CI
    assert [r["feature"] for r in out["results"]][0] == "days_to_default_flag"    # sorted by effect
    assert out["base"]["features"] == spec.features and 0.5 < out["base"]["value"] < 0.9
    table = out["tables"][0]
    assert table["point_in_time"] and 0.9 < table["match_rate"] < 1.0
    assert any("point-in-time" in line and "never a value from after" in line for line in lines)

    client = MlflowClient(tracking)
    parent = client.get_run(out["run_id"])
    assert parent.data.tags["automl.kind"] == "ablation" and parent.data.tags["automl.month"] == MONTH
    assert parent.data.tags["automl.adopted"] == "bureau_score,num_late_payments"
    experiment = client.get_experiment_by_name(f"{name}/ablation").experiment_id
    children = client.search_runs([experiment], f"tags.mlflow.parentRunId = '{out['run_id']}'")
    assert sorted(c.data.tags["automl.feature"] for c in children) == sorted(by)
    child = next(c for c in children if c.data.tags["automl.feature"] == "bureau_score")
    assert child.data.tags["automl.verdict"] == "adopt"
    assert child.data.metrics["delta"] == pytest.approx(by["bureau_score"]["delta"])
    artifacts = {a.path for a in client.list_artifacts(out["run_id"])}
    assert {"results.json", "results.csv", "deltas.png", "importance.png", "importance.json",
            "study.json"} <= artifacts
    logged = json.loads(Path(client.download_artifacts(out["run_id"], "results.json", str(tmp_path))).read_text())
    assert len(logged["data"]) == 5 and "verdict" in logged["columns"]


def test_settled_candidates_and_drop_one_through_the_cli(spark, tracking, demo_dir, tmp_path):
    """A copy of a base feature and an all-null column are rejected with the reason, without a fit;
    the CLI prints the --json summary; drop-one runs on the same machinery."""
    from automl_tasks.cli import main

    loans = pd.read_parquet(demo_dir / "loans", columns=["id", "income"])
    extra = pd.DataFrame({"id": loans["id"], "income_copy": loans["income"],
                          "empty": pd.Series([None] * len(loans), dtype="float64")})
    extra.to_parquet(tmp_path / "extra.parquet")
    name = "ablation_cli"
    _spec(tmp_path, demo_dir, name)

    def cli() -> dict:
        stdout = io.StringIO()
        with contextlib.redirect_stdout(stdout):
            code = main(["ablation", "--spec", str(tmp_path / "spec.yaml"), "--month", MONTH,
                         "--table", str(tmp_path / "extra.parquet"), "--on", "id", "--repeats", "2",
                         "--folds", "2", "--json"])
        assert code == 0
        return json.loads(stdout.getvalue())

    out = cli()
    by = {r["feature"]: r for r in out["results"]}
    assert by["income_copy"]["verdict"] == "reject" and "identical to base feature 'income'" in by["income_copy"]["reason"]
    assert by["empty"]["verdict"] == "reject" and "null in every row" in by["empty"]["reason"]
    assert out["run_id"] and set(out["base"]) >= {"features", "value"}
    again = cli()                       # a re-run (e.g. a DAG retry) reuses the finished study
    assert again["reused"] and again["run_id"] == out["run_id"]
    experiment = MlflowClient(tracking).get_experiment_by_name(f"{name}/ablation").experiment_id
    assert len(MlflowClient(tracking).search_runs([experiment], "tags.`automl.kind` = 'ablation'")) == 1

    spec = _spec(tmp_path, demo_dir, "ablation_drop", features=["debt_ratio", "income", "age"])
    dropped = run_ablation(spec, MONTH, direction="drop", repeats=2, folds=2, spark=spark,
                           progress=lambda line: None)
    assert {r["feature"] for r in dropped["results"]} == {"debt_ratio", "income", "age"}
    assert dropped["direction"] == "drop" and all(r["delta"] is not None for r in dropped["results"])


@pytest.mark.parametrize("case", ["unknown", "key", "multiply", "base", "no_candidates", "too_big"])
def test_bad_input_is_refused_before_anything_reaches_mlflow(spark, tracking, demo_dir, tmp_path, case,
                                                             monkeypatch):
    name = f"ablation_bad_{case}"
    spec = _spec(tmp_path, demo_dir, name)
    bureau = str(demo_dir / "bureau.parquet")
    kwargs, error, match = {
        "unknown": ({"candidates": ["bureau_scor"], "tables": [{"source": bureau, "on": "id"}]},
                    DataError, "candidate 'bureau_scor' is not a column of the data or the candidate tables"),
        "key": ({"tables": [{"source": bureau, "on": "loan_id"}]}, DataError, "join key 'loan_id' is not in data"),
        "multiply": ({"tables": [{"source": str(tmp_path / "dupes.parquet"), "on": "id"}]},
                     DataError, "would multiply rows: key {'id': 1}"),
        "base": ({"candidates": ["income"]}, SpecError, "candidate 'income' is already a base feature"),
        "no_candidates": ({}, SpecError, "no candidate features"),
        "too_big": ({"candidates": ["bureau_score"], "tables": [{"source": bureau, "on": "id"}]}, DataError,
                    r"the ablation study collects its window to the driver .* too big for that"),
    }[case]
    if case == "too_big":   # a 1 KiB driver and slot: the demo window no longer fits
        from automl_tasks.tuning import training_path

        tiny = training_path.Resources(slot_bytes=1024, driver_bytes=1024, slots=2)
        monkeypatch.setattr(training_path, "resources", lambda spark, slots: tiny)
    if case == "multiply":
        pd.DataFrame({"id": [1, 1, 2], "extra": [1.0, 2.0, 3.0]}).to_parquet(tmp_path / "dupes.parquet")
    with pytest.raises(error, match=match):
        run_ablation(spec, MONTH, spark=spark, progress=lambda line: None, **kwargs)
    _no_study(tracking, name)


def test_feature_ablation_dag_parses_without_heavy_imports(tmp_path):
    probe = (
        "import sys\n"
        "from airflow.dag_processing.dagbag import DagBag\n"
        f"bag = DagBag(dag_folder={str(ROOT / 'dags' / 'feature_ablation.py')!r})\n"
        "assert not bag.import_errors, bag.import_errors\n"
        "dag = bag.dags['feature_ablation']\n"
        "assert type(dag.timetable).__name__ == 'NullTimetable', dag.timetable\n"
        "print(sorted(dag.params.keys()))\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in "
        "('pyspark', 'mlflow', 'xgboost', 'lightgbm', 'evidently', 'automl_tasks'))\n"
        "print(heavy)\n"
    )
    env = {**os.environ, "AIRFLOW_HOME": str(tmp_path / "airflow"), "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
           "AIRFLOW__CORE__UNIT_TEST_MODE": "False", "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    params, heavy = out.stdout.strip().splitlines()[-2:]
    assert "'candidates'" in params and "'table'" in params and "'repeats'" in params
    # Of the library, only the standard-library month rules (the month Param's pattern).
    assert heavy == str(["automl_tasks", "automl_tasks.data", "automl_tasks.data.months", "automl_tasks.errors"])


def test_champion_params_and_top_k_base(spark, tracking, demo_dir, tmp_path):
    """With a champion, the study fits the champion's algorithm and params, and `top_k` makes
    the base its top features by gain."""
    from automl_tasks.models import adapters
    from automl_tasks.registry.champion import load_champion
    from automl_tasks.registry import promotion
    from automl_tasks.tuning.job import tune

    name = "ablation_champion"
    spec = _spec(tmp_path, demo_dir, name, algorithms={
        "xgboost": {"search": "grid", "space": {"max_depth": [2]}, "fixed": {"n_estimators": 30}}},
        validation={"method": "cv", "folds": 2},
        ablation={"tables": [{"source": str(demo_dir / "bureau.parquet"), "on": "id", "as_of": "as_of"}],
                  "candidates": ["bureau_score"], "top_k": 3})
    tuned = tune(spec, "2017-11", progress=lambda line: None, spark=spark)
    entry = tuned["leaderboard"][0]
    version = promotion.register_candidate(entry["model_uri"], name, month="2017-11", run_id=tuned["run_id"],
                                           tags={"automl.algorithm": entry["algorithm"]})
    promotion.open_decision(name, version, month="2017-11", evidence={}, evidence_run_id=None, reasons=["test"])
    promotion.decide(name, version, approve=True, decided_by="policy:test")

    out = run_ablation(spec, MONTH, repeats=2, folds=2, spark=spark, progress=lambda line: None)
    assert out["params_source"] == f"champion v{version}" and out["algorithm"] == "xgboost"
    assert out["params"] == entry["params"] == {"max_depth": 2, "n_estimators": 30}
    _, champion = load_champion(name)
    gains = adapters.importance(champion.model, "xgboost", champion.meta["feature_names"])
    assert out["base"]["features"] == sorted(gains, key=lambda f: -gains[f])[:3]
    assert [r["feature"] for r in out["results"]] == ["bureau_score"]


# Planted in the demo data (generate_loans): `loss` scales with loan_amount, `grade` is driven by
# debt_ratio; each is left out of the base here and tried as the candidate (no table: no join to pay).
@pytest.mark.parametrize("task, algorithm, candidate", [("regression", "lightgbm", "loan_amount"),
                                                        ("multiclass", "xgboost", "debt_ratio")])
def test_regression_and_multiclass_studies(task, algorithm, candidate, spark, tracking, demo_dir, tmp_path):
    """Lower-is-better metrics (rmse, logLoss) oriented so a positive delta is better: a planted
    useful feature lowers the metric, gets a positive delta and is adopted; LightGBM's TreeSHAP."""
    one = {"lightgbm": {"search": "grid", "space": {"learning_rate": [0.1]},
                        "fixed": {"n_estimators": 40, "num_leaves": 15}},
           "xgboost": FAST["xgboost"]}[algorithm]
    spec = load_spec(write_spec(tmp_path, task, name=f"ablation_{task}", algorithms={algorithm: one},
                                data={"source": str(demo_dir / "loans")}, window={"train_months": 6},
                                features=[f for f in FEATURES if f != candidate],
                                ablation={"candidates": [candidate], "repeats": 2, "folds": 2}))
    out = run_ablation(spec, MONTH, spark=spark, progress=lambda line: None)
    (result,) = out["results"]
    assert out["metric"] == spec.metric and spec.metric in ("rmse", "logLoss") and out["algorithm"] == algorithm
    assert result["feature"] == candidate and result["verdict"] == "adopt", result
    assert not result["leakage"] and len(result["fold_deltas"]) == 4
    # The metric fell with the feature (lower is better), and the oriented delta says "better".
    assert result["arm_value"] < out["base"]["value"]
    assert result["delta"] > 0 and result["ci_low"] > 0
    assert result["delta"] == pytest.approx(out["base"]["value"] - result["arm_value"])
    shap = {row["feature"]: row for row in out["importance"]}
    assert candidate in shap and all(np.isfinite(row["shap"]) and row["gain"] >= 0 for row in shap.values())

"""The jobs through Spark Connect (SPARK_REMOTE), as the compose stack runs them, against local mode.

A real Connect server on 127.0.0.1, started from docker-compose.yml's `spark-connect` service
(tests/support/spark_connect.py: compose's command, environment and healthcheck; local executors
instead of the skipped standalone cluster). The CLI runs as a Connect client (its own process,
no JVM: what an Airflow task is in the deployment); the same command runs in this process on the
tests' local session. The --json records must agree field by field (tests/support/json_records.py:
run ids, paths and durations by type only, every other value to 1e-6): tune on both training
paths, two monthly months, the ablation study and the PoC. What Connect cannot run fails before anything is written,
naming the setting to use instead. Every command releases its session on the server before it exits.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

import pytest
import pandas as pd
from mlflow import MlflowClient

from tests.support import compose
from tests.support.cli import run_cli
from tests.support.json_records import cli_json, differences, placeholders, redact
from tests.support.poc_data import churn_frame, write_csv
from tests.support.spark_connect import connect_service, service_log, sessions_left_open
from tests.support.specs import write_spec

pytestmark = pytest.mark.timeout(1800)

LIGHTGBM_ONLY = {"lightgbm": {"search": "random", "trials": 2,
                              "space": {"num_leaves": {"int": [4, 16]}, "n_estimators": [20]}}}


@dataclass(frozen=True)
class Server:
    address: str        # sc://127.0.0.1:PORT
    log: Path


@pytest.fixture(scope="module")
def remote(tmp_path_factory):
    """Compose's spark-connect service, running on loopback."""
    if compose.compose_client() is None:
        if os.environ.get("CI") == "true":
            pytest.fail("no docker compose client under CI: .ci/run must install it")
        pytest.skip("no docker compose client (`docker compose` or `docker-compose`)")
    root = tmp_path_factory.mktemp("spark-connect")
    loop = compose.Loopback(compose.resolved(), root, binds={})
    with connect_service(loop, root / "logs") as address:
        yield Server(address, service_log(root / "logs"))


@pytest.fixture
def connect_env(remote, tracking, tmp_path):
    """A Connect client's environment: the server's address, this test's MLflow and home, and the
    staging folder the per-trial path shares with the executors."""
    env = {k: v for k, v in os.environ.items() if k != "SPARK_MASTER"}
    return {**env, "SPARK_REMOTE": remote.address, "MLFLOW_TRACKING_URI": tracking,
            "AUTOML_HOME": str(tmp_path / "connect-home"), "AUTOML_STAGING_DIR": str(tmp_path / "staging")}


def connect_cli(args: list[str], env: dict[str, str], log: Path, server: Server) -> tuple[int, str]:
    """run_cli through the server; the command must leave no session open there (an open one
    is what PySpark's exit-time clean-up would block the exit on)."""
    code, out = run_cli(args, env, log)
    left = sessions_left_open(server.log)
    assert not left, f"{' '.join(args)} left Spark Connect sessions open: {sorted(left)}"
    return code, out


def through_connect(args: list[str], env: dict[str, str], log: Path, server: Server) -> dict:
    code, out = connect_cli([*args, "--json"], env, log, server)
    assert code == 0, log.read_text()[-3000:]
    return json.loads(out)


def same_records(local: dict, connect: dict, names: tuple[str, str]) -> list[str]:
    """How the Connect run's records depart from the local run's, the model names made one."""
    def renamed(record: dict, name: str) -> dict:
        return json.loads(json.dumps(record).replace(name, "<model>"))
    return differences(redact(renamed(local, names[0]), "cli"), renamed(connect, names[1]), "cli")


def spark_tag(tracking: str, run_id: str) -> str:
    return MlflowClient(tracking).get_run(run_id).data.tags["automl.spark"]


@pytest.mark.parametrize("training", ["per_trial", "data_parallel"])
def test_tune_through_connect_equals_local_mode(training, remote, connect_env, demo_dir, spark, tracking,
                                                capsys, tmp_path):
    names = (f"cx_tune_{training}_local", f"cx_tune_{training}_connect")
    # Data-parallel through Connect: LightGBM's barrier trainer (xgboost.spark needs a SparkContext).
    extra = {"training": training, "algorithms": LIGHTGBM_ONLY} if training == "data_parallel" else {}
    specs = [write_spec(demo_dir, "binary", filename=f"{name}.yaml", name=name, **extra) for name in names]
    local = cli_json(capsys, "tune", "--spec", str(specs[0]), "--month", "2017-10")
    connect = through_connect(["tune", "--spec", str(specs[1]), "--month", "2017-10"], connect_env,
                              tmp_path / "tune.log", remote)
    found = same_records(local, connect, names)
    assert not found, "\n".join(found)
    assert spark_tag(tracking, connect["run_id"]) == "connect: local[2]"     # the server's executors
    assert spark_tag(tracking, local["run_id"]) == "local[2]"
    params = MlflowClient(tracking).get_run(connect["run_id"]).data.params
    assert params["training_path"] == training
    staged = list(Path(connect_env["AUTOML_STAGING_DIR"]).glob("*.npz"))
    # Per trial, Connect has no broadcast: the window went to the executors as a staged file.
    assert len(staged) == (1 if training == "per_trial" else 0), staged


def test_two_monthly_months_through_connect_equal_local_mode(remote, connect_env, demo_dir, spark, tracking,
                                                              capsys, tmp_path):
    names = ("cx_month_local", "cx_month_connect")
    # The steps through Connect are under test, not the search (tune's test covers both algorithms).
    one_config = {"xgboost": {"search": "grid", "space": {"max_depth": [3], "n_estimators": [30]}}}
    specs = [write_spec(demo_dir, "binary", filename=f"{name}.yaml", name=name, segment="segment",
                        algorithms=one_config) for name in names]
    for month, promotion in (("2017-10", "auto"), ("2017-11", "manual")):
        args = ["monthly", "--month", month, "--promotion", promotion]
        local = cli_json(capsys, *args, "--spec", str(specs[0]))
        connect = through_connect([*args, "--spec", str(specs[1])], connect_env, tmp_path / f"{month}.log", remote)
        for result in (local, connect):
            placeholders(result, tracking)
        found = same_records(local, connect, names)
        assert not found, f"{month}:\n" + "\n".join(found)
    assert connect["decision"]["status"] == "pending"     # the second month had a champion to face
    assert spark_tag(tracking, connect["runs"]["tuning"]).startswith("connect: ")


def test_the_poc_through_connect_equals_local_mode(remote, connect_env, spark, tracking, capsys, tmp_path,
                                                   monkeypatch):
    data = tmp_path / "data"
    write_csv(churn_frame(400), data / "churn_train.csv")
    monkeypatch.setenv("AUTOML_DATA_ROOTS", str(data))
    common = ["poc", "--data", str(data / "churn_train.csv"), "--label", "churn", "--time-budget", "300",
              "--max-trials", "2"]
    local = cli_json(capsys, *common, "--name", "cx_poc_local", "--algorithms", "xgboost,lightgbm")
    # No --algorithms: the default set, without the Spark ML ones, which Connect cannot log.
    log = tmp_path / "poc.log"
    connect = through_connect([*common, "--name", "cx_poc_connect"], {**connect_env, "AUTOML_DATA_ROOTS": str(data)},
                              log, remote)
    assert re.search(r"spark_linear, spark_random_forest, spark_gbt left out: .*SPARK_MASTER", log.read_text())
    keys = ("algorithm", "value", "oof_value", "default_params_value", "params", "trials", "status", "rank")
    rows = [[{k: entry[k] for k in keys} for entry in result["leaderboard"]] for result in (local, connect)]
    assert [r["algorithm"] for r in rows[0]] == [r["algorithm"] for r in rows[1]]
    found = differences(rows[0], rows[1], "leaderboard")
    assert not found, "\n".join(found)
    assert spark_tag(tracking, connect["tuning_run_id"]).startswith("connect: ")


def test_the_ablation_study_through_connect_equals_local_mode(remote, connect_env, demo_dir, spark, tracking,
                                                             capsys, tmp_path):
    names = ("cx_ablation_local", "cx_ablation_connect")
    fast = {"xgboost": {"search": "grid", "space": {"learning_rate": [0.1]},
                        "fixed": {"n_estimators": 40, "max_depth": 3}}}
    specs = [write_spec(demo_dir, "binary", filename=f"{name}.yaml", name=name, algorithms=fast,
                        window={"train_months": 6}) for name in names]
    # A plain left join (a snapshot of the table, no as_of). With the point-in-time join the rows come
    # back in an order that depends on spark.sql.shuffle.partitions (8 in local mode, 200 on the
    # server), so the folds, and the study's numbers, differ: docs/spark-connect.md, "Limits".
    snapshot = pd.read_parquet(demo_dir / "bureau.parquet").drop_duplicates("id").drop(columns="as_of")
    snapshot.to_parquet(tmp_path / "bureau_snapshot.parquet")
    args = ["ablation", "--month", "2017-12", "--table", str(tmp_path / "bureau_snapshot.parquet"), "--on", "id",
            "--candidates", "bureau_score,noise_1", "--repeats", "2", "--folds", "2"]
    local = cli_json(capsys, *args, "--spec", str(specs[0]))
    connect = through_connect([*args, "--spec", str(specs[1])], connect_env, tmp_path / "ablation.log", remote)
    for result in (local, connect):
        del result["seconds"]                      # durations (wave, fits, total)
    found = same_records(local, connect, names)
    assert not found, "\n".join(found)
    assert {r["feature"] for r in connect["results"]} == {"bureau_score", "noise_1"}


def test_what_connect_cannot_run_fails_first_naming_the_setting(remote, connect_env, demo_dir, tracking,
                                                                tmp_path):
    name = "cx_refused"
    spec = write_spec(demo_dir, "binary", filename=f"{name}.yaml", name=name, training="data_parallel")
    code, _ = connect_cli(["tune", "--spec", str(spec), "--month", "2017-10"], connect_env, tmp_path / "dp.log", remote)
    message = (tmp_path / "dp.log").read_text()
    assert code == 2, message[-2000:]
    assert "algorithm 'xgboost' cannot run through Spark Connect (SPARK_REMOTE)" in message
    assert "use `training: per_trial`, or run with SPARK_MASTER set" in message
    assert MlflowClient(tracking).get_experiment_by_name(f"{name}/tuning") is None     # nothing written

    data = tmp_path / "data"
    write_csv(churn_frame(200), data / "churn_train.csv")
    env = {**connect_env, "AUTOML_DATA_ROOTS": str(data)}
    code, _ = connect_cli(["poc", "--data", str(data / "churn_train.csv"), "--label", "churn", "--name", name,
                           "--algorithms", "xgboost,spark_linear"], env, tmp_path / "poc.log", remote)
    message = (tmp_path / "poc.log").read_text()
    assert code == 2, message[-2000:]
    assert "algorithm 'spark_linear' cannot run through Spark Connect" in message and "leave it out" in message
    assert MlflowClient(tracking).get_experiment_by_name(f"{name}/poc") is None


def test_each_refusal_names_the_algorithm_and_what_to_do_instead():
    from automl_tasks.models import algorithms
    from automl_tasks.poc.request import choose_algorithms

    assert algorithms.connect_refusal(["xgboost", "lightgbm", "hist_gbm"]) is None        # per trial: all run
    assert algorithms.connect_refusal(["lightgbm"], data_parallel=True) is None
    data_parallel = algorithms.connect_refusal(["lightgbm", "xgboost"], data_parallel=True)
    assert data_parallel.startswith("algorithm 'xgboost' cannot run through Spark Connect")
    assert "xgboost.spark reads the driver's SparkContext; use `training: per_trial`" in data_parallel
    spark_ml = algorithms.connect_refusal(["xgboost", "spark_gbt"])
    assert spark_ml.startswith("algorithm 'spark_gbt'") and "; leave it out, or run with SPARK_MASTER" in spark_ml
    # The PoC's default set on Connect leaves the Spark ML algorithms out; locally it keeps them.
    assert choose_algorithms(None, "binary", connect=True) == ["xgboost", "lightgbm"]
    assert "spark_linear" in choose_algorithms(None, "binary")

"""The tuning on a Spark standalone cluster (a master and one worker on 127.0.0.1) gives the
same result as local[2], although the executors cannot see a single file of the driver's:
the worker runs with the driver's folder (AUTOML_HOME, temp and Spark local dirs) hidden
under an empty tmpfs, as on separate hosts. So nothing relies on local-mode file sharing
(the data source is the one thing both read, as on a real cluster)."""

from __future__ import annotations

import ipaddress
import json
import os
from pathlib import Path

import numpy as np
import psutil
import pytest

from automl_tasks.data.prepare import load_frame
from automl_tasks.data.sources import MONTH_COL
from automl_tasks.registry.champion import load_run_model
from automl_tasks.spec import load_spec
from automl_tasks.tuning.job import tune
from tests.support.cli import run_cli, tune_outcome
from tests.support.spark_cluster import can_hide, spark_cluster
from tests.support.specs import write_spec

MONTH = "2017-11"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    reason = can_hide()
    if reason:
        pytest.skip(f"cannot hide the driver's files from the executors: {reason}")
    root = tmp_path_factory.mktemp("cluster")
    with spark_cluster(root / "cluster", hide=root / "driver") as running:
        yield running


def _loopback(ip: str) -> bool:
    addr = ipaddress.ip_address(ip)
    return (getattr(addr, "ipv4_mapped", None) or addr).is_loopback     # a JVM reports ::ffff:127.0.0.1


def test_tuning_on_a_cluster_matches_local_mode(cluster, demo_dir, spark, tracking, tmp_path):
    spec_path = write_spec(demo_dir, "binary", filename="cluster.yaml", name="cluster_test",
                           validation={"folds": 2})
    env = {**os.environ, **cluster.driver_env(), "MLFLOW_TRACKING_URI": tracking}
    log = tmp_path / "tune.log"
    code, out = run_cli(["tune", "--spec", str(spec_path), "--month", MONTH, "--json"], env, log)
    assert code == 0, log.read_text()[-3000:]
    on_cluster = json.loads(out)

    # The executors ran in another mount namespace, where the driver's folder is empty.
    driver_dir = cluster.hide
    assert os.readlink(f"/proc/{cluster.worker.pid}/ns/mnt") != os.readlink("/proc/self/ns/mnt")
    assert (driver_dir / "home" / "models").is_dir()
    assert list(Path(f"/proc/{cluster.worker.pid}/root{driver_dir}").iterdir()) == []
    for proc in (psutil.Process(p.pid) for p in cluster.procs):       # master and worker: loopback only
        for conn in proc.net_connections(kind="inet"):
            assert conn.status != psutil.CONN_LISTEN or _loopback(conn.laddr.ip), conn

    local = tune(load_spec(spec_path), MONTH, spark=spark, progress=lambda line: None)
    assert tune_outcome(on_cluster) == tune_outcome(local)
    assert on_cluster["trials"] == {"total": 4, "failed": 0}

    # What the cluster run logged (the preprocessing saved on the driver, the model) scores
    # the month exactly like the local run's model.
    spec = load_spec(spec_path)
    frame = load_frame(spark, spec)
    rows = frame.where(frame[MONTH_COL] == MONTH)
    best = local["best"]["algorithm"]
    scores = [load_run_model(run["run_id"], best, next(e["model_uri"] for e in run["leaderboard"]
                                                        if e["algorithm"] == best)).predict(rows)
              for run in (on_cluster, local)]
    assert scores[0].shape == (400, 2) and np.array_equal(scores[0], scores[1])


def test_data_parallel_tuning_on_a_cluster(cluster, demo_dir, tracking, tmp_path):
    """Both data-parallel trainers across the standalone executor: LightGBM's barrier tasks find
    each other by the executor's address, xgboost.spark's workers reach the driver's tracker."""
    spec_path = write_spec(demo_dir, "binary", filename="cluster_dp.yaml", name="cluster_dp",
                           training="data_parallel", validation={"folds": 2}, algorithms={
                               "xgboost": {"search": "grid", "space": {"max_depth": [3]},
                                           "fixed": {"n_estimators": 10}},
                               "lightgbm": {"search": "grid", "space": {"num_leaves": [7]},
                                            "fixed": {"n_estimators": 10}}})
    env = {**os.environ, **cluster.driver_env(), "MLFLOW_TRACKING_URI": tracking}
    log = tmp_path / "tune_dp.log"
    code, out = run_cli(["tune", "--spec", str(spec_path), "--month", MONTH, "--json"], env, log)
    assert code == 0, log.read_text()[-3000:]
    summary = json.loads(out)
    assert summary["training_path"] == "data_parallel"
    assert summary["trials"] == {"total": 2, "failed": 0}
    assert all(0.6 < e["cv_value"] < 1 and e["holdout_value"] is not None for e in summary["leaderboard"])
    assert "training path data_parallel (set in the spec)" in log.read_text()

"""Faults, each against real parts, with what it costs (target: nothing lost; docs/faults.md).

a) the MLflow server stops mid-run and comes back: the job fails fast and clearly, the
   retry resumes the month in its own runs; no duplicate run, version or alias move;
b) a fifth of the trials raise: the tuning completes, the failures are FAILED trial runs;
c) an executor JVM is killed mid-tuning: Spark re-runs its tasks, same result as undisturbed;
d) two promotions race for one model: one champion, the other superseded, no claim left;
e) the artifact store cannot write: the approval fails before any alias moves.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import threading
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from automl_tasks.errors import AutomlError
from automl_tasks.pipelines.monthly import run_monthly
from automl_tasks.registry import promotion as p
from automl_tasks.registry.tracking import client as tracking_client
from automl_tasks.spec import load_spec
from automl_tasks.tuning.job import tune
from tests.support.cli import start_cli, tune_outcome
from tests.support.mlflow_server import Server
from tests.support.processes import stop_group
from tests.support.spark_cluster import PYTHON_DAEMON, spark_cluster
from tests.support.specs import write_spec

# MLflow retries a failing request 7 times with exponential backoff by default (minutes per
# call); a job that should fail while the server is down uses this instead.
FAIL_FAST = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
             "MLFLOW_HTTP_REQUEST_TIMEOUT": "30"}
MONTH = "2017-10"


class RestartableServer:
    """A tracking server of our own: stop() it, then start() it again on the same port and stores."""

    def __init__(self, root: Path):
        self._run(Server(root))

    def _run(self, server: Server) -> None:
        self.server = server
        try:
            server.wait_healthy()
        except BaseException:
            server.stop()
            raise

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def artifacts(self) -> Path:
        return self.server.root / "artifacts"       # MLFLOW_ARTIFACTS_DESTINATION of Server

    def stop(self) -> None:
        self.server.stop()

    def start(self) -> None:
        self._run(Server(self.server.root, port=self.server.port))

    def ensure_up(self) -> None:
        """Started again if a test stopped it and failed before restarting it."""
        if self.server.proc.poll() is not None:
            self.start()


@pytest.fixture(scope="module")
def own_server(tmp_path_factory):
    server = RestartableServer(tmp_path_factory.mktemp("fault-server"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def on_own_server(own_server, tmp_path, monkeypatch):
    own_server.ensure_up()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", own_server.url)
    monkeypatch.setenv("AUTOML_HOME", str(tmp_path / "home"))
    return own_server


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    with spark_cluster(tmp_path_factory.mktemp("fault-cluster")) as running:
        yield running


def _wait_until(condition, proc: subprocess.Popen, log: Path, what: str, timeout_s: float = 600):
    """condition()'s first true value, polled while `proc` (writing `log`) runs."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        if proc.poll() is not None:
            pytest.fail(f"exited {proc.returncode} before {what}:\n{log.read_text()[-3000:]}")
        time.sleep(0.05)
    pytest.fail(f"no {what} within {timeout_s}s:\n{log.read_text()[-3000:]}")


def _runs(client, experiment_id: str, deleted: bool = False) -> list:
    from mlflow.entities import ViewType

    return client.search_runs([experiment_id], max_results=5000,
                              run_view_type=ViewType.DELETED_ONLY if deleted else ViewType.ACTIVE_ONLY)


# ---------------------------------------------------------------- a) tracking server down


def test_server_stopped_mid_run_fails_clearly_and_the_retry_resumes_the_month(
        on_own_server, demo_dir, spark, tmp_path):
    spec_path = write_spec(demo_dir, "binary", filename="fault_server.yaml", name="fault_server",
                           validation={"folds": 2}, algorithms={"xgboost": {"search": "grid", "space": {
                               "max_depth": [2, 3, 4, 5], "n_estimators": [20, 40]}}})
    env = {**os.environ, **FAIL_FAST, "SPARK_MASTER": "local[2]"}    # tracking URI and home: the fixture's
    log = tmp_path / "monthly.log"
    proc = start_cli(["monthly", "--spec", str(spec_path), "--month", MONTH, "--promotion", "auto", "--json"],
                      env, log)
    client = MlflowClient(on_own_server.url)

    def a_trial_logged():          # the tuning is under way: its first trial run is complete
        experiment = client.get_experiment_by_name("fault_server/monthly")
        return experiment and client.search_runs(
            [experiment.experiment_id], "tags.`automl.kind` = 'trial' and attributes.status = 'FINISHED'")

    try:
        _wait_until(lambda: re.search(r"xgboost trial 1/8", log.read_text()), proc, log, "a first trial")
        _wait_until(a_trial_logged, proc, log, "a trial run in MLflow")
        on_own_server.stop()
        stopped = time.monotonic()
        out, _ = proc.communicate(timeout=300)
        failed_after = time.monotonic() - stopped
    finally:
        stop_group(proc)
    stderr = log.read_text()
    last = stderr.strip().splitlines()[-1]
    assert proc.returncode == 1 and out == "", stderr[-3000:]
    assert f"127.0.0.1:{on_own_server.server.port}" in last and "Connection refused" in last, stderr[-3000:]
    assert failed_after < 120, f"took {failed_after:.0f}s to fail:\n{stderr[-3000:]}"

    on_own_server.start()                                        # same stores, same port
    experiment = client.get_experiment_by_name("fault_server/monthly").experiment_id
    interrupted = {r.data.tags["automl.kind"]: r for r in _runs(client, experiment)
                   if r.data.tags["automl.kind"] != "trial"}
    assert interrupted["tuning"].info.status == "RUNNING"        # the server went away under it
    assert client.search_registered_models("name = 'fault_server'") == []

    lines = []
    result = run_monthly(load_spec(spec_path), MONTH, promotion_mode="auto", spark=spark,
                         progress=lines.append)
    # Resumed in place: the same month and tuning runs, finished; one version, one alias move.
    assert result["runs"]["month"] == interrupted["decision"].info.run_id
    assert result["runs"]["tuning"] == interrupted["tuning"].info.run_id
    assert any("resuming the interrupted tuning run" in line for line in lines)
    assert result["decision"]["status"] == "approved"
    versions = client.search_model_versions("name = 'fault_server'")
    assert [v.version for v in versions] == [result["decision"]["version"]]
    assert client.get_registered_model("fault_server").aliases == {"champion": result["decision"]["version"]}
    runs = _runs(client, experiment)
    kinds = sorted(r.data.tags["automl.kind"] for r in runs)
    assert kinds == sorted(["decision", "evaluation", "tuning", "comparison"] + ["trial"] * 8)
    assert all(r.info.status == "FINISHED" for r in runs)
    trials = {r.info.run_name: r for r in runs if r.data.tags["automl.kind"] == "trial"}
    assert len(trials) == 8
    assert {r.data.tags["mlflow.parentRunId"] for r in trials.values()} == {result["runs"]["tuning"]}
    # The trial runs of the interrupted attempt were replaced (deleted, restorable): same results.
    earlier = [r for r in _runs(client, experiment, deleted=True) if r.info.status == "FINISHED"]
    assert earlier and all(r.data.tags["automl.kind"] == "trial" for r in earlier)
    for r in earlier:
        assert r.data.metrics["areaUnderROC"] == trials[r.info.run_name].data.metrics["areaUnderROC"]


# ---------------------------------------------------------------- b) failing trials


def test_a_fifth_of_the_trials_failing_is_recorded_and_the_tuning_completes(demo_dir, spark, tracking, tmp_path):
    # XGBoost rejects a negative learning rate: 2 of the 10 grid points raise in their Spark tasks.
    spec = load_spec(write_spec(demo_dir, "binary", filename="fault_trials.yaml", name="fault_trials",
                                validation={"folds": 2}, algorithms={"xgboost": {"search": "grid", "space": {
                                    "max_depth": [2, 3], "learning_rate": [0.05, 0.1, 0.2, 0.3, -1.0],
                                    "n_estimators": [10]}}}))
    lines = []
    summary = tune(spec, MONTH, spark=spark, progress=lines.append)
    assert summary["trials"] == {"total": 10, "failed": 2}
    assert sum("FAILED" in line for line in lines) == 2
    client = MlflowClient(tracking)
    parent = client.get_run(summary["run_id"])
    assert parent.info.status == "FINISHED" and parent.data.metrics["trials_failed"] == 2
    children = client.search_runs([parent.info.experiment_id],
                                  f"tags.mlflow.parentRunId = '{summary['run_id']}'", max_results=100)
    failed = [c for c in children if c.info.status == "FAILED"]
    finished = [c for c in children if c.info.status == "FINISHED"]
    assert sorted(c.data.params["learning_rate"] for c in failed) == ["-1.0", "-1.0"]
    for c in failed:
        assert c.data.tags["automl.error"].startswith("XGBoostError") and "areaUnderROC" not in c.data.metrics
    # Nothing lost: every other point has its metric, and the best is the best of them.
    assert len(finished) == 8 and all("areaUnderROC_fold1" in c.data.metrics for c in finished)
    assert summary["best"]["value"] == max(c.data.metrics["areaUnderROC"] for c in finished)
    table = Path(client.download_artifacts(summary["run_id"], "trials.csv", str(tmp_path))).read_text()
    assert table.count(",FAILED,") == 2 and table.count("XGBoostError") == 2


# ---------------------------------------------------------------- c) executor killed


def test_an_executor_killed_mid_tuning_changes_nothing(cluster, demo_dir, spark, tracking, tmp_path):
    spec_path = write_spec(demo_dir, "binary", filename="fault_executor.yaml", name="fault_executor",
                           validation={"folds": 2}, algorithms={"xgboost": {"search": "grid", "space": {
                               "max_depth": [2, 3, 4], "learning_rate": [0.1, 0.3], "n_estimators": [50]}}})
    env = {**os.environ, **cluster.driver_env(), "MLFLOW_TRACKING_URI": tracking,
           "AUTOML_HOME": str(tmp_path / "home"), "AUTOML_SPARK_LOG_LEVEL": "WARN"}
    log = tmp_path / "tune.log"
    proc = start_cli(["tune", "--spec", str(spec_path), "--month", "2017-11", "--json"], env, log)
    try:
        # The first wave of trials is running in the executor's Python workers.
        _wait_until(lambda: cluster.pids(PYTHON_DAEMON), proc, log, "a Python worker on the executor")
        victim = cluster.executor_pids()[0]
        cluster.kill_executor(victim)
        out, _ = proc.communicate(timeout=600)
    finally:
        stop_group(proc)
    stderr = log.read_text()
    assert proc.returncode == 0, stderr[-3000:]
    assert "ExecutorLostFailure" in stderr          # tasks were running on it, and ran again
    assert "exitStatus 137" in (cluster.root / "worker.log").read_text()
    disturbed = json.loads(out)

    undisturbed = tune(load_spec(spec_path), "2017-11", spark=spark, progress=lambda line: None)
    assert tune_outcome(disturbed) == tune_outcome(undisturbed)
    assert disturbed["trials"] == {"total": 6, "failed": 0}


# ---------------------------------------------------------------- d) racing promotions


def _tiny_models(n: int) -> list[tuple[str, str]]:
    """n tiny LightGBM models, each logged in its own run: [(run_id, model_uri)]."""
    import lightgbm
    import mlflow

    c = tracking_client()
    found = c.get_experiment_by_name("fault-models")
    experiment = found.experiment_id if found else c.create_experiment("fault-models")
    x = np.random.default_rng(0).random((50, 3))
    out = []
    for seed in range(n):
        model = lightgbm.LGBMClassifier(n_estimators=3, min_child_samples=5, verbose=-1,
                                        random_state=seed).fit(x, x[:, 0] > 0.5)
        with mlflow.start_run(experiment_id=experiment) as run:
            out.append((run.info.run_id, mlflow.lightgbm.log_model(model, name="m",
                                                                   pip_requirements=["lightgbm"]).model_uri))
    return out


def _register(name: str, model: tuple[str, str]) -> str:
    run_id, uri = model
    return p.register_candidate(uri, name, month=MONTH, run_id=run_id, tags={"automl.algorithm": "lightgbm"})


def _first_champion(name: str, model, evidence_run_id: str) -> str:
    version = _register(name, model)
    p.open_decision(name, version, month=MONTH, evidence={}, evidence_run_id=evidence_run_id, reasons=["first"])
    p.decide(name, version, approve=True, decided_by="policy:auto")
    return version


def _claims(name: str) -> list[str]:
    return [k for k in tracking_client().get_registered_model(name).tags if k.startswith(p.CLAIM)]


def test_two_promotions_racing_for_one_model_end_with_one_champion(tracking):
    models = _tiny_models(3)
    evidence = tracking_client().create_run(tracking_client().get_experiment_by_name("fault-models").experiment_id)
    for attempt in range(3):
        name = f"fault_race_{attempt}_{uuid.uuid4().hex[:6]}"
        v1 = _first_champion(name, models[0], evidence.info.run_id)
        contenders = [_register(name, models[1]), _register(name, models[2])]
        # A claim a crashed process left an hour ago: ignored, and cleaned up with the others.
        stale = (datetime.now(timezone.utc) - timedelta(hours=1)).isoformat()
        tracking_client().set_registered_model_tag(name, p.CLAIM + "crashed", stale)
        start, outcome = threading.Barrier(2), {}

        def promote(version):
            start.wait()
            try:   # both measured against v1, as two monthly runs of the same month would be
                p.open_decision(name, version, month=MONTH, evidence={"delta": 0.01},
                                evidence_run_id=evidence.info.run_id, reasons=["better"], measured_against=v1)
                p.decide(name, version, approve=True, decided_by=f"policy:race-{version}")
                outcome[version] = "approved"
            except AutomlError as exc:               # the loser is told why
                outcome[version] = str(exc)
            except BaseException as exc:
                outcome[version] = exc

        threads = [threading.Thread(target=promote, args=(v,)) for v in contenders]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=300)
        errors = [o for o in outcome.values() if isinstance(o, BaseException)]
        if errors:
            raise errors[0]
        champion = p.current_champion(name)
        assert champion in contenders, (attempt, outcome)
        loser = next(v for v in contenders if v != champion)
        assert outcome[champion] == "approved" and "superseded" in outcome[loser], (attempt, outcome)
        statuses = {v: p.get_decision(name, v).status for v in (v1, *contenders)}
        assert statuses == {v1: "approved", champion: "approved", loser: "superseded"}, (attempt, outcome)
        assert p.get_decision(name, champion).champion_before == v1
        assert tracking_client().get_registered_model(name).aliases == {"champion": champion}
        assert _claims(name) == []


# ---------------------------------------------------------------- e) artifact store cannot write


def test_an_unwritable_artifact_store_fails_the_approval_before_any_alias_moves(on_own_server, monkeypatch):
    for key, value in FAIL_FAST.items():
        monkeypatch.setenv(key, value)
    name = f"fault_artifacts_{uuid.uuid4().hex[:6]}"
    models = _tiny_models(2)
    c = tracking_client()
    evidence = c.create_run(c.get_experiment_by_name("fault-models").experiment_id).info
    v1 = _first_champion(name, models[0], evidence.run_id)
    v2 = _register(name, models[1])
    p.open_decision(name, v2, month=MONTH, evidence={"delta": 0.01}, evidence_run_id=evidence.run_id,
                    reasons=["better"])
    folder = on_own_server.artifacts / evidence.experiment_id / evidence.run_id / "artifacts" / "decisions"
    assert (folder / f"{MONTH}-v{v2}.json").exists()
    # The store can no longer write the decision: a regular file where its folder was (ENOTDIR,
    # which, unlike a read-only mode, stops root too).
    shutil.rmtree(folder)
    folder.write_text("not a folder")
    with pytest.raises(MlflowException, match=rf"decisions/{MONTH}-v{v2}\.json"):
        p.decide(name, v2, approve=True, decided_by="policy:auto")
    assert c.get_registered_model(name).aliases == {"champion": v1, "challenger": v2}
    assert p.get_decision(name, v2).status == "pending"
    assert "automl.decision.requested" not in c.get_model_version(name, v2).tags
    assert _claims(name) == []

    folder.unlink()                                    # space again: the same call completes
    decision = p.decide(name, v2, approve=True, decided_by="policy:auto")
    assert decision.status == "approved" and decision.champion_before == v1
    assert c.get_registered_model(name).aliases == {"champion": v2}

"""One run of a month at a time: the claim mechanism, and two real processes racing for one month."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid

import pytest
from mlflow import MlflowClient

from automl_tasks.registry import claims
from tests.support.cli import start_cli
from tests.support.processes import stop_group
from tests.support.specs import write_spec

MONTH = "2017-10"


def _board(client, experiment: str) -> claims.Board:
    return claims.experiment_board(client, experiment, "automl.claim.test.")


def _claim_tags(client, experiment: str, prefix: str = "automl.claim.") -> dict[str, str]:
    return {k: v for k, v in client.get_experiment(experiment).tags.items() if k.startswith(prefix)}


def test_a_held_claim_refuses_a_second_holder_naming_the_first(tracking):
    client = MlflowClient(tracking)
    experiment = client.create_experiment(f"claims-{uuid.uuid4().hex[:8]}")
    board = _board(client, experiment)
    with claims.hold(board, "the monthly run of m 2018-10 (master)", wait_s=0, ttl_s=60) as me:
        assert me.pid == os.getpid()
        with pytest.raises(claims.ClaimHeld) as refused:
            with claims.hold(board, "the monthly run of m 2018-10 (master)", wait_s=0, ttl_s=60):
                pytest.fail("a second holder went ahead")
        message = str(refused.value)
        assert message.startswith("the monthly run of m 2018-10 (master) is already running: ")
        assert f"on {me.host} (pid {os.getpid()}, started {me.started})" in message
        assert len(_claim_tags(client, experiment)) == 1                      # the refused one withdrew
    assert _claim_tags(client, experiment) == {}
    with claims.hold(board, "again", wait_s=0, ttl_s=60):                   # free once released
        assert len(claims.holders(board, ttl_s=60)) == 1


def test_a_dead_process_or_an_expired_claim_does_not_block(tracking):
    client = MlflowClient(tracking)
    experiment = client.create_experiment(f"claims-{uuid.uuid4().hex[:8]}")
    board = _board(client, experiment)
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True)
    now = claims._now()
    dead = claims.Holder("a killed run", "someone", claims.socket.gethostname(), int(gone.stdout), now, now)
    board.write(board.prefix + "killed", claims._encode(dead))
    old = "2020-01-01T00:00:00.000+00:00"
    expired = claims.Holder("a silent run", "someone", "elsewhere", 4242, old, old)
    board.write(board.prefix + "silent", claims._encode(expired))
    with claims.hold(board, "the re-run", wait_s=0, ttl_s=60):
        assert set(_claim_tags(client, experiment)) - {board.prefix + "killed", board.prefix + "silent"}
        assert board.prefix + "killed" not in _claim_tags(client, experiment)  # removed by who found it
        assert board.prefix + "silent" not in _claim_tags(client, experiment)


def test_a_long_holder_refreshes_its_heartbeat(tracking):
    client = MlflowClient(tracking)
    experiment = client.create_experiment(f"claims-{uuid.uuid4().hex[:8]}")
    board = _board(client, experiment)
    with claims.hold(board, "a long run", wait_s=0, ttl_s=60, heartbeat_s=0.05) as me:
        seen = set()
        for _ in range(400):                      # until two refreshes are seen (each a new value)
            (value,) = _claim_tags(client, experiment).values()
            seen.add(claims.Holder.parse(value).heartbeat)
            if len(seen) >= 3:
                break
            time.sleep(0.05)
        assert len(seen) >= 3 and min(seen) == me.started
        assert {claims.Holder.parse(v).started for v in _claim_tags(client, experiment).values()} == {me.started}


@pytest.mark.slow
@pytest.mark.parametrize("store", ["sqlite", "server"])
def test_two_runs_of_one_month_register_one_version(store, tracking, demo_dir, tmp_path):
    name = f"claim_{store}_{uuid.uuid4().hex[:6]}"
    spec_path = write_spec(demo_dir, "binary", filename=f"{name}.yaml", name=name, validation={"folds": 2},
                           algorithms={"xgboost": {"search": "grid", "space": {
                               "max_depth": [2, 3, 4], "n_estimators": [20, 40]}}})
    uri = f"sqlite:///{tmp_path / 'store.db'}" if store == "sqlite" else tracking
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "AUTOML_HOME": str(tmp_path / "home"),
           "SPARK_MASTER": "local[1]"}
    args = ["monthly", "--spec", str(spec_path), "--month", MONTH, "--promotion", "auto", "--json"]
    client = MlflowClient(uri, registry_uri=uri)   # not the registry the `tracking` fixture configured
    procs = []
    try:
        first = start_cli(args, env, tmp_path / "first.log")
        procs.append(first)
        if store == "server":
            # Deterministic overlap: freeze the first run while it holds the claim (the server, not
            # the frozen process, holds the store's locks), start the second, then let the first go on.
            claim = _wait_for_claim(client, name, first, tmp_path / "first.log")
            os.killpg(first.pid, signal.SIGSTOP)
            second = start_cli(args, env, tmp_path / "second.log")
            procs.append(second)
            second_out, _ = second.communicate(timeout=600)
            os.killpg(first.pid, signal.SIGCONT)
            first_out, _ = first.communicate(timeout=900)
            err = (tmp_path / "second.log").read_text()
            assert second.returncode == 2, err[-3000:]
            holder = claims.Holder.parse(claim)
            assert f"error: the monthly run of {name} {MONTH} (none) is already running: " in err
            assert f"(pid {first.pid}, started {holder.started})" in err
            outcomes = [json.loads(first_out)]
            assert first.returncode == 0, (tmp_path / "first.log").read_text()[-3000:]
        else:
            # Both at once: whichever claims second is refused naming the other, or, if the other
            # has already finished by then, reuses its runs. Never two fresh runs of one month.
            second = start_cli(args, env, tmp_path / "second.log")
            procs.append(second)
            outs = [proc.communicate(timeout=900)[0] for proc in procs]
            outcomes = []
            for proc, other, out, log in zip(procs, procs[::-1], outs, ("first.log", "second.log")):
                text = (tmp_path / log).read_text()
                if proc.returncode == 2:
                    assert f"the monthly run of {name} {MONTH} (none) is already running" in text, text[-3000:]
                    assert f"(pid {other.pid}, started " in text, text[-3000:]
                else:
                    assert proc.returncode == 0, text[-3000:]
                    outcomes.append(json.loads(out))
            assert [o["reused"] for o in outcomes].count(False) == 1, outcomes
    finally:
        for proc in procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGCONT)
            stop_group(proc)
    versions = client.search_model_versions(f"name = '{name}'")
    assert len(versions) == 1, [(v.version, v.tags.get("automl.source_run_id")) for v in versions]
    assert versions[0].tags["automl.decision.status"] == "approved"       # the one alias move
    assert client.get_registered_model(name).aliases == {"champion": versions[0].version}
    experiment = client.get_experiment_by_name(f"{name}/monthly").experiment_id
    month_runs = client.search_runs([experiment], "tags.`automl.kind` = 'decision'")
    tunings = client.search_runs([experiment], "tags.`automl.kind` = 'tuning'")
    trials = client.search_runs([experiment], "tags.`automl.kind` = 'trial'", max_results=1000)
    assert len(month_runs) == 1 and len(tunings) == 1
    numbers = [(t.data.params["algorithm"], t.data.params["trial"]) for t in trials]
    assert len(numbers) >= 6 and len(set(numbers)) == len(numbers), numbers   # each trial logged once
    assert _claim_tags(client, experiment) == {}        # released
    # Once the first has finished, a re-run reuses it.
    again = start_cli(args, env, tmp_path / "again.log")
    try:
        out, _ = again.communicate(timeout=600)
    finally:
        stop_group(again)
    assert again.returncode == 0, (tmp_path / "again.log").read_text()[-3000:]
    assert json.loads(out)["reused"] is True
    assert len(client.search_model_versions(f"name = '{name}'")) == 1


def _wait_for_claim(client, name: str, proc, log, timeout_s: float = 600) -> str:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        experiment = client.get_experiment_by_name(f"{name}/monthly")
        if experiment is not None:
            tags = _claim_tags(client, experiment.experiment_id, "automl.claim.monthly.")
            if tags:
                return next(iter(tags.values()))
        if proc.poll() is not None:
            pytest.fail(f"exited {proc.returncode} before claiming the month:\n{log.read_text()[-3000:]}")
        time.sleep(0.05)
    pytest.fail(f"no claim within {timeout_s}s:\n{log.read_text()[-3000:]}")

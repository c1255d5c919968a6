"""Rollback and the alias ledger against a real MLflow server: the CLI, the library, the DAG.

Each model starts with three promotions (v1 by the policy, v2 by alice, v3 by bob: champion v3),
made through the registry's own calls, then is rolled back.
"""

from __future__ import annotations

import json
import uuid

import pytest

from automl_tasks.cli import main
from automl_tasks.errors import AutomlError
from automl_tasks.registry import ledger, promotion, rollback
from tests.support.dags import dag_env, run_dag
from tests.support.models import log_tiny_models

MONTHS = ("2017-09", "2017-10", "2017-11", "2017-12")


@pytest.fixture(scope="module")
def logged(mlflow_url):
    """Four tiny LightGBM models, each logged in its own run: [(run_id, model_uri)]."""
    return log_tiny_models(mlflow_url, "rollback-tests", len(MONTHS))


@pytest.fixture
def model(tracking, logged, request):
    """A fresh registered model whose champion went v1 (policy) -> v2 (alice) -> v3 (bob)."""
    from automl_tasks.registry.tracking import client

    c = client()
    name = f"rb_{request.node.name[:24]}_{uuid.uuid4().hex[:6]}"
    evidence = c.create_run(c.get_experiment_by_name("rollback-tests").experiment_id).info.run_id
    for i, by in enumerate(("policy:auto", "user:alice", "user:bob")):
        version = _register(name, logged, i)
        promotion.open_decision(name, version, month=MONTHS[i], evidence={"auc": 0.7 + i / 100},
                                evidence_run_id=evidence, reasons=[f"gates pass for v{version}"])
        promotion.decide(name, version, approve=True, decided_by=by, reasons=[f"{by} says ship v{version}"])
    assert promotion.current_champion(name) == "3"
    return name


def _register(name: str, logged, i: int) -> str:
    run_id, uri = logged[i]
    return promotion.register_candidate(uri, name, month=MONTHS[i], run_id=run_id, tags={})


def _cli(capsys, *argv) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def _moves(name: str) -> list[tuple]:
    return [(r.kind, r.status, r.from_version, r.to_version, r.moved, r.decided_by)
            for r in ledger.alias_ledger(name)]


PROMOTIONS = [("promotion", "approved", None, "1", True, "policy:auto"),
              ("promotion", "approved", "1", "2", True, "user:alice"),
              ("promotion", "approved", "2", "3", True, "user:bob")]


def test_cli_rollback_and_a_refused_one_each_leave_one_ledger_entry(model, capsys):
    assert _moves(model) == PROMOTIONS
    user = f"user:{__import__('getpass').getuser()}"

    code, out, err = _cli(capsys, "rollback", "--model", model, "--to", "2", "--reason", "v3 misprices", "--json")
    assert code == 0, err
    moved = json.loads(out)
    assert (moved["status"], moved["champion_before"], moved["champion_after"], moved["champion"]) == \
        ("rolled_back", "3", "2", "2")
    assert moved["decided_by"] == user and moved["version"] == "2" and moved["month"] == "2017-10"
    assert promotion.current_champion(model) == "2"
    assert _moves(model) == PROMOTIONS + [("rollback", "rolled_back", "3", "2", True, user)]
    # v2's own promotion decision is untouched by the rollback recorded on it.
    assert promotion.get_decision(model, "2").decided_by == "user:alice"

    # Refused: the person saw v3 as champion, but it is v2 now (it moved meanwhile).
    code, out, err = _cli(capsys, "rollback", "--model", model, "--to", "1", "--from", "3", "--reason", "stale view")
    assert code == 2 and out == ""
    assert f"rollback of {model} to v1 refused: the champion is v2, not v3" in err
    assert promotion.current_champion(model) == "2"
    rows = ledger.alias_ledger(model)
    assert _moves(model)[4:] == [("rollback", "rollback_refused", "2", "1", False, user)]
    assert rows[4].why == user.removeprefix("user:") + " (CLI): stale view; refused: the champion was v2, not v3"

    code, out, err = _cli(capsys, "history", "--model", model, "--aliases")
    assert code == 0, err
    lines = out.strip().splitlines()
    assert len(lines) == 1 + 1 + 5 + 1, out            # title, header, five rows, the champion now
    assert lines[-1] == "champion now: v2"
    for line, (outcome, frm, to, by) in zip(lines[2:7], [("promoted", "-", "v1", "policy:auto"),
                                                          ("promoted", "v1", "v2", "user:alice"),
                                                          ("promoted", "v2", "v3", "user:bob"),
                                                          ("rolled back", "v3", "v2", user),
                                                          ("refused (no move)", "v2", "v1", user)]):
        assert f" {frm:>5} {to:>5}  {outcome}" in line and by in line, line
    assert "v3 misprices" in lines[5] and "ship v3" in lines[4]

    code, out, err = _cli(capsys, "history", "--model", model, "--aliases", "--json")
    assert code == 0, err
    result = json.loads(out)
    assert (result["model"], result["champion"]) == (model, "2")
    assert [r["status"] for r in result["aliases"]] == ["approved"] * 3 + ["rolled_back", "rollback_refused"]
    assert all(r["decided_at"] for r in result["aliases"])
    assert [r["decided_at"] for r in result["aliases"]] == sorted(r["decided_at"] for r in result["aliases"])


def test_bad_rollbacks_are_refused_before_writing_anything(model, logged, capsys):
    pending = _register(model, logged, 3)
    promotion.open_decision(model, pending, month=MONTHS[3], evidence={}, evidence_run_id=None, reasons=["new"])
    cases = [(["--model", "no_such_model", "--to", "1"], "no registered model 'no_such_model'"),
             (["--model", model, "--to", "9"], "has no version 9"),
             (["--model", model, "--to", pending], f"v{pending} was never champion (the alias ledger shows v1, v2, v3)"),
             (["--model", model, "--to", "3"], "v3 is the champion already"),
             (["--model", model, "--to", "2", "--reason", "  "], "--reason must say why")]
    for args, message in cases:
        argv = ["rollback", *args] + ([] if "--reason" in args else ["--reason", "because"])
        code, out, err = _cli(capsys, *argv)
        assert (code, out) == (2, ""), (args, err)
        assert message in err, (args, err)
    from automl_tasks.registry.tracking import client

    c = client()
    assert c.search_registered_models("name = 'no_such_model'") == []
    tags = [k for mv in c.search_model_versions(f"name = '{model}'") for k in mv.tags]
    assert not [k for k in tags if k.startswith(ledger.ROLLBACK)]
    assert _moves(model) == PROMOTIONS and promotion.current_champion(model) == "3"
    with pytest.raises(AutomlError, match="no champion to roll back from"):
        rollback.check(model, "1", None)


def test_a_rollback_supersedes_a_challenger_measured_against_the_old_champion(model, logged):
    challenger = _register(model, logged, 3)
    promotion.open_decision(model, challenger, month=MONTHS[3], evidence={}, evidence_run_id=None,
                            reasons=["beats v3"])
    rollback.rollback(model, "1", expected_current="3", decided_by="user:carol", reason="v2 and v3 drift")
    with pytest.raises(AutomlError, match="champion moved from v3 to v1"):
        promotion.decide(model, challenger, approve=True, decided_by="user:alice")
    assert promotion.get_decision(model, challenger).status == "superseded"
    assert promotion.current_champion(model) == "1"
    assert _moves(model)[3:] == [("rollback", "rolled_back", "3", "1", True, "user:carol")]


def test_an_interrupted_rollback_is_finished_by_its_retry_and_moves_once(model, monkeypatch):
    from mlflow import MlflowClient

    real, moves = MlflowClient.set_registered_model_alias, []

    def alias_write_fails_once(self, name, alias, version):
        moves.append((alias, version))
        if len(moves) == 1:
            raise RuntimeError("the registry went away")
        return real(self, name, alias, version)

    monkeypatch.setattr(MlflowClient, "set_registered_model_alias", alias_write_fails_once)
    ask = dict(expected_current="3", decided_by="user:dan", reason="bad v3", request_id="manual__run-1")
    with pytest.raises(RuntimeError, match="went away"):
        rollback.rollback(model, "2", **ask)
    assert promotion.current_champion(model) == "3"
    assert _moves(model)[3:] == [("rollback", "rollback_requested", "3", "2", False, "user:dan")]

    done = rollback.rollback(model, "2", **ask)
    assert (done.status, done.champion_before, done.champion_after) == ("rolled_back", "3", "2")
    assert rollback.rollback(model, "2", **ask) == done          # a third call: the recorded outcome
    assert moves == [("champion", "2"), ("champion", "2")]        # the failed write and its retry
    assert _moves(model)[3:] == [("rollback", "rolled_back", "3", "2", True, "user:dan")]
    assert promotion.current_champion(model) == "2"


def test_rollback_dag_confirmed_refused_and_rejected(airflow_env, model, tracking):
    env = dag_env(airflow_env, tracking)
    ask = {"model": model, "to_version": "2", "reason": "v3 misprices"}
    [ok] = run_dag("rollback_champion", ["2024-06-01T00:00:00+00:00"], ask, env, timeout_s=600, answer="Approve")
    assert ok["state"] == "success", ok
    assert ok["tasks"] == {"check[-1]": "success", "confirm[-1]": "success", "roll_back[-1]": "success"}
    assert promotion.current_champion(model) == "2"
    assert ok["asset_events"] == [{"uri": f"automl://{model}/champion", "extra": {
        "model": model, "version": "2", "month": "2017-10", "previous": "3", "kind": "rollback"}}]
    last = ledger.alias_ledger(model)[-1]
    assert (last.kind, last.status, last.from_version, last.to_version, last.decided_by) == \
        ("rollback", "rolled_back", "3", "2", "user:tester")
    assert "v3 misprices" in last.why

    # Refused: the form names v3 as the champion to replace, but it is v2 now.
    stale = {"model": model, "to_version": "1", "from_version": "3", "reason": "as planned yesterday"}
    [refused] = run_dag("rollback_champion", ["2024-06-02T00:00:00+00:00"], stale, env, timeout_s=600,
                        answer="Approve")
    assert refused["state"] == "failed", refused
    assert refused["tasks"]["roll_back[-1]"] == "failed" and refused["tries"]["roll_back[-1]"] == 1
    assert refused["asset_events"] == []
    assert promotion.current_champion(model) == "2"
    rows = ledger.alias_ledger(model)
    assert [(r.status, r.from_version, r.to_version, r.moved) for r in rows[4:]] == \
        [("rollback_refused", "2", "1", False)]

    # Rejected by the person: nothing moves, nothing is recorded.
    [rejected] = run_dag("rollback_champion", ["2024-06-03T00:00:00+00:00"], {**ask, "to_version": "1"}, env,
                         timeout_s=600, answer="Reject")
    assert rejected["tasks"]["roll_back[-1]"] == "skipped", rejected
    assert rejected["asset_events"] == []
    assert promotion.current_champion(model) == "2" and len(ledger.alias_ledger(model)) == 5

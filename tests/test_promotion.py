"""Promotion decisions against a real MLflow server: registration, aliases, status, retries."""

from __future__ import annotations

import json
import types
import uuid

import numpy as np
import pytest

from automl_tasks.errors import AutomlError
from automl_tasks.registry import promotion as p
from tests.support.models import log_tiny_models


@pytest.fixture(scope="module")
def logged(mlflow_url):
    """Three tiny LightGBM models, each logged in its own run: [(run_id, model_uri)]."""
    return log_tiny_models(mlflow_url, "promotion-tests", 3)


@pytest.fixture
def reg(tracking, logged, request):
    """A unique registered-model name, a client, and helpers to register / open versions."""
    from automl_tasks.registry.tracking import client

    class Reg:
        name = f"promo_{request.node.name[:30]}_{uuid.uuid4().hex[:6]}"
        c = client()
        evidence_run = c.create_run(c.get_experiment_by_name("promotion-tests").experiment_id)
        evidence_run_id = evidence_run.info.run_id

        def register(self, i, month="2017-09"):
            run_id, uri = logged[i]
            return p.register_candidate(uri, self.name, month=month, run_id=run_id,
                                        tags={"automl.algorithm": "lightgbm"})

        def open(self, version, month="2017-09", evidence=None):
            return p.open_decision(self.name, version, month=month,
                                   evidence=evidence or {"auc": {"new": 0.8, "old": 0.7}},
                                   evidence_run_id=self.evidence_run_id, reasons=["auc +0.1"])

        def aliases(self):
            return dict(self.c.get_registered_model(self.name).aliases)

        def tags(self, version):
            return self.c.get_model_version(self.name, version).tags

        def artifact(self, decision):
            import mlflow

            return json.loads(mlflow.artifacts.load_text(
                f"runs:/{self.evidence_run_id}/{decision.artifact_path}"))

    return Reg()


@pytest.fixture
def spy(monkeypatch):
    """Records alias moves on the real client and can inject one failure into a registry write."""
    from mlflow import MlflowClient

    # fail: predicate(method, args) -> bool, cleared after it fires once.
    spy = types.SimpleNamespace(moves=[], fail=None)

    def wrap(method):
        original = getattr(MlflowClient, method)

        def call(self, *args, **kwargs):
            if spy.fail is not None and spy.fail(method, args):
                spy.fail = None
                raise RuntimeError(f"injected failure in {method}{args}")
            if method == "set_registered_model_alias":
                spy.moves.append(args[1:])
            return original(self, *args, **kwargs)

        monkeypatch.setattr(MlflowClient, method, call)

    wrap("set_registered_model_alias")
    wrap("set_model_version_tag")
    return spy


def test_register_is_idempotent_and_lookups_handle_missing(reg, logged):
    assert p.current_champion(reg.name) is None
    assert p.champion_model_uri(reg.name) is None
    assert p.get_decision(reg.name, "1") is None
    assert p.decision_history(reg.name) == []

    v1 = reg.register(0)
    assert reg.register(0) == v1 == "1"
    versions = reg.c.search_model_versions(f"name = '{reg.name}'")
    assert [mv.version for mv in versions] == ["1"]
    tags = reg.tags(v1)
    assert (tags["automl.month"], tags["automl.source_run_id"], tags["automl.model_uri"]) \
        == ("2017-09", *logged[0])
    assert tags["automl.algorithm"] == "lightgbm"
    assert reg.register(1) == "2"
    assert p.current_champion(reg.name) is None  # a model without aliases
    assert p.get_decision(reg.name, "1") is None

    with pytest.raises(AutomlError, match="month"):
        reg.register(0, month="2017-10")  # same run and model, another month: a caller bug
    with pytest.raises(AutomlError, match="automl.decision.status"):
        p.register_candidate("models:/x", reg.name, month="2017-09", run_id="r",
                             tags={"automl.decision.status": "approved"})
    with pytest.raises(AutomlError, match="YYYY-MM"):
        p.register_candidate("models:/x", reg.name, month="2017-9", run_id="r", tags={})


def test_open_approve_reject_and_retries(reg, spy):
    v1, v2 = reg.register(0), reg.register(1)
    opened = reg.open(v1)
    assert opened.status == "pending" and opened.decided_by is None
    assert reg.aliases() == {"challenger": v1}
    tags = reg.tags(v1)
    assert tags["automl.decision.status"] == "pending"
    assert tags["automl.decision.month"] == "2017-09"
    assert p.Decision.from_json(json.loads(tags["automl.decision.record"])) == opened
    assert reg.artifact(opened) == opened.to_json()

    # Re-opening (an Airflow retry) returns the same decision without any write.
    assert reg.open(v1, evidence={"other": 1}) == opened
    assert len(spy.moves) == 1
    assert [a.path for a in reg.c.list_artifacts(reg.evidence_run_id, "decisions")] \
        == [opened.artifact_path]
    with pytest.raises(AutomlError, match="already has a decision for 2017-09"):
        reg.open(v1, month="2017-10")

    approved = p.decide(reg.name, v1, approve=True, decided_by="user:alice", reasons=["looks good"])
    assert (approved.status, approved.champion_before, approved.champion_after) \
        == ("approved", None, v1)
    assert approved.reasons == ["auc +0.1", "looks good"]
    assert reg.aliases() == {"champion": v1}
    assert p.current_champion(reg.name) == v1
    assert p.champion_model_uri(reg.name) == f"models:/{reg.name}@champion"
    assert p.get_decision(reg.name, v1) == approved
    assert reg.artifact(approved)["status"] == "approved"
    assert reg.tags(v1)["automl.decision.decided_by"] == "user:alice"

    moves = list(spy.moves)
    assert p.decide(reg.name, v1, approve=True, decided_by="user:bob") == approved  # no-op
    assert spy.moves == moves
    with pytest.raises(AutomlError, match=r"cannot reject .* v1: .* already approved"):
        p.decide(reg.name, v1, approve=False, decided_by="user:bob")

    reg.open(v2, month="2017-10")
    rejected = p.decide(reg.name, v2, approve=False, decided_by="policy:auto")
    assert (rejected.status, rejected.champion_before, rejected.champion_after) \
        == ("rejected", v1, v1)
    assert reg.aliases() == {"champion": v1}
    assert p.decide(reg.name, v2, approve=False, decided_by="policy:auto") == rejected
    with pytest.raises(AutomlError, match=r"cannot approve .* v2: .* already rejected"):
        p.decide(reg.name, v2, approve=True, decided_by="user:alice")
    assert [(m[0], m[1]) for m in spy.moves] == [("challenger", v1), ("champion", v1),
                                                  ("challenger", v2)]


def test_second_open_supersedes_pending_and_history_is_ordered(reg):
    v1, v2, v3 = reg.register(0), reg.register(1), reg.register(2)
    first = reg.open(v1, month="2017-08")
    reg.open(v2, month="2017-09")
    old = p.get_decision(reg.name, v1)
    assert (old.status, old.decided_by) == ("superseded", p.SUPERSEDED_BY)
    assert old.reasons[-1] == "superseded by v2 for 2017-09"
    assert reg.artifact(first)["status"] == "superseded"
    # ... and the new decision says which unanswered one it replaced.
    assert p.get_decision(reg.name, v2).reasons[-1] == "supersedes the unanswered decision on v1 for 2017-08"
    assert reg.aliases() == {"challenger": v2}
    for approve in (True, False):
        with pytest.raises(AutomlError, match=r"v1: .* already superseded"):
            p.decide(reg.name, v1, approve=approve, decided_by="user:alice")

    p.decide(reg.name, v2, approve=True, decided_by="policy:auto")
    reg.open(v3, month="2017-10")  # an approved decision is not superseded
    assert not any("supersedes" in r for r in p.get_decision(reg.name, v3).reasons)
    history = p.decision_history(reg.name)
    assert [(d.version, d.status) for d in history] == [
        (v1, "superseded"), (v2, "approved"), (v3, "pending")]
    assert reg.aliases() == {"champion": v2, "challenger": v3}


def test_interrupted_approval_never_claims_approved_and_resumes(reg, spy, logged):
    v1, v2, v3 = reg.register(0), reg.register(1), reg.register(2)
    reg.open(v1)
    p.decide(reg.name, v1, approve=True, decided_by="policy:auto")

    # The champion move fails: nothing says approved, the champion is unchanged.
    reg.open(v2, month="2017-10")
    spy.fail = lambda method, args: method == "set_registered_model_alias" and args[1] == "champion"
    with pytest.raises(RuntimeError, match="injected"):
        p.decide(reg.name, v2, approve=True, decided_by="user:alice")
    assert reg.aliases() == {"champion": v1, "challenger": v2}
    assert p.get_decision(reg.name, v2).status == "pending"
    assert reg.tags(v2)["automl.decision.status"] == "pending"
    retried = p.decide(reg.name, v2, approve=True, decided_by="user:alice")
    assert (retried.status, retried.champion_before) == ("approved", v1)

    # The alias moved, then the commit failed: the retry finishes without moving it again,
    # and the record keeps the champion found before the first attempt.
    reg.open(v3, month="2017-11")
    spy.fail = lambda method, args: args[2:3] == ("automl.decision.record",) and args[1] == v3
    with pytest.raises(RuntimeError, match="injected"):
        p.decide(reg.name, v3, approve=True, decided_by="user:alice")
    assert reg.aliases() == {"champion": v3}
    assert p.get_decision(reg.name, v3).status == "pending"
    with pytest.raises(AutomlError, match="already champion"):
        p.decide(reg.name, v3, approve=False, decided_by="user:bob")
    # Same model, another source run: a new version, which cannot be opened meanwhile.
    v4 = p.register_candidate(logged[2][1], reg.name, month="2017-12",
                              run_id=reg.evidence_run_id, tags={})
    with pytest.raises(AutomlError, match="interrupted approval"):
        p.open_decision(reg.name, v4, month="2017-12", evidence={}, evidence_run_id=None,
                        reasons=[])
    moves = list(spy.moves)
    done = p.decide(reg.name, v3, approve=True, decided_by="user:alice")
    assert (done.status, done.champion_before, done.champion_after) == ("approved", v2, v3)
    assert spy.moves == moves
    assert [m for m in spy.moves if m[0] == "champion"] == [("champion", v1), ("champion", v2),
                                                            ("champion", v3)]


def test_large_evidence_and_bad_inputs(reg):
    v1, v2 = reg.register(0), reg.register(1)
    evidence = {"per_segment": {f"segment_{i}": {"auc": 0.5 + i / 1e4} for i in range(400)}}

    with pytest.raises(AutomlError, match="no evidence run"):
        p.open_decision(reg.name, v1, month="2017-09", evidence=evidence, evidence_run_id=None,
                        reasons=[])
    with pytest.raises(AutomlError, match="not JSON-serialisable"):
        p.open_decision(reg.name, v1, month="2017-09", evidence={"x": object()},
                        evidence_run_id=None, reasons=[])
    with pytest.raises(AutomlError, match="evidence run nope not found"):
        p.open_decision(reg.name, v1, month="2017-09", evidence={}, evidence_run_id="nope",
                        reasons=[])
    with pytest.raises(AutomlError, match="no version 9"):
        p.open_decision(reg.name, "9", month="2017-09", evidence={}, evidence_run_id=None,
                        reasons=[])
    with pytest.raises(AutomlError, match="no decision to approve"):
        p.decide(reg.name, v2, approve=True, decided_by="user:alice")
    assert reg.aliases() == {} and p.get_decision(reg.name, v1) is None  # nothing half-written

    opened = reg.open(v1, evidence=evidence)
    tag = reg.tags(v1)["automl.decision.record"]
    assert len(tag) <= p.TAG_LIMIT < len(json.dumps(evidence))
    assert json.loads(tag)["truncated"] is True
    assert p.get_decision(reg.name, v1) == opened  # full evidence, read back from the artifact
    assert p.get_decision(reg.name, v1).evidence == evidence


def test_approval_is_refused_when_the_champion_moved_since_the_comparison(reg):
    """Safe promotion: the evidence compared against v1; if v1 is no longer champion, no approval."""
    v1, v2, v3 = reg.register(0), reg.register(1), reg.register(2)
    reg.open(v1)
    p.decide(reg.name, v1, approve=True, decided_by="user:a")
    opened = reg.open(v2)
    assert opened.champion_before == v1
    reg.c.set_registered_model_alias(reg.name, "champion", v3)   # e.g. a rollback by an admin
    with pytest.raises(AutomlError, match=f"champion moved from v{v1} to v{v3}"):
        p.decide(reg.name, v2, approve=True, decided_by="user:b")
    decision = p.get_decision(reg.name, v2)
    assert decision.status == "superseded" and "re-run the month" in decision.reasons[-1]
    assert reg.aliases() == {"champion": v3}


def test_versions_are_strings_on_an_embedded_sqlite_store(tmp_path, monkeypatch):
    """The SQL store returns alias versions as ints; every caller must still see strings."""
    import lightgbm
    import mlflow

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.setenv("AUTOML_HOME", str(tmp_path))
    from automl_tasks.registry.tracking import client

    c = client()
    experiment = c.create_experiment("sqlite-promotion", artifact_location=(tmp_path / "art").as_uri())
    x = np.random.default_rng(0).random((50, 3))
    model = lightgbm.LGBMClassifier(n_estimators=5, min_child_samples=5, verbose=-1).fit(x, x[:, 0] > 0.5)
    with mlflow.start_run(experiment_id=experiment) as run:
        uri = mlflow.lightgbm.log_model(model, name="m", pip_requirements=["lightgbm"]).model_uri
    version = p.register_candidate(uri, "sqlite_model", month="2018-01", run_id=run.info.run_id, tags={})
    p.open_decision("sqlite_model", version, month="2018-01", evidence={}, evidence_run_id=run.info.run_id,
                    reasons=["first"])
    decision = p.decide("sqlite_model", version, approve=True, decided_by="user:test")
    assert p.current_champion("sqlite_model") == version == decision.champion_after
    assert isinstance(version, str) and isinstance(p.current_champion("sqlite_model"), str)
    assert p.decide("sqlite_model", version, approve=True, decided_by="user:test").status == "approved"


# ---------------------------------------------------------------- the CLI: decide, decisions


def _cli(args: list[str], capsys) -> tuple[int, str, str]:
    from automl_tasks.cli import main

    code = main(args)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_decide_from_the_cli_records_the_user_and_moves_the_alias_once(reg, capsys):
    import getpass

    v1, v2 = reg.register(0), reg.register(1)
    reg.open(v1)
    code, out, err = _cli(["decide", "--model", reg.name, "--version", v1, "--approve",
                           "--reason", "first model, checked by hand", "--json"], capsys)
    assert code == 0, err
    result = json.loads(out)
    assert result["status"] == "approved" and result["champion"] == v1
    assert result["decided_by"] == f"user:{getpass.getuser()}"
    assert f"{getpass.getuser()} (CLI): first model, checked by hand" in result["reasons"]
    reg.open(v2)
    code, out, err = _cli(["decide", "--model", reg.name, "--version", v2, "--reject",
                           "--reason", "segment retail looks off"], capsys)
    assert code == 0, err
    assert out.startswith(f"{reg.name} v{v2} for 2017-09: rejected by user:") and f"champion: v{v1}" in out
    assert reg.aliases() == {"champion": v1}
    # Only a pending decision: answering again the other way is refused, nothing moves.
    code, out, err = _cli(["decide", "--model", reg.name, "--version", v2, "--approve", "--reason", "x"], capsys)
    assert code == 2 and f"error: cannot approve {reg.name} v{v2}: its decision for 2017-09 is already rejected" in err
    assert reg.aliases() == {"champion": v1}


def test_decide_from_the_cli_refuses_when_the_champion_moved_since_the_comparison(reg, capsys):
    v1, v2, v3 = reg.register(0), reg.register(1), reg.register(2)
    reg.open(v1)
    p.decide(reg.name, v1, approve=True, decided_by="policy:auto")
    reg.open(v2)                                             # measured against v1
    p.open_decision(reg.name, v3, month="2017-10", evidence={}, evidence_run_id=reg.evidence_run_id,
                    reasons=["r"], measured_against=v1)
    p.decide(reg.name, v3, approve=True, decided_by="policy:auto")     # v2 was superseded by v3's opening
    code, _, err = _cli(["decide", "--model", reg.name, "--version", v2, "--approve", "--reason", "ok"], capsys)
    assert code == 2 and "is already superseded" in err
    assert reg.aliases() == {"champion": v3}


def test_decisions_and_decide_on_an_unknown_model_are_errors_that_create_nothing(capsys, tmp_path, monkeypatch,
                                                                                  tracking):
    code, _, err = _cli(["decisions", "--model", "no_such_model"], capsys)
    assert code == 2 and err.startswith("error: no registered model 'no_such_model' in http://127.0.0.1:")
    # With the default local store: no store file, no folder made.
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    monkeypatch.setenv("AUTOML_HOME", str(tmp_path / "fresh_home"))
    for args in (["decisions", "--model", "loans"], ["history", "--model", "loans"],
                 ["decide", "--model", "loans", "--version", "1", "--approve", "--reason", "r"]):
        code, _, err = _cli(args, capsys)
        assert code == 2 and "error: no registered model 'loans': there is no MLflow store at " in err, err
    assert not (tmp_path / "fresh_home").exists()
    code, _, err = _cli(["decide", "--model", "loans", "--version", "1", "--approve", "--reason", " "], capsys)
    assert code == 2 and "--reason must say why" in err


def test_an_unloadable_champion_is_one_line_naming_the_version(reg, tmp_path, monkeypatch):
    from automl_tasks.registry.champion import load_champion

    monkeypatch.setenv("AUTOML_HOME", str(tmp_path / "home"))
    v1 = reg.register(0)          # a bare flavor model: its run has no native metadata or preprocessing
    reg.open(v1)
    p.decide(reg.name, v1, approve=True, decided_by="policy:auto")
    with pytest.raises(AutomlError) as err:
        load_champion(reg.name)
    message = str(err.value)
    assert message.startswith(f"champion {reg.name} v{v1} cannot be loaded from run {reg.c.get_model_version(reg.name, v1).tags['automl.source_run_id']} (lightgbm")
    assert "native/lightgbm/metadata.json" in message and "\n" not in message
    reg.c.delete_model_version_tag(reg.name, v1, "automl.model_uri")
    with pytest.raises(AutomlError, match=rf"champion {reg.name} v{v1} cannot be loaded: its model version has "
                                          r"no tag 'automl.model_uri'"):
        load_champion(reg.name)

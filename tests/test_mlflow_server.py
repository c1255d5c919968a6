"""The tracking server as deployed: started by mlflow_server/start.sh, with and without auth.

Both servers are real (`mlflow server` on 127.0.0.1, a free port, a temp MLFLOW_HOME) and
are started side by side once for the module; every process group is stopped at the end,
also when a test fails.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import os
import secrets
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from tests.support.mlflow_server import REPO, START_SH, Server
from tests.support.sockets import beyond_loopback, listeners, tree

pytestmark = pytest.mark.slow

USERS_PY = REPO / "mlflow_server" / "users.py"
ADMIN = ("admin", "adm-" + secrets.token_urlsafe(12))
AIRFLOW_PW = "af-" + secrets.token_urlsafe(12)
VIEWER_PW = "vw-" + secrets.token_urlsafe(12)
AUTH_ENV = {
    "MLFLOW_AUTH": "true",
    "MLFLOW_AUTH_ADMIN_USERNAME": ADMIN[0],
    "MLFLOW_AUTH_ADMIN_PASSWORD": ADMIN[1],
    "MLFLOW_FLASK_SERVER_SECRET_KEY": secrets.token_hex(16),
}


def _users_module():
    spec = importlib.util.spec_from_file_location("mlflow_server_users", USERS_PY)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    with contextlib.ExitStack() as stack:
        plain = Server(tmp_path_factory.mktemp("plain"), env={"MLFLOW_HOST": ""})  # start.sh's default
        stack.callback(plain.stop)
        secured = Server(tmp_path_factory.mktemp("auth"), env=AUTH_ENV)
        stack.callback(secured.stop)
        # Import the client side (mlflow, and mlflow.server for users.py) while both boot.
        import mlflow.server  # noqa: F401
        from mlflow import MlflowClient  # noqa: F401

        plain.wait_healthy()
        secured.wait_healthy()
        yield {"plain": plain, "auth": secured}


@pytest.fixture(scope="module")
def team(servers) -> dict:
    """`users.py setup-team --model loan_default` on the auth server, run once through the CLI's
    main() (in-process: a second cold mlflow import costs ~30 s here); passwords travel in env
    vars only. Returns the module, the argv and what it printed."""
    users = _users_module()
    argv = ["--url", servers["auth"].url, "setup-team", "--model", "loan_default"]
    printed = io.StringIO()
    with pytest.MonkeyPatch.context() as mp, contextlib.redirect_stdout(printed):
        _as(mp, ADMIN)
        mp.setenv("MLFLOW_AIRFLOW_PASSWORD", AIRFLOW_PW)
        mp.setenv("MLFLOW_VIEWER_PASSWORD", VIEWER_PW)
        assert users.main(argv) == 0
    return {"users": users, "argv": argv, "printed": printed.getvalue()}


def _as(monkeypatch, user: tuple[str, str] | None) -> None:
    """Make MLflow's client (which reads the env on every request) act as `user`."""
    if user is None:
        monkeypatch.delenv("MLFLOW_TRACKING_USERNAME", raising=False)
        monkeypatch.delenv("MLFLOW_TRACKING_PASSWORD", raising=False)
    else:
        monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", user[0])
        monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", user[1])


def _log_run(url: str, experiment_id: str, tmp_path: Path) -> str:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=url)
    run = client.create_run(experiment_id, tags={"automl.kind": "trial", "automl.month": "2024-05"})
    run_id = run.info.run_id
    client.log_param(run_id, "max_depth", 6)
    client.log_metric(run_id, "areaUnderROC", 0.873, step=0)
    client.log_metric(run_id, "areaUnderROC", 0.881, step=1)
    report = tmp_path / "grid.json"
    report.write_text('{"max_depth": [3, 6]}')
    client.log_artifact(run_id, str(report), artifact_path="tuning")
    client.set_terminated(run_id)
    return run_id


def _check_run(url: str, run_id: str, tmp_path: Path) -> None:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=url)
    run = client.get_run(run_id)
    assert run.data.params == {"max_depth": "6"}
    assert run.data.metrics["areaUnderROC"] == pytest.approx(0.881)
    assert [m.value for m in client.get_metric_history(run_id, "areaUnderROC")] == [0.873, 0.881]
    assert run.data.tags["automl.month"] == "2024-05"
    assert run.info.status == "FINISHED"
    assert [a.path for a in client.list_artifacts(run_id, "tuning")] == ["tuning/grid.json"]
    out = tmp_path / f"download-{run_id}"
    out.mkdir()
    local = client.download_artifacts(run_id, "tuning/grid.json", str(out))
    assert Path(local).read_text() == '{"max_depth": [3, 6]}'


def test_start_sh_refuses_auth_without_credentials(tmp_path):
    """MLflow ships no default admin: the script names the missing variable and starts nothing."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_AUTH", "MLFLOW_FLASK"))}
    base |= {"MLFLOW_HOME": str(tmp_path), "MLFLOW_AUTH": "true"}
    cases = [({}, "MLFLOW_AUTH_ADMIN_USERNAME"),
             ({"MLFLOW_AUTH_ADMIN_USERNAME": "admin"}, "MLFLOW_AUTH_ADMIN_PASSWORD"),
             ({"MLFLOW_AUTH_ADMIN_USERNAME": "admin", "MLFLOW_AUTH_ADMIN_PASSWORD": ""},
              "MLFLOW_AUTH_ADMIN_PASSWORD"),
             ({"MLFLOW_AUTH_ADMIN_USERNAME": "admin", "MLFLOW_AUTH_ADMIN_PASSWORD": ADMIN[1]},
              "MLFLOW_FLASK_SERVER_SECRET_KEY")]
    for extra, missing in cases:
        done = subprocess.run(["bash", str(START_SH)], env=base | extra, capture_output=True,
                              text=True, timeout=30)
        assert done.returncode == 2, done
        assert f"{missing} must be set" in done.stderr
    assert not (tmp_path / "basic_auth.ini").exists()
    done = subprocess.run(["bash", str(START_SH)], env=base | {"MLFLOW_AUTH": "yes"},
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 2 and "MLFLOW_AUTH must be true or false" in done.stderr
    # Every account gets at least the default permission on everything: never a writing one.
    credentials = {**AUTH_ENV, "MLFLOW_AUTH_ADMIN_USERNAME": "admin"}
    for default in ("EDIT", "MANAGE", "read"):
        done = subprocess.run(["bash", str(START_SH)], capture_output=True, text=True, timeout=30,
                              env=base | credentials | {"MLFLOW_AUTH_DEFAULT_PERMISSION": default})
        assert done.returncode == 2, done
        assert (f"MLFLOW_AUTH_DEFAULT_PERMISSION must be NO_PERMISSIONS, READ or USE, got '{default}'"
                in done.stderr)
    assert not (tmp_path / "basic_auth.ini").exists()


def test_server_without_auth_round_trips_a_run(servers, tmp_path, monkeypatch):
    from mlflow import MlflowClient

    server = servers["plain"]
    _as(monkeypatch, None)
    client = MlflowClient(tracking_uri=server.url)
    exp_id = client.create_experiment("loan_default/monthly")
    run_id = _log_run(server.url, exp_id, tmp_path)
    _check_run(server.url, run_id, tmp_path)
    # Stores are where start.sh put them: sqlite under MLFLOW_HOME, artifacts served by the
    # server into MLFLOW_ARTIFACTS_DESTINATION (the client never writes there itself).
    assert (server.root / "mlflow.db").is_file()
    assert list((server.root / "artifacts").rglob("grid.json"))
    # Lean settings: the CLI process plus one uvicorn worker, no job-execution consumers.
    assert len(server.pids()) <= 3, server.pids()


def test_server_with_auth_enforces_users_and_grants(servers, team, tmp_path, monkeypatch, capsys):
    from mlflow import MlflowClient

    server = servers["auth"]
    url, api = server.url, f"{server.url}/api/2.0/mlflow"

    # The generated ini: owner-only, no password in it (MLflow reads that from the env).
    ini = server.root / "basic_auth.ini"
    assert stat.S_IMODE(ini.stat().st_mode) == 0o600
    assert ADMIN[1] not in ini.read_text() and "admin_username = admin" in ini.read_text()
    assert "default_permission = READ" in ini.read_text()   # anything not granted: read-only

    # Unauthenticated and wrongly authenticated calls are refused; /health stays open.
    anonymous = requests.get(f"{api}/experiments/search", params={"max_results": 1}, timeout=30)
    assert anonymous.status_code == 401
    assert anonymous.text.startswith("You are not authenticated. Please see https://www.mlflow.org/docs/")
    assert requests.get(f"{api}/experiments/search", params={"max_results": 1},
                        auth=(ADMIN[0], "not-the-password"), timeout=30).status_code == 401
    assert requests.get(f"{url}/health", timeout=30).status_code == 200

    # The admin creates an experiment through the ordinary client.
    _as(monkeypatch, ADMIN)
    admin_exp = MlflowClient(tracking_uri=url).create_experiment("admin-only")

    # setup-team (the `team` fixture): the passwords were in env vars, never in argv or output.
    users, argv = team["users"], team["argv"]
    assert "user airflow: created" in team["printed"] and "user viewer: created" in team["printed"]
    assert "user airflow: EDIT on experiments loan_default/monthly" in team["printed"]
    assert "MANAGE on registered models loan_default" in team["printed"]
    assert AIRFLOW_PW not in " ".join(argv) + team["printed"]

    client = MlflowClient(tracking_uri=url)
    monthly = client.get_experiment_by_name("loan_default/monthly").experiment_id
    poc = client.get_experiment_by_name("loan_default/poc").experiment_id

    # The service account writes a full run (params, metrics, a proxied artifact).
    _as(monkeypatch, ("airflow", AIRFLOW_PW))
    run_id = _log_run(url, monthly, tmp_path)

    # The viewer reads it all back, but every write to the experiment is forbidden.
    _as(monkeypatch, ("viewer", VIEWER_PW))
    _check_run(url, run_id, tmp_path)
    viewer = ("viewer", VIEWER_PW)
    assert requests.post(f"{api}/runs/create", json={"experiment_id": monthly}, auth=viewer,
                         timeout=30).status_code == 403
    assert requests.post(f"{api}/runs/log-metric", auth=viewer, timeout=30, json={
        "run_id": run_id, "key": "areaUnderROC", "value": 0.5, "timestamp": 0}).status_code == 403
    assert requests.post(f"{api}/experiments/delete", json={"experiment_id": monthly},
                         auth=viewer, timeout=30).status_code == 403
    # The service account got EDIT on its experiments only: the admin's one stays read-only.
    airflow = ("airflow", AIRFLOW_PW)
    elsewhere = requests.post(f"{api}/runs/create", json={"experiment_id": admin_exp}, auth=airflow,
                              timeout=30)
    assert (elsewhere.status_code, elsewhere.text) == (403, "Permission denied")

    # create-user and grant, then re-grant downwards.
    _as(monkeypatch, ADMIN)
    monkeypatch.setenv("ANALYST_PW", "an-" + secrets.token_urlsafe(12))
    analyst = ("analyst", os.environ["ANALYST_PW"])
    assert users.main(["--url", url, "create-user", "analyst", "--password-env", "ANALYST_PW"]) == 0
    assert users.main(["--url", url, "grant", "analyst", "--experiment", "loan_default/poc",
                       "--permission", "EDIT"]) == 0
    assert requests.post(f"{api}/runs/create", json={"experiment_id": poc}, auth=analyst,
                         timeout=30).status_code == 200
    assert requests.post(f"{api}/runs/create", json={"experiment_id": monthly}, auth=analyst,
                         timeout=30).status_code == 403
    assert users.main(["--url", url, "grant", "analyst", "--experiment", poc,
                       "--permission", "READ"]) == 0
    assert requests.post(f"{api}/runs/create", json={"experiment_id": poc}, auth=analyst,
                         timeout=30).status_code == 403
    # Idempotent: running setup-team again changes nothing and fails on nothing.
    monkeypatch.setenv("MLFLOW_AIRFLOW_PASSWORD", AIRFLOW_PW)
    monkeypatch.setenv("MLFLOW_VIEWER_PASSWORD", VIEWER_PW)
    assert users.main(argv) == 0
    assert "user airflow: password updated" in capsys.readouterr().out
    assert requests.post(f"{api}/runs/create", json={"experiment_id": monthly}, auth=airflow,
                         timeout=30).status_code == 200


def test_servers_listen_on_loopback_only(servers):
    """start.sh's default host (the plain server sets no MLFLOW_HOST) and the auth server: every
    listening socket of the server and its workers is on loopback."""
    for server in servers.values():
        procs = tree(server.proc.pid)
        assert server.port in {port for *_, port in listeners(procs)}, listeners(procs)
        assert beyond_loopback(procs) == []


def test_service_account_promotes_and_a_viewer_cannot_move_aliases(servers, team, tmp_path, monkeypatch):
    """The library's own promotion calls as the `airflow` account: register, open a decision,
    approve (moves `champion`, deletes `challenger`: MANAGE). A viewer reads the model and its
    versions but every alias move is 403; the service account cannot touch another model."""
    import lightgbm
    import mlflow
    import numpy as np
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    from automl_tasks.registry import promotion

    url = servers["auth"].url
    api = f"{url}/api/2.0/mlflow/registered-models"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
    monkeypatch.setenv("AUTOML_HOME", str(tmp_path / "home"))
    # The registered model exists already (made by the admin), so the account's rights on it
    # come from setup-team's grant, not from having created it; so does another team's model.
    _as(monkeypatch, ADMIN)
    for name in ("loan_default", "other_team"):
        MlflowClient(url).create_registered_model(name)

    _as(monkeypatch, ("airflow", AIRFLOW_PW))
    client = MlflowClient(url)
    monthly = client.get_experiment_by_name("loan_default/monthly").experiment_id
    x = np.random.default_rng(0).random((40, 3))
    model = lightgbm.LGBMClassifier(n_estimators=3, min_child_samples=5, verbose=-1).fit(x, x[:, 0] > 0.5)
    mlflow.set_tracking_uri(url)
    with mlflow.start_run(experiment_id=monthly) as run:
        logged = mlflow.lightgbm.log_model(model, name="model", pip_requirements=["lightgbm"])
    version = promotion.register_candidate(logged.model_uri, "loan_default", month="2024-05",
                                           run_id=run.info.run_id, tags={})
    promotion.open_decision("loan_default", version, month="2024-05", evidence={"delta": 0.01},
                            evidence_run_id=run.info.run_id, reasons=["test"])
    assert client.get_registered_model("loan_default").aliases == {"challenger": version}
    decision = promotion.decide("loan_default", version, approve=True, decided_by="user:tester")
    assert decision.status == "approved"
    assert client.get_registered_model("loan_default").aliases == {"champion": version}
    airflow = ("airflow", AIRFLOW_PW)
    other = requests.post(f"{api}/alias", auth=airflow, timeout=30,
                          json={"name": "other_team", "alias": "champion", "version": "1"})
    assert other.status_code == 403, other.text

    viewer = ("viewer", VIEWER_PW)
    _as(monkeypatch, viewer)
    assert client.get_registered_model("loan_default").aliases == {"champion": version}
    assert client.get_model_version("loan_default", version).tags["automl.decision.status"] == "approved"
    for method, alias in (("post", "challenger"), ("post", "champion"), ("delete", "champion")):
        resp = requests.request(method, f"{api}/alias", auth=viewer, timeout=30,
                                json={"name": "loan_default", "alias": alias, "version": version})
        assert (resp.status_code, resp.text) == (403, "Permission denied"), (method, alias)
    with pytest.raises(MlflowException, match="Permission denied"):
        client.set_registered_model_alias("loan_default", "champion", version)
    _as(monkeypatch, ADMIN)
    assert client.get_registered_model("loan_default").aliases == {"champion": version}


def test_users_cli_runs_as_a_script():
    """The file runs as a CLI by itself (its mlflow imports are lazy: --help is instant)."""
    done = subprocess.run([sys.executable, str(USERS_PY), "setup-team", "--help"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "--airflow-password-env" in done.stdout and "--model" in done.stdout


def test_users_cli_reports_bad_input_without_touching_the_server(monkeypatch, capsys):
    users = _users_module()
    url = "http://127.0.0.1:9"  # nothing listens: any request would fail differently
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "admin")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "x" * 12)
    monkeypatch.delenv("NO_SUCH_PASSWORD_VAR", raising=False)
    assert users.main(["--url", url, "create-user", "bob",
                       "--password-env", "NO_SUCH_PASSWORD_VAR"]) == 2
    assert "NO_SUCH_PASSWORD_VAR" in capsys.readouterr().err
    monkeypatch.setenv("SHORT_PW", "short")
    assert users.main(["--url", url, "create-user", "bob", "--password-env", "SHORT_PW"]) == 2
    assert "12 or more" in capsys.readouterr().err
    monkeypatch.delenv("MLFLOW_AIRFLOW_PASSWORD", raising=False)
    assert users.main(["--url", url, "setup-team", "--model", "m"]) == 2
    assert "MLFLOW_AIRFLOW_PASSWORD" in capsys.readouterr().err
    monkeypatch.delenv("MLFLOW_TRACKING_PASSWORD")
    monkeypatch.setenv("SHORT_PW", "long-enough-password")
    assert users.main(["--url", url, "create-user", "bob", "--password-env", "SHORT_PW"]) == 2
    assert "MLFLOW_TRACKING_PASSWORD" in capsys.readouterr().err

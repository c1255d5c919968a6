"""The deployed stack on loopback, as docker-compose.yml wires it, without containers.

PostgreSQL (databases `mlflow`, `mlflow_auth`, `airflow`, one role per service), MLflow
started by `mlflow_server/start.sh` on that PostgreSQL with auth on (admin, flask secret and
every password generated here; the `airflow` service account with EDIT and a `viewer` with
READ made by `mlflow_server/users.py setup-team`), and Airflow 3 on the same PostgreSQL:
`airflow db migrate`, then api-server (core + execution APIs, SimpleAuthManager), scheduler
(LocalExecutor), dag-processor and triggerer over this repo's dags/ and plugins/. (On
Airflow 3.3+ a human-in-the-loop task waits in `awaiting_input` and the answer's REST
handler resumes it; the triggerer runs deferred tasks and keeps the health page green.)

Task processes get what compose gives them: the tracking server as the service account,
the specs folder, Spark in local mode. Everything listens on 127.0.0.1 at a free port
(the scheduler's log server, which binds every interface, is off: the api-server reads the
task logs from the shared AIRFLOW_HOME). Every process group is stopped by PID on exit.

    with airflow_stack(tmp_path, specs_dir=..., models=["loans"]) as stack:
        stack.airflow.post("/api/v2/dags/monthly_retrain/dagRuns", json=...)
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import os
import secrets
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from unittest import mock

from automl_tasks.data.months import Month
from tests.support.airflow_api import AIRFLOW, AirflowApiServer
from tests.support.mlflow_server import REPO, Server
from tests.support.postgres import Postgres
from tests.support.processes import spawn, stop_group, tail

USERS_PY = REPO / "mlflow_server" / "users.py"
SERVICE_USER, VIEWER_USER = "airflow", "viewer"    # users.py setup-team's defaults
# The caller's settings that would point a process elsewhere (the Makefile exports some).
_FOREIGN = ("AIRFLOW", "MLFLOW_", "AUTOML_", "SPARK_", "PYSPARK_")


def _password() -> str:
    return secrets.token_hex(16)


def _next_month() -> str:
    now = datetime.now(timezone.utc)
    return str(Month(now.year, now.month) + 1)


@dataclass
class Stack:
    root: Path
    postgres: Postgres
    mlflow: Server
    airflow: AirflowApiServer
    admin: tuple[str, str]
    service: tuple[str, str]      # the tasks log to MLflow as this account (EDIT)
    viewer: tuple[str, str]       # a person who reads (READ)
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)

    @property
    def airflow_home(self) -> Path:
        return Path(self.airflow.env["AIRFLOW_HOME"])

    def why(self, chars: int = 2500) -> str:
        """The tails of every log of the stack and of the three newest task attempts, for messages."""
        logs = {"api-server": self.airflow.log_path, "mlflow": self.mlflow.log_path,
                "postgres": self.postgres.log_path}
        logs |= {name: self.root / "logs" / f"{name}.log" for name in self.processes}
        attempts = sorted(self.airflow_home.glob("logs/**/attempt=*.log"), key=lambda p: p.stat().st_mtime)
        logs |= {str(p.relative_to(self.airflow_home / "logs")): p for p in attempts[-3:]}
        return "".join(f"\n--- {name} ---\n{tail(path, chars)}" for name, path in logs.items())

    def log(self, name: str) -> str:
        """The whole log of `name` (scheduler, dag-processor, ...)."""
        return (self.root / "logs" / f"{name}.log").read_text(errors="replace")

    def process_groups(self) -> dict[str, subprocess.Popen]:
        """The leader of every process group the stack started, by name."""
        return {"postgres": self.postgres.proc, "mlflow": self.mlflow.proc, "api-server": self.airflow.proc,
                **self.processes}

    def check_alive(self) -> None:
        for name, proc in self.process_groups().items():
            if proc.poll() is not None:
                raise AssertionError(f"{name} exited {proc.returncode}{self.why()}")


def _airflow_env(root: Path, db_url: str, *, mlflow_url: str, service: tuple[str, str],
                 specs_dir: Path) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(_FOREIGN)}
    venv_bin = str(Path(sys.executable).parent)
    return {
        **base,
        "PATH": venv_bin + os.pathsep + base.get("PATH", ""),
        "PYTHONPATH": str(REPO),
        "AIRFLOW_HOME": str(root / "airflow-home"),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": db_url,
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__PARALLELISM": "2",
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
        "AIRFLOW__CORE__FERNET_KEY": _fernet_key(),
        # A busy 2-core host parses slowly; one parse at start is all the test needs.
        "AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT": "120",
        "AIRFLOW__DAG_PROCESSOR__DAG_FILE_PROCESSOR_TIMEOUT": "180",
        "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "600",
        # What compose gives the tasks: MLflow as the service account, the specs, Spark.
        "MLFLOW_TRACKING_URI": mlflow_url,
        "MLFLOW_TRACKING_USERNAME": service[0],
        "MLFLOW_TRACKING_PASSWORD": service[1],
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
        "AUTOML_HOME": str(root / "automl-home"),
        "AUTOML_SPECS_DIR": str(specs_dir),
        # The schedule's history starts next month: catchup creates no run while the test runs.
        "AUTOML_FIRST_MONTH": _next_month(),
        "SPARK_MASTER": "local[2]",
        "AUTOML_DRIVER_JAVA_OPTIONS": os.environ.get("AUTOML_DRIVER_JAVA_OPTIONS", ""),
    }


def _fernet_key() -> str:
    from cryptography.fernet import Fernet

    return Fernet.generate_key().decode()


def _setup_team(mlflow: Server, admin, service, viewer, models: list[str], log: Path) -> None:
    """`users.py setup-team` as an operator runs it: admin creds and passwords in the env only.

    In-process (its main()), as tests/test_mlflow_server.py does: a second cold import of
    mlflow costs ~30 s on a busy host, and this one was paid while the server migrated."""
    spec = importlib.util.spec_from_file_location("mlflow_server_users", USERS_PY)
    users = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(users)
    env = {"MLFLOW_TRACKING_USERNAME": admin[0], "MLFLOW_TRACKING_PASSWORD": admin[1],
           "MLFLOW_AIRFLOW_PASSWORD": service[1], "MLFLOW_VIEWER_PASSWORD": viewer[1]}
    out = io.StringIO()
    with mock.patch.dict(os.environ, env), contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        rc = users.main(["--url", mlflow.url, "setup-team", "--model", ",".join(models)])
    log.write_text(out.getvalue())
    if rc != 0:
        raise RuntimeError(f"users.py setup-team exited {rc}: {out.getvalue()[-2000:]}")


@contextlib.contextmanager
def airflow_stack(root: Path, *, specs_dir: Path, models: list[str], timeout_s: float = 600.0):
    """Yield a started Stack (Airflow logged in, the DAGs parsed or parsing); stop it all on exit."""
    root.mkdir(parents=True, exist_ok=True)
    logs = root / "logs"
    logs.mkdir(exist_ok=True)
    admin, service, viewer = ("admin", _password()), (SERVICE_USER, _password()), (VIEWER_USER, _password())
    with contextlib.ExitStack() as cleanup:
        started = time.monotonic()
        postgres = Postgres(logs)
        cleanup.callback(postgres.stop)
        postgres.wait_ready()
        mlflow_pw, airflow_pw = _password(), _password()
        mlflow_db = postgres.create_database("mlflow", owner="mlflow", password=mlflow_pw)
        auth_db = postgres.create_database("mlflow_auth", owner="mlflow", password=mlflow_pw)
        airflow_db = postgres.create_database("airflow", owner="airflow", password=airflow_pw)

        mlflow = Server(root / "mlflow", env={
            "MLFLOW_BACKEND_STORE_URI": mlflow_db, "MLFLOW_AUTH": "true", "MLFLOW_AUTH_DATABASE_URI": auth_db,
            "MLFLOW_AUTH_ADMIN_USERNAME": admin[0], "MLFLOW_AUTH_ADMIN_PASSWORD": admin[1],
            "MLFLOW_FLASK_SERVER_SECRET_KEY": secrets.token_hex(32)})
        cleanup.callback(mlflow.stop)
        env = _airflow_env(root, airflow_db, mlflow_url=mlflow.url, service=service, specs_dir=specs_dir)
        # Both migrate their PostgreSQL schema at once; Airflow starts as soon as its schema is
        # there, while MLflow gets its users (needed only once a task logs).
        migrate = spawn([AIRFLOW, "db", "migrate"], logs / "airflow-db-migrate.log", env=env, cwd=root)
        cleanup.callback(stop_group, migrate)
        importlib.import_module("mlflow.server")   # setup-team's client side, imported while both migrate

        try:
            rc = migrate.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            raise RuntimeError(f"airflow db migrate still running:\n{tail(logs / 'airflow-db-migrate.log')}")
        if rc != 0:
            raise RuntimeError(f"airflow db migrate exited {rc}:\n{tail(logs / 'airflow-db-migrate.log')}")

        api = AirflowApiServer(env, root / "airflow-api", apps="core,execution")
        cleanup.callback(api.stop)
        processes = {}
        # The triggerer, as compose runs it: deferred tasks (the PoC inbox sensor) and a green
        # health page. Its log server is off like the scheduler's (it binds every interface).
        for name, cmd in {"scheduler": [AIRFLOW, "scheduler", "--skip-serve-logs"],
                          "dag-processor": [AIRFLOW, "dag-processor"],
                          "triggerer": [AIRFLOW, "triggerer", "--skip-serve-logs"]}.items():
            processes[name] = spawn(cmd, logs / f"{name}.log", env=api.env, cwd=root)
            cleanup.callback(stop_group, processes[name], 30)
        stack = Stack(root, postgres, mlflow, api, admin, service, viewer, processes)
        try:
            mlflow.wait_healthy(timeout_s)
            _setup_team(mlflow, admin, service, viewer, models, logs / "users-setup-team.log")
            api.wait_healthy(timeout_s)
            api.login()
            stack.check_alive()
        except (RuntimeError, AssertionError) as exc:
            raise RuntimeError(f"{exc}{stack.why()}") from None
        print(f"stack up in {time.monotonic() - started:.0f}s")
        yield stack

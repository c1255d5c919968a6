"""The deployed stack on loopback, as docker-compose.yml wires it, without containers.

The services, their settings, commands, volumes and start order come from the compose file
itself, resolved with `.env.example` by the compose client (tests/support/compose.py maps the
compose network, published ports and volumes onto 127.0.0.1, free ports and folders under
the test's root, and replaces the `.env.example` placeholders of every secret by generated
values). What runs: PostgreSQL with the roles and databases of the services' connection URIs
(as docker/postgres/init-databases.sh makes them), MLflow started by `mlflow_server/start.sh`
with the `mlflow` service's environment (auth on), `mlflow-users`' `users.py setup-team`
command (the `airflow` service account with EDIT, a `viewer` with READ), `airflow-init`'s
script (`airflow db migrate`, the `spark` pool; not its FAB users), then api-server (core +
execution APIs, SimpleAuthManager), scheduler (LocalExecutor), dag-processor and triggerer
over this repo's dags/ and plugins/ with the Airflow services' environment: waves in
depends_on order, and `spark-connect` (tests/support/spark_connect.py), the Spark driver the tasks
reach through SPARK_REMOTE. MinIO and the standalone Spark master and worker are skipped
(compose.SKIPPED says why: the Connect server runs its executors in local mode). (On Airflow 3.3+ a human-in-the-loop task waits in
`awaiting_input` and the answer's REST handler resumes it; the triggerer runs deferred tasks
and keeps the health page green.)

Everything listens on 127.0.0.1 at a free port (the scheduler's and triggerer's log servers,
which bind every interface, are off: the api-server reads the task logs from the shared log
folder). Every process group is stopped by PID on exit.

    with airflow_stack(tmp_path, specs_dir=..., models=["loans"]) as stack:
        stack.airflow.post("/api/v2/dags/monthly_retrain/dagRuns", json=...)
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from unittest import mock
from urllib.parse import urlsplit

from tests.support import compose, spark_connect
from tests.support.airflow_api import AIRFLOW, AirflowApiServer
from tests.support.mlflow_server import REPO, Server
from tests.support.postgres import Postgres
from tests.support.processes import free_port, spawn, stop_group, tail

USERS_PY = REPO / "mlflow_server" / "users.py"
VIEWER_USER = "viewer"              # users.py setup-team's default
IMAGE_AIRFLOW_HOME = "/opt/airflow"  # the apache/airflow image's AIRFLOW_HOME: dags/, plugins/, logs/
# Arguments the stack adds to compose's commands, and why.
EXTRA_ARGS = {
    # Their log servers bind every interface; the api-server reads task logs from the shared folder.
    "airflow-scheduler": ["--skip-serve-logs"],
    "airflow-triggerer": ["--skip-serve-logs"],
}


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
    waves: list[list[str]] = field(default_factory=list)   # compose services, in the order started

    @property
    def airflow_home(self) -> Path:
        return Path(self.airflow.env["AIRFLOW_HOME"])

    @property
    def airflow_logs(self) -> Path:
        return Path(self.airflow.env["AIRFLOW__LOGGING__BASE_LOG_FOLDER"])

    def why(self, chars: int = 2500) -> str:
        """The tails of every log of the stack and of the three newest task attempts, for messages."""
        logs = {"api-server": self.airflow.log_path, "mlflow": self.mlflow.log_path,
                "postgres": self.postgres.log_path}
        logs |= {name: self.root / "logs" / f"{name}.log" for name in self.processes}
        attempts = sorted(self.airflow_logs.glob("**/attempt=*.log"), key=lambda p: p.stat().st_mtime)
        logs |= {str(p.relative_to(self.airflow_logs)): p for p in attempts[-3:]}
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


def _test_settings(loop: compose.Loopback, root: Path) -> dict[str, str]:
    """What the stack adds to compose's Airflow settings (none of them is a compose setting): where
    the local processes find the image's folders (by compose's mounts), a 2-core host's timeouts."""
    base = compose.own_environment()
    venv_bin = str(Path(sys.executable).parent)
    mounted = {name: str(loop.path("airflow-apiserver", f"{IMAGE_AIRFLOW_HOME}/{name}"))
               for name in ("dags", "plugins", "logs")}
    return {
        **base,
        "PATH": venv_bin + os.pathsep + base.get("PATH", ""),
        "PYTHONPATH": str(REPO),
        "AIRFLOW_HOME": str(root / "airflow-home"),
        "AIRFLOW__CORE__DAGS_FOLDER": mounted["dags"],
        "AIRFLOW__CORE__PLUGINS_FOLDER": mounted["plugins"],
        "AIRFLOW__LOGGING__BASE_LOG_FOLDER": mounted["logs"],
        "AIRFLOW__CORE__PARALLELISM": "2",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
        # A busy 2-core host parses slowly; one parse at start is all the test needs.
        "AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT": "120",
        "AIRFLOW__DAG_PROCESSOR__DAG_FILE_PROCESSOR_TIMEOUT": "180",
        "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "600",
        # Compose turns the scheduler's health server on (its healthcheck); by default it binds every interface.
        "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_SERVER_HOST": "127.0.0.1",
        "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_SERVER_PORT": str(free_port()),
        "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
        "AUTOML_DRIVER_JAVA_OPTIONS": os.environ.get("AUTOML_DRIVER_JAVA_OPTIONS", ""),
    }


def airflow_env(loop: compose.Loopback, root: Path, service: str = "airflow-apiserver") -> dict[str, str]:
    """An Airflow service's environment: compose's (mapped onto loopback) plus the test's settings."""
    settings, from_compose = _test_settings(loop, root), loop.env(service, "airflow")
    added = {k for k in settings if k not in os.environ or k.startswith(compose.FOREIGN_SETTINGS)}
    clash = sorted(added & set(compose.service_env(loop.config, service)))
    if clash:
        raise RuntimeError(f"compose now sets {clash} for {service}: the stack must take them from compose")
    return {**settings, **from_compose}


def _run_team_setup(loop: compose.Loopback, mlflow: Server, models: list[str], log: Path) -> dict[str, str]:
    """`mlflow-users`' command (`users.py setup-team`) with its environment, as compose runs it.

    In-process (its main()), as tests/test_mlflow_server.py does: a second cold import of
    mlflow costs ~30 s on a busy host, and this one was paid while the server migrated."""
    env = {**loop.env("mlflow-users"), "MLFLOW_TEAM_MODELS": ",".join(models)}
    argv = loop.command("mlflow-users", env)
    if argv[:2] != ["python", str(USERS_PY)]:
        raise RuntimeError(f"mlflow-users runs {argv}: the stack runs {USERS_PY} in-process")
    assert env["MLFLOW_TRACKING_URI"] == mlflow.url, (env["MLFLOW_TRACKING_URI"], mlflow.url)
    spec = importlib.util.spec_from_file_location("mlflow_server_users", USERS_PY)
    users = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(users)
    out = io.StringIO()
    with mock.patch.dict(os.environ, env), contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        rc = users.main(argv[2:])
    log.write_text(out.getvalue())
    if rc != 0:
        raise RuntimeError(f"users.py {' '.join(argv[2:])} exited {rc}: {out.getvalue()[-2000:]}")
    return env


def _init_script(loop: compose.Loopback) -> str:
    """`airflow-init`'s script without the steps the stack leaves out (compose.SKIPPED_STEPS)."""
    kept = [step for step in compose.script_steps(loop.config["services"]["airflow-init"])
            if not step.startswith(tuple(compose.SKIPPED_STEPS))]
    for step in kept:
        if not step.startswith("airflow "):
            raise RuntimeError(f"airflow-init runs {step!r}: the stack runs only `airflow ...` steps")
    return "\n".join(kept)


class _Services:
    """How the stack starts and awaits each compose service it runs (start, then wait, per wave)."""

    def __init__(self, cleanup: contextlib.ExitStack, root: Path, specs_dir: Path, models: list[str],
                 timeout_s: float):
        self.cleanup, self.root, self.models, self.timeout_s = cleanup, root, models, timeout_s
        self.logs = root / "logs"
        self.loop = compose.Loopback(compose.resolved(), root, binds={"specs": specs_dir})
        self.loop.ports[("mlflow", 5000)] = free_port()
        self.loop.ports[("airflow-apiserver", 8080)] = free_port()
        self.processes: dict[str, subprocess.Popen] = {}
        envs = {name: compose.service_env(self.loop.config, name) for name in compose.AIRFLOW_SERVICES}
        if any(env != envs["airflow-apiserver"] for env in envs.values()):
            raise RuntimeError("compose's Airflow services differ in environment: the stack gives them one")

    def start(self, name: str) -> None:
        getattr(self, "start_" + name.replace("-", "_"))()

    def wait(self, name: str) -> None:
        waiter = getattr(self, "wait_" + name.replace("-", "_"), None)
        if waiter:
            waiter()

    def start_postgres(self):
        self.postgres = Postgres(self.logs)
        self.cleanup.callback(self.postgres.stop)
        self.loop.ports[("postgres", 5432)] = self.postgres.port

    def wait_postgres(self):
        """The roles and databases of every connection URI, as compose's init script makes them."""
        self.postgres.wait_ready()
        values = [*self.loop.env("mlflow").values(), *airflow_env(self.loop, self.root).values()]
        for uri in sorted({v for v in values if v.startswith("postgresql")}):
            parts = urlsplit(uri)
            name, owner, secret = parts.path.lstrip("/"), parts.username, parts.password
            made = self.postgres.create_database(name, owner=owner, password=secret)
            assert made == uri, "the stack's PostgreSQL URL differs from compose's, mapped"

    def start_mlflow(self):
        env = self.loop.env("mlflow")
        self.admin = (env["MLFLOW_AUTH_ADMIN_USERNAME"], env["MLFLOW_AUTH_ADMIN_PASSWORD"])
        self.mlflow = Server(self.root / "mlflow", env=env, port=self.loop.ports[("mlflow", 5000)])
        self.cleanup.callback(self.mlflow.stop)

    def wait_mlflow(self):
        self.mlflow.wait_healthy(self.timeout_s)

    def start_mlflow_users(self):
        env = _run_team_setup(self.loop, self.mlflow, self.models, self.logs / "users-setup-team.log")
        self.viewer = (VIEWER_USER, env["MLFLOW_VIEWER_PASSWORD"])
        self.team_env = env

    def start_airflow_init(self):
        log = self.logs / "airflow-init.log"
        self.init = spawn(["bash", "-ec", _init_script(self.loop)], log,
                          env={**airflow_env(self.loop, self.root), **self.loop.env("airflow-init", "airflow")},
                          cwd=self.root)
        self.cleanup.callback(stop_group, self.init)
        importlib.import_module("mlflow.server")   # setup-team's client side, imported while both migrate

    def wait_airflow_init(self):
        log = self.logs / "airflow-init.log"
        try:
            rc = self.init.wait(timeout=self.timeout_s)
        except subprocess.TimeoutExpired:
            raise RuntimeError(f"airflow-init still running:\n{tail(log)}")
        if rc != 0:
            raise RuntimeError(f"airflow-init exited {rc}:\n{tail(log)}")

    def start_airflow_apiserver(self):
        command = self.loop.config["services"]["airflow-apiserver"]["command"]
        if command != ["api-server"]:
            raise RuntimeError(f"airflow-apiserver runs {command}: the stack runs `airflow api-server`")
        env = airflow_env(self.loop, self.root)
        self.service = (env["MLFLOW_TRACKING_USERNAME"], env["MLFLOW_TRACKING_PASSWORD"])
        if self.service[1] != self.team_env["MLFLOW_AIRFLOW_PASSWORD"]:
            raise RuntimeError("the Airflow services' MLFLOW_TRACKING_PASSWORD is not the password "
                               "mlflow-users gives the service account (MLFLOW_AIRFLOW_PASSWORD)")
        self.api = AirflowApiServer(env, self.root / "airflow-api", apps="core,execution",
                                    port=self.loop.ports[("airflow-apiserver", 8080)])
        self.cleanup.callback(self.api.stop)

    def wait_airflow_apiserver(self):
        self.api.wait_healthy(self.timeout_s)
        self.api.login()

    def _airflow_process(self, service: str):
        name = service.removeprefix("airflow-")
        command = [AIRFLOW, *self.loop.config["services"][service]["command"], *EXTRA_ARGS.get(service, [])]
        # The api-server's env: compose's, plus the auth manager and JWT secret every component shares.
        self.processes[name] = spawn(command, self.logs / f"{name}.log", env=self.api.env, cwd=self.root)
        self.cleanup.callback(stop_group, self.processes[name], 30)

    def start_spark_connect(self):
        self.connect, self.connect_env = spark_connect.start(self.loop, self.logs)
        self.processes["spark-connect"] = self.connect
        self.cleanup.callback(stop_group, self.connect)

    def wait_spark_connect(self):
        spark_connect.wait_healthy(self.loop, self.connect, self.connect_env,
                                   spark_connect.service_log(self.logs), self.timeout_s)

    def start_airflow_scheduler(self):
        self._airflow_process("airflow-scheduler")

    def start_airflow_dag_processor(self):
        self._airflow_process("airflow-dag-processor")

    def start_airflow_triggerer(self):
        self._airflow_process("airflow-triggerer")


@contextlib.contextmanager
def airflow_stack(root: Path, *, specs_dir: Path, models: list[str], timeout_s: float = 600.0):
    """Yield a started Stack (Airflow logged in, the DAGs parsed or parsing); stop it all on exit."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "logs").mkdir(exist_ok=True)
    waves = compose.start_waves(compose.resolved())
    # The api-server first in its wave: the other Airflow components take its auth settings.
    waves = [sorted(wave, key=lambda name: name != "airflow-apiserver") for wave in waves]
    with contextlib.ExitStack() as cleanup:
        started = time.monotonic()
        services = _Services(cleanup, root, specs_dir, models, timeout_s)
        unknown = [name for wave in waves for name in wave if not hasattr(services, "start_" + name.replace("-", "_"))]
        if unknown:
            raise RuntimeError(f"compose runs {unknown}, which the stack neither runs nor names in compose.SKIPPED")
        stack = None
        try:
            for wave in waves:
                for name in wave:
                    services.start(name)
                for name in wave:
                    services.wait(name)
            stack = Stack(root, services.postgres, services.mlflow, services.api, services.admin,
                          services.service, services.viewer, services.processes, waves)
            stack.check_alive()
        except (RuntimeError, AssertionError) as exc:
            if stack is None and hasattr(services, "api"):
                stack = Stack(root, services.postgres, services.mlflow, services.api, ("", ""), ("", ""),
                              ("", ""), services.processes, waves)
            raise RuntimeError(f"{exc}{stack.why() if stack else ''}") from None
        print(f"stack up in {time.monotonic() - started:.0f}s: {' / '.join(', '.join(w) for w in waves)}\n"
              f"{compose.deviations()}")
        yield stack

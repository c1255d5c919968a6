"""docker-compose.yml's `spark-connect` service as a process on 127.0.0.1.

Its command, environment and healthcheck come from the compose file (through compose.Loopback,
which maps `0.0.0.0` and the compose host names onto loopback); the Spark master it names is
replaced by local mode (compose.REPLACED: the standalone master and worker are skipped), and its
port by a free one. What the image provides, the test provides: this venv's `spark-submit` and
Python (the executors' Python workers import this repo), and no web UI listener.

    loop = compose.Loopback(compose.resolved(), root, binds={})
    with connect_service(loop, root / "logs") as remote:      # sc://127.0.0.1:PORT
        env["SPARK_REMOTE"] = remote
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
import time
from pathlib import Path

from tests.support import compose
from tests.support.processes import free_port, spawn, stop_group, tail

SERVICE = "spark-connect"
REPO = Path(__file__).resolve().parents[2]


def container_port(loop: compose.Loopback) -> int:
    return int(compose.service_env(loop.config, SERVICE)["SPARK_CONNECT_PORT"])


def service_env(loop: compose.Loopback) -> dict[str, str]:
    """The service's environment as its local process needs it: compose's (mapped), the free port
    it listens on, and what the image holds (PATH to spark-submit, the Python its workers run)."""
    port = loop.ports.setdefault((SERVICE, container_port(loop)), free_port())
    base = compose.own_environment()
    return {**base,
            "PATH": str(Path(sys.executable).parent) + os.pathsep + base.get("PATH", ""),
            "PYSPARK_PYTHON": sys.executable,          # the image's python3, with the project installed
            "PYTHONPATH": str(REPO),
            "SPARK_LOCAL_IP": "127.0.0.1",
            # No UI listener; the C1 JIT only, as the tests' other JVMs (tests/conftest.py).
            "SPARK_SUBMIT_OPTS": "-Dspark.ui.enabled=false -XX:TieredStopAtLevel=1",
            **loop.env(SERVICE), "SPARK_CONNECT_PORT": str(port)}


def healthy(loop: compose.Loopback, env: dict[str, str]) -> bool:
    """Compose's own healthcheck for the service, run with its environment."""
    test = loop.config["services"][SERVICE]["healthcheck"]["test"]
    if test[0] != "CMD-SHELL":
        raise RuntimeError(f"{SERVICE}'s healthcheck is {test}: the stack runs CMD-SHELL checks")
    return subprocess.run(["sh", "-c", test[1].replace("$$", "$")], env=env, capture_output=True,
                          timeout=30).returncode == 0


def service_log(logs: Path) -> Path:
    return logs / f"{SERVICE}.log"


def start(loop: compose.Loopback, logs: Path) -> tuple[subprocess.Popen, dict[str, str]]:
    env = service_env(loop)
    argv = loop.command(SERVICE, env)
    if argv[0] != "spark-submit":
        raise RuntimeError(f"{SERVICE} runs {argv[0]}: the stack runs this venv's spark-submit")
    logs.mkdir(parents=True, exist_ok=True)
    return spawn(argv, service_log(logs), env=env, cwd=logs), env


def wait_healthy(loop: compose.Loopback, proc: subprocess.Popen, env: dict[str, str], log: Path,
                 timeout_s: float = 300.0) -> str:
    """The server's `sc://` address once compose's healthcheck passes."""
    deadline = time.monotonic() + timeout_s
    while not healthy(loop, env):
        if proc.poll() is not None:
            raise RuntimeError(f"{SERVICE} exited {proc.returncode}:\n{tail(log)}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{SERVICE} not healthy after {timeout_s:.0f}s:\n{tail(log)}")
        time.sleep(1)
    return f"sc://127.0.0.1:{env['SPARK_CONNECT_PORT']}"


@contextlib.contextmanager
def connect_service(loop: compose.Loopback, logs: Path, timeout_s: float = 300.0):
    """Start the service, yield its `sc://` address, stop its process group on exit. Its log is
    service_log(logs)."""
    proc, env = start(loop, logs)
    try:
        yield wait_healthy(loop, proc, env, service_log(logs), timeout_s)
    finally:
        stop_group(proc)


def sessions_left_open(log: Path) -> set[str]:
    """The client sessions the server's log shows used and never closed (its INFO lines name
    each session a request uses, and the one a client releases: "Closing session ...")."""
    text = log.read_text()
    used = set(re.findall(r"sessionId: ([0-9a-f-]{36})", text))
    return used - set(re.findall(r"Closing session with userId: .* and sessionId: ([0-9a-f-]{36})", text))

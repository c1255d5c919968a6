"""Start a real MLflow tracking server on 127.0.0.1 for integration tests, and stop it by PID.

The server is launched through `mlflow_server/start.sh`, the same script deployments use,
so the tests exercise the deployment's flags and environment handling.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from tests.support.processes import die_with_parent, free_port, stop_group

REPO = Path(__file__).resolve().parents[2]
START_SH = REPO / "mlflow_server" / "start.sh"
# Settings of the caller's environment that would point the server elsewhere.
_SERVER_VARS = ("MLFLOW_BACKEND_STORE_URI", "MLFLOW_ARTIFACTS_DESTINATION", "MLFLOW_AUTH",
                "MLFLOW_AUTH_CONFIG_PATH", "MLFLOW_AUTH_DATABASE_URI", "MLFLOW_HOST",
                "MLFLOW_PORT", "MLFLOW_WORKERS", "MLFLOW_HOME")


class Server:
    """A started `start.sh` process group; `wait_healthy()` then `stop()` (always)."""

    def __init__(self, root: Path, *, extra_args: tuple[str, ...] = (), env: dict | None = None,
                 port: int | None = None):
        # port: a restart on the port (and root) of a stopped server, which clients still use.
        root.mkdir(parents=True, exist_ok=True)
        self.root, self.port = root, port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = root / "server.log"
        base = {k: v for k, v in os.environ.items() if k not in _SERVER_VARS}
        venv_bin = str(Path(sys.executable).parent)
        server_env = {
            **base,
            "PATH": venv_bin + os.pathsep + base.get("PATH", ""),
            "MLFLOW_HOME": str(root),
            "MLFLOW_ARTIFACTS_DESTINATION": str(root / "artifacts"),
            "MLFLOW_HOST": "127.0.0.1",
            "MLFLOW_PORT": str(self.port),
            "MLFLOW_AUTH": "false",
            **(env or {}),
        }
        with open(self.log_path, "wb") as log:
            # Own session: the server forks a uvicorn worker; stop() signals the whole group.
            self.proc = subprocess.Popen(["bash", str(START_SH), *extra_args], cwd=root,
                                         stdout=log, stderr=subprocess.STDOUT, env=server_env,
                                         start_new_session=True,
                                         preexec_fn=die_with_parent)

    def log_tail(self, chars: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:]

    def wait_healthy(self, timeout_s: float = 180.0) -> str:
        deadline = time.monotonic() + timeout_s
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mlflow server exited {self.proc.returncode}: {self.log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=2) as resp:
                    if resp.status == 200:
                        return self.url
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"mlflow server not healthy after {timeout_s}s: "
                                   f"{self.log_tail()}")
            time.sleep(0.5)

    def pids(self) -> list[int]:
        """PIDs of the server's process group (for measuring it)."""
        out = subprocess.run(["ps", "-o", "pid=", "-g", str(self.proc.pid)],
                             capture_output=True, text=True).stdout
        return [int(pid) for pid in out.split()]

    def stop(self) -> None:
        stop_group(self.proc)


@contextlib.contextmanager
def mlflow_server(root: Path, *, extra_args: tuple[str, ...] = (), env: dict | None = None,
                  timeout_s: float = 180.0):
    """Yield the URL of a fresh tracking server whose stores live under `root`.

    `env` adds or overrides server environment (e.g. MLFLOW_AUTH=true and its credentials);
    `extra_args` are passed on to `mlflow server`.
    """
    server = Server(root, extra_args=extra_args, env=env)
    try:
        yield server.wait_healthy(timeout_s)
    finally:
        server.stop()

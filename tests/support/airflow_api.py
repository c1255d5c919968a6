"""Start a real `airflow api-server` on 127.0.0.1 for integration tests, and stop it by PID.

The server runs against the caller's AIRFLOW_HOME (its metadata DB), with the
SimpleAuthManager and one known admin user whose password is written to a passwords
file before start, so the tests log in like a person would: `POST /auth/token` with
JSON credentials, then `Authorization: Bearer <jwt>` on every REST call.

    with airflow_api_server(env, tmp_path / "api") as api:
        api.get("/api/v2/dags")
        api.patch(".../hitlDetails", json={"chosen_options": ["Approve"]})

Loopback only; one uvicorn worker; the log goes to `<root>/api-server.log` and its tail
is in every error this module raises (use `api.log_tail()` in assertion messages).
"""

from __future__ import annotations

import contextlib
import json
import secrets
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.support.processes import die_with_parent, free_port, stop_group

AIRFLOW = str(Path(sys.executable).with_name("airflow"))
USER, ROLE = "tester", "admin"
SIMPLE_AUTH_MANAGER = "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
HEALTH = "/api/v2/monitor/health"


class AirflowApiServer:
    """A started `airflow api-server` process group; `wait_healthy()`, `login()`, then `stop()` (always)."""

    def __init__(self, env: dict[str, str], root: Path, *, user: str = USER, role: str = ROLE,
                 apps: str = "core", port: int | None = None):
        """`apps="core,execution"` also serves the Execution API that a scheduler's task processes
        call; then `self.env` (auth manager, JWT secret, API URLs) is what the scheduler and
        dag-processor of the same deployment must run with. `port`: one the caller chose (its
        URLs are in `env` already), else a free one."""
        root.mkdir(parents=True, exist_ok=True)
        self.root, self.user, self.port = root, user, port or free_port()
        self.password = secrets.token_urlsafe(16)
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = root / "api-server.log"
        self.token: str | None = None
        passwords = root / "simple_auth_manager_passwords.json"
        passwords.write_text(json.dumps({user: self.password}) + "\n")
        passwords.chmod(0o600)
        server_env = {
            **env,
            "AIRFLOW__CORE__AUTH_MANAGER": SIMPLE_AUTH_MANAGER,
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{user}:{role}",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "False",
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(self.port),
            "AIRFLOW__API__WORKERS": "1",
            "AIRFLOW__API__BASE_URL": self.url,
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(64),
        }
        if "execution" in apps.split(","):
            server_env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] = f"{self.url}/execution/"
        self.env = server_env
        with open(self.log_path, "wb") as log:
            # Own session so stop() can signal the whole group; PDEATHSIG so a killed pytest
            # leaves no orphaned server.
            self.proc = subprocess.Popen(
                [AIRFLOW, "api-server", "--apps", apps, "-H", "127.0.0.1", "-p", str(self.port),
                 "-w", "1"],
                cwd=root, stdout=log, stderr=subprocess.STDOUT, env=server_env,
                start_new_session=True, preexec_fn=die_with_parent)
        self.http = httpx.Client(base_url=self.url, timeout=60.0)

    # ------------------------------------------------------------ lifecycle

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def wait_healthy(self, timeout_s: float = 240.0) -> AirflowApiServer:
        deadline = time.monotonic() + timeout_s
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"airflow api-server exited {self.proc.returncode}:\n{self.log_tail()}")
            with contextlib.suppress(httpx.HTTPError):
                if self.http.get(HEALTH, timeout=5).status_code == 200:
                    return self
            if time.monotonic() > deadline:
                raise RuntimeError(f"airflow api-server not healthy after {timeout_s}s:\n{self.log_tail()}")
            time.sleep(0.5)

    def login(self, password: str | None = None) -> str:
        """A JWT from `POST /auth/token`; kept for get/patch."""
        resp = self.http.post("/auth/token", json={"username": self.user,
                                                   "password": self.password if password is None else password})
        if resp.status_code != 201:
            raise RuntimeError(f"POST /auth/token -> {resp.status_code} {resp.text[:500]}\n{self.log_tail()}")
        self.token = resp.json()["access_token"]
        return self.token

    def stop(self) -> None:
        self.http.close()
        stop_group(self.proc, term_wait_s=30)

    # ------------------------------------------------------------ requests

    def _headers(self, auth: bool) -> dict[str, str]:
        if not auth:
            return {}
        if self.token is None:
            self.login()
        return {"Authorization": f"Bearer {self.token}"}

    def request(self, method: str, path: str, *, auth: bool = True, **kwargs) -> httpx.Response:
        return self.http.request(method, path, headers=self._headers(auth), **kwargs)

    def get(self, path: str, *, auth: bool = True, **kwargs) -> httpx.Response:
        return self.request("GET", path, auth=auth, **kwargs)

    def patch(self, path: str, *, auth: bool = True, **kwargs) -> httpx.Response:
        return self.request("PATCH", path, auth=auth, **kwargs)

    def post(self, path: str, *, auth: bool = True, **kwargs) -> httpx.Response:
        return self.request("POST", path, auth=auth, **kwargs)

    def call_json(self, method: str, path: str, *, expect: int = 200, **kwargs) -> dict:
        """`method` with the token; raise with the body and the server log unless `expect`."""
        resp = self.request(method, path, **kwargs)
        if resp.status_code != expect:
            raise AssertionError(f"{method} {path} -> {resp.status_code} {resp.text[:1000]}\n{self.log_tail()}")
        return resp.json()

    def get_json(self, path: str, **kwargs) -> dict:
        """GET with the token; raise with the body and the server log unless 200."""
        return self.call_json("GET", path, **kwargs)


@contextlib.contextmanager
def airflow_api_server(env: dict[str, str], root: Path, *, user: str = USER, role: str = ROLE,
                       timeout_s: float = 240.0):
    """Yield a healthy, logged-in AirflowApiServer over `env`'s AIRFLOW_HOME; stop it on exit, always."""
    server = AirflowApiServer(env, root, user=user, role=role)
    try:
        server.wait_healthy(timeout_s)
        server.login()
        yield server
    finally:
        server.stop()

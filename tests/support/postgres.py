"""A throwaway PostgreSQL server on 127.0.0.1 for the stack test, stopped by PID.

Debian's server binaries (package `postgresql`, under /usr/lib/postgresql/<major>/bin) are
used in place: `initdb` into a fresh temp dir, then `postgres` in the foreground, listening
on 127.0.0.1 at a free port with its unix socket in the same temp dir. PostgreSQL refuses
to run as root, so under root (CI) the data dir is owned by, and the server runs as, the
`postgres` system user the Debian package creates.

    with postgres_server(tmp_path / "pg") as pg:
        url = pg.create_database("mlflow", owner="mlflow", password=pw)  # postgresql+psycopg2://...

Local connections over the socket are trusted (the test process creates the roles that
way); TCP connections from 127.0.0.1 need the role's password (scram-sha-256), as in a
deployment. Durability is off (fsync, synchronous_commit): the data is thrown away.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from tests.support.processes import free_port, spawn, stop_group, tail

SERVICE_USER = "postgres"          # created by Debian's postgresql package
SUPERUSER = "postgres"             # the bootstrap role initdb creates
_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def bin_dir() -> Path | None:
    """Where `initdb` and `postgres` are: the newest /usr/lib/postgresql/<major>/bin, else PATH."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"),
                   key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0)
    if found:
        return found[-1].parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


class Postgres:
    """A started server; `wait_ready()`, `create_database()`, then `stop()` (always)."""

    def __init__(self, log_dir: Path):
        binaries = bin_dir()
        if binaries is None:
            raise RuntimeError("PostgreSQL server binaries not found (apt-get install -y postgresql)")
        self.port = free_port()
        log_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = log_dir / "postgres.log"
        # Not under pytest's tmp dir: that is root-only (0700) and the server may run as `postgres`.
        self.root = Path(tempfile.mkdtemp(prefix="automl-pg-"))
        self.data, self.socket_dir = self.root / "data", self.root
        self.proc: subprocess.Popen | None = None
        run_as: dict = {}
        if os.geteuid() == 0:
            try:
                account = pwd.getpwnam(SERVICE_USER)
            except KeyError:
                shutil.rmtree(self.root)
                raise RuntimeError(f"running as root, and PostgreSQL refuses root: no '{SERVICE_USER}' user "
                                   "to run it as (apt-get install -y postgresql creates it)") from None
            os.chown(self.root, account.pw_uid, account.pw_gid)
            run_as = {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}
        env = {"PATH": os.environ.get("PATH", ""), "LANG": "C", "LC_ALL": "C"}
        initdb = subprocess.run(
            [str(binaries / "initdb"), "-D", str(self.data), "-U", SUPERUSER, "-E", "UTF8", "--no-locale",
             "--auth-local=trust", "--auth-host=scram-sha-256", "--no-sync"],
            env=env, cwd=self.root, capture_output=True, text=True, timeout=120, **run_as)
        if initdb.returncode != 0:
            shutil.rmtree(self.root, ignore_errors=True)
            raise RuntimeError(f"initdb exited {initdb.returncode}: {initdb.stderr[-2000:]}")
        settings = {"listen_addresses": "127.0.0.1", "port": self.port,
                    "unix_socket_directories": str(self.socket_dir), "max_connections": 200,
                    "shared_buffers": "64MB", "fsync": "off", "synchronous_commit": "off",
                    "full_page_writes": "off"}
        args = [arg for key, value in settings.items() for arg in ("-c", f"{key}={value}")]
        self.proc = spawn([str(binaries / "postgres"), "-D", str(self.data), *args], self.log_path,
                          env=env, cwd=self.root, **run_as)

    def log_tail(self, chars: int = 3000) -> str:
        return tail(self.log_path, chars)

    def connect(self, dbname: str = "postgres"):
        """A superuser connection over the unix socket (autocommit)."""
        import psycopg2

        conn = psycopg2.connect(host=str(self.socket_dir), port=self.port, user=SUPERUSER, dbname=dbname)
        conn.autocommit = True
        return conn

    def wait_ready(self, timeout_s: float = 60.0) -> Postgres:
        import psycopg2

        deadline = time.monotonic() + timeout_s
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"postgres exited {self.proc.returncode}:\n{self.log_tail()}")
            with contextlib.suppress(psycopg2.OperationalError):
                self.connect().close()
                return self
            if time.monotonic() > deadline:
                raise RuntimeError(f"postgres not ready after {timeout_s}s:\n{self.log_tail()}")
            time.sleep(0.2)

    def create_database(self, name: str, *, owner: str, password: str) -> str:
        """Database `name` owned by role `owner` (created with `password` if new); its SQLAlchemy URL
        over TCP. The driver is named: SQLAlchemy 2.1 reads a bare `postgresql://` as psycopg 3."""
        from psycopg2 import sql

        for value in (name, owner):
            if not _NAME.match(value):
                raise ValueError(f"{value!r} is not a plain PostgreSQL identifier")
        with contextlib.closing(self.connect()) as conn, conn.cursor() as cur:
            cur.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (owner,))
            if cur.fetchone() is None:
                cur.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD %s").format(sql.Identifier(owner)),
                            (password,))
            cur.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(name),
                                                                     sql.Identifier(owner)))
        return f"postgresql+psycopg2://{owner}:{password}@127.0.0.1:{self.port}/{name}"

    def tables(self, dbname: str) -> set[str]:
        """Names of the tables in `dbname`'s public schema."""
        with contextlib.closing(self.connect(dbname)) as conn, conn.cursor() as cur:
            cur.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
            return {row[0] for row in cur.fetchall()}

    def stop(self) -> None:
        """Fast shutdown (SIGINT: disconnect clients, checkpoint, exit), then remove the data."""
        if self.proc is not None:
            stop_group(self.proc, term_wait_s=30, sig=signal.SIGINT)
        shutil.rmtree(self.root, ignore_errors=True)


@contextlib.contextmanager
def postgres_server(log_dir: Path, timeout_s: float = 60.0):
    """Yield a ready Postgres; stop it and delete its data on exit, always."""
    server = Postgres(log_dir)
    try:
        yield server.wait_ready(timeout_s)
    finally:
        server.stop()

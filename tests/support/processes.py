"""Child processes the tests start: a free loopback port, no orphans, stopped by PID."""

from __future__ import annotations

import contextlib
import ctypes  # here, not in die_with_parent: a child switched to another user may not read the stdlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def die_with_parent() -> None:
    """In the child before exec: SIGTERM it when the test process dies, even by SIGKILL, so
    a killed pytest leaves no orphaned server (servers forward SIGTERM to their workers)."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except (ProcessLookupError, PermissionError):
        return False


def stop_group(proc: subprocess.Popen, term_wait_s: float = 20.0, sig: int = signal.SIGTERM) -> None:
    """`sig` (SIGTERM; PostgreSQL's fast shutdown is SIGINT) to the process group led by `proc`
    (started with start_new_session), then SIGKILL whatever is left: the leader may be gone
    while a worker or a JVM lingers."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)
    try:
        proc.wait(timeout=term_wait_s)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    deadline = time.monotonic() + 10
    while group_alive(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    with contextlib.suppress(ProcessLookupError):
        if group_alive(proc.pid):
            os.killpg(proc.pid, signal.SIGKILL)


def spawn(cmd: list[str], log_path, *, env: dict[str, str], cwd=None, **popen) -> subprocess.Popen:
    """Start `cmd` in its own process group (stop it with stop_group), stdout+stderr to
    `log_path`, SIGTERMed if the test process dies."""
    with open(log_path, "ab") as log:
        return subprocess.Popen(cmd, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True, preexec_fn=die_with_parent, **popen)


def tail(path, chars: int = 3000) -> str:
    try:
        with open(path, errors="replace") as f:
            return f.read()[-chars:]
    except OSError:
        return ""


def run_python(args: list[str] | str, timeout_s: float = 600, **env: str) -> subprocess.CompletedProcess:
    """This interpreter on `args` (a script when a string) from the checkout, this checkout's
    code first on its path, `env` over the test's environment; its output captured."""
    argv = ["-c", args] if isinstance(args, str) else args
    return subprocess.run([sys.executable, *argv], capture_output=True, text=True, timeout=timeout_s, cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT), **env})

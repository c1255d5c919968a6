"""`automl-tasks ...` as a child process: stdout (the --json result) piped, stderr to a log file."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from tests.support.processes import die_with_parent, stop_group

CLI = str(Path(sys.executable).with_name("automl-tasks"))


def start_cli(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    """Started in its own process group (stop it with stop_group), SIGTERMed if the tests die.
    With Python's fault handler on: SIGABRT writes every thread's stack to the log."""
    with open(log, "w") as err:
        return subprocess.Popen([CLI, *args], env={**env, "PYTHONFAULTHANDLER": "1"}, stdout=subprocess.PIPE,
                                stderr=err, text=True, start_new_session=True, preexec_fn=die_with_parent)


def run_cli(args: list[str], env: dict[str, str], log: Path, timeout_s: float = 900) -> tuple[int, str]:
    """(exit code, stdout) of a whole run; the process group is stopped whatever happens. A run
    that outlives `timeout_s` fails with its stdout and its threads' stacks: where it hangs."""
    proc = start_cli(args, env, log)
    try:
        try:
            out, _ = proc.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired as exc:
            os.kill(proc.pid, signal.SIGABRT)
            proc.communicate(timeout=30)
            printed = exc.stdout.decode() if isinstance(exc.stdout, bytes) else exc.stdout
            raise AssertionError(f"{' '.join(args)} still running after {timeout_s:.0f} s; its stdout:\n"
                                 f"{printed}\n{_stacks(log.read_text())}") from None
        return proc.returncode, out
    finally:
        stop_group(proc)


def _stacks(log: str) -> str:
    """The log's last lines before the fault handler's dump, and the dump's thread stacks."""
    start = log.rfind("Fatal Python error")
    before, dump = (log, "") if start < 0 else (log[:start], log[start:])
    stacks = "\n".join(line for line in dump.splitlines() if not line.startswith("Extension modules:"))
    return f"the end of its log:\n{before[-3000:]}\n{stacks[-8000:]}"


def tune_outcome(summary: dict) -> dict:
    """What a `tune --json` summary says about the models, not where or when it ran."""
    keys = ("algorithm", "params", "cv_value", "holdout_value", "baseline_value", "trials", "failed")
    return {"best": summary["best"], "trials": summary["trials"],
            "leaderboard": [{k: e[k] for k in keys} for e in summary["leaderboard"]]}

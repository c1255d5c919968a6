"""`automl-tasks ...` as a child process: stdout (the --json result) piped, stderr to a log file."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.support.processes import die_with_parent, stop_group

CLI = str(Path(sys.executable).with_name("automl-tasks"))


def start_cli(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    """Started in its own process group (stop it with stop_group), SIGTERMed if the tests die."""
    with open(log, "w") as err:
        return subprocess.Popen([CLI, *args], env=env, stdout=subprocess.PIPE, stderr=err, text=True,
                                start_new_session=True, preexec_fn=die_with_parent)


def run_cli(args: list[str], env: dict[str, str], log: Path, timeout_s: float = 900) -> tuple[int, str]:
    """(exit code, stdout) of a whole run; the process group is stopped whatever happens."""
    proc = start_cli(args, env, log)
    try:
        out, _ = proc.communicate(timeout=timeout_s)
        return proc.returncode, out
    finally:
        stop_group(proc)


def tune_outcome(summary: dict) -> dict:
    """What a `tune --json` summary says about the models, not where or when it ran."""
    keys = ("algorithm", "params", "cv_value", "holdout_value", "baseline_value", "trials", "failed")
    return {"best": summary["best"], "trials": summary["trials"],
            "leaderboard": [{k: e[k] for k in keys} for e in summary["leaderboard"]]}

"""Where long jobs report progress unless told otherwise: a line at a time on stderr (stdout
carries the CLI's --json result, and Airflow's task log shows stderr as it comes)."""

from __future__ import annotations

import sys


def to_stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)

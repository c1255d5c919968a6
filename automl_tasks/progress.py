"""Progress of long jobs: INFO records of the `automl_tasks` logger.

One channel, two renderings: the CLI prints the records on stderr as plain lines
(`show_on_stderr`; stdout carries the --json result), and an Airflow task's log shows them
as INFO records. Nothing is printed to stderr directly: Airflow records every byte a task
writes there at ERROR, which made normal progress look like failures.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Iterator

log = logging.getLogger("automl_tasks")


def report(line: str) -> None:
    """The default `progress` callable of every job."""
    log.info(line)


class _PlainLines(logging.Handler):
    """`line` for INFO, `warning: line` above it, written to the sys.stderr of the moment."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = record.getMessage()
            if record.levelno > logging.INFO:
                text = f"{record.levelname.lower()}: {text}"
            print(text, file=sys.stderr, flush=True)
        except Exception:  # noqa: BLE001 - logging's own contract: report, never raise
            self.handleError(record)


def show_on_stderr() -> None:
    """CLI: the library's records as readable lines on stderr (once per process)."""
    if not any(isinstance(h, _PlainLines) for h in log.handlers):
        log.addHandler(_PlainLines())
    log.setLevel(logging.INFO)


@contextlib.contextmanager
def stderr_as_info() -> Iterator[None]:
    """Inside an Airflow task: what libraries print to stderr (MLflow's "Successfully registered
    model", "Created version") goes to stdout, which Airflow logs at INFO, and Python warnings
    become WARNING records, instead of all of it landing in the task log as ERROR.

    At the file-descriptor level too: a local Spark JVM started inside the block inherits fd 2
    and prints its start-up notices there ("Using Spark's default log4j profile").
    """
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(2)
    os.dup2(1, 2)
    logging.captureWarnings(True)
    try:
        with contextlib.redirect_stderr(sys.stdout):
            yield
    finally:
        logging.captureWarnings(False)
        sys.stdout.flush()
        os.dup2(saved, 2)
        os.close(saved)

"""What the DAG files share: retry settings, failing a task at once on an error retrying cannot fix, and the
person who answered a human-in-the-loop task. (On the plugins path, so DAG files import it.)"""

from __future__ import annotations

import contextlib
import os
from datetime import timedelta


def retry_settings() -> dict:
    """`retries` and `retry_delay` of a deployment's tasks (docs/operations.md): for what is
    transient (Spark, MLflow, the network); bad input fails at once (`fail_at_once`)."""
    return {"retries": int(os.environ.get("AUTOML_TASK_RETRIES", "2")),
            "retry_delay": timedelta(minutes=float(os.environ.get("AUTOML_RETRY_DELAY_MINUTES", "5")))}


@contextlib.contextmanager
def fail_at_once(*errors: type[BaseException]):
    """An error of these kinds is the input's fault, or already recorded: fail the task now with
    the library's message instead of failing the same way on every retry."""
    from airflow.sdk.exceptions import AirflowFailException

    try:
        yield
    except errors as exc:
        raise AirflowFailException(f"{type(exc).__name__}: {exc}") from exc


def respondent(answer: dict) -> str:
    """Who answered a HITL task (its name, else its id), as decisions record them."""
    who = answer.get("responded_by_user") or {}
    person = who.get("name") or who.get("id") if isinstance(who, dict) else str(who)
    return person or "unknown"

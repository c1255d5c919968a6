"""What the DAG files share: the deployment's folders, the first scheduled month, the spec and month Params,
retry settings, failing a task at once on an error retrying cannot fix, and the person who answered a
human-in-the-loop task. (On the plugins path, so DAG files import it; light at parse time.)"""

from __future__ import annotations

import contextlib
import os
from datetime import timedelta
from pathlib import Path

DEPLOYMENT = Path(__file__).resolve().parents[1]    # where dags/, plugins/ and specs/ sit side by side


def deployment_dir(variable: str, default: str) -> str:
    """The folder the environment names (AUTOML_SPECS_DIR, AUTOML_DATA_DIR), else `default` in the deployment."""
    return os.environ.get(variable, str(DEPLOYMENT / default))


def first_month():
    """The first month a monthly schedule builds: the deployment's AUTOML_FIRST_MONTH; unset, the current
    month (no history); at most AUTOML_MAX_CATCHUP_MONTHS (12) back, further is moved up and logged."""
    import pendulum

    from automl_tasks.data import months     # standard library only: safe at parse time

    return months.first_scheduled(os.environ.get("AUTOML_FIRST_MONTH"),
                                  os.environ.get("AUTOML_MAX_CATCHUP_MONTHS"), pendulum.now("UTC").date())


def spec_and_month_params() -> dict:
    """The `spec` and `month` Params of a DAG run over the specs folder, month by month."""
    from airflow.sdk import Param

    from automl_tasks.data import months

    return {"spec": Param(None, type=["null", "string"],
                          description="One spec file (under the specs folder); empty: every spec"),
            "month": Param(None, type=["null", "string"], pattern=months.PATTERN,
                           description="YYYY-MM; empty: the month the run covers (its data interval)")}


def retry_settings() -> dict:
    """`retries` and `retry_delay` of a deployment's tasks (docs/operations.md): for what is
    transient (Spark, MLflow, the network); bad input fails at once (`fail_at_once`)."""
    return {"retries": int(os.environ.get("AUTOML_TASK_RETRIES", "2")),
            "retry_delay": timedelta(minutes=float(os.environ.get("AUTOML_RETRY_DELAY_MINUTES", "5")))}


def step_timeout() -> timedelta:
    """`execution_timeout` of a step that reads, scores and logs (AUTOML_STEP_TIMEOUT_HOURS, default 1)."""
    return timedelta(hours=float(os.environ.get("AUTOML_STEP_TIMEOUT_HOURS", "1")))


def spark_task() -> dict:
    """A task that may start Spark work: in the pool whose size caps the Spark drivers across all DAG
    runs (AUTOML_SPARK_POOL, docs/operations.md), one spec's such task at a time within a run."""
    return {"pool": os.environ.get("AUTOML_SPARK_POOL", "default_pool"), "max_active_tis_per_dagrun": 1}


def no_retry_on_bad_input():
    """A DataError or SpecError is the input's fault: fail the task now, retrying cannot fix it."""
    from automl_tasks.errors import DataError, SpecError

    return fail_at_once(DataError, SpecError)


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

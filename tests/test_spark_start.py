"""The Spark session a CLI command starts in the background while it imports and checks."""

from __future__ import annotations

import functools

import pytest

from tests.support.processes import run_python
from tests.support.specs import write_spec

pytestmark = pytest.mark.slow

TAKEN_OVER = """
import threading
from pyspark.sql import SparkSession
from automl_tasks.spark import _starting, get_spark, start_in_background
start_in_background()
print("started in", [t.name for t in threading.enumerate() if t.name == "spark-start"])
spark = get_spark()
active = SparkSession.getActiveSession()          # this thread's, as PySpark keeps it
print("active is it", active is not None and active._jsparkSession.equals(spark._jsparkSession))
print("again the same", get_spark()._jsparkSession.equals(spark._jsparkSession), "pending", len(_starting))
print("rows", spark.range(5).count())
"""


_run = functools.partial(run_python, timeout_s=300)


def test_get_spark_takes_over_the_session_started_in_the_background():
    done = _run(TAKEN_OVER)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.splitlines() == ["started in ['spark-start']", "active is it True",
                                        "again the same True pending 0", "rows 5"], done.stdout


def _cli(*argv: str, **env: str) -> list[str]:
    done = _run(f"import sys\nfrom automl_tasks.cli import main\nsys.exit(main({list(argv)!r}))\n", **env)
    assert done.returncode == 2, done.stderr[-3000:]
    return done.stderr.strip().splitlines()


def test_a_bad_spec_fails_before_spark_starts():
    """The spec is loaded and checked before the JVM is started for the command: its error comes
    at once, and no JVM starts for a command that cannot run."""
    lines = _cli("tune", "--spec", "specs/no_such_spec.yaml")
    assert lines[-1].startswith("error: cannot read spec") and "no_such_spec.yaml" in lines[-1], lines[-5:]
    assert not any("log level" in line for line in lines), lines


def test_a_command_failing_before_it_needs_spark_ends_on_its_error():
    """A bad month fails `tune` after the session's start began but before Spark is asked for:
    the session is waited for and stopped first, so the JVM's start-up lines never follow the error."""
    lines = _cli("tune", "--spec", "specs/loan_default.yaml", "--month", "2018-13")
    assert lines[-1].startswith("error: ") and "2018-13" in lines[-1], lines[-5:]
    assert any("log level" in line for line in lines[:-1]), lines     # Spark did start, before the error


def test_a_failed_background_start_is_raised_where_the_session_is_asked_for():
    """A bad SPARK_MASTER fails the command at get_spark, with Spark's own error, as before."""
    done = _run("from automl_tasks.spark import get_spark, start_in_background\n"
                "start_in_background()\n"
                "try:\n    get_spark()\nexcept Exception as exc:\n    print('raised', type(exc).__name__, exc)\n",
                SPARK_MASTER="nowhere://1")
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.startswith("raised PySparkRuntimeError [JAVA_GATEWAY_EXITED]"), done.stdout
    assert "Master must either be yarn or start with" in done.stderr, done.stderr[-3000:]  # Spark says why


def test_a_command_failing_in_its_checks_makes_no_new_store(tmp_path):
    """A `tune` that fails once Spark has started, in its data checks (a source that is not there),
    ends on its error and leaves no MLflow store behind: bad input changes nothing."""
    spec = write_spec(tmp_path, data={"source": str(tmp_path / "no_such_data")})
    home = tmp_path / "home"
    lines = _cli("tune", "--spec", str(spec), AUTOML_HOME=str(home), MLFLOW_TRACKING_URI="")
    assert lines[-1].startswith("error: ") and "no_such_data" in lines[-1], lines[-8:]
    assert not (home / "mlflow.db").exists()

"""A DAG run under dag.test() in its own process (`scripts/run_dag.py`), as `make demo` runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def dag_env(airflow_env: dict[str, str], tracking: str, **settings: str) -> dict[str, str]:
    """The Airflow test env pointed at the test's MLflow server and AUTOML_HOME, local Spark.
    The test data's months are years back: a test's AUTOML_FIRST_MONTH is not moved up by the
    catchup bound (AUTOML_MAX_CATCHUP_MONTHS, as `make demo` sets it)."""
    return {**airflow_env, "MLFLOW_TRACKING_URI": tracking, "AUTOML_HOME": os.environ["AUTOML_HOME"],
            "SPARK_MASTER": "local[2]", "AUTOML_MAX_CATCHUP_MONTHS": "1200", **settings}


def run_dag(dag_id: str, dates: list[str], conf: dict, env: dict[str, str], timeout_s: float = 1500,
            answer: str | None = None) -> list[dict]:
    """One dag.test() run per logical date, in one process; the RESULT line of each (state, tasks).
    `answer`: the option a person picks in every human-in-the-loop task (run_dag.py --answer)."""
    args = [sys.executable, str(ROOT / "scripts" / "run_dag.py"), dag_id]
    for date in dates:
        args += ["--date", date]
    if answer is not None:
        args += ["--answer", answer]
    out = subprocess.run([*args, "--conf", json.dumps(conf)], env=env, cwd=ROOT, capture_output=True,
                         text=True, timeout=timeout_s)
    assert out.returncode == 0, out.stderr[-4000:]
    return [json.loads(line[len("RESULT "):]) for line in out.stdout.splitlines() if line.startswith("RESULT ")]

"""Progress is INFO logging: plain lines in the CLI, INFO records in Airflow, never stderr prints."""

from __future__ import annotations

import logging
import subprocess
import sys
import warnings

from automl_tasks.progress import report, stderr_as_info


def test_progress_is_an_info_record_of_the_library_logger(caplog):
    with caplog.at_level(logging.INFO, logger="automl_tasks"):
        report("xgboost trial 1/4 areaUnderROC=0.8 best=0.8 eta 3s")
    [record] = [r for r in caplog.records if r.name == "automl_tasks"]
    assert record.levelno == logging.INFO and record.getMessage().startswith("xgboost trial 1/4")


def test_the_cli_prints_records_as_plain_lines_and_warnings_with_their_level():
    code = ("import logging; from automl_tasks.progress import report, show_on_stderr; show_on_stderr(); "
            "report('lightgbm trial 2/8 eta 5s'); logging.getLogger('automl_tasks.data').warning('3 duplicated ids')")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""
    assert done.stderr.splitlines() == ["lightgbm trial 2/8 eta 5s", "warning: 3 duplicated ids"]


def test_in_a_task_library_stderr_goes_to_stdout_and_warnings_to_logging(capfd, caplog):
    with caplog.at_level(logging.WARNING, logger="py.warnings"), stderr_as_info():
        print("Successfully registered model 'm'.", file=sys.stderr)      # what MLflow's eprint does
        warnings.warn("a deprecated call", UserWarning, stacklevel=1)
        # A child started inside (a local Spark JVM) writes to the fd 2 it inherits.
        subprocess.run([sys.executable, "-c", "import sys; sys.stderr.write('Using a log4j profile\\n')"],
                       check=True, timeout=60)
    out = capfd.readouterr()
    assert "Successfully registered model 'm'." in out.out and "Using a log4j profile" in out.out
    assert out.err == ""
    assert any("a deprecated call" in r.getMessage() and r.levelno == logging.WARNING for r in caplog.records)
    print("after", file=sys.stderr)
    subprocess.run([sys.executable, "-c", "import sys; sys.stderr.write('child after\\n')"], check=True, timeout=60)
    assert capfd.readouterr().err == "after\nchild after\n"             # restored on exit


def test_a_time_budgeted_search_reports_the_budget_not_a_placeholder_count():
    import re
    import time
    from types import SimpleNamespace

    from automl_tasks.tuning.search import TrialResult, _progress_line

    ctx = SimpleNamespace(algorithm="lightgbm", metric="logLoss")
    trial = TrialResult("lightgbm", 2, {}, 0.53, [0.52, 0.54], 1.0, "FINISHED")
    started = time.monotonic() - 10.0                     # two trials in 10 s
    # The PoC's count is a ceiling (10,000) its 60 s budget ends long before.
    line = _progress_line(ctx, trial, 2, 10_000, 0.53, started, budget_s=60.0)
    assert re.fullmatch(r"lightgbm trial 2 logLoss=0\.5300 best=0\.5300 eta (49|50)s \(time budget\)", line), line
    # A count that ends the search first is shown, with its own eta.
    line = _progress_line(ctx, trial, 2, 4, 0.53, started, budget_s=600.0)
    assert re.fullmatch(r"lightgbm trial 2/4 logLoss=0\.5300 best=0\.5300 eta 10s", line), line
    assert _progress_line(ctx, trial, 2, 4, 0.53, started).endswith("eta 10s")      # no budget

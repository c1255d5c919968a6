"""The local driver JVM's class-data archive: written by `python -m automl_tasks.spark_classes`
(as `make install` does), used by every later local session, and harmless when unusable."""

from __future__ import annotations

import pytest

from automl_tasks.spark import JVM_LOG_TO_STDERR, driver_jvm_options
from tests.support.processes import run_python as _python

pytestmark = pytest.mark.slow

COUNT_ROWS = ("from automl_tasks.spark import get_spark\n"
              "print('rows', get_spark().range(7).count())\n")


def test_options_name_the_archive_only_when_it_exists(tmp_path, monkeypatch):
    archive = tmp_path / "classes.jsa"
    monkeypatch.setenv("AUTOML_SPARK_CLASS_ARCHIVE", str(archive))
    assert driver_jvm_options() == JVM_LOG_TO_STDERR          # not written yet: no archive option
    archive.write_bytes(b"x")
    assert driver_jvm_options() == f"{JVM_LOG_TO_STDERR} -XX:SharedArchiveFile={archive}"
    monkeypatch.setenv("AUTOML_SPARK_CLASS_ARCHIVE", "")       # set empty: none, wherever one is
    assert driver_jvm_options() == JVM_LOG_TO_STDERR


def test_a_written_archive_is_mapped_by_the_next_session(tmp_path):
    archive = tmp_path / "share" / "spark-classes.jsa"
    written = _python(["-m", "automl_tasks.spark_classes", "--out", str(archive)])
    assert written.returncode == 0, written.stderr[-3000:]
    assert written.stdout.startswith(f"wrote {archive} (") and archive.stat().st_size > 10 * 2**20
    assert not archive.with_name(archive.name + ".partial").exists()
    # -Xshare:on: a JVM that cannot map the archive refuses to start instead of starting without it.
    mapped = _python(COUNT_ROWS, AUTOML_SPARK_CLASS_ARCHIVE=str(archive), AUTOML_DRIVER_JAVA_OPTIONS="-Xshare:on")
    assert mapped.returncode == 0, mapped.stderr[-3000:]
    assert mapped.stdout == "rows 7\n"
    # Another class path (a deployment adding jars) cannot use it: the JVM says so on stderr
    # and starts without it; stdout stays the command's alone (one JSON object with --json).
    other = _python(COUNT_ROWS, AUTOML_SPARK_CLASS_ARCHIVE=str(archive), AUTOML_DRIVER_JAVA_OPTIONS="",
                    PYSPARK_SUBMIT_ARGS=f"--driver-class-path {tmp_path} pyspark-shell")
    assert other.returncode == 0, other.stderr[-3000:]
    assert other.stdout == "rows 7\n"
    assert f"Unable to use shared archive. The top archive failed to load: {archive}" in other.stderr


def test_a_file_that_is_no_archive_is_skipped(tmp_path):
    archive = tmp_path / "spark-classes.jsa"
    archive.write_bytes(b"not an archive")
    refused = _python(COUNT_ROWS, AUTOML_SPARK_CLASS_ARCHIVE=str(archive), AUTOML_DRIVER_JAVA_OPTIONS="-Xshare:on")
    assert refused.returncode != 0 and "rows" not in refused.stdout    # the check above can fail
    started = _python(COUNT_ROWS, AUTOML_SPARK_CLASS_ARCHIVE=str(archive), AUTOML_DRIVER_JAVA_OPTIONS="")
    assert started.returncode == 0, started.stderr[-3000:]
    assert started.stdout == "rows 7\n"

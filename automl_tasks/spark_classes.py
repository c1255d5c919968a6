"""`python -m automl_tasks.spark_classes`: write the local driver JVM's class-data archive.

A JVM starting Spark reads, verifies and links some 10,000 classes from ~280 jars. Java's
class-data sharing can map them from an archive instead: a JVM run with
-XX:ArchiveClassesAtExit records every class it loaded, and later JVMs given the archive
(`spark.driver_jvm_options`) start from it. `make install` runs this once per install; the
workload is what a command's first Spark work is: a parquet read, `prepare`'s checks and
encoding, an Arrow collect and a Python worker job, on a few hundred rows of demo data.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

WORKLOAD_SPEC = """
name: class_archive
task: binary
data: {source: %s, label: default, timestamp: timestamp, id: id}
features: [income, loan_amount, debt_ratio, salary_range, region, employment]
window: {train_months: 2, holdout_months: 1}
algorithms: {xgboost: {search: grid, space: {max_depth: [3]}}}
"""


def write_archive(path: Path) -> int:
    """Run the workload in a JVM that records its classes into `path`; returns the archive's
    size. Written beside `path` and moved over it once complete, so a failed run leaves any
    archive there as it was."""
    from pyspark import SparkContext

    from automl_tasks import spark as sessions
    from automl_tasks.data.demo import write_demo_data
    from automl_tasks.data.prepare import prepare
    from automl_tasks.spec import parse_spec

    if SparkContext._gateway is not None:
        raise RuntimeError("a JVM is running in this process already: its classes cannot be recorded")
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.unlink(missing_ok=True)
    os.environ["AUTOML_SPARK_CLASS_ARCHIVE"] = ""        # load from the jars, not from an older archive
    os.environ["AUTOML_DRIVER_JAVA_OPTIONS"] = (f"-XX:ArchiveClassesAtExit={partial} "
                                                f"{os.environ.get('AUTOML_DRIVER_JAVA_OPTIONS', '')}")
    with tempfile.TemporaryDirectory(prefix="spark-classes-") as work:
        loans = write_demo_data(Path(work), n_months=3, rows_per_month=300)["loans"]
        spec = parse_spec(WORKLOAD_SPEC % loans, "the class archive's workload")
        spark = sessions.get_spark()
        prepare(spark, spec, "2017-03")
        spark.sparkContext.parallelize(range(4), 2).map(lambda x: x * 2).collect()
        spark.stop()
    # The JVM writes the archive as it exits, which it does when its stdin closes.
    jvm = SparkContext._gateway.proc
    jvm.stdin.close()
    if jvm.wait(timeout=600) != 0 or not partial.is_file():
        raise RuntimeError(f"the JVM exited with code {jvm.returncode} without writing {partial}")
    partial.replace(path)
    return path.stat().st_size


def main(argv: list[str] | None = None) -> int:
    from automl_tasks.spark import class_archive

    parser = argparse.ArgumentParser(prog="python -m automl_tasks.spark_classes",
                                     description=__doc__.splitlines()[0].split(": ", 1)[1])
    parser.add_argument("--out", type=Path, default=class_archive(),
                        help="the archive (default: AUTOML_SPARK_CLASS_ARCHIVE, else "
                             "<venv>/share/automl-tasks/spark-classes.jsa)")
    args = parser.parse_args(argv)
    if args.out is None:
        parser.error("AUTOML_SPARK_CLASS_ARCHIVE is set empty (no archive): name one with --out")
    started = time.monotonic()
    size = write_archive(args.out)
    print(f"wrote {args.out} ({size / 2**20:.0f} MiB) in {time.monotonic() - started:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Spark session factory: local mode by default; SPARK_REMOTE or SPARK_MASTER pick a cluster."""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path


_starting: list = []        # a background start not yet taken over: [thread, result]


def start_in_background(app_name: str = "automl_tasks") -> None:
    """Build the session in a thread while the caller imports and checks: a local JVM takes
    ~12 s to start, mostly waiting on another process, and a command's imports ~8 s of CPU on
    the other core. get_spark() takes it over. Nothing to overlap (a session exists, or Spark
    Connect, whose session is a connection): nothing started."""
    import threading

    from pyspark import SparkContext

    if _starting or SparkContext._active_spark_context is not None or os.environ.get("SPARK_REMOTE"):
        return
    result: dict = {}

    def start() -> None:
        try:
            result["spark"] = _build(app_name)
        except BaseException as exc:       # re-raised by get_spark, in the thread that asks
            result["error"] = exc

    thread = threading.Thread(target=start, name="spark-start", daemon=True)
    _starting.extend([thread, result])
    thread.start()


def stop_background_start() -> None:
    """For a command that fails before it asks for Spark: wait for the session being started and
    stop it. Otherwise the JVM's start-up lines come after the command's error, and a JVM starts
    for nobody."""
    if not _starting:
        return
    thread, result = _starting
    thread.join()
    _starting.clear()
    if "spark" in result:
        result["spark"].stop()


def release_connect_session() -> None:
    """End this process's Spark Connect session, if it has one: the server frees the session's
    cached models and frames now, and PySpark has nothing left to clean up at interpreter exit.
    That clean-up (an atexit RPC, finalizers of model references sending their own) can block
    the exit for good after the command has printed its result (SPARK-55326, SPARK-59125). A
    local session is left alone: it ends with the process, and the tests share theirs."""
    if not os.environ.get("SPARK_REMOTE") or "pyspark.sql.connect.session" not in sys.modules:
        return       # no Connect session was ever made here
    import gc

    from pyspark.errors import PySparkRuntimeError
    from pyspark.sql.connect.session import SparkSession

    try:
        session = SparkSession.active()       # this thread's, else the process's default one
    except PySparkRuntimeError:               # none, or stopped already
        return
    gc.collect()        # the dropped model references send their deletes now, one at a time
    session.stop()      # releases the session and closes the channel; finalizers then send nothing


def get_spark(app_name: str = "automl_tasks"):
    """Return the active session or build one (or the one start_in_background is building).

    SPARK_REMOTE (e.g. sc://host:15002) uses Spark Connect; SPARK_MASTER (e.g.
    spark://host:7077) a classic cluster; otherwise local[*] on this machine,
    bound to loopback, with no UI listener.
    """
    from pyspark.sql import SparkSession

    if _starting:
        thread, result = _starting
        thread.join()
        _starting.clear()
        if "error" in result:
            raise result["error"]
        spark = result["spark"]
        # PySpark keeps the active session per thread (a JVM thread-local): this thread's too.
        spark._jvm.SparkSession.setActiveSession(spark._jsparkSession)
        SparkSession._activeSession = spark
        return spark
    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    return _build(app_name)


def _build(app_name: str):
    from pyspark.sql import SparkSession

    remote = os.environ.get("SPARK_REMOTE")
    if remote:
        # Months are computed in UTC (data/sources.py `with_month`), whatever the server's default.
        return (SparkSession.builder.remote(remote).appName(app_name)
                .config("spark.sql.session.timeZone", "UTC").getOrCreate())
    master = os.environ.get("SPARK_MASTER", "local[*]")
    builder = (SparkSession.builder.master(master).appName(app_name)
               .config("spark.sql.session.timeZone", "UTC")
               .config("spark.sql.execution.arrow.pyspark.enabled", "true")
               .config("spark.python.worker.reuse", "true")
               .config("spark.ui.showConsoleProgress", "false"))
    if master.startswith("local"):
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
        # Workers must run this interpreter (the venv), not whatever python3 is on PATH.
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        builder = (builder.config("spark.driver.host", "127.0.0.1")
                   .config("spark.driver.bindAddress", "127.0.0.1")
                   .config("spark.ui.enabled", os.environ.get("AUTOML_SPARK_UI", "false"))
                   .config("spark.driver.memory", os.environ.get("AUTOML_DRIVER_MEMORY", "4g"))
                   .config("spark.sql.shuffle.partitions", "8")
                   .config("spark.driver.extraJavaOptions",
                           f"{driver_jvm_options()} {os.environ.get('AUTOML_DRIVER_JAVA_OPTIONS', '')}".strip()))
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel(os.environ.get("AUTOML_SPARK_LOG_LEVEL", "ERROR"))
    return spark


# The JVM's own warnings (a class archive it cannot use, ...) go to stderr: its stdout is the
# command's, which carries exactly one JSON object with --json.
JVM_LOG_TO_STDERR = "-Xlog:disable -Xlog:all=warning:stderr"


def class_archive() -> Path | None:
    """Where the local driver JVM's class-data archive is (AUTOML_SPARK_CLASS_ARCHIVE; default
    <venv>/share/automl-tasks/spark-classes.jsa, which `make install` writes); None when unset empty."""
    path = os.environ.get("AUTOML_SPARK_CLASS_ARCHIVE", str(Path(sys.prefix, "share", "automl-tasks",
                                                                    "spark-classes.jsa")))
    return Path(path) if path else None


def driver_jvm_options() -> str:
    """The local driver JVM's options: its warnings on stderr and, when the archive exists, the
    classes Spark loads mapped from it instead of read and verified from ~280 jars (about 2 s
    of each session's start, as much again of its first queries: bench/RESULTS.md, "A class-data
    archive"). A JVM that cannot use the archive (another JDK, other jars) says so on stderr
    and starts without it."""
    archive = class_archive()
    if archive is not None and archive.is_file():
        return f"{JVM_LOG_TO_STDERR} -XX:SharedArchiveFile={archive}"
    return JVM_LOG_TO_STDERR


def is_connect(spark) -> bool:
    """Whether `spark` is a Spark Connect session: no SparkContext (nor JVM) on this side."""
    return getattr(spark, "_sc", None) is None


def describe(spark) -> str:
    """Where the session's Spark work runs, for the runs' tags: its master, or on Spark Connect
    `connect: <the server's master>`."""
    master = spark.conf.get("spark.master", "unknown")
    return f"connect: {master}" if is_connect(spark) else master


def task_slots(spark) -> int:
    """How many tasks run at once: the trial runner sizes its waves by this."""
    override = os.environ.get("AUTOML_TASK_SLOTS")
    if override:
        return max(1, int(override))
    try:
        return max(1, spark.sparkContext.defaultParallelism)
    except Exception:  # Spark Connect has no SparkContext: ask the conf instead.
        return max(1, int(spark.conf.get("spark.default.parallelism", "2")))


@contextlib.contextmanager
def driver_local_ml_io():
    """Spark ML save/load inside the block read and write the driver's own files.

    By default PipelineModel save/load run Spark jobs, so executors write and read the
    files: a driver-local folder (a temp dir, an MLflow download) works only where the
    executors share the driver's disk; on a cluster a save silently leaves the stages'
    files on the executors' disks. Spark's switch for this (ReadWriteUtils.localSavingModeState,
    made for Spark Connect's model cache) is a JVM thread-local; PySpark pins each Python
    thread to its own JVM thread. Without a classic session (Spark Connect) nothing changes.
    """
    from pyspark.sql import SparkSession

    sc = getattr(SparkSession.getActiveSession(), "_sc", None)
    if sc is None:
        yield
        return
    state = sc._jvm.org.apache.spark.ml.util.ReadWriteUtils.localSavingModeState()
    state.set(True)
    try:
        yield
    finally:
        state.set(False)


def cancel_jobs(spark, group: str | None = None, timeout_s: float = 15.0) -> None:
    """Cancel a job group's Spark jobs (every job of the session without one), so no executor
    goes on fitting for a search or PoC that has failed or been stopped.

    From a new thread, which has its own py4j connection: the caller's may be mid-call when
    a signal unwound it, and its next answer would be that call's.
    """
    import threading

    def cancel():
        try:
            sc = getattr(spark, "_sc", None)
            if sc is None:                   # Spark Connect: jobs are interrupted by tag
                spark.interruptTag(group) if group else spark.interruptAll()
            elif group:
                sc.cancelJobGroup(group)
            else:
                sc.cancelAllJobs()
        except Exception:  # the session may be gone already; the original error matters
            pass

    worker = threading.Thread(target=cancel, name="cancel-spark-jobs", daemon=True)
    worker.start()
    worker.join(timeout_s)


def job_failure(exc: BaseException) -> str:
    """The line that says why a Spark job failed: the task's innermost Python error when
    there is one (Py4J wraps it deep inside a Java stack trace), else the first line."""
    text = str(exc)
    lines = [line.strip() for line in text.splitlines() if line[:1] not in (" ", "\t") and "Error" in line]
    python = [line for line in lines if not line.startswith(("org.", "java.", "py4j", "at ", "Caused by"))]
    first = text.splitlines()[0] if text else type(exc).__name__
    return (python[-1] if python else first)[:500]

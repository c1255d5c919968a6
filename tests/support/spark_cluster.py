"""A Spark standalone cluster (one master, one worker) on 127.0.0.1, from the pyspark install.

    with spark_cluster(tmp / "cluster", hide=tmp / "driver") as cluster:
        env = {**os.environ, **cluster.driver_env()}    # a driver process: SPARK_MASTER etc.
        cluster.pids(PYTHON_DAEMON)      # an executor's Python workers (tasks are running)
        cluster.kill_executor(cluster.executor_pids()[0])

Master and worker are `spark-class` child processes in their own sessions, stopped by
PID (their process groups, which hold the executor JVMs the worker starts). Everything
binds loopback (SPARK_LOCAL_IP), web UIs on free ports; work, log and conf dirs live
under `root`. `hide`: a folder the worker and its executors must not see; the worker
starts in its own mount namespace with an empty tmpfs over it (`unshare`), so a driver
that leaves files there for executors fails the way it would on separate hosts.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pyspark

from tests.support.processes import die_with_parent, free_port, stop_group

SPARK_HOME = Path(pyspark.__file__).parent
SPARK_CLASS = SPARK_HOME / "bin" / "spark-class"
EXECUTOR_CLASS = "org.apache.spark.executor.CoarseGrainedExecutorBackend"
PYTHON_DAEMON = "pyspark.daemon"   # an executor's Python workers: started by its first Python task
C1_ONLY = "-XX:TieredStopAtLevel=1"


def can_hide() -> str | None:
    """None if `unshare` can give the worker a private mount namespace here, else why not."""
    probe = subprocess.run([*_unshare(), "sh", "-c", "mount -t tmpfs probe /mnt"],
                           capture_output=True, text=True)
    return None if probe.returncode == 0 else f"unshare --mount is not permitted: {probe.stderr.strip()}"


def _unshare() -> list[str]:
    # Root (CI) needs only a mount namespace; others map themselves to root in a user namespace.
    user = [] if os.geteuid() == 0 else ["--user", "--map-root-user"]
    return ["unshare", *user, "--mount", "--propagation", "private"]


class Cluster:
    """Master + worker: `start()`, `wait_ready()`, then `stop()` (always)."""

    def __init__(self, root: Path, *, cores: int = 2, memory: str = "2g", hide: Path | None = None):
        self.root, self.cores, self.memory, self.hide = root, cores, memory, hide
        self.port, self.ui_port = free_port(), free_port()
        self.master_url = f"spark://127.0.0.1:{self.port}"
        self.procs: list[subprocess.Popen] = []

    def start(self) -> None:
        (self.root / "conf").mkdir(parents=True, exist_ok=True)   # no settings from elsewhere
        # No REST submission server: it would listen on a fixed port (6066).
        (self.root / "conf" / "spark-defaults.conf").write_text("spark.master.rest.enabled false\n")
        self._start("master", ["org.apache.spark.deploy.master.Master", "--host", "127.0.0.1",
                               "--port", str(self.port), "--webui-port", str(self.ui_port)])
        worker = ["org.apache.spark.deploy.worker.Worker", "--host", "127.0.0.1", "--port", str(free_port()),
                  "--webui-port", str(free_port()), "--cores", str(self.cores), "--memory", self.memory,
                  "--work-dir", str(self.root / "work"), self.master_url]
        prefix = []
        if self.hide is not None:
            self.hide.mkdir(parents=True, exist_ok=True)
            prefix = [*_unshare(), "sh", "-c", 'mount -t tmpfs hidden "$0" && exec "$@"', str(self.hide)]
        self.worker = self._start("worker", worker, prefix)

    def _start(self, name: str, args: list[str], prefix: list[str] = ()) -> subprocess.Popen:
        env = {**os.environ, "SPARK_HOME": str(SPARK_HOME), "SPARK_LOCAL_IP": "127.0.0.1",
               "SPARK_CONF_DIR": str(self.root / "conf"), "SPARK_LOG_DIR": str(self.root / "logs"),
               "SPARK_WORKER_DIR": str(self.root / "work"), "SPARK_DAEMON_MEMORY": "512m",
               "SPARK_DAEMON_JAVA_OPTS": C1_ONLY}
        with open(self.root / f"{name}.log", "wb") as log:
            proc = subprocess.Popen([*prefix, str(SPARK_CLASS), *args], cwd=self.root, env=env,
                                    stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                    preexec_fn=die_with_parent)
        self.procs.append(proc)
        return proc

    def log_tail(self, chars: int = 3000) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-chars:]}"
                         for p in sorted(self.root.glob("*.log")))

    def state(self) -> dict:
        """The master's JSON status: workers, active apps."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.ui_port}/json/", timeout=5) as resp:
            return json.load(resp)

    def wait_ready(self, timeout_s: float = 120.0) -> Cluster:
        """Until the worker has registered with the master with all its cores."""
        deadline = time.monotonic() + timeout_s
        while True:
            for proc in self.procs:
                if proc.poll() is not None:
                    raise RuntimeError(f"spark {proc.args[-1]} exited {proc.returncode}:\n{self.log_tail()}")
            with contextlib.suppress(OSError, ValueError):
                if any(w["state"] == "ALIVE" and w["cores"] == self.cores for w in self.state()["workers"]):
                    return self
            if time.monotonic() > deadline:
                raise RuntimeError(f"spark worker not registered after {timeout_s}s:\n{self.log_tail()}")
            time.sleep(0.5)

    def driver_env(self) -> dict[str, str]:
        """Environment for a driver process (the CLI) to run its Spark work on this cluster.

        With `hide`, the driver keeps its files (AUTOML_HOME, temp and Spark local dirs) in
        the hidden folder, where the executors cannot read them.
        """
        # Test-sized settings as in local mode (get_spark sets them only for local masters):
        # 8 shuffle partitions, and JVMs whose JIT stops at C1 (short jobs end before C2 pays off).
        conf = {"spark.ui.enabled": "false", "spark.driver.host": "127.0.0.1",
                "spark.executor.memory": "1g", "spark.executor.cores": str(self.cores),
                "spark.sql.shuffle.partitions": "8", "spark.executor.extraJavaOptions": C1_ONLY}
        env = {"SPARK_MASTER": self.master_url, "SPARK_LOCAL_IP": "127.0.0.1",
               # Executors run this interpreter (the venv), as a deployment's image would.
               "PYSPARK_PYTHON": sys.executable,
               "PYSPARK_SUBMIT_ARGS": " ".join(f"--conf {k}={v}" for k, v in conf.items())
               + f" --driver-java-options {C1_ONLY} pyspark-shell"}
        if self.hide is not None:
            for sub in ("home", "tmp", "spark"):
                (self.hide / sub).mkdir(exist_ok=True)
            env |= {"AUTOML_HOME": str(self.hide / "home"), "TMPDIR": str(self.hide / "tmp"),
                    "SPARK_LOCAL_DIRS": str(self.hide / "spark")}
        return env

    def pids(self, marker: str) -> list[int]:
        """Processes of the worker's process group (its executors and their Python workers)
        whose command line contains `marker`, oldest first."""
        found = []
        for entry in Path("/proc").iterdir():
            with contextlib.suppress(OSError, ValueError):
                if os.getpgid(int(entry.name)) == self.worker.pid and \
                        marker.encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
        return sorted(found, key=lambda pid: (_start_ticks(pid), pid))

    def executor_pids(self) -> list[int]:
        return self.pids(EXECUTOR_CLASS)

    def kill_executor(self, pid: int) -> None:
        """SIGKILL one executor JVM (its Python workers die with their sockets)."""
        if pid not in self.executor_pids():
            raise RuntimeError(f"{pid} is not an executor of this cluster")
        os.kill(pid, signal.SIGKILL)

    def stop(self) -> None:
        for proc in reversed(self.procs):      # the worker (and its executors) first
            stop_group(proc)


def _start_ticks(pid: int) -> int:
    """Start time of `pid` in clock ticks since boot (field 22 of /proc/<pid>/stat)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0
    return int(stat.rsplit(")", 1)[1].split()[19])


@contextlib.contextmanager
def spark_cluster(root: Path, *, cores: int = 2, memory: str = "2g", hide: Path | None = None,
                  timeout_s: float = 120.0):
    """Yield a ready Cluster whose files live under `root`; stop every process on exit."""
    root.mkdir(parents=True, exist_ok=True)
    cluster = Cluster(root, cores=cores, memory=memory, hide=hide)
    try:
        cluster.start()
        yield cluster.wait_ready(timeout_s)
    finally:
        cluster.stop()

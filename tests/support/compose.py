"""docker-compose.yml as a team runs it, and as the loopback stack test maps it onto processes.

`resolved()` is `docker compose config` (or Debian's `docker-compose`) over docker-compose.yml
with `.env.example` as the env file: anchors, merges and `${VAR}` interpolation done by the
compose client itself. `Loopback` maps that config onto this machine: the compose network's
host names (`postgres:5432`, `mlflow:5000`, `airflow-apiserver:8080`, `spark-connect:15002`)
become 127.0.0.1 and the local port each listener got, the loopback ports compose publishes
(`127.0.0.1:5000`) likewise, bind-all `0.0.0.0` becomes 127.0.0.1, every volume a folder under
the test's root (the `./specs` bind mount: the test's specs folder), and every secret of
`.env.example` (local-only placeholders) a generated value. Every other setting is compose's.

What the stack cannot run as a process is named in SKIPPED, and the settings it replaces
because of that, in REPLACED and DROPPED, each with its reason (tests/test_stack.py prints them).
"""

from __future__ import annotations

import functools
import os
import re
import secrets
import shlex
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
COMPOSE = REPO / "docker-compose.yml"
ENV_EXAMPLE = REPO / ".env.example"
SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|FERNET|_KEY$|ACCESS_KEY")
AIRFLOW_SERVICES = ("airflow-apiserver", "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer")
# Files the images hold (COPY in their Dockerfiles) that a compose command names.
IMAGE_FILES = {"/opt/mlflow_server/": REPO / "mlflow_server"}

# The caller's settings that would point a local service process elsewhere (the Makefile exports some).
FOREIGN_SETTINGS = ("AIRFLOW", "MLFLOW_", "AUTOML_", "SPARK_", "PYSPARK_")


def own_environment() -> dict[str, str]:
    """This process's environment without FOREIGN_SETTINGS: the base of a service's."""
    return {k: v for k, v in os.environ.items() if not k.startswith(FOREIGN_SETTINGS)}


# Compose services the stack does not run as processes, and why.
SKIPPED = {
    "minio": "no S3 server here: MLflow serves its artifacts from a local folder (REPLACED)",
    "minio-init": "makes MinIO's bucket and access key: MinIO is skipped",
    "spark-master": "the Spark Connect server runs its executors in local mode (REPLACED SPARK_MASTER)",
    "spark-worker": "the Spark Connect server runs in local mode (tests/test_cluster.py runs a standalone cluster)",
}
# (service, variable) -> (the stack's value or None for "decided by the stack", why).
REPLACED = {
    ("spark-connect", "SPARK_MASTER"): ("local[2]", "the Spark master and worker are skipped"),
    ("spark-connect", "SPARK_CONNECT_PORT"): (None, "the free loopback port that compose's spark-connect:15002 maps to"),
    ("airflow", "AIRFLOW__CORE__AUTH_MANAGER"): (
        None, "SimpleAuthManager (tests/support/airflow_api.py): FAB's users come from airflow-init's "
              "`airflow users create`, which the stack skips"),
    ("mlflow", "MLFLOW_PORT"): (None, "the free loopback port that compose's mlflow:5000 maps to"),
    ("mlflow", "MLFLOW_ARTIFACTS_DESTINATION"): (None, "a folder under the test's root: MinIO is skipped"),
    ("mlflow-users", "MLFLOW_TEAM_MODELS"): (None, "the test's own models"),
}
DROPPED = {
    ("mlflow", "MLFLOW_S3_ENDPOINT_URL"): "MinIO is skipped",
    ("mlflow", "AWS_ACCESS_KEY_ID"): "MinIO is skipped",
    ("mlflow", "AWS_SECRET_ACCESS_KEY"): "MinIO is skipped",
}
# Steps of a one-shot service's script the stack leaves out, by their start, and why.
# Where a host name stands in a value: after `scheme://` or `user:pw@`, at the start, or after , = or a space.
_HOST_AT = r"(?:(?<=//)|(?<=@)|(?<=[,=\s])|^)"
SKIPPED_STEPS = {"airflow users create": "FAB users: the stack's api-server uses SimpleAuthManager"}


def compose_client() -> list[str] | None:
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True,
                                 timeout=60).returncode == 0:
        return [docker, "compose"]
    legacy = shutil.which("docker-compose")
    return [legacy] if legacy else None


def env_example() -> dict[str, str]:
    pairs = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            pairs[key.strip()] = value.strip()
    return pairs


def run_config(env_file: Path, compose_file: Path = COMPOSE) -> subprocess.CompletedProcess:
    """`<client> -f compose_file --env-file env_file config`; only the env file supplies settings
    (every variable the compose file references is removed from this process's environment)."""
    client = compose_client()
    if client is None:
        raise FileNotFoundError("no docker compose client (`docker compose` plugin or `docker-compose`)")
    referenced = set(re.findall(r"\$\{(\w+)", compose_file.read_text())) | set(env_example())
    env = {k: v for k, v in os.environ.items() if k not in referenced}
    return subprocess.run([*client, "-f", str(compose_file), "--env-file", str(env_file), "config"],
                          cwd=compose_file.parent, env=env, capture_output=True, text=True, timeout=120)


@functools.cache
def resolved(compose_file: Path = COMPOSE) -> dict:
    """The config a team runs: docker-compose.yml resolved with .env.example."""
    done = run_config(ENV_EXAMPLE, compose_file)
    if done.returncode != 0:
        raise RuntimeError(f"compose config failed: {done.stderr[-2000:]}")
    return yaml.safe_load(done.stdout)


def service_env(config: dict, name: str) -> dict[str, str]:
    env = config["services"][name].get("environment") or {}
    return {k: "" if v is None else str(v) for k, v in env.items()}


def start_waves(config: dict, targets=AIRFLOW_SERVICES) -> list[list[str]]:
    """The services `targets` need (depends_on, transitively), skipped ones left out, in waves: a
    service comes after every service it depends on. A dependency the stack neither runs nor
    names in SKIPPED is an error."""
    services, level = config["services"], {}

    def visit(name: str, path: tuple[str, ...]) -> int:
        if name in path:
            raise RuntimeError(f"depends_on cycle: {' -> '.join((*path, name))}")
        if name not in level:
            deps = [d for d in (services[name].get("depends_on") or {}) if d not in SKIPPED]
            level[name] = 1 + max((visit(d, (*path, name)) for d in deps), default=-1)
        return level[name]

    for target in targets:
        visit(target, ())
    waves = [[] for _ in range(max(level.values()) + 1)]
    for name, n in sorted(level.items()):
        waves[n].append(name)
    return waves


def script_steps(service: dict) -> list[str]:
    """The lines of a one-shot service's `sh -ec` / `bash -ec` script (continuations joined; `$$`,
    compose's escape that `config` keeps, is the shell's `$`)."""
    command = service.get("command") or []
    if (service.get("entrypoint") or [None])[-1] != "-ec" or len(command) != 1:
        raise RuntimeError(f"not a `sh -ec SCRIPT` service: {service.get('entrypoint')} {command}")
    script = command[0].replace("$$", "$").replace("\\\n", " ")
    return [line.strip() for line in script.splitlines() if line.strip()]


@dataclass
class Loopback:
    """The resolved compose config as the stack's local processes see it (module docstring)."""

    config: dict
    root: Path
    binds: dict[str, Path]                    # a bind mount's source, relative to the repo -> local folder
    ports: dict[tuple[str, int], int] = field(default_factory=dict)   # (service, container port) -> local
    secrets: dict[str, str] = field(default_factory=dict)             # .env.example variable -> generated

    def __post_init__(self):
        for key, value in env_example().items():
            if SECRET_NAME.search(key) and value and key not in self.secrets:
                self.secrets[key] = _generated(key)
        self._hosts = set(self.config["services"]) | {
            s["hostname"] for s in self.config["services"].values() if s.get("hostname")}

    def _published(self) -> dict[int, tuple[str, int]]:
        out = {}
        for name, service in self.config["services"].items():
            for port in service.get("ports", []):
                host_ip, host_port, container = str(port).split("/")[0].split(":")
                assert host_ip == "127.0.0.1", port
                out[int(host_port)] = (name, int(container))
        return out

    def local_port(self, service: str, port: int) -> int:
        try:
            return self.ports[(service, port)]
        except KeyError:
            raise RuntimeError(f"{service}:{port} has no local listener in the stack"
                               + (f" ({service} is skipped: {SKIPPED[service]})" if service in SKIPPED else ""))

    def value(self, service: str, value: str) -> str:
        """One setting of `service` as its local process needs it."""
        for key in sorted(self.secrets, key=lambda k: -len(env_example()[k])):
            value = value.replace(env_example()[key], self.secrets[key])
        published = self._published()
        value = re.sub(rf"{_HOST_AT}(?:127\.0\.0\.1|localhost):(\d+)(?=[/,\s]|$)",
                       lambda m: (m.group(0).rsplit(":", 1)[0] + f":{self.local_port(*published[int(m.group(1))])}"
                                  if int(m.group(1)) in published else m.group(0)), value)

        def host(m: re.Match) -> str:
            name, port = m.group(1), m.group(2)
            if name in SKIPPED:
                raise RuntimeError(f"{service} reaches {m.group(0)}, a skipped service ({SKIPPED[name]})")
            return "127.0.0.1" + (f":{self.local_port(self._service_of(name), int(port))}" if port else "")

        names = "|".join(re.escape(h) for h in sorted(self._hosts, key=len, reverse=True))
        value = re.sub(rf"{_HOST_AT}({names})(?::(\d+))?(?=[/,\s]|$)", host, value)
        value = re.sub(r"(?<![\d.])0\.0\.0\.0(?![\d.])", "127.0.0.1", value)
        if value.startswith("/"):
            value = str(self.path(service, value))
        return value

    def _service_of(self, host: str) -> str:
        return next((n for n, s in self.config["services"].items() if host in (n, s.get("hostname"))), host)

    def mounts(self, service: str) -> dict[str, Path]:
        """Container path -> local folder, for each volume of `service`."""
        out = {}
        for volume in self.config["services"][service].get("volumes", []):
            source, target = (volume["source"], volume["target"]) if isinstance(volume, dict) \
                else str(volume).split(":")[:2]
            if source.startswith("/"):
                rel = os.path.relpath(source, REPO)
                out[target] = self.binds.get(rel, Path(source))
            else:
                out[target] = self.root / "volumes" / source
        return out

    def path(self, service: str, container_path: str) -> Path:
        """The local folder of a path inside `service`'s container; an error unless under a mount."""
        for target, local in sorted(self.mounts(service).items(), key=lambda kv: -len(kv[0])):
            if container_path == target or container_path.startswith(target.rstrip("/") + "/"):
                return local / os.path.relpath(container_path, target)
        raise RuntimeError(f"{service}: {container_path} is inside the image, not on a volume or mount: "
                           "the stack cannot map it (nor would the data persist there)")

    def env(self, service: str, group: str | None = None) -> dict[str, str]:
        """`service`'s environment, mapped; REPLACED ones with a value set, None ones and DROPPED left out."""
        group = group or service
        out = {}
        for key, value in service_env(self.config, service).items():
            if (group, key) in DROPPED:
                continue
            if (group, key) in REPLACED:
                if REPLACED[(group, key)][0] is not None:
                    out[key] = REPLACED[(group, key)][0]
                continue
            out[key] = self.value(service, value)
        return out

    def command(self, service: str, env: dict[str, str]) -> list[str]:
        """A one-line `sh -ec` command's argv, `$VAR` expanded from `env`, image files mapped."""
        [line] = script_steps(self.config["services"][service])
        argv = shlex.split(line)
        argv = argv[1:] if argv[0] == "exec" else argv
        argv = [re.sub(r"\$(\w+)", lambda m: env[m.group(1)], a) for a in argv]
        for image_dir, local in IMAGE_FILES.items():
            argv = [str(local / a[len(image_dir):]) if a.startswith(image_dir) else a for a in argv]
        return argv


def _generated(key: str) -> str:
    if "FERNET" in key:
        from cryptography.fernet import Fernet

        return Fernet.generate_key().decode()
    return secrets.token_hex(16)


def deviations() -> str:
    """What the stack does differently from compose, one line each, for the test's output."""
    lines = [f"skipped {name}: {why}" for name, why in SKIPPED.items()]
    lines += [f"replaced {svc}.{key}={value or '(the stack)'}: {why}" for (svc, key), (value, why) in REPLACED.items()]
    lines += [f"dropped {svc}.{key}: {why}" for (svc, key), why in DROPPED.items()]
    lines += [f"left out `{step} ...`: {why}" for step, why in SKIPPED_STEPS.items()]
    return "\n".join(lines)

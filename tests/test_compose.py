"""docker-compose.yml: renders with .env.example, loopback-only ports, no secret literals,
a healthcheck on every long-running service.

Rendering needs a compose client (`docker compose`, or the older `docker-compose`) but no
Docker engine; the structural checks read the YAML directly and always run.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess

import pytest
import yaml

from tests.support.mlflow_server import REPO

COMPOSE = REPO / "docker-compose.yml"
ENV_EXAMPLE = REPO / ".env.example"
SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|FERNET|_KEY$|ACCESS_KEY")
REF = re.compile(r"\$\{(\w+)(:?[?-])?([^}]*)\}")
REQUIRED_REF = re.compile(r"^\$\{\w+:\?[^}]*\}$")


def _raw() -> dict:
    return yaml.safe_load(COMPOSE.read_text())  # anchors and `<<` merges resolved


def _services() -> dict:
    return _raw()["services"]


def _env_example() -> dict[str, str]:
    pairs = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            pairs[key.strip()] = value.strip()
    return pairs


def _compose_client() -> list[str] | None:
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True,
                                 timeout=60).returncode == 0:
        return [docker, "compose"]
    legacy = shutil.which("docker-compose")
    return [legacy] if legacy else None


def _run_config(env_file) -> subprocess.CompletedProcess:
    client = _compose_client()
    if client is None:
        pytest.skip("no docker compose client (`docker compose` plugin or `docker-compose`) "
                    "on this machine; the structural checks below still ran")
    # Only the env file may supply the stack's settings, not this process's environment.
    env = {k: v for k, v in os.environ.items() if k not in _env_example()}
    return subprocess.run([*client, "-f", str(COMPOSE), "--env-file", str(env_file), "config"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=120)


def _is_one_shot(service: dict) -> bool:
    return str(service.get("restart", "no")) == "no"


def _loopback_port(port) -> bool:
    if isinstance(port, dict):  # long syntax, as `docker compose config` prints it
        return port.get("host_ip") == "127.0.0.1"
    return str(port).startswith("127.0.0.1:")


def test_compose_config_renders_with_env_example():
    done = _run_config(ENV_EXAMPLE)
    assert done.returncode == 0, done.stderr
    rendered = yaml.safe_load(done.stdout)
    assert set(rendered["services"]) == set(_services())
    for name, service in rendered["services"].items():
        for port in service.get("ports", []):
            assert _loopback_port(port), f"{name} publishes {port} beyond 127.0.0.1"
    assert rendered["services"]["mlflow"]["environment"]["MLFLOW_AUTH"] == "true"


def test_compose_refuses_to_render_without_secrets(tmp_path):
    empty = tmp_path / "empty.env"
    empty.write_text("")
    done = _run_config(empty)
    assert done.returncode != 0
    assert "set in .env" in done.stderr


def test_expected_services():
    services = _services()
    for name in ("postgres", "minio", "minio-init", "mlflow", "mlflow-users", "airflow-init",
                 "airflow-apiserver", "airflow-scheduler", "airflow-dag-processor",
                 "airflow-triggerer", "spark-master", "spark-worker"):
        assert name in services, name
    airflow_env = services["airflow-scheduler"]["environment"]
    assert airflow_env["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor"
    assert airflow_env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"].startswith(
        "http://airflow-apiserver:8080/")
    assert airflow_env["SPARK_MASTER"] == "spark://spark-master:7077"
    assert airflow_env["MLFLOW_TRACKING_URI"] == "http://mlflow:5000"
    assert airflow_env["MLFLOW_TRACKING_USERNAME"] == "airflow"
    assert "./dags:/opt/airflow/dags:ro" in services["airflow-scheduler"]["volumes"]
    assert services["postgres"]["image"].startswith("postgres:16")


def test_every_published_port_is_on_loopback():
    published = 0
    for name, service in _services().items():
        assert service.get("network_mode") != "host", name
        for port in service.get("ports", []):
            published += 1
            assert _loopback_port(port), f"{name} publishes {port} beyond 127.0.0.1"
    assert published >= 2  # at least MLflow and Airflow


def test_no_secret_literal_in_compose_file():
    text = COMPOSE.read_text()
    # 1. Every secret-looking setting is a required reference to .env, never a value.
    for name, service in _services().items():
        env = service.get("environment") or {}
        assert isinstance(env, dict), f"{name}: use the mapping form for environment"
        for key, value in env.items():
            value = str(value)
            if SECRET_NAME.search(key):
                assert REQUIRED_REF.match(value), f"{name}.{key} = {value!r}: use ${{VAR:?...}}"
            for user_info in re.findall(r"://([^/@\s]+)@", value):  # credentials in URIs
                password = user_info.partition(":")[2]
                assert REQUIRED_REF.match(password), f"{name}.{key}: password in URI {value!r}"
    # 2. Defaults (${VAR:-x}) only for settings that are not secrets.
    for var, op, _ in REF.findall(text):
        if SECRET_NAME.search(var) or var.endswith(("_USER", "_USERNAME")):
            assert op == ":?", f"${{{var}}} must be required (:?), not defaulted"
    # 3. No value of .env.example's secrets appears in the file.
    for key, value in _env_example().items():
        if SECRET_NAME.search(key) and value:
            assert value not in text, f"the value of {key} is written in docker-compose.yml"


def test_env_example_sets_every_required_variable():
    required = {var for var, op, _ in REF.findall(COMPOSE.read_text()) if op == ":?"}
    example = _env_example()
    assert required <= set(example), f"missing in .env.example: {required - set(example)}"
    assert all(example[var] for var in required)
    # MLflow refuses passwords under 12 characters.
    for key in ("MLFLOW_ADMIN_PASSWORD", "MLFLOW_AIRFLOW_PASSWORD", "MLFLOW_VIEWER_PASSWORD"):
        assert len(example[key]) >= 12, key


def test_long_running_services_have_healthchecks_and_one_shots_are_awaited():
    services = _services()
    awaited = {dep for service in services.values()
               for dep, cond in (service.get("depends_on") or {}).items()
               if isinstance(cond, dict)
               and cond.get("condition") == "service_completed_successfully"}
    for name, service in services.items():
        if _is_one_shot(service):
            assert name in awaited, f"one-shot {name} is awaited by no service"
            assert not service.get("ports"), name
        else:
            check = service.get("healthcheck") or {}
            assert check.get("test") and not check.get("disable"), f"{name} has no healthcheck"
            assert service.get("restart") == "unless-stopped", name


def test_state_lives_in_named_volumes():
    raw = _raw()
    declared = set(raw.get("volumes") or {})
    for name, service in raw["services"].items():
        for volume in service.get("volumes", []):
            source = str(volume).split(":")[0]
            if not source.startswith((".", "/")):
                assert source in declared, f"{name}: volume {source} is not declared"
    for name, path in (("postgres", "/var/lib/postgresql/data"), ("minio", "/data"),
                       ("mlflow", "/var/lib/mlflow")):
        assert any(str(v).split(":")[1] == path and str(v).split(":")[0] in declared
                   for v in raw["services"][name]["volumes"]), name


def test_images_run_start_script_as_non_root():
    mlflow_df = (REPO / "mlflow_server" / "Dockerfile").read_text()
    assert "FROM python:3.11-slim" in mlflow_df
    assert 'mlflow[auth]==3.17.2' in mlflow_df
    assert re.search(r"^USER (?!root)\w+", mlflow_df, re.M)
    assert "HEALTHCHECK" in mlflow_df and "/health" in mlflow_df
    assert 'ENTRYPOINT ["/opt/mlflow_server/start.sh"]' in mlflow_df
    airflow_df = (REPO / "docker" / "airflow" / "Dockerfile").read_text()
    assert "apache/airflow:3.3.2-python3.11" in airflow_df
    assert re.findall(r"^USER (\w+)", airflow_df, re.M)[-1] == "airflow"
    spark_df = (REPO / "docker" / "spark" / "Dockerfile").read_text()
    assert re.findall(r"^USER (\w+)", spark_df, re.M)[-1] != "root"

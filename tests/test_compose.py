"""docker-compose.yml: renders with .env.example, loopback-only ports, no secret literals,
a healthcheck on every long-running service, and every setting the code reads either set for
the Airflow services or given a default that holds inside the image.

Rendering needs a compose client (`docker compose`, or the older `docker-compose`) but no
Docker engine; the structural checks read the YAML directly and always run. The checks on
values read the config the client resolves with .env.example, as a team runs it (the stack
test, tests/test_stack.py, starts its processes from that same config).
"""

from __future__ import annotations

import os
import re

import pytest
import yaml

from tests.support import compose
from tests.support.compose import AIRFLOW_SERVICES, COMPOSE, ENV_EXAMPLE, SECRET_NAME
from tests.support.env_reads import reads, shell_reads
from tests.support.mlflow_server import REPO

REF = re.compile(r"\$\{(\w+)(:?[?-])?([^}]*)\}")
REQUIRED_REF = re.compile(r"^\$\{\w+:\?[^}]*\}$")
_env_example = compose.env_example


def _raw() -> dict:
    return yaml.safe_load(COMPOSE.read_text())  # anchors and `<<` merges resolved


def _services() -> dict:
    return _raw()["services"]


def _run_config(env_file):
    if compose.compose_client() is None:
        if os.environ.get("CI") == "true":
            pytest.fail("no docker compose client under CI: .ci/run must install docker-compose")
        pytest.skip("no docker compose client (`docker compose` plugin or `docker-compose`) "
                    "on this machine; the structural checks below still ran")
    return compose.run_config(env_file)


@pytest.fixture(scope="module")
def resolved() -> dict:
    """docker-compose.yml resolved with .env.example by the compose client."""
    done = _run_config(ENV_EXAMPLE)
    assert done.returncode == 0, done.stderr
    return yaml.safe_load(done.stdout)


def _mounts(service: dict) -> dict[str, str]:
    """Container path -> source (a host path or a volume name), short or long syntax."""
    out = {}
    for v in service.get("volumes", []):
        source, target = (v["source"], v["target"]) if isinstance(v, dict) else str(v).split(":")[:2]
        out[target] = source
    return out


def _is_one_shot(service: dict) -> bool:
    return str(service.get("restart", "no")) == "no"


def _loopback_port(port) -> bool:
    if isinstance(port, dict):  # long syntax, as `docker compose config` prints it
        return port.get("host_ip") == "127.0.0.1"
    return str(port).startswith("127.0.0.1:")


def test_compose_config_renders_with_env_example(resolved):
    assert set(resolved["services"]) == set(_services())
    for name, service in resolved["services"].items():
        for port in service.get("ports", []):
            assert _loopback_port(port), f"{name} publishes {port} beyond 127.0.0.1"
    assert resolved["services"]["mlflow"]["environment"]["MLFLOW_AUTH"] == "true"


def test_compose_refuses_to_render_without_secrets(tmp_path):
    empty = tmp_path / "empty.env"
    empty.write_text("")
    done = _run_config(empty)
    assert done.returncode != 0
    assert "set in .env" in done.stderr


def test_expected_services(resolved):
    services = resolved["services"]
    for name in ("postgres", "minio", "minio-init", "mlflow", "mlflow-users", "airflow-init",
                 "airflow-apiserver", "airflow-scheduler", "airflow-dag-processor",
                 "airflow-triggerer", "spark-master", "spark-worker", "spark-connect"):
        assert name in services, name
    airflow_env = compose.service_env(resolved, "airflow-scheduler")
    assert airflow_env["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor"
    assert airflow_env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://airflow-apiserver:8080/execution/"
    # The tasks reach Spark through the Connect server, which runs on the cluster: no driver here.
    assert airflow_env["SPARK_REMOTE"] == "sc://spark-connect:15002" and "SPARK_MASTER" not in airflow_env
    connect = compose.service_env(resolved, "spark-connect")
    assert connect["SPARK_MASTER"] == "spark://spark-master:7077"
    assert airflow_env["SPARK_REMOTE"].endswith(":" + connect["SPARK_CONNECT_PORT"])
    assert airflow_env["MLFLOW_TRACKING_URI"] == "http://mlflow:5000"
    assert airflow_env["MLFLOW_TRACKING_USERNAME"] == "airflow"
    # The service account's password is the one mlflow-users gives it.
    team_env = compose.service_env(resolved, "mlflow-users")
    assert airflow_env["MLFLOW_TRACKING_PASSWORD"] == team_env["MLFLOW_AIRFLOW_PASSWORD"] != ""
    assert _mounts(services["airflow-scheduler"])["/opt/airflow/dags"] == str(REPO / "dags")
    assert services["postgres"]["image"].startswith("postgres:16")
    # The specs and data folders the DAGs read are the mounted ones (issue 16: unset, the DAGs
    # looked in /opt/airflow/specs, which the image does not have).
    for name in AIRFLOW_SERVICES:
        env = compose.service_env(resolved, name)
        mounts = _mounts(services[name])
        assert mounts[env["AUTOML_SPECS_DIR"]] == str(REPO / "specs"), name
        assert mounts[env["AUTOML_DATA_DIR"]] == "automl-data", name
        # No first month of the code's choosing: .env.example leaves it to the deployment.
        assert env["AUTOML_FIRST_MONTH"] == "" and env["AUTOML_MAX_CATCHUP_MONTHS"] == "12", name


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


# ---------------------------------------------------------------- the settings the code reads

# Read by the library, the DAGs or the plugins and deliberately not set by compose for the
# Airflow services: each default holds inside the Airflow image, or unset means "off".
OPTIONAL_IN_AIRFLOW = {
    "AUTOML_BRANCH": "unset: the git branch of the spec's folder, else `none`; a deployment that runs one "
                     "branch of a specs repo sets it (README, develop vs master)",
    "AUTOML_COMPARE_REFS": "unset: no develop-vs-master comparison (compare_refs skips and says why)",
    "AUTOML_SPECS_REPO": "unset: no git repo of specs, so no branch comparison (compare_refs skips)",
    "AUTOML_DATA_ROOTS": "unset: AUTOML_DATA_DIR (set by compose) and the PoC inbox under it",
    "AUTOML_POC_INBOX": "default $AUTOML_DATA_DIR/poc_inbox: on the automl-data volume",
    "AUTOML_POC_LABEL": "default `label`: a column name, the form's default",
    "AUTOML_PREDICTIONS_DIR": "default $AUTOML_DATA_DIR/predictions: on the automl-data volume (docs/scoring.md)",
    "AUTOML_TASK_SLOTS": "unset: the search plans for the task slots Spark reports",
    "AUTOML_THREADS_PER_TASK": "default 1: threads per fit, a count",
    "AUTOML_TASK_RETRIES": "default 2: a count (docs/operations.md)",
    "AUTOML_RETRY_DELAY_MINUTES": "default 5: a duration (docs/operations.md)",
    "AUTOML_TUNE_TIMEOUT_HOURS": "default 6: a duration (docs/operations.md)",
    "AUTOML_STEP_TIMEOUT_HOURS": "default 1: a duration (docs/operations.md)",
    "AUTOML_ROLLBACK_TIMEOUT_HOURS": "default 24: a duration (docs/operations.md)",
    "AUTOML_DRIVER_MEMORY": "read in local mode only; compose sets SPARK_REMOTE (the spark-connect service's "
                            "SPARK_CONNECT_DRIVER_MEMORY sizes the driver)",
    "AUTOML_DRIVER_JAVA_OPTIONS": "read in local mode only; compose sets SPARK_REMOTE",
    "AUTOML_SPARK_CLASS_ARCHIVE": "read in local mode only; compose sets SPARK_REMOTE",
    "AUTOML_SPARK_UI": "read in local mode only; compose sets SPARK_REMOTE",
    "AUTOML_SPARK_LOG_LEVEL": "read by a classic session only; compose sets SPARK_REMOTE",
    "SPARK_MASTER": "read only without SPARK_REMOTE, which compose sets (the spark-connect service)",
    "SPARK_LOCAL_IP": "set by the library (127.0.0.1) in local mode only; compose sets SPARK_REMOTE",
    "PYSPARK_PYTHON": "set by the library in local mode only; compose sets SPARK_REMOTE",
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "MLflow's own default (a progress bar in the task log); the CLI sets false",
    "MLFLOW_REGISTRY_URI": "read only to restore it around set_registry_uri; unset: the tracking server's registry",
}
# Read by mlflow_server/ (start.sh in the `mlflow` service, users.py in `mlflow-users`) and not set
# by compose: each has a default in start.sh that holds in the image, or the image sets it.
OPTIONAL_IN_MLFLOW = {
    "MLFLOW_HOME": "the image's ENV (mlflow_server/Dockerfile): /var/lib/mlflow, the mlflow-home volume",
    "AUTOML_HOME": "only when MLFLOW_HOME is unset, which the image never leaves it",
    "MLFLOW_AUTH_CACHE_TTL_SECONDS": "default 60 (start.sh explains the cost of a shorter one)",
    "MLFLOW_AUTH_DEFAULT_PERMISSION": "default READ: every account's minimum (start.sh refuses EDIT/MANAGE)",
    "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "default false: no job-execution workers (start.sh)",
    "MLFLOW_DISABLE_TELEMETRY": "users.py sets it (setdefault true) before importing MLflow",
}


def _airflow_reads():
    return reads(REPO, ("automl_tasks", "dags", "plugins"))


def _env_keys(name: str) -> set[str]:
    """The variables compose sets for a service (the raw file's anchors merged: no client needed)."""
    return set((_services()[name].get("environment") or {}))


def test_every_setting_the_code_reads_is_set_by_compose_or_optional():
    found = _airflow_reads()
    read = {r.var for r in found}
    assert {"AUTOML_SPECS_DIR", "AUTOML_DATA_DIR", "AUTOML_FIRST_MONTH", "MLFLOW_TRACKING_URI",
            "SPARK_REMOTE", "SPARK_MASTER", "AIRFLOW__API__BASE_URL"} <= read, sorted(read)   # the scan finds them
    for name in AIRFLOW_SERVICES:
        unset = sorted({f"{r.var} ({r.where}, default {r.default})" for r in found
                        if r.var not in _env_keys(name) and r.var not in OPTIONAL_IN_AIRFLOW})
        assert not unset, (f"{name}: the code reads these, compose does not set them, and they are not in "
                           f"OPTIONAL_IN_AIRFLOW with a reason: {unset}")
        # A default made from the file's own folder names a folder the image does not have
        # (/opt/airflow/specs): such a setting must come from compose, never be optional.
        relative = sorted({f"{r.var} ({r.where}: {r.default})" for r in found if r.file_relative
                           and r.var not in _env_keys(name)})
        assert not relative, f"{name}: defaults relative to the DAG folder, invalid in the image: {relative}"
    assert not OPTIONAL_IN_AIRFLOW.keys() - read, f"stale: {OPTIONAL_IN_AIRFLOW.keys() - read}"
    both = OPTIONAL_IN_AIRFLOW.keys() & _env_keys("airflow-scheduler")
    assert not both, f"set by compose, so not optional: {both}"


def test_the_mlflow_services_set_what_their_scripts_read():
    dockerfile = (REPO / "mlflow_server" / "Dockerfile").read_text()
    image_env = set(re.findall(r"^\s*(?:ENV\s+)?(MLFLOW_\w+)=", dockerfile, re.M))
    for name, needed in (("mlflow", shell_reads(REPO / "mlflow_server" / "start.sh")),
                         ("mlflow-users", {r.var for r in reads(REPO, ("mlflow_server",))})):
        unset = needed - _env_keys(name) - OPTIONAL_IN_MLFLOW.keys() - image_env
        assert not unset, f"{name}: read by mlflow_server/, set neither by compose nor the image: {sorted(unset)}"
    assert "MLFLOW_HOME" in image_env
    assert "MLFLOW_BACKEND_STORE_URI" in shell_reads(REPO / "mlflow_server" / "start.sh")   # the scan finds them


def test_paths_compose_gives_the_airflow_services_are_on_their_mounts():
    """A path setting outside every volume names a folder of the image, empty or missing."""
    for name in AIRFLOW_SERVICES:
        service = _services()[name]
        targets = list(_mounts(service))
        for key, value in (service.get("environment") or {}).items():
            if str(value).startswith("/"):
                assert any(str(value) == t or str(value).startswith(t.rstrip("/") + "/") for t in targets), \
                    f"{name}: {key}={value} is on no volume or mount ({targets})"


def test_the_env_scan_finds_each_kind_of_read(tmp_path):
    """The scanner (tests/support/env_reads.py) on one file of every form it must recognise."""
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "m.py").write_text(
        "import os\nfrom pathlib import Path\nROOT = Path(__file__).parent\n"
        "A = os.environ.get('AUTOML_A', str(ROOT / 'x'))\nB = os.environ['AUTOML_B']\n"
        "C = os.getenv('SPARK_C')\nos.environ.setdefault('MLFLOW_D', '1')\n"
        "def setting(var):\n    return os.environ.get(var)\nE = setting('AUTOML_E')\n"
        "def f(env):\n    return env.get('AUTOML_F') or ROOT\nos.environ['AUTOML_G'] = 'set, not read'\n"
        "H = os.environ.get('AIRFLOW_CTX_DAG_ID')\n")
    found = {r.var: r for r in reads(tmp_path, ("pkg",))}
    assert set(found) == {"AUTOML_A", "AUTOML_B", "SPARK_C", "MLFLOW_D", "AUTOML_E", "AUTOML_F"}
    assert found["AUTOML_A"].file_relative and found["AUTOML_F"].file_relative
    assert not found["MLFLOW_D"].file_relative and found["MLFLOW_D"].default == "'1'"
    assert found["AUTOML_B"].default is None and found["AUTOML_A"].where == "pkg/m.py:4"

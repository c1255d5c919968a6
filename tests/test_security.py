"""Security: user-given paths stay in their folders, local listeners stay on loopback, no secret
reaches MLflow, the logs or the repository. (Authentication and grants on the tracking server
are in test_mlflow_server.py; compose's published ports in test_compose.py.)"""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from automl_tasks.errors import ConfigError, SpecError
from automl_tasks.paths import confined, specs_in
from tests.support.processes import die_with_parent, stop_group
from tests.support.sockets import beyond_loopback, listeners, tree
from tests.support.specs import write_spec

REPO = Path(__file__).resolve().parents[1]
CANARY = "leak-canary-" + secrets.token_hex(8)   # the fake password every secret setting holds


# --- manual-trigger Params that name paths ----------------------------------------------------

# What each DAG does with the Param (dags/monthly_retrain.py `spec`, dags/feature_ablation.py
# `spec` and `table`): the folder is AUTOML_SPECS_DIR or AUTOML_DATA_DIR.
PARAMS = {
    "spec": ("specs", "ok.yaml", lambda root, value: Path(specs_in(root, value)[0])),
    "table": ("data", "bureau.parquet", confined),
}
ESCAPES = {
    "traversal": "../../etc/passwd",
    "absolute": "/etc/passwd",
    "dotdot_inside": "sub/../../outside/secret",
    "symlink_file": "link_out",                 # a link in the folder to a file outside it
    "symlink_dir": "dir_out/secret",            # a file under a linked folder outside it
}


@pytest.fixture
def folders(tmp_path):
    """specs/ and data/ with one file each, an outside/ folder, and links from both out of it."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_text("name: stolen")
    for folder, good, _ in PARAMS.values():
        root = tmp_path / folder
        (root / "sub").mkdir(parents=True)
        (root / good).write_text("name: ok")
        (root / "link_in").symlink_to(root / good)            # inside to inside: fine
        (root / "link_out").symlink_to(outside / "secret")
        (root / "dir_out").symlink_to(outside, target_is_directory=True)
    return tmp_path


@pytest.mark.parametrize("case", ESCAPES)
@pytest.mark.parametrize("param", PARAMS)
def test_param_paths_stay_in_their_folder(folders, param, case):
    folder, good, resolve = PARAMS[param]
    root = folders / folder
    assert resolve(root, good) == root / good
    assert resolve(root, "link_in") == root / good
    assert resolve(root, str(root / good)) == root / good        # absolute but inside: fine
    value = ESCAPES[case]
    with pytest.raises(SpecError) as err:
        resolve(root, value)
    assert str(err.value) == f"path {value!r} is outside the allowed folder {root}"


# --- listeners of the local setup -------------------------------------------------------------

def test_local_spark_listens_on_loopback_only(spark):
    # A mapInPandas job first, so the Python workers (and their sockets) exist too.
    assert spark.range(64).mapInPandas(lambda frames: frames, "id long").count() == 64
    assert spark.sparkContext.uiWebUrl is None                     # no UI unless AUTOML_SPARK_UI=true
    jvm = spark.sparkContext._gateway.proc.pid
    procs = [*tree(jvm), psutil.Process()]                         # the JVM, its workers, the driver
    assert len(listeners(procs)) >= 2, listeners(procs)            # driver RPC, block manager, ...
    assert beyond_loopback(procs) == []


@pytest.mark.slow
def test_spark_ui_when_enabled_listens_on_loopback_only(tmp_path):
    """AUTOML_SPARK_UI=true (the documented override) in a fresh process: the UI is loopback too."""
    probe = (
        "import json, sys\n"
        "from automl_tasks.spark import get_spark\n"
        "spark = get_spark('ui-probe')\n"
        "assert spark.range(8).mapInPandas(lambda f: f, 'id long').count() == 8\n"
        "sc = spark.sparkContext\n"
        "print(json.dumps({'jvm': sc._gateway.proc.pid, 'ui': sc.uiWebUrl}), flush=True)\n"
        "sys.stdin.readline()\n"
        "spark.stop()\n")
    # Not this process's SPARK_LOCAL_IP (get_spark sets it here): spark.py alone must bind loopback.
    env = {k: v for k, v in os.environ.items() if k not in ("SPARK_LOCAL_IP", "PYSPARK_PYTHON")}
    env |= {"AUTOML_SPARK_UI": "true", "SPARK_MASTER": "local[1]", "PYTHONPATH": str(REPO)}
    with open(tmp_path / "probe.log", "wb") as log:
        proc = subprocess.Popen([sys.executable, "-c", probe], cwd=tmp_path, env=env, text=True,
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log,
                                start_new_session=True, preexec_fn=die_with_parent)
    try:
        line = proc.stdout.readline()
        assert line.startswith("{"), (tmp_path / "probe.log").read_text()[-3000:]
        started = json.loads(line)
        procs = [*tree(started["jvm"]), psutil.Process(proc.pid)]
        ui_port = int(started["ui"].rsplit(":", 1)[1])
        assert started["ui"].startswith("http://127.0.0.1:")
        assert ui_port in {port for *_, port in listeners(procs)}
        assert beyond_loopback(procs) == []
        proc.stdin.close()
        proc.wait(timeout=120)
    finally:
        stop_group(proc)
        proc.stdout.close()


# --- secrets never reach MLflow or the logs ---------------------------------------------------

# The settings a deployment gives the DAGs' processes (docker-compose.yml), all holding the canary.
SECRET_ENV = {
    "MLFLOW_TRACKING_USERNAME": "airflow",
    "MLFLOW_TRACKING_PASSWORD": CANARY,
    "AWS_ACCESS_KEY_ID": "mlflow-s3-access",
    "AWS_SECRET_ACCESS_KEY": CANARY,
    "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"postgresql+psycopg2://airflow:{CANARY}@postgres/airflow",
    "MLFLOW_BACKEND_STORE_URI": f"postgresql+psycopg2://mlflow:{CANARY}@postgres/mlflow",
    "AIRFLOW__CORE__FERNET_KEY": CANARY,
    "AIRFLOW__API_AUTH__JWT_SECRET": CANARY,
    "MLFLOW_FLASK_SERVER_SECRET_KEY": CANARY,
}


def _files(label: str, folder: Path) -> dict[str, bytes]:
    return {f"{label} {p.relative_to(folder)}": p.read_bytes()
            for p in folder.rglob("*") if p.is_file() and p.stat().st_size < 50_000_000}


def _mlflow_texts(client, model: str, dst: Path) -> dict[str, bytes]:
    """Every param, tag, description, run name and artifact file of the model's runs and logged
    models, and its registered versions' tags and descriptions, keyed by where they were found."""
    import mlflow

    found: dict[str, bytes] = {}
    for experiment in client.search_experiments(filter_string=f"name LIKE '{model}/%'"):
        for run in client.search_runs([experiment.experiment_id], max_results=1000):
            rid = run.info.run_id
            found[f"run {rid} params"] = json.dumps(run.data.params).encode()
            found[f"run {rid} tags and name"] = json.dumps([run.data.tags, run.info.run_name]).encode()
            (dst / rid).mkdir(parents=True)
            folder = Path(client.download_artifacts(rid, "", str(dst / rid)))
            found |= _files(f"run {rid} artifact", folder)
        for logged in client.search_logged_models([experiment.experiment_id]):   # flavor models
            mid = logged.model_id
            found[f"logged model {mid}"] = json.dumps([logged.name, logged.params, logged.tags]).encode()
            (dst / mid).mkdir(parents=True)
            folder = Path(mlflow.artifacts.download_artifacts(f"models:/{mid}", dst_path=str(dst / mid)))
            found |= _files(f"logged model {mid} artifact", folder)
    registered = client.get_registered_model(model)
    found[f"model {model}"] = json.dumps([registered.description, registered.tags]).encode()
    for version in client.search_model_versions(f"name = '{model}'"):
        found[f"model {model} v{version.version}"] = json.dumps(
            [version.description, version.tags, version.source]).encode()
    return found


@pytest.mark.slow
def test_no_secret_reaches_mlflow_or_the_logs(demo_dir, spark, tracking, tmp_path, monkeypatch, capfd,
                                               caplog):
    """A month of the monthly job (drift, tuning, comparison, registry, decision summary) with every
    secret setting holding the canary: it appears in no param, tag, description, artifact or log."""
    from mlflow import MlflowClient

    from automl_tasks.pipelines.monthly import run_monthly
    from automl_tasks.spec import load_spec

    for var, value in SECRET_ENV.items():
        monkeypatch.setenv(var, value)
    name = "secrets_scan"
    spec = load_spec(write_spec(tmp_path, "binary", filename="secrets.yaml", name=name, segment="segment",
                                data={"source": str(demo_dir / "loans")}, window={"train_months": 3},
                                algorithms={"xgboost": {"search": "grid",
                                                        "space": {"max_depth": [2], "n_estimators": [10]}}}))
    lines: list[str] = []
    result = run_monthly(spec, "2017-10", promotion_mode="auto", spark=spark, progress=lines.append)
    assert result["decision"]["status"] == "approved"

    # A control: a run of the test's own that does hold the canary, which the scan must find.
    client = MlflowClient(tracking)
    control = client.create_run(client.get_experiment_by_name(f"{name}/monthly").experiment_id).info.run_id
    client.log_param(control, "password", CANARY)
    (tmp_path / "control.txt").write_text(f"token={CANARY}")
    client.log_artifact(control, str(tmp_path / "control.txt"))
    client.set_terminated(control)

    corpus = _mlflow_texts(client, name, tmp_path / "artifacts")
    corpus |= _files("AUTOML_HOME", Path(os.environ["AUTOML_HOME"]))
    out = capfd.readouterr()
    corpus |= {"result": json.dumps(result, default=str).encode(), "progress": "\n".join(lines).encode(),
               "stdout": out.out.encode(), "stderr": out.err.encode(), "logging": caplog.text.encode()}
    # The scan covered what a leak would be in: the spec, the summary, the logged model, the logs.
    where = " ".join(corpus)
    for expected in ("spec.yaml", "decision.md", "monthly.json", "MLmodel", "metadata.json"):
        assert expected in where, expected
    assert "View run" in out.out + out.err                # MLflow's own lines, with the tracking URI
    leaks = [place for place, data in corpus.items() if CANARY.encode() in data]
    assert leaks == [f"run {control} params", f"run {control} artifact control.txt"]


def test_tracking_uri_with_a_password_is_refused(monkeypatch, capsys):
    """MLflow prints the tracking URI ("View run at ...") and summaries link to it: a password in
    it is refused before any request, and the message does not repeat it."""
    from automl_tasks import config
    from automl_tasks.cli import main

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://airflow:{CANARY}@127.0.0.1:9")  # nothing listens
    assert main(["decisions", "--model", "loan_default"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: MLFLOW_TRACKING_URI holds a password (http://airflow:***@127.0.0.1:9);")
    assert CANARY not in err
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://airflow@127.0.0.1:9")        # a user alone is fine
    monkeypatch.setenv("AUTOML_MLFLOW_UI_URL", f"https://viewer:{CANARY}@mlflow.example.com/")
    with pytest.raises(ConfigError) as err:
        config.mlflow_ui_url()
    assert "AUTOML_MLFLOW_UI_URL holds a password (https://viewer:***@mlflow.example.com/)" in str(err.value)
    monkeypatch.delenv("AUTOML_MLFLOW_UI_URL")
    assert config.mlflow_ui_url() == "http://airflow@127.0.0.1:9"


# --- nothing secret in the repository -----------------------------------------------------------

SECRET_NAME = r"[\w.-]*(?:password|passwd|secret|token|fernet_key|api_?key)[\w.-]*"
PATTERNS = {   # each captures the secret value (group 1)
    "private key": re.compile(r"(-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----)"),
    "AWS access key id": re.compile(r"\b((?:AKIA|ASIA)[0-9A-Z]{16})\b"),
    "AWS secret key": re.compile(r"(?i)aws_?secret_?access_?key['\"]?\s*[=:]\s*['\"]?([A-Za-z0-9/+]{40})(?![\w/+])"),
    "API token": re.compile(r"\b(gh[pousr]_[A-Za-z0-9]{36,}|glpat-[A-Za-z0-9_-]{20,}|xox[abprs]-[\w-]{10,})"),
    "quoted secret": re.compile(rf"(?i)\b{SECRET_NAME}['\"]?(?:\s*=\s*|:\s*)['\"]([^'\"\s]{{8,}})['\"]"),
    "env secret": re.compile(rf"(?im)^\s*(?:export\s+)?{SECRET_NAME}=([^\s$'\"{{][^\s]*)$"),
    "password in a URI": re.compile(r"\b[a-z][a-z0-9+.-]*://[^/\s:@'\"]+:([^/\s@'\"]+)@"),
}
# Not secrets: documented throwaway values and placeholders in examples.
PLACEHOLDER = re.compile(r"^(local-only-[\w.-]+|pw|password|\*+|\.\.\.|\{\w+\}|\$\{?\w+\}?)$")
ALLOWED = {
    ("tests/test_dag_rest_approval.py", "not-the-password"): "a wrong password, for the 401 check",
    (".env.example", "VzIuvX3ErXYCuONrFr-lnX0lo6h7bg1A7WQg7P0QOuo="):
        "AIRFLOW_FERNET_KEY's local-only example (a Fernet key cannot carry the local-only- prefix)",
}


def _findings(path: str, text: str) -> list[str]:
    return [f"{path}:{text.count(chr(10), 0, m.start()) + 1}: {kind} {m.group(1)[:12]}..."
            for kind, pattern in PATTERNS.items() for m in pattern.finditer(text)
            if not PLACEHOLDER.match(m.group(1)) and (path, m.group(1)) not in ALLOWED]


def test_patterns_catch_planted_secrets():
    """The scanner below finds each kind (the samples are assembled here, so no file holds one)."""
    planted = {
        "private key": "-----BEGIN RSA " + "PRIVATE KEY-----\nMIIEow...",
        "AWS access key id": "key = AKIA" + "Q" * 16,
        "AWS secret key": "aws_secret_access_key = " + "Ab1/" * 10,
        "API token": "ghp_" + "x" * 36,
        "quoted secret": 'db_pass' + 'word: "hunter2hunter2"',
        "env secret": "API_TO" + "KEN=abc123def456",
        "password in a URI": "postgresql://app:" + "s3cretpw@db:5432/app",
    }
    for kind, sample in planted.items():
        assert any(f": {kind} " in f for f in _findings("x", sample)), (kind, _findings("x", sample))
    assert _findings("x", "MLFLOW_ADMIN_PASS" + "WORD=local-only-mlflow-admin\n"
                          "url: postgresql://user:pw@host/db  PASSWORD=${PG_PASSWORD}") == []


def test_no_secrets_in_repository_files():
    """Tracked files and new ones not ignored (what a commit would take): no keys, tokens or
    password literals but the documented local-only examples; `.env` itself is ignored."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            cwd=REPO, capture_output=True, text=True, check=True).stdout
    findings, scanned = [], 0
    for name in filter(None, listed.split("\0")):
        path = REPO / name
        if not path.is_file() or path.is_symlink():
            continue
        data = path.read_bytes()
        if b"\0" in data:                                   # binary
            continue
        scanned += 1
        findings += _findings(name, data.decode(errors="replace"))
    assert scanned > 50
    assert findings == []
    ignored = subprocess.run(["git", "check-ignore", "-q", ".env"], cwd=REPO)
    assert ignored.returncode == 0, ".env (the real compose settings) must be git-ignored"

"""The compose stack's first run: the demo spec's months through the Airflow REST API.

`make stack-demo` runs it after writing the demo data to ./demo_data (mounted read-only in the
Airflow and Spark containers at /opt/project/demo_data, beside the specs folder, which is where
specs/loan_default.yaml's `../demo_data/loans/` points). It signs in as the Airflow admin of
`.env`, waits until the dag-processor has parsed `monthly_retrain`, unpauses it, triggers one run
per month (manual trigger, `promotion` in the conf), follows each run task by task until it ends,
and prints where to look.

    python scripts/stack_demo.py [--env-file .env] [--spec loan_default.yaml]
                                 [--month 2018-01 --month 2018-02] [--promotion auto]

Settings come from the env file and the environment (the environment wins): AIRFLOW_UI_URL
(default http://127.0.0.1:8080), MLFLOW_UI_URL (default http://127.0.0.1:5000),
AIRFLOW_ADMIN_USERNAME, AIRFLOW_ADMIN_PASSWORD. Exit status 0 when every run succeeded.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from urllib.parse import quote

import requests

DAG_ID = "monthly_retrain"
DEFAULT_MONTHS = ("2018-01", "2018-02")
ENDED = ("success", "failed")


def read_env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines of a compose env file (comments and blank lines skipped)."""
    if not path.exists():
        return {}
    pairs = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#") and "=" in line:
            key, _, value = line.partition("=")
            pairs[key.strip()] = value.strip().strip("'\"")
    return pairs


class Airflow:
    """The REST API as the admin: a JWT from /auth/token, then /api/v2."""

    def __init__(self, url: str, user: str, password: str, timeout_s: float):
        self.url, self.timeout_s = url.rstrip("/"), timeout_s
        self.http = requests.Session()
        self.user, self.password = user, password

    def wait_healthy(self) -> None:
        deadline = time.monotonic() + self.timeout_s
        while True:
            try:
                if requests.get(f"{self.url}/api/v2/monitor/health", timeout=10).status_code == 200:
                    return
            except requests.ConnectionError:
                pass
            if time.monotonic() > deadline:
                sys.exit(f"error: Airflow does not answer at {self.url} (is `docker compose up -d` done?)")
            time.sleep(5)

    def login(self) -> None:
        resp = self.http.post(f"{self.url}/auth/token", json={"username": self.user, "password": self.password},
                              timeout=30)
        if resp.status_code not in (200, 201):
            sys.exit(f"error: signing in to {self.url} as {self.user!r}: {resp.status_code} {resp.text[:300]}")
        self.http.headers["Authorization"] = f"Bearer {resp.json()['access_token']}"

    def call(self, method: str, path: str, **kwargs) -> dict:
        resp = self.http.request(method, f"{self.url}/api/v2{path}", timeout=60, **kwargs)
        if resp.status_code >= 400:
            sys.exit(f"error: {method} {path}: {resp.status_code} {resp.text[:500]}")
        return resp.json()

    def wait_parsed(self) -> None:
        deadline = time.monotonic() + self.timeout_s
        while self.http.get(f"{self.url}/api/v2/dags/{DAG_ID}", timeout=60).status_code != 200:
            if time.monotonic() > deadline:
                errors = self.call("GET", "/importErrors")
                sys.exit(f"error: {DAG_ID} is not parsed after {self.timeout_s:.0f}s; import errors: {errors}")
            time.sleep(5)


def run_path(run_id: str) -> str:
    return f"/dags/{DAG_ID}/dagRuns/{quote(run_id, safe='')}"


def follow(api: Airflow, run_id: str, deadline: float) -> str:
    """Print each task's state as it changes until the run ends; its final state."""
    seen: dict[str, str] = {}
    while True:
        state = api.call("GET", run_path(run_id))["state"]
        for ti in api.call("GET", run_path(run_id) + "/taskInstances")["task_instances"]:
            name = ti["task_id"] + (f" [{ti['rendered_map_index']}]" if ti.get("rendered_map_index") else "")
            if ti["state"] and seen.get(name) != ti["state"]:
                seen[name] = ti["state"]
                print(f"  {name}: {ti['state']}", flush=True)
        if state in ENDED:
            return state
        if time.monotonic() > deadline:
            sys.exit(f"error: run {run_id} still {state} at the deadline")
        time.sleep(5)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env-file", type=Path, default=Path(".env"))
    parser.add_argument("--spec", default="loan_default.yaml", help="a spec file in the stack's specs folder")
    parser.add_argument("--month", action="append", help=f"YYYY-MM, repeatable (default {' '.join(DEFAULT_MONTHS)})")
    parser.add_argument("--promotion", default="auto", choices=("auto", "manual", "shadow"))
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds for each wait")
    args = parser.parse_args(argv)
    settings = {**read_env_file(args.env_file), **os.environ}
    airflow_url = settings.get("AIRFLOW_UI_URL") or "http://127.0.0.1:8080"
    mlflow_url = settings.get("MLFLOW_UI_URL") or "http://127.0.0.1:5000"
    user, password = settings.get("AIRFLOW_ADMIN_USERNAME"), settings.get("AIRFLOW_ADMIN_PASSWORD")
    if not user or not password:
        sys.exit(f"error: AIRFLOW_ADMIN_USERNAME and AIRFLOW_ADMIN_PASSWORD are not set "
                 f"(in {args.env_file} or the environment)")

    api = Airflow(airflow_url, user, password, args.timeout)
    api.wait_healthy()
    api.login()
    api.wait_parsed()
    api.call("PATCH", f"/dags/{DAG_ID}", json={"is_paused": False})
    states = {}
    for month in args.month or DEFAULT_MONTHS:
        conf = {"spec": args.spec, "month": month, "promotion": args.promotion}
        run_id = api.call("POST", f"/dags/{DAG_ID}/dagRuns", json={"logical_date": None, "conf": conf})["dag_run_id"]
        print(f"{args.spec} {month}: run {run_id}", flush=True)
        states[month] = follow(api, run_id, time.monotonic() + args.timeout)
        print(f"{args.spec} {month}: {states[month]}  {airflow_url}/dags/{DAG_ID}/runs/{quote(run_id, safe='')}",
              flush=True)
    print(f"MLflow (the month runs, the registered model and its champion): {mlflow_url}\n"
          f"Airflow: {airflow_url}/dags/{DAG_ID}\n"
          "Your own model: its data where the Airflow and Spark containers read it (a volume or bind mount, "
          "as ./demo_data is), its spec in ./specs (docs/spec.md); take specs/loan_default.yaml out "
          "before the schedule's first month ends (its data stops in 2018).")
    return 0 if all(state == "success" for state in states.values()) else 1


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python
"""Manage users and permissions on an MLflow server started with MLFLOW_AUTH=true.

    python mlflow_server/users.py --url URL create-user NAME --password-env VAR
    python mlflow_server/users.py --url URL grant NAME --experiment EXP --permission EDIT
    python mlflow_server/users.py --url URL setup-team --model loan_default

setup-team gives the `airflow` service account EDIT on the model's experiments and MANAGE on its
registered model (approving a challenger deletes the `challenger` alias, which MLflow allows only
with MANAGE), and a `viewer` READ on both. Everything else falls back to the server's
default_permission (READ in start.sh): readable, never writable.

Admin credentials come from MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD (read by
MLflow's client), and every password from an environment variable named on the command
line: never from argv, where `ps` and shell history would show it. Every command is
idempotent: an existing user gets the password from the environment, an existing grant
is replaced by the requested one.

Needs only mlflow (runs in the mlflow_server image without this project installed).
"""

from __future__ import annotations

import argparse
import os
import sys

# Experiments per model, as in DESIGN.md "MLflow conventions": `<model>/<purpose>`.
PURPOSES = ("monthly", "tuning", "poc", "ablation")  # the experiments automl_tasks writes
PERMISSIONS = ("READ", "USE", "EDIT", "MANAGE")


class UsageError(Exception):
    """A bad argument or environment: reported in one line, exit code 2."""


def _password(var: str) -> str:
    value = os.environ.get(var)
    if not value:
        raise UsageError(f"environment variable {var} (the password) is not set or empty")
    if len(value) < 12:
        raise UsageError(f"password in {var} is {len(value)} characters; MLflow needs 12 or more")
    return value


def _clients(url: str):
    for var in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
        if not os.environ.get(var):
            raise UsageError(f"{var} must hold the MLflow admin credentials")
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    from mlflow import MlflowClient
    from mlflow.server import get_app_client

    return get_app_client("basic-auth", tracking_uri=url), MlflowClient(tracking_uri=url)


def _error_code(exc: Exception) -> str | None:
    return getattr(exc, "error_code", None)


def ensure_user(auth, username: str, password: str) -> str:
    """Create `username`, or set its password when it exists. Returns what was done."""
    from mlflow.exceptions import MlflowException

    try:
        auth.create_user(username, password)
        return "created"
    except MlflowException as exc:
        if _error_code(exc) != "RESOURCE_ALREADY_EXISTS":
            raise
    auth.update_user_password(username, password)
    return "password updated"


def experiment_id(tracking, name: str, *, create: bool = False) -> str:
    """The id of experiment `name` (or of id `name`), created when `create` is set."""
    found = tracking.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    if name.isdigit():
        return tracking.get_experiment(name).experiment_id
    if create:
        return tracking.create_experiment(name)
    raise UsageError(f"experiment '{name}' does not exist on the server")


def grant(auth, username: str, resource_type: str, resource_id: str, permission: str) -> None:
    """Grant `permission`, replacing an earlier grant of the user on the same resource."""
    from mlflow.exceptions import MlflowException

    try:
        auth.grant_user_permission(username, resource_type, resource_id, permission)
    except MlflowException as exc:
        if _error_code(exc) != "RESOURCE_ALREADY_EXISTS":
            raise
        auth.revoke_user_permission(username, resource_type, resource_id)
        auth.grant_user_permission(username, resource_type, resource_id, permission)


def cmd_create_user(args) -> None:
    auth, _ = _clients(args.url)
    done = ensure_user(auth, args.name, _password(args.password_env))
    print(f"user {args.name}: {done}")


def cmd_grant(args) -> None:
    if not (args.experiment or args.registered_model):
        raise UsageError("grant needs at least one --experiment or --registered-model")
    auth, tracking = _clients(args.url)
    for name in args.experiment:
        exp_id = experiment_id(tracking, name)
        grant(auth, args.name, "experiment", exp_id, args.permission)
        print(f"user {args.name}: {args.permission} on experiment {name} (id {exp_id})")
    for name in args.registered_model:
        grant(auth, args.name, "registered_model", name, args.permission)
        print(f"user {args.name}: {args.permission} on registered model {name}")


def cmd_setup_team(args) -> None:
    # --model takes comma-separated lists too (one env var in docker-compose.yml).
    model_names = [m.strip() for arg in args.model for m in arg.split(",") if m.strip()]
    experiments = list(args.experiment)
    for model in model_names:
        experiments += [f"{model}/{purpose}" for purpose in PURPOSES]
    models = list(args.registered_model) + model_names
    if not experiments:
        raise UsageError("setup-team needs at least one --model or --experiment")
    # Read both passwords before touching the server: a missing one changes nothing.
    # (user, password, permission on the experiments, on the registered models)
    team = [(args.airflow_user, _password(args.airflow_password_env), "EDIT", "MANAGE"),
            (args.viewer_user, _password(args.viewer_password_env), "READ", "READ")]
    auth, tracking = _clients(args.url)
    ids = {name: experiment_id(tracking, name, create=True) for name in experiments}
    for username, password, on_experiments, on_models in team:
        print(f"user {username}: {ensure_user(auth, username, password)}")
        for exp_id in ids.values():
            grant(auth, username, "experiment", exp_id, on_experiments)
        for name in models:
            grant(auth, username, "registered_model", name, on_models)
        print(f"user {username}: {on_experiments} on experiments {', '.join(ids)}"
              + (f", {on_models} on registered models {', '.join(models)}" if models else ""))


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    top.add_argument("--url", default=os.environ.get("MLFLOW_TRACKING_URI"),
                     help="tracking server URL (default: $MLFLOW_TRACKING_URI)")
    sub = top.add_subparsers(dest="command", required=True)

    p = sub.add_parser("create-user", help="create a user (or reset its password)")
    p.add_argument("name")
    p.add_argument("--password-env", required=True, metavar="VAR",
                   help="environment variable holding the password")
    p.set_defaults(func=cmd_create_user)

    p = sub.add_parser("grant", help="grant a user a permission on experiments/registered models")
    p.add_argument("name")
    p.add_argument("--experiment", action="append", default=[], metavar="NAME_OR_ID")
    p.add_argument("--registered-model", action="append", default=[], metavar="NAME")
    p.add_argument("--permission", required=True, choices=PERMISSIONS)
    p.set_defaults(func=cmd_grant)

    p = sub.add_parser("setup-team",
                       help="an `airflow` service account (EDIT on the experiments, MANAGE on the "
                            "registered models) and a `viewer` with READ")
    p.add_argument("--model", action="append", default=[], metavar="NAME",
                   help="model spec name(s), comma-separated or repeated: experiments "
                        "NAME/{monthly,tuning,poc,ablation} and registered model NAME")
    p.add_argument("--experiment", action="append", default=[], metavar="NAME",
                   help="one more experiment, created when missing (repeatable)")
    p.add_argument("--registered-model", action="append", default=[], metavar="NAME")
    p.add_argument("--airflow-user", default="airflow")
    p.add_argument("--airflow-password-env", default="MLFLOW_AIRFLOW_PASSWORD", metavar="VAR")
    p.add_argument("--viewer-user", default="viewer")
    p.add_argument("--viewer-password-env", default="MLFLOW_VIEWER_PASSWORD", metavar="VAR")
    p.set_defaults(func=cmd_setup_team)
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if not args.url:
        print("users.py: --url or MLFLOW_TRACKING_URI is required", file=sys.stderr)
        return 2
    try:
        args.func(args)
    except UsageError as exc:
        print(f"users.py: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

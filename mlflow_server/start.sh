#!/usr/bin/env bash
# Start the MLflow tracking server. One script for a laptop, the tests and the image:
# everything comes from the environment (see mlflow_server/README.md); extra
# arguments are passed on to `mlflow server`.
set -euo pipefail

die() { echo "mlflow_server/start.sh: $*" >&2; exit 2; }
require() {  # require VAR "why": fail with a clear message when VAR is unset or empty
  [[ -n "${!1:-}" ]] || die "$1 must be set ($2)"
}

# Same home as the library's embedded store (automl_tasks.config: AUTOML_HOME).
home="${MLFLOW_HOME:-${AUTOML_HOME:-$PWD/.automl_home}}"
mkdir -p "$home"
home="$(cd "$home" && pwd)"

backend="${MLFLOW_BACKEND_STORE_URI:-sqlite:///$home/mlflow.db}"
# Local dir by default; s3://bucket/prefix for S3/MinIO (boto3 reads
# MLFLOW_S3_ENDPOINT_URL and AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY from the env).
artifacts="${MLFLOW_ARTIFACTS_DESTINATION:-$home/mlartifacts}"
if [[ "$artifacts" != *://* ]]; then
  mkdir -p "$artifacts"
fi

# Lean defaults for small hosts: one worker, no job-execution (huey) consumers.
# Measured (ps, whole process group): default server 2.8 GiB RSS in 15 processes;
# with these settings ~0.55-0.6 GiB in 2 (the CLI and one uvicorn worker).
export MLFLOW_SERVER_ENABLE_JOB_EXECUTION="${MLFLOW_SERVER_ENABLE_JOB_EXECUTION:-false}"
export MLFLOW_DISABLE_TELEMETRY=true

args=(
  --backend-store-uri "$backend"
  --serve-artifacts --artifacts-destination "$artifacts"
  --host "${MLFLOW_HOST:-127.0.0.1}"
  --port "${MLFLOW_PORT:-5000}"
  --workers "${MLFLOW_WORKERS:-1}"
)

if [[ "${MLFLOW_AUTH:-false}" == "true" ]]; then
  # MLflow ships no default admin: both credentials and the Flask secret are required.
  require MLFLOW_AUTH_ADMIN_USERNAME "admin user created on first start with MLFLOW_AUTH=true"
  require MLFLOW_AUTH_ADMIN_PASSWORD "admin password, at least 12 characters, with MLFLOW_AUTH=true"
  require MLFLOW_FLASK_SERVER_SECRET_KEY "Flask session/CSRF secret with MLFLOW_AUTH=true"
  export MLFLOW_AUTH_ADMIN_USERNAME MLFLOW_AUTH_ADMIN_PASSWORD MLFLOW_FLASK_SERVER_SECRET_KEY
  # Every account gets at least the default on every experiment and model, whatever it was
  # granted: EDIT or MANAGE would let the service account (and everyone) write everything.
  default_permission="${MLFLOW_AUTH_DEFAULT_PERMISSION:-READ}"
  case "$default_permission" in
    NO_PERMISSIONS|READ|USE) ;;
    *) die "MLFLOW_AUTH_DEFAULT_PERMISSION must be NO_PERMISSIONS, READ or USE, got '$default_permission': it is every account's minimum on every experiment and model" ;;
  esac
  auth_db="${MLFLOW_AUTH_DATABASE_URI:-sqlite:///$home/basic_auth.db}"
  export MLFLOW_AUTH_CONFIG_PATH="$home/basic_auth.ini"
  # Credential cache: an uncached check is a PBKDF2 hash (measured ~0.75 s a request on a
  # busy 2-core host, ~0.03 s cached) and a tuning logs hundreds of requests. Grants are not
  # cached; with one worker a password change via the API applies at once (0 disables).
  # The password stays in the environment (MLflow reads MLFLOW_AUTH_ADMIN_PASSWORD and
  # prefers it to the ini); the ini may still hold a DB URI with credentials: owner-only.
  # ('%' is doubled: MLflow reads the ini with configparser interpolation.)
  (
    umask 077
    cat >"$MLFLOW_AUTH_CONFIG_PATH" <<EOF
[mlflow]
default_permission = ${default_permission}
database_uri = ${auth_db//%/%%}
admin_username = ${MLFLOW_AUTH_ADMIN_USERNAME}
authorization_function = mlflow.server.auth:authenticate_request_basic_auth
auth_cache_ttl_seconds = ${MLFLOW_AUTH_CACHE_TTL_SECONDS:-60}
EOF
  )
  chmod 600 "$MLFLOW_AUTH_CONFIG_PATH"
  args+=(--app-name basic-auth)
elif [[ "${MLFLOW_AUTH:-false}" != "false" ]]; then
  die "MLFLOW_AUTH must be true or false, got '${MLFLOW_AUTH}'"
fi

# `mlflow` from PATH, else the repo's venv (running from a checkout without activating it).
mlflow_bin="$(command -v mlflow || true)"
if [[ -z "$mlflow_bin" ]]; then
  mlflow_bin="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/.venv/bin/mlflow"
  [[ -x "$mlflow_bin" ]] || die "no 'mlflow' on PATH and no $mlflow_bin"
fi

exec "$mlflow_bin" server "${args[@]}" "$@"

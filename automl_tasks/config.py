"""Where things live by default: one home folder for the local MLflow store, models, staging."""

from __future__ import annotations

import os
from pathlib import Path


def home() -> Path:
    """AUTOML_HOME, default `.automl_home` in the working directory."""
    path = Path(os.environ.get("AUTOML_HOME", ".automl_home")).resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path


def tracking_uri() -> str:
    """MLFLOW_TRACKING_URI, default a SQLite store under the home folder."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{home() / 'mlflow.db'}"


def local_artifact_root() -> Path | None:
    """Artifacts folder for the embedded store; None when a server decides."""
    if os.environ.get("MLFLOW_TRACKING_URI", "").startswith(("http://", "https://", "databricks")):
        return None
    return home() / "mlartifacts"


def staging_dir() -> Path:
    """Where tuning data is staged for executors (AUTOML_STAGING_DIR; must be shared on a cluster)."""
    path = Path(os.environ.get("AUTOML_STAGING_DIR") or home() / "staging")
    path.mkdir(parents=True, exist_ok=True)
    return path


def mlflow_ui_url() -> str | None:
    """Base URL of the MLflow UI for links: AUTOML_MLFLOW_UI_URL, else an http(s) tracking URI."""
    url = os.environ.get("AUTOML_MLFLOW_UI_URL") or tracking_uri()
    return url.rstrip("/") if url.startswith(("http://", "https://")) else None

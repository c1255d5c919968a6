"""Where things live by default: one home folder for the local MLflow store, models, staging."""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlsplit

from automl_tasks.errors import ConfigError


def home(create: bool = True) -> Path:
    """AUTOML_HOME, default `.automl_home` in the working directory."""
    path = Path(os.environ.get("AUTOML_HOME", ".automl_home")).resolve()
    if create:
        path.mkdir(parents=True, exist_ok=True)
    return path


def url_setting(var: str) -> str | None:
    """The URL in environment variable `var`, refused when it holds a password: MLflow prints the
    tracking URI in its logs ("View run at ...") and the summaries link to it."""
    url = os.environ.get(var)
    parts = urlsplit(url or "")
    if parts.password is not None:
        shown = parts._replace(netloc=f"{parts.username}:***@{parts.netloc.rpartition('@')[2]}").geturl()
        raise ConfigError(f"{var} holds a password ({shown}); URLs end up in logs and links: give the "
                          "credentials in MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD instead")
    return url


def tracking_uri(create: bool = True) -> str:
    """MLFLOW_TRACKING_URI, default a SQLite store under the home folder (made unless not `create`)."""
    return url_setting("MLFLOW_TRACKING_URI") or f"sqlite:///{home(create) / 'mlflow.db'}"


def store_missing() -> str | None:
    """The path of a local SQLite store that does not exist yet (reading it would create it)."""
    uri = tracking_uri(create=False)
    if uri.startswith("sqlite:///"):
        path = Path(uri.removeprefix("sqlite:///"))
        return None if path.exists() else str(path)
    return None


def local_artifact_root() -> Path | None:
    """Artifacts folder for the embedded store; None when a server decides."""
    if os.environ.get("MLFLOW_TRACKING_URI", "").startswith(("http://", "https://", "databricks")):
        return None
    return home() / "mlartifacts"


def staging_dir() -> Path:
    """Where Spark Connect tunings stage their data (AUTOML_STAGING_DIR; shared with the executors)."""
    path = Path(os.environ.get("AUTOML_STAGING_DIR") or home() / "staging")
    path.mkdir(parents=True, exist_ok=True)
    return path


def predictions_dir() -> Path:
    """Where batch scoring writes (docs/scoring.md): AUTOML_PREDICTIONS_DIR, default
    `<AUTOML_DATA_DIR, else AUTOML_HOME>/predictions`."""
    root = os.environ.get("AUTOML_DATA_DIR") or home()
    return Path(os.environ.get("AUTOML_PREDICTIONS_DIR") or Path(root) / "predictions")


def mlflow_ui_url() -> str | None:
    """Base URL of the MLflow UI for links: AUTOML_MLFLOW_UI_URL, else an http(s) tracking URI."""
    url = url_setting("AUTOML_MLFLOW_UI_URL") or tracking_uri()
    return url.rstrip("/") if url.startswith(("http://", "https://")) else None


def data_roots() -> list[Path]:
    """Folders user-given data paths must be inside (PoC inputs): AUTOML_DATA_ROOTS
    (os.pathsep-separated), else AUTOML_DATA_DIR, else the working directory."""
    raw = os.environ.get("AUTOML_DATA_ROOTS") or os.environ.get("AUTOML_DATA_DIR") or os.getcwd()
    return [Path(p).resolve() for p in raw.split(os.pathsep) if p]

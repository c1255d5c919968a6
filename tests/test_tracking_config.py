"""MLflow configured once per process (tracking.configure), and find_run's quoted tag values,
against real local SQLite stores."""

from __future__ import annotations

import os

import mlflow
import pytest
from mlflow import MlflowClient

from automl_tasks.registry import tracking


def _sqlite(path) -> str:
    return f"sqlite:///{path}"


@pytest.fixture
def store(tmp_path, monkeypatch) -> str:
    """A local SQLite store in tmp_path as the configured one (nothing configured yet)."""
    uri = _sqlite(tmp_path / "a" / "mlflow.db")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("AUTOML_HOME", str(tmp_path / "home"))
    return uri


def test_client_does_not_configure_mlflow_again(store, tmp_path):
    first = tracking.client()
    assert first.tracking_uri == store
    assert (mlflow.get_tracking_uri(), mlflow.get_registry_uri()) == (store, store)
    assert "MLFLOW_REGISTRY_URI" not in os.environ        # a child process must not inherit it
    # MLflow's globals pointed elsewhere behind the library's back, the settings (the environment,
    # which MLflow's setters export to) unchanged: a client() that configured again would undo it.
    elsewhere = _sqlite(tmp_path / "b" / "mlflow.db")
    mlflow.set_tracking_uri(elsewhere)
    mlflow.set_registry_uri(elsewhere)
    os.environ["MLFLOW_TRACKING_URI"] = store
    del os.environ["MLFLOW_REGISTRY_URI"]
    second, third = tracking.client(), tracking.client()
    assert (mlflow.get_tracking_uri(), mlflow.get_registry_uri()) == (elsewhere, elsewhere)
    assert second.tracking_uri == third.tracking_uri == store   # still the configured store
    # An entry point's configure() makes it so again.
    assert tracking.configure() == store
    assert (mlflow.get_tracking_uri(), mlflow.get_registry_uri()) == (store, store)
    assert "MLFLOW_REGISTRY_URI" not in os.environ


def test_configure_points_the_fluent_api_at_the_store_and_is_idempotent(store, tmp_path, monkeypatch):
    assert tracking.configure() == store
    assert not (tmp_path / "a").exists()                  # configuring makes no folder or store
    experiment = tracking.client().create_experiment("fluent", (tmp_path / "art").as_uri())
    with mlflow.start_run(experiment_id=experiment) as run:   # the fluent API, no URI given
        mlflow.set_tag("where", "store a")
    assert MlflowClient(store).get_run(run.info.run_id).data.tags["where"] == "store a"
    assert tracking.configure() == store                  # again: nothing changes
    assert mlflow.get_tracking_uri() == store
    # Other settings in the same process (an in-process CLI call, a notebook changing AUTOML_HOME):
    # the library follows them, registry included.
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    home_store = _sqlite(tmp_path / "home" / "mlflow.db")
    assert tracking.client().tracking_uri == home_store
    assert (mlflow.get_tracking_uri(), mlflow.get_registry_uri()) == (home_store, home_store)
    assert (tmp_path / "home").is_dir()                   # made when the client is, for SQLite
    # mlflow.set_tracking_uri exports MLFLOW_TRACKING_URI: the store it names is the configured one.
    other = _sqlite(tmp_path / "c" / "mlflow.db")
    mlflow.set_tracking_uri(other)
    assert tracking.client().tracking_uri == other
    assert mlflow.get_registry_uri() == other
    assert "MLFLOW_REGISTRY_URI" not in os.environ


def test_unconfigure_leaves_mlflow_to_the_environment(store, tmp_path, monkeypatch):
    tracking.configure()
    tracking.unconfigure()
    assert mlflow.get_tracking_uri() == store             # from MLFLOW_TRACKING_URI, which stays
    other = _sqlite(tmp_path / "c" / "mlflow.db")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", other)
    assert tracking.client().tracking_uri == other        # the next client() configures afresh
    assert mlflow.get_registry_uri() == other


def test_the_cli_configures_its_process(store, tmp_path, capsys):
    from automl_tasks.cli import main

    mlflow.set_tracking_uri(_sqlite(tmp_path / "b" / "mlflow.db"))   # a stale global ...
    os.environ["MLFLOW_TRACKING_URI"] = store                         # ... the settings unchanged
    assert main(["decisions", "--model", "no_such_model"]) == 2
    assert f"there is no MLflow store at {tmp_path / 'a' / 'mlflow.db'}" in capsys.readouterr().err
    assert (mlflow.get_tracking_uri(), mlflow.get_registry_uri()) == (store, store)


def test_find_run_matches_a_tag_value_with_a_quote_exactly(store, tmp_path):
    client = tracking.client()
    experiment = client.create_experiment("find", (tmp_path / "art").as_uri())
    quoted = "feature/o'brien"

    def run(value: str, start: int, finished: bool = True) -> str:
        made = client.create_run(experiment, start_time=start, tags={"automl.branch": value, "automl.kind": "tuning"})
        if finished:
            client.set_terminated(made.info.run_id)
        return made.info.run_id

    older, newer = run(quoted, 1_000), run(quoted, 2_000)
    unfinished = run(quoted, 3_000, finished=False)
    unquoted = run("feature/obrien", 4_000)
    assert tracking.find_run(client, [experiment], {"automl.branch": quoted}).info.run_id == unfinished
    assert tracking.find_run(client, [experiment], {"automl.branch": quoted}, finished=True).info.run_id == newer
    assert [r.info.run_id for r in tracking.find_runs(client, [experiment], {"automl.branch": quoted})] == \
        [unfinished, newer, older]
    assert tracking.find_run(client, [experiment], {"automl.branch": "feature/obrien", "automl.kind": "tuning"}
                             ).info.run_id == unquoted
    assert tracking.find_run(client, [experiment], {"automl.branch": "feature/o'brie"}) is None
    assert tracking.find_run(client, [experiment], {"automl.branch": quoted, "automl.kind": "trial"}) is None
    assert tracking.find_run(client, [experiment], {"automl.branch": 'say "hi"'}) is None
    with pytest.raises(ValueError, match="both quote kinds"):
        tracking.find_runs(client, [experiment], {"automl.branch": """o'brien "jr" """})

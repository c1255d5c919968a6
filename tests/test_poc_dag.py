"""poc_automl: the inbox trigger claims a dropped file once and emits its payload; the DAG runs a
PoC from its form under dag.test(), with a segment column and a champion whose algorithm is checked."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml
from mlflow import MlflowClient

from automl_tasks.errors import SpecError
from automl_tasks.poc.inbox import claim_settled, request_from_event
from tests.support.dags import dag_env, run_dag
from tests.support.poc_data import segment_frame, write_csv


TRIGGER_PROBE = """
import asyncio, importlib, json, sys
from airflow.sdk import AssetWatcher
from poc_inbox_trigger import PocInboxTrigger

trigger = PocInboxTrigger(inbox=sys.argv[1], poke_interval=0.05, settle_s=30)
AssetWatcher(name="w", trigger=trigger)            # accepted as an asset watcher's event trigger
classpath, kwargs = trigger.serialize()            # what the triggerer imports and re-creates
module, _, name = classpath.rpartition(".")
assert getattr(importlib.import_module(module), name)(**kwargs).serialize() == (classpath, kwargs)

async def first_event():
    events = trigger.run()
    try:
        return await asyncio.wait_for(events.__anext__(), 30)
    finally:
        await events.aclose()

print("PAYLOAD " + json.dumps(asyncio.run(first_event()).payload))
"""


def test_inbox_trigger_claims_a_settled_drop_once(airflow_env, tmp_path):
    inbox = tmp_path / "inbox"
    frame = segment_frame(60)
    write_csv(frame, inbox / "shop_train.csv")
    write_csv(frame.drop(columns=["bought"]), inbox / "shop_test.csv")
    (inbox / "shop_poc.json").write_text(json.dumps({"label": "bought", "segment": "channel"}))
    old = time.time() - 120
    for name in ("shop_train.csv", "shop_test.csv", "shop_poc.json"):
        os.utime(inbox / name, (old, old))
    write_csv(frame, inbox / "busy_train.csv")            # still being written: not settled yet
    write_csv(frame, inbox / "stray_test.csv")            # a test file without its training file
    os.utime(inbox / "stray_test.csv", (old, old))

    out = subprocess.run([sys.executable, "-c", TRIGGER_PROBE, str(inbox)], env=airflow_env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    payload = json.loads(next(line for line in out.stdout.splitlines() if line.startswith("PAYLOAD "))[8:])
    claimed = Path(payload["train"]).parent
    assert payload["name"] == "shop" and claimed.parent == inbox / "claimed"
    assert Path(payload["test"]) == claimed / "shop_test.csv" and Path(payload["options"]).exists()
    assert pd.read_csv(payload["train"]).shape == frame.shape
    assert sorted(p.name for p in inbox.iterdir()) == ["busy_train.csv", "claimed", "stray_test.csv"]
    assert claim_settled(inbox, settle_s=30) == []          # claimed once: the next scan finds nothing

    request = request_from_event(payload, {"label": "label", "time_budget_s": 300, "data": None, "test": None})
    assert request == {"label": "bought", "segment": "channel", "time_budget_s": 300, "data": payload["train"],
                       "test": payload["test"], "name": "shop"}
    Path(payload["options"]).write_text(json.dumps({"data": "/etc/passwd"}))
    with pytest.raises(SpecError, match="'data' comes from the dropped files"):
        request_from_event(payload, {})


def register_champion(spark, folder: Path, name: str) -> str:
    """Tune a one-point xgboost spec on the data and make it the champion of `name`."""
    from automl_tasks.registry import promotion, tracking
    from automl_tasks.spec import load_spec
    from automl_tasks.tuning.job import tune

    spec_path = folder / "champion.yaml"
    spec_path.write_text(yaml.safe_dump({
        "name": name, "task": "binary", "data": {"source": "shop_train.csv", "label": "bought"},
        "validation": {"method": "cv", "folds": 3},
        "algorithms": {"xgboost": {"search": "grid", "space": {"max_depth": [3], "n_estimators": [30]}}}}))
    tuned = tune(load_spec(spec_path), None, spark=spark, progress=lambda line: None)
    entry = tuned["leaderboard"][0]
    version = promotion.register_candidate(entry["model_uri"], name, month="2018-01", run_id=tuned["run_id"],
                                           tags={"automl.algorithm": "xgboost"})
    tracking.client().set_registered_model_alias(name, "champion", version)
    return version


def test_poc_dag_from_its_form_with_segments_and_the_champions_algorithm(airflow_env, spark, tracking, tmp_path):
    data = tmp_path / "data"
    write_csv(segment_frame(600), data / "shop_train.csv")
    version = register_champion(spark, data, "shop")
    env = dag_env(airflow_env, tracking, AUTOML_DATA_DIR=str(data))
    conf = {"data": "shop_train.csv", "label": "bought", "segment": "channel", "name": "shop",
            "algorithms": ["xgboost", "lightgbm"], "max_trials": 2, "time_budget_s": 600}
    [result] = run_dag("poc_automl", ["2026-01-01T00:00:00+00:00"], conf, env)
    assert result["state"] == "success", result
    assert result["tasks"] == {"requests[-1]": "success", "run[0]": "success"}

    client = MlflowClient(tracking)
    experiment = client.get_experiment_by_name("shop/poc").experiment_id
    runs = client.search_runs([experiment], "tags.`automl.kind` = 'poc'")
    assert len(runs) == 1 and runs[0].data.tags["automl.dag_run_id"].startswith("manual__")
    run_id = runs[0].info.run_id
    folder = tmp_path / "artifacts"
    check = json.loads(Path(client.download_artifacts(run_id, "algorithm_check.json", str(folder))).read_text())
    assert (check["champion_version"], check["champion_algorithm"], check["alternative"]) == (
        version, "xgboost", "lightgbm")
    c = check["comparison"]
    assert c["ci_low"] <= c["delta"] <= c["ci_high"] and c["n_rows"] == 600
    assert check["verdict"] == ("switch" if c["ci_low"] > 0 else "keep")
    assert runs[0].data.tags["automl.algorithm_check"] == check["verdict"]

    table = pd.read_csv(client.download_artifacts(run_id, "segments/segments.csv", str(folder)))
    assert sorted(table["segment"]) == ["outlet", "store", "web"]
    assert table["rows"].sum() == 600
    for row in table.itertuples():
        assert row.recommend == ("segment model" if row.ci_low > 0 else "global model")
        assert row.confidence == pytest.approx(1 - 0.05 / 3)
    assert "segments/segments_vs_global.png" in {a.path for a in client.list_artifacts(run_id, "segments")}

"""The CLI's --json records, field by field, against the output captured before the typed records
(issue 18, item 4): tune, monthly (a first champion, then a pending challenger), decisions,
decide and history on one small case; then rollback and history --aliases (issue 15 item 6).

`tests/golden/cli_json.json` holds that "before" output. Fields whose values differ from run
to run (run ids, timestamps, durations, paths, the tracking server's address) are listed in
VOLATILE and compared by presence and JSON type only; every other field by value (floats to
1e-6 relative). A field added, removed, renamed or reordered, or a changed type or value, fails.

Regenerate only on purpose: AUTOML_WRITE_GOLDEN=1 .venv/bin/pytest tests/test_cli_json_golden.py
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.support.json_records import VOLATILE, cli_json, differences, placeholders, redact
from tests.support.specs import write_spec

GOLDEN = Path(__file__).parent / "golden" / "cli_json.json"


def test_cli_json_outputs_match_the_golden_record(demo_dir, spark, tracking, capsys):
    spec = str(write_spec(demo_dir, "binary", filename="golden.yaml", name="golden_json", segment="segment"))
    outputs = {"tune": cli_json(capsys, "tune", "--spec", spec, "--month", "2017-10"),
               "monthly_first": cli_json(capsys, "monthly", "--spec", spec, "--month", "2017-10",
                                         "--promotion", "auto"),
               "monthly_pending": cli_json(capsys, "monthly", "--spec", spec, "--month", "2017-11",
                                           "--promotion", "manual")}
    for month in ("monthly_first", "monthly_pending"):
        placeholders(outputs[month], tracking)
    outputs["decisions"] = cli_json(capsys, "decisions", "--model", "golden_json")
    outputs["decide"] = cli_json(capsys, "decide", "--model", "golden_json", "--version",
                                 outputs["monthly_pending"]["decision"]["version"], "--approve",
                                 "--reason", "golden test")
    outputs["history"] = cli_json(capsys, "history", "--model", "golden_json")
    outputs["rollback"] = cli_json(capsys, "rollback", "--model", "golden_json", "--to", "1",
                                   "--reason", "golden rollback")
    outputs["history_aliases"] = cli_json(capsys, "history", "--model", "golden_json", "--aliases")
    # The decide record names the user running the tests: the same in every field that does.
    user = outputs["decide"]["decided_by"]
    outputs = json.loads(json.dumps(outputs).replace(json.dumps(user)[1:-1], "user:<login>")
                         .replace(user.removeprefix("user:") + " (CLI)", "<login> (CLI)"))
    redacted = redact(outputs, "cli")
    if os.environ.get("AUTOML_WRITE_GOLDEN"):
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_text(json.dumps({"volatile": list(VOLATILE), "outputs": redacted}, indent=1) + "\n")
        pytest.skip(f"wrote {GOLDEN}")
    golden = json.loads(GOLDEN.read_text())
    assert golden["volatile"] == list(VOLATILE), "the volatile list changed: regenerate the golden file"
    found = differences(golden["outputs"], outputs, "cli")
    assert not found, "\n".join(found)


def test_the_comparison_catches_added_removed_renamed_retyped_and_changed_fields():
    base = {"tune": {"run_id": "abc", "best": {"algorithm": "xgboost", "value": 0.75, "trials": 2},
                     "leaderboard": [{"lift": 0.0, "wall_seconds": 1.5}]}}
    golden = redact(base, "cli")
    assert golden["tune"]["run_id"] == {"volatile": "str"}
    assert differences(golden, base, "cli") == []
    assert differences(golden, {"tune": {**base["tune"], "run_id": "other"}}, "cli") == []

    def changed(**best):
        return {"tune": {**base["tune"], "best": best}}

    assert differences(golden, changed(algorithm="xgboost", value=0.75, trials=2, extra=1), "cli") == [
        "cli.tune.best.extra: added"]
    assert differences(golden, changed(algorithm="xgboost", value=0.75), "cli") == [
        "cli.tune.best.trials: removed or renamed"]
    assert len(differences(golden, changed(algorithm="xgboost", value=0.75, n_trials=2), "cli")) == 2
    assert differences(golden, changed(algorithm="xgboost", value=0.75, trials=2.0), "cli")[0].startswith(
        "cli.tune.best.trials: type float")
    assert differences(golden, changed(algorithm="xgboost", value=0.76, trials=2), "cli") == [
        "cli.tune.best.value: 0.76, was 0.75"]
    assert differences(golden, changed(value=0.75, algorithm="xgboost", trials=2), "cli")[0].startswith(
        "cli.tune.best: keys reordered")
    retyped = {"tune": {**base["tune"], "run_id": None}}
    assert differences(golden, retyped, "cli") == ["cli.tune.run_id: type null, was str"]
    lift_int = {"tune": {**base["tune"], "leaderboard": [{"lift": 0, "wall_seconds": 1.5}]}}
    assert differences(golden, lift_int, "cli")[0].startswith("cli.tune.leaderboard[].lift: type int")

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

import fnmatch
import json
import math
import os
import re
from pathlib import Path

import pytest

from tests.support.specs import write_spec

GOLDEN = Path(__file__).parent / "golden" / "cli_json.json"

# Paths: command.key.key; list items as [] (every item). fnmatch patterns.
VOLATILE = (
    "*.run_id", "*.runs.*", "*.evidence_run_id", "*.tracking_uri", "*.model_dir", "*.model_uri",
    "*.experiment_id", "*.created_at", "*.decided_at",
    "*.wall_seconds", "*.fit_seconds", "*.fit_seconds.*", "*.refit_seconds", "*.timings.*",
)
# The decision summary (markdown) is compared whole, its links' run ids, experiment id and
# server address replaced by placeholders (`_placeholders`).


def _volatile(path: str) -> bool:
    return any(fnmatch.fnmatchcase(path, pattern) for pattern in VOLATILE)


def _kind(value) -> str:
    return {bool: "bool", int: "int", float: "float", str: "str", type(None): "null",
            list: "list", dict: "object"}[type(value)]


def _redact(value, path: str):
    """The value as stored in the golden file: volatile scalars become their JSON type."""
    if isinstance(value, dict):
        return {k: _redact(v, f"{path}.{k}") for k, v in value.items()}
    if isinstance(value, list):
        return [_redact(v, f"{path}[]") for v in value]
    return {"volatile": _kind(value)} if _volatile(path) else value


def differences(expected, actual, path: str) -> list[str]:
    """Every way `actual` departs from the (redacted) golden `expected`."""
    if isinstance(expected, dict) and set(expected) == {"volatile"} and _volatile(path):
        return [] if _kind(actual) == expected["volatile"] else [
            f"{path}: type {_kind(actual)}, was {expected['volatile']}"]
    if _kind(expected) != _kind(actual):
        return [f"{path}: type {_kind(actual)} ({actual!r:.80}), was {_kind(expected)} ({expected!r:.80})"]
    if isinstance(expected, dict):
        out = [f"{path}.{k}: removed or renamed" for k in expected if k not in actual]
        out += [f"{path}.{k}: added" for k in actual if k not in expected]
        if not out and list(expected) != list(actual):
            out.append(f"{path}: keys reordered: {list(actual)}, was {list(expected)}")
        for k in expected:
            if k in actual:
                out += differences(expected[k], actual[k], f"{path}.{k}")
        return out
    if isinstance(expected, list):
        if len(expected) != len(actual):
            return [f"{path}: {len(actual)} items, was {len(expected)}"]
        return [d for e, a in zip(expected, actual) for d in differences(e, a, f"{path}[]")]
    if isinstance(expected, float):
        same = math.isclose(expected, actual, rel_tol=1e-6, abs_tol=1e-12) or (
            math.isnan(expected) and math.isnan(actual))
        return [] if same else [f"{path}: {actual!r}, was {expected!r}"]
    return [] if expected == actual else [f"{path}: {actual!r:.200}, was {expected!r:.200}"]


def _placeholders(result: dict, server: str) -> None:
    """The month's run ids, experiment id and the server's address in its summary, as placeholders."""
    text = result["decision"]["summary"]
    for step, run_id in result["runs"].items():
        text = text.replace(run_id, f"<{step} run>")
    text = re.sub(r"/experiments/\d+/", "/experiments/<id>/", text.replace(server.rstrip("/"), "<server>"))
    result["decision"]["summary"] = text


def _cli(capsys, *argv) -> dict:
    from automl_tasks.cli import main

    capsys.readouterr()
    assert main([*argv, "--json"]) == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 1, out[-2000:]         # exactly one JSON object on stdout
    return json.loads(out)


def test_cli_json_outputs_match_the_golden_record(demo_dir, spark, tracking, capsys):
    spec = str(write_spec(demo_dir, "binary", filename="golden.yaml", name="golden_json", segment="segment"))
    outputs = {"tune": _cli(capsys, "tune", "--spec", spec, "--month", "2017-10"),
               "monthly_first": _cli(capsys, "monthly", "--spec", spec, "--month", "2017-10",
                                     "--promotion", "auto"),
               "monthly_pending": _cli(capsys, "monthly", "--spec", spec, "--month", "2017-11",
                                       "--promotion", "manual")}
    for month in ("monthly_first", "monthly_pending"):
        _placeholders(outputs[month], tracking)
    outputs["decisions"] = _cli(capsys, "decisions", "--model", "golden_json")
    outputs["decide"] = _cli(capsys, "decide", "--model", "golden_json", "--version",
                             outputs["monthly_pending"]["decision"]["version"], "--approve",
                             "--reason", "golden test")
    outputs["history"] = _cli(capsys, "history", "--model", "golden_json")
    outputs["rollback"] = _cli(capsys, "rollback", "--model", "golden_json", "--to", "1",
                               "--reason", "golden rollback")
    outputs["history_aliases"] = _cli(capsys, "history", "--model", "golden_json", "--aliases")
    # The decide record names the user running the tests: the same in every field that does.
    user = outputs["decide"]["decided_by"]
    outputs = json.loads(json.dumps(outputs).replace(json.dumps(user)[1:-1], "user:<login>")
                         .replace(user.removeprefix("user:") + " (CLI)", "<login> (CLI)"))
    redacted = _redact(outputs, "cli")
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
    golden = _redact(base, "cli")
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

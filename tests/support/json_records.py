"""The CLI's --json records compared field by field: what varies from run to run (run ids,
timestamps, durations, paths, the tracking server's address) by presence and JSON type only,
every other field by value (floats to 1e-6 relative). tests/test_cli_json_golden.py holds the
records to a golden file; tests/test_spark_connect.py holds a Spark Connect run to a local one.
"""

from __future__ import annotations

import fnmatch
import json
import math
import re

# Paths: command.key.key; list items as [] (every item). fnmatch patterns.
VOLATILE = (
    "*.run_id", "*.runs.*", "*.evidence_run_id", "*.tracking_uri", "*.model_dir", "*.model_uri",
    "*.experiment_id", "*.created_at", "*.decided_at",
    "*.wall_seconds", "*.fit_seconds", "*.fit_seconds.*", "*.refit_seconds", "*.timings.*",
)
# The decision summary (markdown) is compared whole, its links' run ids, experiment id and
# server address replaced by placeholders (`placeholders`).


def volatile(path: str) -> bool:
    return any(fnmatch.fnmatchcase(path, pattern) for pattern in VOLATILE)


def kind(value) -> str:
    return {bool: "bool", int: "int", float: "float", str: "str", type(None): "null",
            list: "list", dict: "object"}[type(value)]


def redact(value, path: str):
    """The value as stored in the golden file: volatile scalars become their JSON type."""
    if isinstance(value, dict):
        return {k: redact(v, f"{path}.{k}") for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v, f"{path}[]") for v in value]
    return {"volatile": kind(value)} if volatile(path) else value


def differences(expected, actual, path: str) -> list[str]:
    """Every way `actual` departs from the (redacted) golden `expected`."""
    if isinstance(expected, dict) and set(expected) == {"volatile"} and volatile(path):
        return [] if kind(actual) == expected["volatile"] else [
            f"{path}: type {kind(actual)}, was {expected['volatile']}"]
    if kind(expected) != kind(actual):
        return [f"{path}: type {kind(actual)} ({actual!r:.80}), was {kind(expected)} ({expected!r:.80})"]
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


def placeholders(result: dict, server: str) -> None:
    """The month's run ids, experiment id and the server's address in its summary, as placeholders."""
    text = result["decision"]["summary"]
    for step, run_id in result["runs"].items():
        text = text.replace(run_id, f"<{step} run>")
    text = re.sub(r"/experiments/\d+/", "/experiments/<id>/", text.replace(server.rstrip("/"), "<server>"))
    result["decision"]["summary"] = text


def cli_json(capsys, *argv) -> dict:
    from automl_tasks.cli import main

    capsys.readouterr()
    assert main([*argv, "--json"]) == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 1, out[-2000:]         # exactly one JSON object on stdout
    return json.loads(out)

"""The PoC inbox: `NAME_train.csv` (and optionally `NAME_test.csv`) dropped into a folder.

`NAME_poc.json`, if dropped with them, holds the form's other values for this drop
(e.g. {"label": "churn", "time_budget_s": 600}); without it the DAG's defaults apply
(the label column from AUTOML_POC_LABEL, default "label").

A drop is claimed once its training file has stopped changing for `settle_s` seconds
(a file still being copied is left alone): both files move, in one rename each, into
`<inbox>/claimed/<NAME>-<UTC time>/`, so a drop is picked up exactly once and the
PoC reads files nobody writes any more. Put the test file in first, or together with
the training file: a test file that arrives after its training file was claimed is a
stray and stays in the inbox. The Airflow trigger (plugins/poc_inbox_trigger.py) calls
`claim_settled` and turns each claim into an asset event; `request_from_event` turns
the event back into the PoC's inputs.
"""

from __future__ import annotations

import os
import re
import time
from datetime import datetime, timezone
from pathlib import Path

TRAIN_SUFFIX, TEST_SUFFIX, OPTIONS_SUFFIX = "_train.csv", "_test.csv", "_poc.json"
CLAIMED = "claimed"
NAME_RE = re.compile(r"^[A-Za-z0-9_.-]+$")


def settled_drops(inbox: str | Path, settle_s: float, now: float | None = None) -> list[str]:
    """NAMEs whose NAME_train.csv (and NAME_test.csv, if present) were last changed >= settle_s ago."""
    folder = Path(inbox)
    if not folder.is_dir():
        return []
    now = time.time() if now is None else now
    names = []
    for path in sorted(folder.glob(f"*{TRAIN_SUFFIX}")):
        name = path.name[:-len(TRAIN_SUFFIX)]
        if not name or not NAME_RE.match(name) or not path.is_file():
            continue
        test = folder / f"{name}{TEST_SUFFIX}"
        files = [path] + ([test] if test.exists() else [])
        if all(now - f.stat().st_mtime >= settle_s for f in files):
            names.append(name)
    return names


def claim(inbox: str | Path, name: str, now: datetime | None = None) -> dict | None:
    """Move NAME's files into their claimed folder; the event payload, or None if another took them."""
    folder = Path(inbox)
    stamp = (now or datetime.now(timezone.utc)).strftime("%Y%m%dT%H%M%S%fZ")
    target = folder / CLAIMED / f"{name}-{stamp}"
    target.mkdir(parents=True, exist_ok=False)
    train = folder / f"{name}{TRAIN_SUFFIX}"
    try:
        os.replace(train, target / train.name)
    except FileNotFoundError:    # claimed by a sibling trigger between the scan and now
        target.rmdir()
        return None
    moved = {}
    for key, suffix in (("test", TEST_SUFFIX), ("options", OPTIONS_SUFFIX)):
        path = folder / f"{name}{suffix}"
        try:
            os.replace(path, target / path.name)
            moved[key] = str(target / path.name)
        except FileNotFoundError:
            moved[key] = None
    return {"name": name, "train": str(target / train.name), **moved}


def claim_settled(inbox: str | Path, settle_s: float) -> list[dict]:
    """Claim every settled drop; one payload per drop."""
    return [p for name in settled_drops(inbox, settle_s) if (p := claim(inbox, name)) is not None]


def request_from_event(payload: dict, defaults: dict) -> dict:
    """The PoC form's values for a drop: its files and name, its NAME_poc.json, then `defaults`."""
    import json

    from automl_tasks.errors import SpecError

    missing = [k for k in ("name", "train") if not payload.get(k)]
    if missing:
        raise SpecError(f"inbox event without {missing[0]!r}: {payload}")
    options = {}
    if payload.get("options"):
        try:
            options = json.loads(Path(payload["options"]).read_text())
        except (OSError, ValueError) as exc:
            raise SpecError(f"cannot read the drop's options {payload['options']}: {exc}") from None
        if not isinstance(options, dict):
            raise SpecError(f"{payload['options']} must hold a JSON object of form values")
        fixed = sorted(set(options) & {"data", "test", "name"})
        if fixed:
            raise SpecError(f"{payload['options']}: {fixed[0]!r} comes from the dropped files, not the options")
        from dataclasses import fields

        from automl_tasks.poc.request import PocRequest

        unknown = sorted(set(options) - {f.name for f in fields(PocRequest)})
        if unknown:
            raise SpecError(f"{payload['options']}: unknown form field {unknown[0]!r}")
    return {**defaults, **options, "data": payload["train"], "test": payload.get("test"),
            "name": payload["name"]}

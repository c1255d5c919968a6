"""Rollback: move `champion` back to an earlier champion, with the safety of a promotion.

`rollback(name, to_version, expected_current=..., decided_by=..., reason=...)`:
- bad input raises before anything is written (`AutomlError`, naming the model and versions):
  no such model or version, no champion to roll back from, a target that is the champion
  named as current, a version the alias ledger never shows as champion, an empty reason;
- then, under the model's claim (the one `open_decision` and `decide` take, so one of them at
  a time per model), if `champion` is not `expected_current` (it moved since the person looked),
  the rollback is refused: recorded as `rollback_refused`, then `RollbackRefused` is raised;
- else `champion` moves to `to_version`, recorded as `rolled_back` with who (`decided_by`),
  when, from and to, and why (`reason`).

Where it is recorded: a tag `automl.rollback.<key>` on the target version, holding the
rollback as a `Decision` (compact JSON; the ledger, registry/ledger.py, reads it back). The
version's own promotion decision is left as it was. Write order: the record as
`rollback_requested` (with the champion found), the alias, the record as `rolled_back`; each
tag write is atomic. `request_id` (an Airflow run id) fixes the key, so a retried task finds its
own record: a finished one is returned (a refused one raises again), an interrupted one is
finished, and nothing moves twice. Without it every call is a new request.
"""

from __future__ import annotations

import dataclasses
import hashlib
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone

from automl_tasks.errors import AutomlError
from automl_tasks.registry import ledger, promotion
from automl_tasks.registry.records import Decision
from automl_tasks.registry.tracking import client

MAX_REASON = 1000     # characters: the record is one tag, with no evidence run to hold more


class RollbackRefused(AutomlError):
    """The champion was not the one the rollback named as current; the refusal is recorded."""

    def __init__(self, message: str, decision: Decision):
        super().__init__(message)
        self.decision = decision


@dataclass(frozen=True)
class _Request:
    name: str
    to: str
    expected: str
    decided_by: str
    reason: str
    request_id: str | None

    @property
    def key(self) -> str:
        seed = self.request_id or uuid.uuid4().hex
        return ledger.ROLLBACK + hashlib.sha256(seed.encode()).hexdigest()[:16]


def rollback(name: str, to_version: str, *, expected_current: str | None, decided_by: str,
             reason: str, request_id: str | None = None) -> Decision:
    """Move `champion` of `name` back to `to_version` if it is still `expected_current`.

    Returns the `rolled_back` record. Raises `RollbackRefused` (after recording the refusal)
    when the champion is not `expected_current`, `AutomlError` on bad input (nothing written).
    """
    req = _Request(name, str(to_version), _version(expected_current), decided_by,
                   (reason or "").strip(), request_id)
    if not req.reason or len(req.reason) > MAX_REASON:
        raise AutomlError(f"rollback of {name}: the reason must say why in 1 to {MAX_REASON} "
                          f"characters (it is recorded), got {len(req.reason)}")
    if not decided_by or len(decided_by) > 250:
        raise AutomlError(f"rollback of {name}: decided_by must be a short non-empty name such as "
                          f"'user:alice', got {decided_by!r}")
    check(req.name, req.to, req.expected)
    c = client()
    key = req.key      # fixed here: without a request id it is random
    with promotion._claim(c, name):
        return _apply(c, req, key)


def check(name: str, to_version: str, expected_current: str | None) -> dict:
    """The checks on the input, reading only: what a rollback would do, as small JSON.

    {model, to_version, from_version (the champion named as current), champion (now), month (the
    target's), former (versions that were champion)}. Raises AutomlError naming what is wrong.
    """
    to, expected = str(to_version), _version(expected_current)
    promotion.require_model(name)
    c = client()
    mv = promotion._model_version(c, name, to)
    if expected is None:
        raise AutomlError(f"{name} has no champion to roll back from; a version becomes champion "
                          "through a promotion decision")
    if expected == to:
        raise AutomlError(f"{name} v{to} is the champion already (named as current): nothing to roll back")
    former = ledger.former_champions(ledger.alias_ledger(name))
    if to not in former:
        listed = ", ".join(f"v{v}" for v in sorted(former, key=int)) or "none"
        raise AutomlError(f"{name} v{to} was never champion (the alias ledger shows {listed}); a "
                          "rollback only returns to an earlier champion, a new version is promoted "
                          "through a decision")
    return {"model": name, "to_version": to, "from_version": expected,
            "champion": promotion.current_champion(name), "month": _month(mv), "former": sorted(former, key=int)}


def _apply(c, req: _Request, key: str) -> Decision:
    mv = promotion._model_version(c, req.name, req.to)
    earlier = ledger.rollback_records(mv.tags).get(key)
    aliases = promotion._aliases(c, req.name)
    current = aliases.get(promotion.CHAMPION)
    if earlier is not None and earlier.status == promotion.ROLLBACK_REFUSED:
        raise RollbackRefused(_refusal(earlier), earlier)
    if earlier is not None and earlier.status == promotion.ROLLED_BACK:
        return earlier
    if earlier is not None:         # interrupted after its first write: the alias may have moved
        record, ok = earlier, current in (earlier.champion_before, req.to)
    else:
        record = Decision(model=req.name, version=req.to, month=_month(mv), status=promotion.ROLLBACK_REQUESTED,
                          decided_by=req.decided_by, reasons=[req.reason], evidence_run_id=None,
                          evidence={"kind": "rollback", "expected_current": req.expected,
                                    "request_id": req.request_id},
                          champion_before=current, created_at=promotion._now())
        ok = current == req.expected
    if not ok:
        now = "none" if current is None else f"v{current}"
        note = f"refused: the champion was {now}, not v{req.expected}"
        refused = dataclasses.replace(record, status=promotion.ROLLBACK_REFUSED, reasons=[req.reason, note],
                                      champion_before=current, champion_after=current, decided_at=promotion._now())
        _write(c, key, refused)
        raise RollbackRefused(_refusal(refused), refused)
    if earlier is None:
        _write(c, key, record)
    promotion._point_alias(c, req.name, promotion.CHAMPION, req.to, aliases)
    final = dataclasses.replace(record, status=promotion.ROLLED_BACK, champion_after=req.to, decided_at=promotion._now())
    _write(c, key, final)
    return final


def _refusal(refused: Decision) -> str:
    now = "none" if refused.champion_before is None else f"v{refused.champion_before}"
    return (f"rollback of {refused.model} to v{refused.version} refused: the champion is {now}, not "
            f"v{refused.evidence['expected_current']} as the rollback expected (it moved since); "
            "nothing moved, the refusal is recorded in the alias ledger")


def _write(c, key: str, record: Decision) -> None:
    _, tag = promotion._encode(record)   # raises, before the write, if it cannot be one tag
    c.set_model_version_tag(record.model, record.version, key, tag)


def _month(mv) -> str:
    """The month the version was registered for; a version registered otherwise: this month."""
    return mv.tags.get(promotion.CANDIDATE_MONTH) or datetime.now(timezone.utc).strftime("%Y-%m")


def _version(value) -> str | None:
    return None if value is None or str(value).strip() == "" else str(value).strip()

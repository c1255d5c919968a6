"""The alias ledger: every move of a model's `champion` alias, with who, when, from, to and why.

Read from what the registry already stores, no second store:
- a promotion: a decision record (registry/promotion.py) with status `approved`, on the version it
  promoted: `champion_before` -> `champion_after`, `decided_by` (user:<login>, policy:auto),
  `decided_at`, and its last reason (the approver's words, else the policy's last reason);
- a rollback (registry/rollback.py): a record on the version it asked for, tag
  `automl.rollback.<key>`, the same Decision JSON with status `rolled_back`, `rollback_refused`
  (the champion was not the one the person saw; nothing moved) or `rollback_requested` (the
  rollback was interrupted before its record was final: the alias may or may not have moved).
Rejected, superseded, pending and insufficient-evidence decisions moved nothing and are left out.
An approval cut off after the alias moved shows once its `decide` is re-run (promotion.py).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass

from automl_tasks.registry import promotion
from automl_tasks.registry.records import Decision
from automl_tasks.registry.tracking import client

ROLLBACK = "automl.rollback."   # + a key: one version tag per rollback asked for that version
PROMOTION, ROLLBACK_KIND = "promotion", "rollback"


@dataclass(frozen=True)
class AliasMove:
    """One row of the ledger. A refused rollback is a row too, with `moved` False: `to_version`
    is where it was asked to go and `from_version` the champion it found."""
    model: str
    kind: str                      # promotion | rollback
    status: str                    # approved | rolled_back | rollback_refused | rollback_requested
    moved: bool
    from_version: str | None       # the champion before (None: there was none)
    to_version: str
    decided_by: str | None
    decided_at: str | None         # ISO 8601, UTC
    why: str
    month: str                     # the promotion's month; a rollback: the restored version's month

    def to_json(self) -> dict:
        return dataclasses.asdict(self)


def alias_ledger(name: str) -> list[AliasMove]:
    """Every `champion` move of model `name` (and every refused rollback), oldest first."""
    c = client()
    rows = []
    for mv in promotion._search_versions(c, f"name = {promotion._quoted(name)}"):
        decision = promotion._decision_of(c, mv)
        if decision is not None and decision.status == "approved":
            rows.append(_row(decision, PROMOTION))
        rows += [_row(record, ROLLBACK_KIND) for record in rollback_records(mv.tags).values()]
    return sorted(rows, key=lambda r: (r.decided_at or "", int(r.to_version)))


def rollback_records(tags: dict[str, str]) -> dict[str, Decision]:
    """A version's rollback records by their tag key (from its tags)."""
    return {key: Decision.from_json(json.loads(value)) for key, value in tags.items()
            if key.startswith(ROLLBACK)}


def former_champions(rows: list[AliasMove]) -> set[str]:
    """The versions the ledger shows as champion at some time (moved to, or found there)."""
    return {r.to_version for r in rows if r.moved} | {r.from_version for r in rows if r.from_version}


def _row(d: Decision, kind: str) -> AliasMove:
    moved = d.status in ("approved", promotion.ROLLED_BACK)
    return AliasMove(model=d.model, kind=kind, status=d.status, moved=moved,
                     from_version=d.champion_before, to_version=d.version, decided_by=d.decided_by,
                     decided_at=d.decided_at or d.created_at or None,
                     why=_why(d, kind), month=d.month)


def _why(d: Decision, kind: str) -> str:
    """A rollback's reasons: the person's, then (refused) why it was refused; a promotion's last."""
    if kind == ROLLBACK_KIND:
        return "; ".join(d.reasons)
    return d.reasons[-1] if d.reasons else ""


def format_ledger(rows: list[AliasMove], champion: str | None, width: int = 90) -> str:
    """The ledger as a text table, then the champion now; `why` cut to `width` characters."""
    lines = [f"{'when (UTC)':<19}  {'by':<16} {'kind':<9} {'from':>5} {'to':>5}  {'outcome':<18} why"]
    for r in rows:
        when = (r.decided_at or "-")[:19].replace("T", " ")
        why = r.why if len(r.why) <= width else r.why[:width - 3] + "..."
        lines.append(f"{when:<19}  {r.decided_by or '-':<16} {r.kind:<9} {_v(r.from_version):>5} "
                     f"{_v(r.to_version):>5}  {_OUTCOME.get(r.status, r.status):<18} {why}")
    if not rows:
        lines.append("(no alias moves recorded)")
    lines.append(f"champion now: {_v(champion)}")
    return "\n".join(lines)


_OUTCOME = {"approved": "promoted", promotion.ROLLED_BACK: "rolled back",
            promotion.ROLLBACK_REFUSED: "refused (no move)",
            promotion.ROLLBACK_REQUESTED: "interrupted"}


def _v(version: str | None) -> str:
    return "-" if version is None else f"v{version}"

"""Promotion decisions in the MLflow Model Registry: candidates, `challenger` and `champion`.

One registered model per spec name. A retrained winner is registered as a new version
(`register_candidate`), opened as the `challenger` with a pending decision (`open_decision`),
then approved or rejected by a person or a policy (`decide`); approval moves `champion`.

Where a decision lives, on its model version:
- `automl.decision.record`: the decision as compact JSON. This is the source of truth and is
  written last by every step, so it is the commit point.
- `automl.decision.status` / `.month` / `.decided_by`: plain copies for the MLflow UI and search.
- `automl.decision.requested` / `.champion_before`: what `decide` set out to do and the
  champion it found, written before any alias moves, so an interrupted `decide` resumes.
- `decisions/<month>-v<version>.json` on the evidence run: the full JSON. The tag copy drops
  the evidence (and, if needed, reasons) when it would be larger than `TAG_LIMIT`.

Write order for `decide`, chosen so a failure at any step leaves a state a retry can finish:
  1. validate and read everything; no writes yet;
  2. the decision artifact: a full disk or unwritable artifact store stops here, before any
     tag or alias changes (the record tag, not the artifact, says what was decided);
  3. tags `requested` and `champion_before`;
  4. move `champion` (approve only, and only if it does not already point here);
  5. remove `challenger` if it points here;
  6. the status tags, then the record (commit).
If the alias move in step 4 fails, the record still says pending and the status tag was never
touched, so nothing claims "approved" unless the alias moved. If a later step fails, the
alias has moved but the record still says pending. A retry of the same outcome sees the
request it made, takes `champion_before` from the tag and does not move the alias again.
Rejecting such a half-approved version raises, because it would leave a rejected champion.

`open_decision`, `decide` and a rollback (registry/rollback.py) run one at a time per model,
whoever calls them (two deployments, a person and a policy): see `_claim`. So of two
approvals racing for one model, one moves `champion`, and the other finds the champion it
was measured against gone and ends `superseded`.

Size: one module, over 400 lines, because the write order above is one protocol across
`open_decision`, `decide` and the tag encoding; split, each piece would be wrong alone.
"""

from __future__ import annotations

import dataclasses
import json
from datetime import datetime, timezone

from automl_tasks.data.months import Month
from automl_tasks.errors import AutomlError
from automl_tasks.registry import claims
from automl_tasks.registry.records import Decision  # noqa: F401  (promotion.Decision, as before)
from automl_tasks.registry.tracking import MAX_TAG, client

CHAMPION, CHALLENGER = "champion", "challenger"
INSUFFICIENT_EVIDENCE = "insufficient_evidence"   # closed by the policy: too few rows to decide on
# A rollback's record (registry/rollback.py) is a Decision too, with one of these statuses.
ROLLED_BACK, ROLLBACK_REFUSED, ROLLBACK_REQUESTED = "rolled_back", "rollback_refused", "rollback_requested"
STATUSES = ("pending", "approved", "rejected", "superseded", INSUFFICIENT_EVIDENCE,
            ROLLED_BACK, ROLLBACK_REFUSED, ROLLBACK_REQUESTED)
SETTLED = ("approved", "rejected", INSUFFICIENT_EVIDENCE)   # decided on this version's own evidence

PREFIX = "automl.decision."
RECORD, STATUS, MONTH, DECIDED_BY, REQUESTED, CHAMPION_BEFORE = (
    PREFIX + k for k in ("record", "status", "month", "decided_by", "requested", "champion_before"))
SOURCE_RUN, MODEL_URI, CANDIDATE_MONTH = "automl.source_run_id", "automl.model_uri", "automl.month"
# The server accepts 100k characters per version tag, but older schemas and other registries
# cap tag values at 5000. The tag copy stays below that, and the artifact holds the rest.
TAG_LIMIT = MAX_TAG
SUPERSEDED_BY = "system:superseded"
NO_CHAMPION = "none"  # tag value for "no champion yet"; versions are numbers
CLAIM = PREFIX + "claim."   # + a random key: one registered-model tag per open/decide in progress
CLAIM_TTL_S = 600.0         # an older claim was left by a crashed process: ignored and removed
CLAIM_WAIT_S = 120.0        # how long to wait for other steps on the model before giving up
_NOW = object()             # open_decision's default: measured against the champion of now


# ---------------------------------------------------------------- public API

def register_candidate(model_uri: str, name: str, *, month: str, run_id: str,
                       tags: dict[str, str]) -> str:
    """Register `model_uri` (e.g. `models:/m-<id>`) as a new version of `name`; return the version.

    A version already registered from the same run and model URI is returned as is, so a
    re-run month never duplicates a version.
    """
    import mlflow

    Month.parse(month)
    ours = {CANDIDATE_MONTH: month, SOURCE_RUN: run_id, MODEL_URI: model_uri}
    clash = sorted(k for k in tags if k.startswith(PREFIX) or (k in ours and tags[k] != ours[k]))
    if clash:
        raise AutomlError(f"register_candidate({name!r}): tags {clash} are set by the registry "
                          "conventions and cannot be given")
    c = client()
    flt = f"name = {_quoted(name)} and tags.`{SOURCE_RUN}` = {_quoted(run_id)}"
    same = [mv for mv in _search_versions(c, flt) if mv.tags.get(MODEL_URI) == model_uri]
    if same:
        found = min(same, key=lambda mv: int(mv.version))
        if found.tags.get(CANDIDATE_MONTH) != month:
            raise AutomlError(f"{name} v{found.version} was registered from run {run_id} for "
                              f"month {found.tags.get(CANDIDATE_MONTH)}, not {month}")
        return str(found.version)
    # register_model creates the registered model on first use and resolves runs:/ URIs and
    # MLflow 3 LoggedModel URIs (models:/m-<id>) to a source and a model id.
    return str(mlflow.register_model(model_uri, name, tags={**tags, **ours}).version)


def open_decision(name: str, version: str, *, month: str, evidence: dict,
                  evidence_run_id: str | None, reasons: list[str], measured_against=_NOW) -> Decision:
    """Make `version` the challenger with a pending decision for `month`.

    A pending decision on another version of the model becomes superseded. Re-opening the
    same version and month returns the recorded decision without writing anything, except
    that it sets the challenger alias if an earlier attempt failed before setting it.
    `measured_against`: the champion version the evidence compared with (None: there was
    none); approval requires it to be champion still. Default: the champion now.
    """
    c, version = client(), str(version)
    Month.parse(month)
    _model_version(c, name, version)
    with _claim(c, name):
        return _open(c, name, version, month, evidence, evidence_run_id, reasons, measured_against)


def _open(c, name, version, month, evidence, evidence_run_id, reasons, measured_against) -> Decision:
    mv = _model_version(c, name, version)
    existing = _decision_of(c, mv)
    if existing is not None:
        if existing.month != month:
            raise AutomlError(f"{name} v{version} already has a decision for {existing.month} "
                              f"({existing.status}); cannot open another for {month}")
        if existing.status == "pending":
            _point_alias(c, name, CHALLENGER, version, _aliases(c, name))
        return existing
    if evidence_run_id is not None:
        _check_run(c, evidence_run_id)
    aliases = _aliases(c, name)
    # champion_before: the champion this decision's evidence was measured against; approval
    # checks it still is (safe promotion).
    before = aliases.get(CHAMPION) if measured_against is _NOW else (
        None if measured_against is None else str(measured_against))
    stale = [d for d in _decisions(c, name) if d.status == "pending"]
    for old in stale:
        if aliases.get(CHAMPION) == old.version:
            raise AutomlError(f"{name} v{old.version} is already champion but its decision is "
                              f"still pending (an interrupted approval): run decide(approve) for "
                              f"v{old.version} before opening v{version}")
    replaced = [f"supersedes the unanswered decision on v{old.version} for {old.month}" for old in stale]
    decision = Decision(model=name, version=version, month=month, status="pending",
                        decided_by=None, reasons=list(reasons) + replaced, evidence_run_id=evidence_run_id,
                        evidence=evidence, created_at=_now(), champion_before=before)
    _encode(decision)  # fails here, before any write, if it cannot be recorded
    superseded = [dataclasses.replace(
        old, status="superseded", decided_by=SUPERSEDED_BY, decided_at=decision.created_at,
        reasons=old.reasons + [f"superseded by v{version} for {month}"]) for old in stale]
    for old in superseded:
        _encode(old)
    # Superseding first: if the new record then fails, a retry finds no pending leftovers.
    for old in superseded:
        _record(c, old)
    _record(c, decision)
    _point_alias(c, name, CHALLENGER, version, aliases)
    return decision


def decide(name: str, version: str, *, approve: bool, decided_by: str,
           reasons: list[str] | None = None, status: str | None = None) -> Decision:
    """Approve (move `champion` here) or reject the pending decision on `version`.

    `status` names a rejection's kind: INSUFFICIENT_EVIDENCE closes the decision without
    judging the model (the policy found too few rows); default `rejected`.
    Re-applying the recorded outcome returns the recorded decision and changes nothing. Any
    other call on a decision that is no longer pending raises. The module docstring gives
    the write order.
    """
    if status not in (None, "rejected", INSUFFICIENT_EVIDENCE) or (approve and status):
        raise AutomlError(f"decide({name!r}, v{version}): status {status!r} is not a rejection kind")
    c, version = client(), str(version)
    if not decided_by or len(decided_by) > 250:
        raise AutomlError(f"decide({name!r}, v{version}): decided_by must be a short non-empty "
                          f"name such as 'user:alice' or 'policy:auto', got {decided_by!r}")
    _model_version(c, name, version)
    with _claim(c, name):
        return _decide(c, name, version, approve, decided_by, reasons, status)


def _decide(c, name: str, version: str, approve: bool, decided_by: str, reasons, status) -> Decision:
    outcome, verb = ("approved", "approve") if approve else (status or "rejected", "reject")
    mv = _model_version(c, name, version)
    decision = _decision_of(c, mv)
    if decision is None:
        raise AutomlError(f"{name} v{version} has no decision to {verb}; open_decision first")
    if decision.status == outcome:
        return decision
    if decision.status != "pending":
        raise AutomlError(f"cannot {verb} {name} v{version}: its decision for {decision.month} is "
                          f"already {decision.status} (by {decision.decided_by})")
    aliases = _aliases(c, name)
    requested = mv.tags.get(REQUESTED)
    if not approve and aliases.get(CHAMPION) == version:
        raise AutomlError(f"cannot reject {name} v{version}: it is already champion (an approval "
                          "was interrupted after the alias moved); run decide(approve) to finish")
    if requested == outcome and CHAMPION_BEFORE in mv.tags:
        before = _none(mv.tags[CHAMPION_BEFORE])  # resuming: the alias may already point here
    else:
        before = aliases.get(CHAMPION)
        if approve and before != decision.champion_before:
            # The evidence compared against a champion that is no longer champion.
            moved = dataclasses.replace(
                decision, status="superseded", decided_by=SUPERSEDED_BY, decided_at=_now(),
                reasons=decision.reasons + [f"champion moved from v{decision.champion_before} to v{before} "
                                            "after this comparison; re-run the month to compare again"])
            _encode(moved)
            _record(c, moved)
            if aliases.get(CHALLENGER) == version:
                c.delete_registered_model_alias(name, CHALLENGER)
            raise AutomlError(f"cannot approve {name} v{version}: the champion moved from "
                              f"v{decision.champion_before} to v{before} since the comparison; "
                              "the decision is now superseded")
    final = dataclasses.replace(
        decision, status=outcome, decided_by=decided_by, decided_at=_now(),
        reasons=decision.reasons + list(reasons or []), champion_before=before,
        champion_after=version if approve else before)
    _write_artifact(c, final)
    _set_tags(c, name, version, {REQUESTED: outcome, CHAMPION_BEFORE: before or NO_CHAMPION})
    if approve:
        _point_alias(c, name, CHAMPION, version, aliases)
    if aliases.get(CHALLENGER) == version:
        c.delete_registered_model_alias(name, CHALLENGER)
    _record_tags(c, final)
    return final


def get_decision(name: str, version: str) -> Decision | None:
    """The decision recorded on `name` v`version`; None if there is none or no such version."""
    c = client()
    mv = _find(lambda: c.get_model_version(name, str(version)))
    return None if mv is None else _decision_of(c, mv)


def require_model(name: str) -> None:
    """Raise unless `name` is a registered model; reads only (a missing local store is not created)."""
    from automl_tasks import config

    missing = config.store_missing()
    if missing is not None:
        raise AutomlError(f"no registered model {name!r}: there is no MLflow store at {missing} "
                          "(set MLFLOW_TRACKING_URI to the team's server, or AUTOML_HOME)")
    c = client()
    if _find(lambda: c.get_registered_model(name)) is None:
        known = sorted(m.name for m in c.search_registered_models(max_results=20))
        raise AutomlError(f"no registered model {name!r} in {config.tracking_uri()}; "
                          f"models there: {', '.join(known) or 'none'}")


def current_champion(name: str) -> str | None:
    """The version `champion` points at; None without a registered model or alias."""
    return _aliases(client(), name).get(CHAMPION)


def champion_model_uri(name: str) -> str | None:
    """`models:/<name>@champion`, or None when there is no champion to load."""
    return f"models:/{name}@{CHAMPION}" if current_champion(name) is not None else None


def decision_history(name: str) -> list[Decision]:
    """Every decision on the model's versions, oldest first."""
    return _decisions(client(), name)


# ---------------------------------------------------------------- reading

def _decisions(c, name: str) -> list[Decision]:
    found = [d for mv in _search_versions(c, f"name = {_quoted(name)}")
             if (d := _decision_of(c, mv)) is not None]
    return sorted(found, key=lambda d: (d.created_at, int(d.version)))


def _decision_of(c, mv) -> Decision | None:
    raw = mv.tags.get(RECORD)
    if raw is None:
        return None
    data = json.loads(raw)
    decision = Decision.from_json(data)
    if not data.get("truncated"):
        return decision
    # The tag copy was shortened. The artifact is the full record, unless a write was cut off
    # between the artifact and the tag, in which case only its evidence (never changed) is used.
    full = Decision.from_json(json.loads(_load_artifact(decision)))
    return full if full.status == decision.status else dataclasses.replace(
        decision, evidence=full.evidence)


def _load_artifact(decision: Decision) -> str:
    import mlflow

    return mlflow.artifacts.load_text(f"runs:/{decision.evidence_run_id}/{decision.artifact_path}")


def _search_versions(c, filter_string: str) -> list:
    """All pages. Search results carry tags but not aliases; read those from _aliases."""
    out, token = [], None
    while True:
        page = c.search_model_versions(filter_string, page_token=token)
        out.extend(page)
        token = page.token
        if not token:
            return out


def _aliases(c, name: str) -> dict[str, str]:
    # Registered-model aliases, read from get_registered_model because
    # get_model_version_by_alias reports a missing alias as INVALID_PARAMETER_VALUE, the same
    # code as a bad request.
    # Versions as strings: the REST store returns strings, the SQL store (a sqlite:/// URI) ints.
    model = _find(lambda: c.get_registered_model(name))
    return {} if model is None else {alias: str(version) for alias, version in model.aliases.items()}


def _model_version(c, name: str, version: str):
    mv = _find(lambda: c.get_model_version(name, version))
    if mv is None:
        raise AutomlError(f"registered model {name!r} has no version {version}")
    return mv


def _check_run(c, run_id: str) -> None:
    if _find(lambda: c.get_run(run_id)) is None:
        raise AutomlError(f"evidence run {run_id} not found")


def _find(fetch):
    """fetch(), or None when MLflow says the thing does not exist; other errors propagate."""
    from mlflow.exceptions import MlflowException

    try:
        return fetch()
    except MlflowException as exc:
        if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
            return None
        raise


# ---------------------------------------------------------------- writing

def _record(c, decision: Decision) -> None:
    """Artifact, then status tags, then the record tag, which commits the decision."""
    _write_artifact(c, decision)
    _record_tags(c, decision)


def _write_artifact(c, decision: Decision) -> None:
    full, _ = _encode(decision)
    if decision.evidence_run_id is not None:
        c.log_text(decision.evidence_run_id, full, decision.artifact_path)


def _record_tags(c, decision: Decision) -> None:
    _, tag = _encode(decision)
    index = {STATUS: decision.status, MONTH: decision.month}
    if decision.decided_by:
        index[DECIDED_BY] = decision.decided_by
    _set_tags(c, decision.model, decision.version, {**index, RECORD: tag})


def _claim(c, name: str):
    """Run the block as the only open/decide on model `name` (registry/claims.py says how).

    MLflow has no compare-and-set on aliases or tags: without it two approvals at once could
    both read the old champion and both move `champion`.
    """
    board = claims.registered_model_board(c, name, CLAIM)
    return claims.hold(board, f"a decision step on {name}", wait_s=CLAIM_WAIT_S, ttl_s=CLAIM_TTL_S)


def _set_tags(c, name: str, version: str, tags: dict[str, str]) -> None:
    for key, value in tags.items():  # the registry has no batch call; dict order is write order
        c.set_model_version_tag(name, version, key, value)


def _point_alias(c, name: str, alias: str, version: str, aliases: dict[str, str]) -> None:
    """Move `alias` only if it does not already point at `version`, so it never moves twice."""
    if aliases.get(alias) != version:
        c.set_registered_model_alias(name, alias, version)


def _encode(decision: Decision) -> tuple[str, str]:
    """(full JSON for the artifact, compact JSON of at most TAG_LIMIT characters for the tag).

    Raises AutomlError if the evidence cannot be serialised, or if the tag copy would have
    to be shortened while there is no evidence run to keep the full version.
    """
    data = decision.to_json()
    try:
        full = json.dumps(data, indent=2, sort_keys=True)
    except (TypeError, ValueError) as exc:
        raise AutomlError(f"decision for {decision.model} v{decision.version}: evidence is not "
                          f"JSON-serialisable ({exc})") from exc
    tag = _compact(data)
    if len(tag) <= TAG_LIMIT:
        return full, tag
    if decision.evidence_run_id is None:
        raise AutomlError(f"decision for {decision.model} v{decision.version}: {len(tag)} "
                          f"characters of JSON exceed the {TAG_LIMIT}-character tag limit and "
                          "there is no evidence run to hold the full version; pass evidence_run_id")
    slim = {**data, "evidence": {}, "truncated": True, "artifact": decision.artifact_path}
    while len(tag := _compact(slim)) > TAG_LIMIT and slim["reasons"]:
        slim["reasons"] = slim["reasons"][:-1]
    if len(tag) > TAG_LIMIT:
        raise AutomlError(f"decision for {decision.model} v{decision.version} does not fit a "
                          f"{TAG_LIMIT}-character tag even without evidence and reasons")
    return full, tag


def _compact(data: dict) -> str:
    return json.dumps(data, separators=(",", ":"), sort_keys=True)


# ---------------------------------------------------------------- small helpers

def _quoted(value: str) -> str:
    """A search-filter string literal; MLflow's filter parser has no escape for quotes."""
    if "'" in value:
        raise AutomlError(f"{value!r} contains a single quote, which MLflow registry search "
                          "filters cannot express")
    return f"'{value}'"


def _none(value: str) -> str | None:
    return None if value == NO_CHAMPION else value


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")

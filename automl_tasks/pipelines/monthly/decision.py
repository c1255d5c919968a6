"""The month's decision: the winner registered as challenger with the month's record as evidence,
settled now by the policy (auto, shadow, thin evidence) or left pending for a person (manual)."""

from __future__ import annotations

from automl_tasks.pipelines.month_runs import MonthContext
from automl_tasks.registry import policy as gates
from automl_tasks.registry import promotion
from automl_tasks.registry.records import MonthRecord
from automl_tasks.spec import ModelSpec


def settle(ctx: MonthContext, mode: str, record: MonthRecord) -> dict:
    """Register the winner as challenger with the record as evidence; auto/shadow settle it now."""
    from automl_tasks.registry import summary

    spec, month, progress = ctx.spec, ctx.month, ctx.progress
    best, runs = record.best, record.runs
    verdict = gates.Verdict.from_json(record.policy)
    approve = verdict.approve
    version = promotion.register_candidate(best["model_uri"], spec.name, month=month,
                                           run_id=runs["tuning"],
                                           tags={"automl.algorithm": best["algorithm"]})
    text = summary.decision_markdown(spec.name, version, mode, record)
    evidence = {"metric": spec.metric, "candidate": best["algorithm"],
                "candidate_holdout": best["holdout_value"],
                "champion_metric": record.champion_metric,
                "comparisons": record.comparisons, "policy_says": approve}
    decision = promotion.open_decision(spec.name, version, month=month, evidence=evidence,
                                       evidence_run_id=runs["month"], reasons=verdict.reasons,
                                       measured_against=record.champion_version)
    summary.publish(spec.name, version, runs["month"], text)
    if verdict.outcome == gates.INSUFFICIENT and decision.status == "pending":
        # In every mode: nobody is asked to approve, and nothing promoted, on thin evidence.
        decision = promotion.decide(spec.name, version, approve=False, decided_by="policy:evidence",
                                    status=promotion.INSUFFICIENT_EVIDENCE)
    elif mode == "auto" and decision.status == "pending":
        decision = promotion.decide(spec.name, version, approve=approve, decided_by="policy:auto")
    elif mode == "shadow" and decision.status == "pending":
        decision = promotion.decide(spec.name, version, approve=False, decided_by="policy:shadow",
                                    reasons=["shadow mode: compared and recorded, never promoted"])
    progress(f"{spec.name} {month}: decision {decision.status} for v{version} ({'; '.join(decision.reasons)})")
    settled = decision.status in promotion.SETTLED
    monitored = record.monitored or {}
    return {
        "month": month,
        "monitored_month": monitored.get("month", month), "evaluated_month": month,
        "estimated": monitored.get("estimated"), "prediction_drift": monitored.get("prediction_drift"),
        "estimate_check": record.estimate_check,
        # As the decision recorded them, so a re-run of an old month reports what happened then.
        "champion_before": decision.champion_before,
        "champion_after": decision.champion_after if settled else promotion.current_champion(spec.name),
        "decision": {"status": decision.status, "version": version, "reasons": decision.reasons,
                     "evidence_run_id": runs["month"], "policy_says": approve, "summary": text},
        "drift": record.drift,
        "champion_metric": record.champion_metric,
        "alerts": (record.alerts or []) + _waiting(spec, mode, month, decision),
        "comparisons": record.comparisons,     # the delta and its CI, overall first (the messages quote them)
        "health": record.health,
        "candidates": {e.algorithm: e.holdout_value for e in record.leaderboard},
        "runs": runs,
    }


def _waiting(spec: ModelSpec, mode: str, month: str, decision) -> list[dict]:
    """The `approval_waiting` alert: a person is asked (manual mode, pending)."""
    if mode != "manual" or decision.status != "pending":
        return []
    return [{"kind": "approval_waiting", "message": (
        f"{spec.name} {month}: v{decision.version} waits for approval (rejected by default after "
        f"{spec.promotion.approval_timeout_hours:g} h)")}]

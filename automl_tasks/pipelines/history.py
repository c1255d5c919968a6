"""`automl-tasks history`: the month table, read back from the month runs' records and the
registry's decisions, so it shows what each month measured and decided, whoever ran it (DAG,
CLI, backfill).

With labels.delay_months N > 0 each month also shows the champion's metric estimated before
its labels landed (with its interval), the metric it turned out to have (`realized`, null until
its labels land, N months later) and the error; the newest N months have the estimate only.
"""

from __future__ import annotations

from automl_tasks.formatting import number
from automl_tasks.pipelines.month_runs import PURPOSE, recorded
from automl_tasks.registry import promotion, tracking

ESTIMATE_KEYS = ("value", "ci_low", "ci_high", "method", "version")


def history(name: str) -> list[dict]:
    """One row per month evaluated so far (the champion's score, drift, the challenger, the
    decision, the estimate and its realized value), and one per month only monitored so far."""
    client = tracking.client()
    experiment = client.get_experiment_by_name(f"{name}/{PURPOSE}")
    if experiment is None:
        return []
    runs = tracking.find_runs(client, [experiment.experiment_id], {"automl.kind": "decision"}, finished=True)
    decisions = {(d.month, d.evidence_run_id): d for d in promotion.decision_history(name)}
    rows, estimates = {}, {}
    for run in runs:                       # newest first: a month re-run on new data shows its latest
        month = run.data.tags["automl.month"]
        record = None if month in rows else recorded(client, run)
        if record is None:
            continue
        monitored = record.monitored or {}
        if monitored.get("estimated"):
            estimates.setdefault(monitored["month"], monitored["estimated"])
        decision = decisions.get((month, run.info.run_id))
        overall, checked = record.overall, record.estimate_check or {}
        rows[month] = {
            "month": month, "metric": record.metric, "champion": record.champion_version,
            "champion_metric": record.champion_metric,
            "drift_share": record.drift["share_drifted"],
            "challenger": record.best["algorithm"], "challenger_metric": record.best["holdout_value"],
            "delta": overall and overall["delta"], "ci_low": overall and overall["ci_low"],
            "ci_high": overall and overall["ci_high"],
            "version": decision and decision.version, "decision": decision.status if decision else "none",
            "champion_after": decision and decision.champion_after, "run_id": run.info.run_id,
            "alerts": [a["kind"] for a in record.alerts or []],
            "estimated": _estimate({**checked.get("estimated", {}), "version": checked.get("version")})
            if checked else None,
            "realized": checked.get("realized"), "estimate_error": checked.get("error"),
        }
    for month, estimated in estimates.items():
        if month not in rows:              # monitored, its labels not landed yet: nothing else known
            evaluated = next(iter(rows.values()))
            rows[month] = {**dict.fromkeys(evaluated), "month": month, "metric": evaluated["metric"],
                           "decision": "labels pending", "alerts": [], "estimated": _estimate(estimated)}
        elif rows[month]["estimated"] is None:     # evaluated before the estimate was checked
            rows[month]["estimated"] = _estimate(estimated)
    return [rows[m] for m in sorted(rows)]


def _estimate(estimated: dict) -> dict:
    return {k: estimated.get(k) for k in ESTIMATE_KEYS}


def format_history(rows: list[dict], metric: str = "metric") -> str:
    """The month table; the estimated, realized and error columns when any month has an estimate."""
    estimates = any(r.get("estimated") for r in rows)
    lines = [f"{'month':<8} {'champion':>8} {metric:>9} {'drift':>6}  {'challenger':<18} "
             f"{'delta [95% CI]':<27} {'decision':<25} {'champion after':>14}  "
             + (f"{'estimated [95% CI]':<26} {'realized':>8} {'error':>7}  " if estimates else "") + "alerts"]
    for r in rows:
        ci = (f"{number(r['delta'], True)} [{number(r['ci_low'], True)}, {number(r['ci_high'], True)}]"
              if r["delta"] is not None else "-")
        challenger = f"{r['challenger']} {number(r['challenger_metric'])}" if r["challenger"] else "-"
        drift = f"{r['drift_share']:>6.0%}" if r["drift_share"] is not None else f"{'-':>6}"
        line = (f"{r['month']:<8} {('v' + r['champion']) if r['champion'] else '-':>8} "
                f"{number(r['champion_metric']):>9} {drift}  {challenger:<18} {ci:<27} "
                f"{r['decision'] + (' v' + r['version'] if r['version'] else ''):<25} "
                f"{('v' + r['champion_after']) if r['champion_after'] else '-':>14}  ")
        if estimates:
            est = r.get("estimated")
            shown = (f"{number(est['value'])} [{number(est['ci_low'])}, {number(est['ci_high'])}]" if est else "-")
            line += f"{shown:<26} {number(r.get('realized')):>8} {number(r.get('estimate_error'), True):>7}  "
        lines.append(line + (", ".join(r.get("alerts") or []) or "-"))
    return "\n".join(lines)

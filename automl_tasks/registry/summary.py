"""The decision summary a person reads before approving: markdown from the month's record.

One text serves three places, so the approver, the MLflow run and the registry say the
same thing: the Airflow approval task's body, the month run's description (and its
`decision.md` artifact), and the challenger model version's description.
"""

from __future__ import annotations

from functools import partial

from automl_tasks.data.months import describe_months
from automl_tasks.formatting import number
from automl_tasks.monitoring.health import Health
from automl_tasks.registry import links, tracking
from automl_tasks.registry.records import MonthRecord

SUMMARY_ARTIFACT = "decision.md"
MISSING = "–"   # an en dash: a missing value in the Markdown tables
_num = partial(number, missing=MISSING)


def run_link(experiment_id: str, run_id: str, label: str) -> str:
    url = links.run_url(run_id, experiment_id)
    return f"[{label}]({url})" if url else f"{label} `{run_id}`"


def version_link(name: str, version: str, label: str | None = None) -> str:
    url = links.version_url(name, version)
    label = label or f"{name} v{version}"
    return f"[{label}]({url})" if url else label


def decision_markdown(name: str, version: str, mode: str, record: MonthRecord) -> str:
    """Metrics side by side, the CIs overall and per segment, drift, the policy's reasons, links."""
    metric, champion, best = record.metric, record.champion, record.best
    policy = record.policy
    lines = [f"### {name} {record.month}: {best['algorithm']} challenger "
             f"{version_link(name, version)} vs "
             f"{'champion v' + champion['version'] if champion else 'no champion yet'}",
             "", f"Policy: {_verdict(policy)}; promotion mode `{mode}`.", ""]
    lines += [f"- {reason}" for reason in policy["reasons"]]
    window = record.window                   # records before the window was recorded have none
    if window:
        lines += ["", f"Trained on {describe_months(window['train'])} ({window['train_rows']:,} rows); "
                      f"every model below is scored on the holdout {describe_months(window['holdout'])} "
                      f"({window['holdout_rows']:,} rows)."]
    lines += ["", f"| model | holdout {metric} | CV {metric} | default params | tuning lift |",
              "|---|---|---|---|---|"]
    if champion:
        lines.append(f"| champion v{champion['version']} ({champion['algorithm']}) | "
                     f"{_num(champion['metric'])} | | | |")
    for e in record.leaderboard:
        mark = " **(challenger)**" if e.algorithm == best["algorithm"] else ""
        lines.append(f"| {e.algorithm}{mark} | {_num(e.holdout_value)} | {_num(e.cv_value)} | "
                     f"{_num(e.baseline_value)} | {_num(e.lift, signed=True)} |")
    lines += ["", f"*holdout*: {metric} on the holdout rows; *CV*: mean {metric} of the cross-validation "
                  f"folds of the training window; *default params*: the library's default parameters on the "
                  f"same folds; *tuning lift*: tuned CV minus default-params CV, oriented so positive = tuning helped."]
    if record.comparisons:
        lines += ["", f"Challenger minus champion ({metric}, paired bootstrap; positive = better; segment "
                      "intervals Bonferroni-corrected across the gated segments):",
                  "", "| rows | n | delta | CI | level | p |", "|---|---|---|---|---|---|"]
        for c in record.comparisons:
            ci = (f"{_num(c['ci_low'], True)} .. {_num(c['ci_high'], True)}"
                  if c["ci_low"] is not None else c.get("note") or MISSING)
            lines.append(f"| {c['segment'] or 'all'} | {c['n_rows']} | {_num(c['delta'], True)} | {ci} | "
                         f"{c.get('confidence', 0.95):.1%} | "
                         f"{_num(c['p_value'], digits=3)} |")
    study = record.ablation
    if study:
        lines += ["", f"Feature ablation (MLflow run `{study['run_id']}`; delta of adding each feature, 95% CI):",
                  "", "| feature | delta | 95% CI | verdict |", "|---|---|---|---|"]
        for r in study["results"]:
            ci = MISSING if r["ci_low"] is None else f"{_num(r['ci_low'], True)} .. {_num(r['ci_high'], True)}"
            verdict = r["verdict"] + (f" ({r['reason']})" if r.get("reason") else "")
            lines.append(f"| {r['feature']} | {_num(r['delta'], True)} | {ci} | {verdict} |")
    dupes = record.duplicate_ids
    if dupes:
        lines += ["", f"Warning: {dupes['ids']} ids appear on more than one row ({dupes['rows']} rows) in the "
                      "evaluated month; they count once per row in the metrics above."]
    lines += ["", _drift_line(record.drift)]
    if record.health is not None:
        lines += ["", f"Champion v{record.champion_version} on the month: {Health(**record.health).describe()}."]
    for alert in record.alerts or []:
        lines += ["", f"**Alert ({alert['kind']})**: {alert['message']}"]
    runs, experiment = record.runs, record.experiment_id
    labels = {"month": f"month run {record.month}", "monitor": "drift and champion (monitor run)",
              "tuning": "tuning run", "comparison": "comparison run"}
    lines += ["", "MLflow: " + ", ".join([run_link(experiment, run_id, labels.get(step, step))
                                          for step, run_id in runs.items()]
                                         + [version_link(name, version, f"model version {version}")])]
    return "\n".join(lines)


def _drift_line(drift: dict) -> str:
    """The share of drifted columns, against what and which threshold, and the verdict."""
    columns = f" ({', '.join(drift['drifted_columns'])})" if drift["drifted_columns"] else ""
    if "reference" not in drift:             # a record from before the reference was recorded
        return f"Drift: {drift['share_drifted']:.0%} of columns drifted{columns}."
    verdict = ("**the month drifts**" if drift["dataset_drift"] else "no dataset drift")
    return (f"Drift against the training window {drift['reference']} (Evidently, per column: "
            f"a distance above 0.1 when the reference has over 1,000 rows, else a test's p < 0.05): "
            f"{len(drift['drifted_columns'])} of {drift['columns_checked']} columns drifted"
            f"{columns}, {drift['share_drifted']:.0%} against the threshold {drift['threshold']:.0%}: {verdict}.")


_OUTCOMES = {"promote": "promote", "keep": "keep the champion",
             "insufficient_evidence": "insufficient evidence: nothing is promoted"}


def _verdict(policy: dict) -> str:
    """What the gates said, which gate decided, on how many rows (older records: pass or not)."""
    if "outcome" not in policy:
        return "**gates pass**" if policy["approve"] else "**gates do not pass**"
    rows = f"{policy['rows']} holdout rows" + (
        f", {policy['rarest_class_rows']} in the rarest class" if policy.get("rarest_class_rows") is not None else "")
    gate = "every gate passes" if policy["gate"] == "all" else f"decided by the `{policy['gate']}` gate"
    return f"**{_OUTCOMES[policy['outcome']]}** ({gate}; {rows})"


def publish(name: str, version: str, month_run_id: str, text: str) -> None:
    """Put the summary on the month run (artifact and description) and the model version."""
    c = tracking.client()
    c.log_text(month_run_id, text, SUMMARY_ARTIFACT)
    short = text if len(text) <= tracking.MAX_TAG else (
        text[:tracking.MAX_TAG - 80] + f"\n\n(cut here; the full summary is {SUMMARY_ARTIFACT} on the run)")
    c.set_tag(month_run_id, "mlflow.note.content", short)
    c.update_model_version(name, version, description=short)

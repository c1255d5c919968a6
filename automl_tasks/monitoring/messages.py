"""The notifications' text: a subject and a body for each alert of a month, and for a failed step.

Pure functions of the monthly job's result (what the DAG's tasks pass around: `name`, `month`,
`alerts`, `decision`, `drift`, `runs`, and where the job puts them `comparisons` and `health`,
as in the month's record) and of the links the caller knows ({label: URL}, from
`registry.links` and Airflow's base URL). Nothing is sent here and nothing imports Airflow:
`plugins/automl_notify.py` hands these texts to the providers' notifiers.

One message per alert kind, each standing alone (the model, the month, the deltas with their
intervals, the decision, the links), because each asks something different of its reader:
`approval_waiting` a person's answer in Airflow, `degraded` a look at the champion, `drift` a look
at the data. Their subjects start alike (`[automl] <model> <month>: ...`) so a mail filter or a
Slack search finds a model's month.

A `Message` renders as plain text (logs, tests), as HTML (SmtpNotifier sends HTML) and as Slack
mrkdwn (SlackWebhookNotifier's text).
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass

from automl_tasks.evaluation.metrics import orientation
from automl_tasks.formatting import number

DEGRADED, DRIFT, APPROVAL_WAITING, FAILED = "degraded", "drift", "approval_waiting", "failed"
ESTIMATE_MISSED = "estimate_missed"      # labels.delay_months: pipelines/monthly/unlabelled.py
# The month's alerts a notification is sent for.
ALERT_KINDS = (DEGRADED, DRIFT, ESTIMATE_MISSED, APPROVAL_WAITING)
PREFIX = "[automl]"
# Link labels, in the order a message lists them.
APPROVAL_PAGE, AIRFLOW_RUN, TASK_LOG = "Approve or reject in Airflow", "Airflow DAG run", "Task log"
HEADLINES = {DEGRADED: "the champion degraded", DRIFT: "the month's data drifted",
             ESTIMATE_MISSED: "the realized metric fell outside its estimate",
             APPROVAL_WAITING: "a challenger waits for approval", FAILED: "a step failed"}
_URL = re.compile(r"https?://[^\s<>\"]+")


@dataclass(frozen=True)
class Message:
    kind: str
    subject: str
    lines: tuple[str, ...]                 # the body's paragraphs, without the links
    links: tuple[tuple[str, str], ...]     # (label, URL)

    @property
    def text(self) -> str:
        """Plain text: the paragraphs, then one `label: URL` line per link."""
        body = "\n\n".join(self.lines)
        if self.links:
            body += "\n\nLinks:\n" + "\n".join(f"- {label}: {url}" for label, url in self.links)
        return body

    def html(self) -> str:
        """The mail's HTML body: escaped paragraphs (URLs clickable) and a list of the links."""
        paragraphs = "".join(f"<p>{_linkify(line)}</p>" for line in self.lines)
        listed = "".join(f'<li>{html.escape(label)}: <a href="{html.escape(url, quote=True)}">'
                         f"{html.escape(url)}</a></li>" for label, url in self.links)
        return f"<html><body>{paragraphs}{f'<ul>{listed}</ul>' if listed else ''}</body></html>"

    def slack(self) -> str:
        """Slack mrkdwn: the subject in bold, the paragraphs, the links as `<URL|label>`."""
        escaped = [_slack_escape(line) for line in self.lines]
        links = " | ".join(f"<{url}|{_slack_escape(label)}>" for label, url in self.links)
        return "\n\n".join([f"*{_slack_escape(self.subject)}*", *escaped, *([links] if links else [])])


def _linkify(line: str) -> str:
    out, last = [], 0
    for match in _URL.finditer(line):
        url = match.group(0)
        out += [html.escape(line[last:match.start()]),
                f'<a href="{html.escape(url, quote=True)}">{html.escape(url)}</a>']
        last = match.end()
    return "".join(out) + html.escape(line[last:])


def _slack_escape(text: str) -> str:
    """Slack's three control characters (its docs: escape &, < and > in message text)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _ci(low, high, confidence: float = 0.95) -> str:
    if low is None or high is None:
        return "no interval (too few rows)"
    return f"{confidence:.0%} CI {number(low, signed=True)} .. {number(high, signed=True)}"


def comparison_line(result: dict) -> str | None:
    """The challenger minus the champion overall, oriented (positive = better), with its interval."""
    overall = next((c for c in result.get("comparisons") or [] if c.get("segment") is None), None)
    if overall is None:
        return None
    decision = result.get("decision") or {}
    challenger = f"Challenger v{decision['version']}" if decision.get("version") else "The challenger"
    champion = f"champion v{result['champion_before']}" if result.get("champion_before") else "the champion"
    return (f"{challenger} vs {champion} on the month's holdout ({overall['metric']}, paired bootstrap, "
            f"positive = better): delta {number(overall['delta'], signed=True)} "
            f"({_ci(overall['ci_low'], overall['ci_high'], overall.get('confidence') or 0.95)}); "
            f"{number(overall['candidate'])} vs {number(overall['baseline'])} on {overall['n_rows']} rows.")


def health_line(result: dict) -> str | None:
    """The champion on the month against its reference (its holdout metric at its promotion): the
    oriented delta (positive = better) and its 95% interval, the shift of the metric's own."""
    health = result.get("health")
    if not health or health.get("reference") is None:
        return None
    sign, reference = orientation(health["metric"]), health["reference"]
    bounds = sorted(sign * (health[k] - reference) for k in ("ci_low", "ci_high"))
    verdict = "beyond" if health.get("degraded") else "within"
    return (f"Champion on the month vs its reference at promotion ({health['metric']}, positive = better): "
            f"delta {number(sign * (health['value'] - reference), signed=True)} ({_ci(*bounds)}); "
            f"{number(health['value'])} against {number(reference)}: {verdict} the allowed drop "
            f"(monitoring.max_degradation {health['max_degradation']:g}).")


def drift_line(result: dict) -> str | None:
    drift = result.get("drift")
    if not drift or drift.get("share_drifted") is None:
        return None
    columns = ", ".join(drift.get("drifted_columns") or []) or "none"
    threshold = f" against the threshold {drift['threshold']:.0%}" if drift.get("threshold") is not None else ""
    return f"Drift: {drift['share_drifted']:.0%} of columns drifted ({columns}){threshold}."


def decision_line(result: dict) -> str | None:
    decision = result.get("decision")
    if not decision:
        return None
    mode = f" ({result['mode']} mode)" if result.get("mode") else ""
    reasons = "; ".join(decision.get("reasons") or [])
    return (f"Decision{mode}: {decision['status']} for v{decision['version']}"
            + (f": {reasons}." if reasons else "."))


def _subject(name: str, month: str, kind: str, detail: str = "") -> str:
    return f"{PREFIX} {name} {month}: {HEADLINES[kind]}{detail}"


def alert_message(result: dict, alert: dict, links: dict[str, str | None] | None = None) -> Message:
    """One alert of the month's result as a message: the alert's own text first, then what every
    reader of the month needs (deltas with intervals, drift, the decision), then the links (the
    `APPROVAL_PAGE` one in the approval_waiting message only)."""
    name, month, kind = result["name"], result["month"], alert["kind"]
    if kind not in ALERT_KINDS:
        raise ValueError(f"alert kind {kind!r} of {name} {month}: expected one of {', '.join(ALERT_KINDS)}")
    version = {APPROVAL_WAITING: (result.get("decision") or {}).get("version"),
               DEGRADED: result.get("champion_before")}.get(kind)
    detail = f" (v{version})" if version else ""
    context = [comparison_line(result), health_line(result)]
    if kind != APPROVAL_WAITING:
        context.reverse()            # a champion's or the data's problem: the champion's numbers first
    others = sorted({a["kind"] for a in result.get("alerts") or []} - {kind})
    lines = [alert["message"], *context, None if kind == DRIFT else drift_line(result), decision_line(result),
             f"Other alerts this month: {', '.join(others)}." if others else None]
    links = dict(links or {})
    approval = links.pop(APPROVAL_PAGE, None)
    shown = {APPROVAL_PAGE: approval, **links} if kind == APPROVAL_WAITING else links   # the action first
    return Message(kind, _subject(name, month, kind, detail), tuple(line for line in lines if line),
                   _links(shown))


def alert_messages(result: dict, links: dict[str, str | None] | None = None) -> list[Message]:
    """One message per alert kind of ALERT_KINDS in the result, in that order (several alerts of
    one kind, which the job does not produce today, share a message)."""
    by_kind: dict[str, list[dict]] = {}
    for alert in result.get("alerts") or []:
        if alert.get("kind") in ALERT_KINDS:
            by_kind.setdefault(alert["kind"], []).append(alert)
    return [alert_message(result, {"kind": kind, "message": "\n".join(a["message"] for a in by_kind[kind])}, links)
            for kind in ALERT_KINDS if kind in by_kind]


def failure_message(dag_id: str, task_id: str, *, label: str | None = None, error: str | None = None,
                    try_number: int | None = None, run_id: str | None = None,
                    links: dict[str, str | None] | None = None) -> Message:
    """A failed step: the DAG, the task (and the model and month its label names), the error, the try."""
    where = f"{dag_id}.{task_id}" + (f" [{label}]" if label else "")
    lines = [f"Task {task_id} of DAG {dag_id} failed" + (f" for {label}" if label else "")
             + (f" (try {try_number})" if try_number else "") + (f" in run {run_id}" if run_id else "") + ".",
             f"Error: {error}" if error else "Error: not reported by Airflow.",
             "Clearing the task in Airflow runs it again; the month's finished MLflow runs are reused."]
    return Message(FAILED, f"{PREFIX} {HEADLINES[FAILED]}: {where}", tuple(lines), _links(links))


def _links(links: dict[str, str | None] | None) -> tuple[tuple[str, str], ...]:
    return tuple((label, url) for label, url in (links or {}).items() if url)

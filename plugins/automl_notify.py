"""Notifications of the monthly DAG, sent through the Airflow providers' notifiers.

    from automl_notify import notify_alerts, on_step_failure   # plugins/ is on the DAGs' path

    notify_alerts(result, context)              # in a task, once the month's decision is known
    @task(on_failure_callback=on_step_failure)  # on the steps: a message when one fails for good

What is sent, when: one message per alert kind of the month's result (`degraded`, `drift`,
`estimate_missed`, `approval_waiting`; the text: automl_tasks.monitoring.messages), and one
`failed` message when a step fails for good (its last try; a try that will be retried is not
reported). Each message goes through every configured channel: SMTP (`SmtpNotifier`,
providers-smtp) and Slack (`SlackWebhookNotifier`, providers-slack, an Incoming Webhook).

Deployment settings (environment; docs/notifications.md), read at each call:

    AUTOML_NOTIFY             channels, comma-separated: smtp, slack. Empty or unset: no notification.
    AUTOML_NOTIFY_KINDS       which messages (default all): degraded,drift,estimate_missed,approval_waiting,failed
    AUTOML_NOTIFY_SMTP_CONN   Airflow connection id of the SMTP server (default smtp_default)
    AUTOML_NOTIFY_EMAIL_TO    recipients, comma-separated (required with smtp)
    AUTOML_NOTIFY_EMAIL_FROM  sender (default: the connection's extra `from_email`)
    AUTOML_NOTIFY_SLACK_CONN  Airflow connection id of the Slack webhook (default slack_default)

Credentials live only in the Airflow connections (the connections table, a secrets backend, or
an AIRFLOW_CONN_<ID> variable), never in these settings.

Failure behaviour: a notification that cannot be sent (server down, connection missing, a
setting wrong) never fails the step that sends it: the month's work is done and recorded in
MLflow, and failing the task would retry or fail work that succeeded. It is not silent either:
each failure is logged as a WARNING naming the channel, the message and the reason, and
`notify_alerts` returns (and pushes as the XCom `automl_notifications`) what was sent and what
failed. A failure callback's exception would only be logged by Airflow ("Failed to run task
callback"); `on_step_failure` logs its own WARNING with the reason instead.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from urllib.parse import quote

log = logging.getLogger(__name__)

SMTP, SLACK = "smtp", "slack"
CHANNELS = (SMTP, SLACK)
KINDS = ("degraded", "drift", "estimate_missed", "approval_waiting", "failed")
XCOM_KEY = "automl_notifications"


@dataclass(frozen=True)
class Settings:
    channels: tuple[str, ...] = ()
    kinds: tuple[str, ...] = KINDS
    smtp_conn: str = "smtp_default"
    email_to: tuple[str, ...] = ()
    email_from: str | None = None
    slack_conn: str = "slack_default"
    problems: tuple[str, ...] = field(default=())   # what is wrong with the settings, by name

    @property
    def on(self) -> bool:
        return bool(self.channels)


def _listed(raw: str | None) -> tuple[str, ...]:
    return tuple(item.strip() for item in (raw or "").replace(";", ",").split(",") if item.strip())


def settings(environ=None) -> Settings:
    """The notification settings from the environment (os.environ by default)."""
    env = os.environ if environ is None else environ
    channels, kinds = _listed(env.get("AUTOML_NOTIFY")), _listed(env.get("AUTOML_NOTIFY_KINDS")) or KINDS
    problems = [f"AUTOML_NOTIFY names an unknown channel {c!r} (known: {', '.join(CHANNELS)})"
                for c in channels if c not in CHANNELS]
    problems += [f"AUTOML_NOTIFY_KINDS names an unknown kind {k!r} (known: {', '.join(KINDS)})"
                 for k in kinds if k not in KINDS]
    email_to = _listed(env.get("AUTOML_NOTIFY_EMAIL_TO"))
    if SMTP in channels and not email_to:
        problems.append("AUTOML_NOTIFY has smtp but AUTOML_NOTIFY_EMAIL_TO names no recipient")
    return Settings(channels=tuple(c for c in channels if c in CHANNELS), kinds=tuple(kinds),
                    smtp_conn=env.get("AUTOML_NOTIFY_SMTP_CONN") or "smtp_default", email_to=email_to,
                    email_from=env.get("AUTOML_NOTIFY_EMAIL_FROM") or None,
                    slack_conn=env.get("AUTOML_NOTIFY_SLACK_CONN") or "slack_default",
                    problems=tuple(problems))


def _verbatim(text: str) -> str:
    """`text` as a Jinja template that renders to itself: the notifiers render their fields with
    the task context, and an error message or a column name may hold `{{`, `{%` or `{#`."""
    if not any(mark in text for mark in ("{{", "{%", "{#")):
        return text
    return "{% raw %}" + text.replace("{% endraw %}", "{% endraw %}{{ '{% endraw %}' }}{% raw %}") + "{% endraw %}"


def notifier(channel: str, message, config: Settings):
    """The provider's notifier of `channel` carrying `message` (a messages.Message)."""
    if channel == SMTP:
        from airflow.providers.smtp.notifications.smtp import SmtpNotifier

        return SmtpNotifier(to=list(config.email_to), from_email=config.email_from,
                            subject=_verbatim(message.subject), html_content=_verbatim(message.html()),
                            smtp_conn_id=config.smtp_conn)
    if channel == SLACK:
        from airflow.providers.slack.notifications.slack_webhook import SlackWebhookNotifier

        return SlackWebhookNotifier(slack_webhook_conn_id=config.slack_conn, text=_verbatim(message.slack()))
    raise ValueError(f"unknown notification channel {channel!r} (known: {', '.join(CHANNELS)})")


def send(message, context, config: Settings | None = None) -> dict:
    """`message` through every configured channel, called with the task context as Airflow calls
    a notifier. Returns {"sent": [channel], "failed": [{channel, error}]}; never raises."""
    config = config or settings()
    report: dict = {"kind": message.kind, "subject": message.subject, "sent": [], "failed": []}
    for problem in config.problems:
        log.warning("notification %r: %s", message.subject, problem)
        report["failed"].append({"channel": "settings", "error": problem})
    for channel in config.channels:
        if channel == SMTP and not config.email_to:
            continue                                  # reported with the settings' problems
        try:
            # A copy: a notifier merges its fields into the context it is given.
            notifier(channel, message, config)(dict(context))
        except Exception as exc:  # noqa: BLE001 - any failure to notify is reported, none fails the step
            error = f"{type(exc).__name__}: {exc}"
            log.warning("notification %r through %s not sent: %s", message.subject, channel, error)
            report["failed"].append({"channel": channel, "error": error})
        else:
            log.info("notification %r sent through %s", message.subject, channel)
            report["sent"].append(channel)
    return report


def airflow_base_url() -> str | None:
    """Where browsers reach the Airflow UI (`[api] base_url`), or None when not configured."""
    from airflow.sdk.configuration import conf

    base = (conf.get("api", "base_url", fallback=None) or "").rstrip("/")
    return base if base.startswith(("http://", "https://")) else None


def _run_path(dag_id: str, run_id: str) -> str:
    return f"/dags/{quote(dag_id, safe='')}/runs/{quote(run_id, safe='')}"


def alert_links(result: dict, context, approval_task_id: str | None = None) -> dict[str, str]:
    """The links of the month's messages: MLflow's month run and challenger version, the Airflow
    DAG run, and the page where a person answers the approval (the approval task instance's when
    its id is given, at the calling task's map index; else the run's list of required actions).
    Airflow's links only when `[api] base_url` says where the UI is."""
    from automl_tasks.monitoring import messages
    from automl_tasks.registry import links

    decision, runs = result.get("decision") or {}, result.get("runs") or {}
    found = dict(links.task_links(runs.get("month"), result.get("name"), decision.get("version")))
    ti, base = context.get("ti"), airflow_base_url()
    if base and ti is not None:
        run = base + _run_path(ti.dag_id, ti.run_id)
        if approval_task_id:
            index = ti.map_index if ti.map_index is not None and ti.map_index >= 0 else None
            mapped = "" if index is None else f"/mapped/{index}"
            found[messages.APPROVAL_PAGE] = f"{run}/tasks/{quote(approval_task_id, safe='')}{mapped}/required_actions"
        else:
            found[messages.APPROVAL_PAGE] = f"{run}/required_actions"
        found[messages.AIRFLOW_RUN] = run
    return found


def notify_alerts(result: dict, context, *, approval_task_id: str | None = None) -> dict:
    """Send the month's alerts (`result["alerts"]`: degraded, drift, approval_waiting), one message
    per kind through every configured channel. Returns what was sent and what failed (also pushed
    as the XCom `automl_notifications` of the calling task); never raises for a notification."""
    from automl_tasks.monitoring import messages

    config = settings()
    label = f"{result.get('name')} {result.get('month')}"
    if not config.on:
        log.info("notifications are off (AUTOML_NOTIFY is empty): %s alerts not sent: %s", label,
                 ", ".join(a.get("kind", "?") for a in result.get("alerts") or []) or "none")
        return {"off": True, "messages": []}
    try:
        wanted = [m for m in messages.alert_messages(result, alert_links(result, context, approval_task_id))
                  if m.kind in config.kinds]
        reports = [send(message, context, config) for message in wanted]
    except Exception as exc:  # noqa: BLE001 - a malformed result is reported, it does not fail the step
        log.warning("notifications of %s not composed: %s: %s", label, type(exc).__name__, exc)
        error = {"channel": "compose", "error": f"{type(exc).__name__}: {exc}"}
        reports = [{"kind": None, "subject": None, "sent": [], "failed": [error]}]
    outcome = {"off": False, "messages": reports}
    if not reports:
        log.info("%s: no alert to notify (kinds notified: %s)", label, ", ".join(config.kinds))
    _record(context, outcome)
    return outcome


def _record(context, outcome: dict) -> None:
    ti = context.get("ti")
    if ti is None:
        return
    try:
        ti.xcom_push(XCOM_KEY, outcome)
    except Exception as exc:  # noqa: BLE001 - the log line is the record then
        log.warning("notification outcome not pushed as XCom %s: %s", XCOM_KEY, exc)


def _failure_label(context) -> str | None:
    """The model and month of a failed mapped task: its label in the context, else its rendered
    map index when that is a name (not just the index)."""
    ti = context.get("ti")
    label = context.get("automl_label") or getattr(ti, "rendered_map_index", None)
    return label if label and label != str(getattr(ti, "map_index", "")) else None


def _mlflow_links(ti) -> dict[str, str]:
    """The MLflow links the task pushed before failing, if any (plugins/mlflow_links.py's XCom)."""
    from automl_tasks.registry import links

    try:
        pushed = ti.xcom_pull(task_ids=ti.task_id, key=links.XCOM_KEY, map_indexes=ti.map_index)
    except Exception:  # noqa: BLE001 - links are a convenience of the message
        return {}
    return pushed if isinstance(pushed, dict) else {}


def on_step_failure(context) -> None:
    """A task's `on_failure_callback`: a `failed` message naming the DAG, the task, the model and
    month when known, the error, the try and the task's log. Never raises (see the module doc)."""
    from automl_tasks.monitoring import messages

    config = settings()
    ti = context.get("ti")
    if not config.on or messages.FAILED not in config.kinds:
        log.info("notifications of failed steps are off (%s)",
                 "AUTOML_NOTIFY_KINDS leaves out failed" if config.on else "AUTOML_NOTIFY is empty")
        return
    try:
        dag = context.get("dag")
        error = context.get("exception")
        links = {**_mlflow_links(ti), messages.TASK_LOG: ti.log_url}
        base = airflow_base_url()
        if base:
            links[messages.AIRFLOW_RUN] = base + _run_path(ti.dag_id, ti.run_id)
        message = messages.failure_message(
            getattr(dag, "dag_id", None) or ti.dag_id, ti.task_id, label=_failure_label(context),
            error=f"{type(error).__name__}: {error}" if isinstance(error, BaseException) else error,
            try_number=ti.try_number, run_id=ti.run_id, links=links)
    except Exception as exc:  # noqa: BLE001 - reported, as any notification failure
        log.warning("failure notification not composed: %s: %s", type(exc).__name__, exc)
        return
    send(message, context, config)

"""A real SMTP server on loopback (aiosmtpd), for the notification tests: what it receives, parsed.

    with smtp_server() as server:
        env["AIRFLOW_CONN_SMTP_DEFAULT"] = server.connection()   # Airflow's SMTP connection to it
        ...
        mails = server.wait_for(2)                               # email.message.EmailMessage objects

The server runs in a thread of the test process (aiosmtpd's Controller), on 127.0.0.1 and a free
port, without TLS or authentication, and stops when the block ends.
"""

from __future__ import annotations

import contextlib
import email
import email.policy
import json
import threading
import time
from dataclasses import dataclass, field

from tests.support.processes import free_port


@dataclass
class Received:
    """What the server received: each message parsed, with its envelope's sender and recipients."""
    host: str
    port: int
    messages: list = field(default_factory=list)            # email.message.EmailMessage
    envelopes: list[tuple[str, list[str]]] = field(default_factory=list)
    _arrived: threading.Condition = field(default_factory=threading.Condition)

    async def handle_DATA(self, server, session, envelope) -> str:   # aiosmtpd's handler hook
        parsed = email.message_from_bytes(envelope.original_content or envelope.content,
                                          policy=email.policy.default)
        with self._arrived:
            self.messages.append(parsed)
            self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
            self._arrived.notify_all()
        return "250 Message accepted for delivery"

    def connection(self, from_email: str = "automl@example.org") -> str:
        """Airflow's SMTP connection to this server, as the JSON an AIRFLOW_CONN_<ID> variable holds:
        plain SMTP (no SSL, no STARTTLS), no login, one try."""
        return json.dumps({"conn_type": "smtp", "host": self.host, "port": self.port,
                           "extra": {"disable_ssl": True, "disable_tls": True, "from_email": from_email,
                                     "retry_limit": 0, "timeout": 10}})

    def wait_for(self, count: int, timeout_s: float = 30.0) -> list:
        """The messages once `count` have arrived (or all there are at the timeout)."""
        deadline = time.monotonic() + timeout_s
        with self._arrived:
            while len(self.messages) < count and time.monotonic() < deadline:
                self._arrived.wait(max(0.0, deadline - time.monotonic()))
            return list(self.messages)


@contextlib.contextmanager
def smtp_server():
    from aiosmtpd.controller import Controller

    received = Received("127.0.0.1", free_port())
    controller = Controller(received, hostname=received.host, port=received.port)
    controller.start()
    try:
        yield received
    finally:
        controller.stop()


def body_text(message) -> str:
    """The text of a received mail's body: its HTML part (what SmtpNotifier sends), else plain text."""
    part = message.get_body(preferencelist=("html", "plain"))
    return part.get_content() if part is not None else ""

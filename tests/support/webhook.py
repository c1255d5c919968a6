"""A real HTTP endpoint on loopback standing in for a Slack Incoming Webhook: what it is posted.

    with webhook_server() as hook:
        env["AIRFLOW_CONN_SLACK_DEFAULT"] = hook.connection()    # a `slackwebhook` connection to it
        ...
        posts = hook.wait_for(2)                                 # [(path, JSON body)]

It answers 200 `ok`, as Slack does, from a thread of the test process (http.server), and stops
when the block ends.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TOKEN = "local-only-webhook-token"   # the path a webhook URL ends with; no real workspace


class Webhook:
    def __init__(self, server: ThreadingHTTPServer):
        self.server = server
        self.host, self.port = server.server_address[:2]
        self.posts: list[tuple[str, dict]] = []
        self._arrived = threading.Condition()

    def record(self, path: str, body: dict) -> None:
        with self._arrived:
            self.posts.append((path, body))
            self._arrived.notify_all()

    def connection(self) -> str:
        """Airflow's Slack webhook connection to this endpoint (AIRFLOW_CONN_<ID> JSON)."""
        return json.dumps({"conn_type": "slackwebhook", "host": f"http://{self.host}:{self.port}/services",
                           "password": TOKEN})

    def wait_for(self, count: int, timeout_s: float = 30.0) -> list[tuple[str, dict]]:
        deadline = time.monotonic() + timeout_s
        with self._arrived:
            while len(self.posts) < count and time.monotonic() < deadline:
                self._arrived.wait(max(0.0, deadline - time.monotonic()))
            return list(self.posts)


@contextlib.contextmanager
def webhook_server():
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            hook.record(self.path, json.loads(body or b"{}"))
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args):   # quiet: the test asserts on what arrived
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    hook = Webhook(server)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield hook
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)

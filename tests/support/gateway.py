"""A reverse proxy on loopback in front of the MLflow server that answers one chosen request with
a 503, as a gateway or load balancer does while the server restarts: a real, transient fault.

    with flaky_gateway(server_url, fail_once=lambda method, path, body: ...) as gw:
        env["MLFLOW_TRACKING_URI"] = gw.url
        ...
        gw.refused  # [(method, path)] of the requests answered 503

Every other request (tracking REST calls, proxied artifact uploads and downloads) is passed
through unchanged. The proxy runs in a thread of the test process and stops when the block ends.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable
from urllib.parse import urlsplit

HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade",
              "proxy-connection", "content-length", "host"}


class Gateway:
    def __init__(self, server: ThreadingHTTPServer):
        self.server = server
        self.url = f"http://{server.server_address[0]}:{server.server_address[1]}"
        self.refused: list[tuple[str, str]] = []
        self.lock = threading.Lock()


@contextlib.contextmanager
def flaky_gateway(upstream: str, fail_once: Callable[[str, str, bytes], bool]):
    """`fail_once(method, path, body)` picks the request to refuse; only its first match is refused."""
    target = urlsplit(upstream)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _body(self) -> bytes:
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                chunks = []
                while (size := int(self.rfile.readline().split(b";")[0], 16)) > 0:
                    chunks.append(self.rfile.read(size))
                    self.rfile.readline()
                self.rfile.readline()
                return b"".join(chunks)
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))

        def _forward(self):
            body = self._body()
            with gateway.lock:
                refuse = not gateway.refused and fail_once(self.command, self.path, body)
                if refuse:
                    gateway.refused.append((self.command, self.path))
            if refuse:
                payload = json.dumps({"error_code": "TEMPORARILY_UNAVAILABLE",
                                      "message": "the gateway's upstream is restarting"}).encode()
                return self._reply(503, [("Content-Type", "application/json")], payload)
            conn = http.client.HTTPConnection(target.hostname, target.port, timeout=300)
            try:
                headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
                conn.request(self.command, self.path, body=body or None, headers=headers)
                resp = conn.getresponse()
                self._reply(resp.status, [(k, v) for k, v in resp.getheaders() if k.lower() not in HOP_BY_HOP],
                            resp.read())
            finally:
                conn.close()

        def _reply(self, status: int, headers: list[tuple[str, str]], payload: bytes):
            self.send_response(status)
            for key, value in headers:
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _forward

        def log_message(self, *args):   # quiet: the test asserts on what was refused
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    gateway = Gateway(server)
    thread = threading.Thread(target=server.serve_forever, name="flaky-gateway", daemon=True)
    thread.start()
    try:
        yield gateway
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)

"""Headless Chromium driven over the DevTools protocol on a pipe, to look at a web UI as a person.

Why not `chromium --headless --dump-dom URL`: a basic-auth server needs credentials, and in
the URL (`http://user:pw@host/`) they break the page's own `fetch()` calls ("Request cannot
be constructed from a URL that includes credentials", seen with the MLflow UI). Over the
protocol the page gets the `Authorization` header a browser sends once the person typed
the credentials, and the test waits for the text it expects instead of guessing a time
budget. The protocol runs on `--remote-debugging-pipe` (fds 3 and 4: NUL-separated JSON),
so there is no debugging port and no client library.

    with chromium_page(shutil.which("chromium"), tmp_path, auth=("viewer", pw)) as page:
        text = page.open(url, expect=["monthly-2017-10"])
        page.save(tmp_path / "runs")            # runs.html (the DOM) and runs.png

Chromium's own network is closed (no background, component or sync traffic); the process
group is stopped by PID on exit.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import select
import shutil
import subprocess
import time
from pathlib import Path

from tests.support.processes import die_with_parent, stop_group, tail

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-extensions", "--disable-default-apps", "--mute-audio", "--window-size=1440,900"]


def find_chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


class Page:
    """One browser tab of a started Chromium; `open()` waits until the page shows the expected text."""

    def __init__(self, binary: str, root: Path, *, auth: tuple[str, str] | None = None):
        root.mkdir(parents=True, exist_ok=True)
        self.log_path = root / "chromium.log"
        cmd_read, cmd_write = os.pipe()      # we write commands; Chromium reads fd 3
        evt_read, evt_write = os.pipe()      # Chromium writes fd 4; we read
        # Above 4, so placing them on 3 and 4 in the child cannot clobber one with the other.
        high = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10) for fd in (cmd_read, evt_write)]

        def child() -> None:
            os.dup2(high[0], 3)          # dup2 leaves the copies inheritable: they survive exec
            os.dup2(high[1], 4)
            die_with_parent()

        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [binary, *FLAGS, f"--user-data-dir={root / 'profile'}", "--remote-debugging-pipe",
                 "about:blank"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, close_fds=False,
                start_new_session=True, preexec_fn=child)
        for fd in (cmd_read, evt_write, *high):
            os.close(fd)
        self._out, self._in = os.fdopen(cmd_write, "wb"), evt_read
        self._buffer, self._next_id, self.session = b"", 0, None
        try:
            target = self.call("Target.createTarget", url="about:blank")["targetId"]
            self.session = self.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
            self.call("Page.enable")
            self.call("Network.enable")
            if auth is not None:
                token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
                self.call("Network.setExtraHTTPHeaders", headers={"Authorization": f"Basic {token}"})
        except BaseException:
            self.close()
            raise

    # ------------------------------------------------------------ protocol

    def call(self, method: str, timeout_s: float = 60.0, **params) -> dict:
        """Send one command (to the tab once attached) and return its result."""
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params}
        if self.session is not None and not method.startswith(("Target.", "Browser.")):
            message["sessionId"] = self.session
        self._out.write(json.dumps(message).encode() + b"\0")
        self._out.flush()
        deadline = time.monotonic() + timeout_s
        while True:
            reply = self._receive(deadline, method)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply["result"]

    def _receive(self, deadline: float, waiting_for: str) -> dict:
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or self.proc.poll() is not None:
                raise RuntimeError(f"chromium: no answer to {waiting_for} (exit code {self.proc.poll()}):\n"
                                   f"{tail(self.log_path)}")
            if select.select([self._in], [], [], min(left, 1.0))[0]:
                chunk = os.read(self._in, 1 << 20)
                if not chunk:
                    raise RuntimeError(f"chromium closed its pipe:\n{tail(self.log_path)}")
                self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def set_cookie(self, url: str, name: str, value: str) -> None:
        """A cookie the site would have set at login (Airflow's UI reads its token from `_token`)."""
        if not self.call("Network.setCookie", url=url, name=name, value=value).get("success", True):
            raise RuntimeError(f"chromium refused cookie {name} for {url}")

    def evaluate(self, expression: str):
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        return result["result"].get("value")

    # ------------------------------------------------------------ what a test uses

    def open(self, url: str, *, expect: list[str], timeout_s: float = 180.0) -> str:
        """Go to `url`; return the page's visible text once it contains every `expect` string.

        No-break spaces read as spaces (the MLflow UI writes aliases as `@&nbsp;champion`)."""
        self.call("Page.navigate", url=url)
        deadline, text = time.monotonic() + timeout_s, ""
        while time.monotonic() < deadline:
            text = (self.evaluate("document.body ? document.body.innerText : ''") or "").replace("\xa0", " ")
            if all(s in text for s in expect):
                return text
            time.sleep(1)
        missing = [s for s in expect if s not in text]
        raise AssertionError(f"{url}: after {timeout_s}s the page still lacks {missing}; it shows:\n{text[:3000]}")

    def save(self, stem: Path) -> tuple[Path, Path]:
        """The current DOM to `<stem>.html` and a screenshot to `<stem>.png`."""
        html, png = stem.with_suffix(".html"), stem.with_suffix(".png")
        html.write_text(self.evaluate("document.documentElement.outerHTML") or "")
        png.write_bytes(base64.b64decode(self.call("Page.captureScreenshot", format="png")["data"]))
        return html, png

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.call("Browser.close", timeout_s=10)
        with contextlib.suppress(OSError):
            self._out.close()
        with contextlib.suppress(OSError):
            os.close(self._in)
        stop_group(self.proc, term_wait_s=10)


@contextlib.contextmanager
def chromium_page(binary: str, root: Path, *, auth: tuple[str, str] | None = None):
    page = Page(binary, root, auth=auth)
    try:
        yield page
    finally:
        page.close()

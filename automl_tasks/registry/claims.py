"""Claims: "this process is doing X" written as MLflow tags, so one X runs at a time.

MLflow has no compare-and-set, so a claim works like this: a caller writes its own tag
(a fresh random key under the scope's prefix, valued with who holds it), reads every tag
of the scope, and goes ahead only if no other live claim is there; otherwise it withdraws
its tag and, if it may wait, tries again after a random pause. With linearizable tag writes
and reads (one tracking store) two callers cannot both go ahead: whichever wrote second
reads the first one's tag. Both may withdraw at once; the random pauses let one through later.

A claim is stale, and removed by whoever finds it, when its holder stopped refreshing it
for `ttl_s` (a long holder refreshes it every `heartbeat_s` from a background thread), or
at once when it was written on this host by a process that no longer exists (a killed run
must not block its own re-run for the ttl).

Two boards use this: promotion decisions (tags on the registered model, one `open`/`decide`
at a time per model) and month runs (tags on the `<model>/monthly` experiment, one run of
a (model, month, branch) at a time).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import random
import socket
import threading
import time
import uuid
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from typing import Callable, Iterator

from automl_tasks.errors import AutomlError

log = logging.getLogger(__name__)


class ClaimHeld(AutomlError):
    """Another live process holds the claim (the message names it: owner, host, pid, start)."""


@dataclass(frozen=True)
class Holder:
    what: str                 # e.g. "monthly loan_default 2018-10 (master)"
    owner: str                # OS user, or the Airflow DAG run
    host: str
    pid: int
    started: str              # ISO time the claim was taken
    heartbeat: str            # ISO time it was last refreshed

    def describe(self) -> str:
        return f"{self.what} by {self.owner} on {self.host} (pid {self.pid}, started {self.started})"

    @classmethod
    def parse(cls, value: str) -> Holder:
        try:
            return cls(**json.loads(value))
        except (ValueError, TypeError):          # an older plain-timestamp claim
            return cls("a decision step", "unknown", "unknown", 0, value, value)


@dataclass
class Board:
    """Where a scope's claims live: three calls on some MLflow object's tags."""
    prefix: str                                   # every claim tag of the scope starts with it
    read: Callable[[], dict[str, str]]            # all tags of the object
    write: Callable[[str, str], None]
    delete: Callable[[str], None]


def registered_model_board(client, name: str, prefix: str) -> Board:
    return Board(prefix, lambda: client.get_registered_model(name).tags,
                 lambda key, value: client.set_registered_model_tag(name, key, value),
                 lambda key: client.delete_registered_model_tag(name, key))


def experiment_board(client, experiment_id: str, prefix: str) -> Board:
    return Board(prefix, lambda: client.get_experiment(experiment_id).tags,
                 lambda key, value: client.set_experiment_tag(experiment_id, key, value),
                 lambda key: client.delete_experiment_tag(experiment_id, key))


@contextlib.contextmanager
def hold(board: Board, what: str, *, wait_s: float, ttl_s: float,
         heartbeat_s: float | None = None) -> Iterator[Holder]:
    """Run the block as the only live holder of `board`'s scope; raise ClaimHeld after `wait_s`."""
    from mlflow.exceptions import MlflowException

    key = board.prefix + uuid.uuid4().hex
    now = _now()
    me = Holder(what, _owner(), socket.gethostname(), os.getpid(), now, now)
    deadline = time.monotonic() + wait_s
    while True:
        board.write(key, _encode(me))
        others = _live_others(board, key, ttl_s)
        if not others:
            break
        board.delete(key)
        if time.monotonic() >= deadline:
            held = "; ".join(o.describe() for o in others)
            waited = f" after waiting {wait_s:.0f}s" if wait_s else ""
            raise ClaimHeld(f"{what} is already running{waited}: {held}. Wait for it to finish "
                            "(a re-run then reuses its results) or stop that process")
        time.sleep(random.uniform(0.05, 0.5))
    stop = threading.Event()
    beat = None
    if heartbeat_s:
        beat = threading.Thread(target=_refresh, args=(board, key, me, heartbeat_s, stop),
                                name="claim-heartbeat", daemon=True)
        beat.start()
    try:
        yield me
    finally:
        stop.set()
        if beat is not None:
            beat.join()
        try:
            board.delete(key)
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
                raise


def holders(board: Board, ttl_s: float) -> list[Holder]:
    """The live claims of the scope (for tests and status pages); removes none."""
    return [h for tag, value in board.read().items() if tag.startswith(board.prefix)
            if not _stale(h := Holder.parse(value), ttl_s)]


def _live_others(board: Board, key: str, ttl_s: float) -> list[Holder]:
    from mlflow.exceptions import MlflowException

    live = []
    for tag, value in board.read().items():
        if not tag.startswith(board.prefix) or tag == key:
            continue
        holder = Holder.parse(value)
        if not _stale(holder, ttl_s):
            live.append(holder)
            continue
        try:
            board.delete(tag)
        except MlflowException as exc:     # another caller removed it first
            if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
                raise
    return live


def _stale(holder: Holder, ttl_s: float) -> bool:
    age = (datetime.now(timezone.utc) - datetime.fromisoformat(holder.heartbeat)).total_seconds()
    if age > ttl_s:
        return True
    return holder.host == socket.gethostname() and holder.pid > 0 and not _alive(holder.pid)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:                # someone else's process: alive
        return True
    return True


def _refresh(board: Board, key: str, me: Holder, every_s: float, stop: threading.Event) -> None:
    # A failed refresh is not fatal: the next one retries, and only a holder silent for the
    # whole ttl is taken for dead. It is logged, not hidden.
    while not stop.wait(every_s):
        try:
            board.write(key, _encode(Holder(**{**asdict(me), "heartbeat": _now()})))
        except Exception as exc:  # noqa: BLE001 - any store error; retried at the next beat
            log.warning("could not refresh the claim on %s (retrying in %.0fs): %s", me.what, every_s, exc)


def _encode(holder: Holder) -> str:
    return json.dumps(asdict(holder), separators=(",", ":"))


def _owner() -> str:
    run = os.environ.get("AIRFLOW_CTX_DAG_RUN_ID")
    if run:
        return f"airflow {os.environ.get('AIRFLOW_CTX_DAG_ID', '?')}/{run}"
    try:
        import getpass

        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")

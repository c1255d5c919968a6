"""Start-up work run in a thread while the caller does other work (the Spark session, the MLflow
store), its value taken later by whoever needs it."""

from __future__ import annotations

import threading
from typing import Callable


class Background:
    """`call()` in a thread named `name`, started at once. `result()` waits for it and returns its
    value, or raises what it raised, in the thread that asks. `daemon`: the process may exit in
    the middle of it (else it exits after it)."""

    value: object = None
    error: BaseException | None = None

    def __init__(self, call: Callable[[], object], name: str, *, daemon: bool):
        def run() -> None:
            try:
                self.value = call()
            except BaseException as exc:       # re-raised by result(), in the thread that asks
                self.error = exc

        self._thread = threading.Thread(target=run, name=name, daemon=daemon)
        self._thread.start()

    def join(self) -> Background:
        self._thread.join()
        return self

    def result(self):
        if self.join().error is not None:
            raise self.error
        return self.value

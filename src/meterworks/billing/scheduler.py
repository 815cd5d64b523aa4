"""The in-process jobs of `meterworks serve`: the billing scheduler and the billing-view loop.

Both read the injected clock. The scheduler bills only while it holds leadership (a database lock,
so with several processes one bills at a time); the view loop runs in every process, since a view
rebuild is claimed per subscription in the database.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable

log = logging.getLogger("meterworks.billing")


class Loop:
    """Calls `tick` every `interval` seconds on a daemon thread until stopped."""

    def __init__(self, name: str, interval: float, tick: Callable[[], object]) -> None:
        self.name = name
        self.interval = interval
        self.tick = tick
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
            self._thread.start()

    def stop(self) -> None:
        thread, self._thread = self._thread, None
        if thread is not None:
            self._stop.set()
            thread.join(timeout=30)

    @property
    def running(self) -> bool:
        return self._thread is not None

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.tick()
            except Exception:
                # The next tick retries; a failing database must not kill the loop.
                log.exception("%s tick failed", self.name)
            self._stop.wait(self.interval)


def holder_id() -> str:
    """Who holds the billing lease: unique per scheduler, readable by an operator."""
    return f"{threading.get_native_id()}-{uuid.uuid4().hex[:12]}"

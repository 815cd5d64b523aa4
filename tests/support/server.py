"""The real HTTP server in a background thread: uvicorn serving the app on a free local port."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import httpx
import uvicorn

from meterworks.config import Settings
from meterworks.db.engine import Database
from meterworks.kit.clock import FrozenClock

if TYPE_CHECKING:
    from meterworks.api.context import AppContext

# Where the test clock starts; tests move it with `server.clock.set(...)` or `.advance(...)`.
TEST_EPOCH = datetime(2025, 1, 1, tzinfo=UTC)
STARTUP_SECONDS = 60.0
SHUTDOWN_SECONDS = 30.0


@dataclass(frozen=True)
class RunningServer:
    base_url: str
    clock: FrozenClock
    db: Database
    settings: Settings
    # The served application's own context (its writer, services); for tests that look inside.
    context: AppContext | None = None


@contextmanager
def serve(settings: Settings, db: Database, clock: FrozenClock) -> Iterator[RunningServer]:
    """Serve the app over real HTTP until the block ends, then shut it down cleanly."""
    # Imported here so that tests which never serve HTTP do not load the whole application.
    from meterworks.app import create_app

    app = create_app(settings, clock=clock)
    # Binding here, before the thread starts, leaves no window for another process to take the port.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    # log_config=None leaves logging to pytest, which shows the server's logs of a failed test.
    config = uvicorn.Config(app, log_config=None, log_level="warning", timeout_graceful_shutdown=10)
    server = uvicorn.Server(config)
    failures: list[BaseException] = []

    def run() -> None:
        try:
            server.run(sockets=[sock])
        except BaseException as exc:
            failures.append(exc)

    thread = threading.Thread(target=run, name="meterworks-test-server", daemon=True)
    thread.start()
    base_url = f"http://127.0.0.1:{port}"
    try:
        _wait_until_healthy(base_url, thread, failures)
        yield RunningServer(
            base_url=base_url, clock=clock, db=db, settings=settings, context=app.state.context
        )
    finally:
        server.should_exit = True
        thread.join(SHUTDOWN_SECONDS)
        sock.close()
    if thread.is_alive():
        raise RuntimeError(f"the test server did not stop within {SHUTDOWN_SECONDS} s")
    if failures:
        raise RuntimeError("the test server failed") from failures[0]


def _wait_until_healthy(
    base_url: str, thread: threading.Thread, failures: list[BaseException]
) -> None:
    deadline = time.monotonic() + STARTUP_SECONDS
    last = "no answer yet"
    with httpx.Client(base_url=base_url, timeout=5) as client:
        while time.monotonic() < deadline:
            if not thread.is_alive():
                cause = failures[0] if failures else None
                raise RuntimeError("the test server stopped while starting") from cause
            try:
                response = client.get("/healthz")
            except httpx.TransportError as exc:
                last = repr(exc)
            else:
                if response.status_code == 200:
                    return
                last = f"{response.status_code} {response.text}"
            time.sleep(0.05)
    raise RuntimeError(f"the test server was not healthy within {STARTUP_SECONDS} s: {last}")

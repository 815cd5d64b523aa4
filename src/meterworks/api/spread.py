"""Large calls spread over the server's processes (`serve --workers N`).

The processes share one listening socket, and which of them accepts a connection is a race: of
four clients connecting at once to two processes, all four or three went to one process in 14
tries of 20. A process runs its Python in one thread at a time, so the one holding most
clients decodes and validates their batches on one core while the other core idles: batched
ingestion in calls of 10,000 ran at 65,298 events/s where one process took 130,000 of 140,000
events, and at 120,149 where the two took 70,000 and 40,000 (bench/README.md).

Each process counts its large calls in progress (a body of `LARGE_BYTES` or more) and writes
the count in its slot of a small file the processes share. A client sends its calls one after
the other on its connection, so the count is, but for the instants between its calls, the
number of such clients the process serves. A process answering a large call while it serves
two such calls more than the process serving fewest closes that connection after the answer
(`Connection: close`): the client connects again, and the less busy process, back at its event
loop sooner, is the likelier to accept it. Small calls (single events) never close theirs: each
would pay for a new connection, for nothing.
"""

from __future__ import annotations

import fcntl
import os
import struct
import tempfile

from starlette.types import ASGIApp, Message, Receive, Scope, Send

LARGE_BYTES = 64 * 1024
# A slot: the large calls in progress.
_SLOT = struct.Struct("<q")


def shared_path(parent_pid: int) -> str:
    """The file the processes of the server whose supervising process is `parent_pid` share."""
    return os.path.join(tempfile.gettempdir(), f"meterworks-{parent_pid}.connections")


class Spread:
    """One process's share of the file: its slot, and its large calls in progress.

    The slot is claimed by a lock on its bytes, held for the life of the process; a process
    that finds every slot taken, or cannot open the file, closes nothing. Used from the event
    loop's thread only."""

    def __init__(self, path: str, slots: int, slot: int | None = None) -> None:
        self._slots = slots
        self._calls = 0
        self._slot: int | None = None
        self._fd: int | None = None
        try:
            self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError:
            return
        self._slot = slot if slot is not None else self._claim(self._fd)
        if self._slot is not None:
            self._publish()

    def _claim(self, fd: int) -> int | None:
        for slot in range(self._slots):
            try:
                fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, _SLOT.size, _SLOT.size * slot)
            except OSError:
                continue
            return slot
        return None

    def _publish(self) -> None:
        assert self._fd is not None
        assert self._slot is not None
        os.pwrite(self._fd, _SLOT.pack(self._calls), _SLOT.size * self._slot)

    def started(self) -> None:
        """A large call begins."""
        if self._slot is not None:
            self._calls += 1
            self._publish()

    def ended(self) -> None:
        """A large call ended without an answer passing through `closing`."""
        if self._slot is not None:
            self._calls -= 1
            self._publish()

    def closing(self) -> bool:
        """A large call is answered: whether to close its connection."""
        if self._slot is None:
            return False
        assert self._fd is not None
        data = os.pread(self._fd, _SLOT.size * self._slots, 0)
        fewest = self._calls
        for slot in range(self._slots):
            if slot != self._slot and len(data) >= _SLOT.size * (slot + 1):
                fewest = min(fewest, _SLOT.unpack_from(data, _SLOT.size * slot)[0])
        close = self._calls >= fewest + 2
        self._calls -= 1
        self._publish()
        return close


class SpreadLargeCalls:
    """ASGI middleware: a large call's answer closes its connection where `spread` says so."""

    def __init__(self, app: ASGIApp, spread: Spread) -> None:
        self.app = app
        self.spread = spread

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not _large(scope):
            await self.app(scope, receive, send)
            return
        spread = self.spread
        counted = True

        async def answered(message: Message) -> None:
            nonlocal counted
            if message["type"] == "http.response.start" and counted:
                counted = False
                if spread.closing():
                    headers = [*message.get("headers", ()), (b"connection", b"close")]
                    message = {**message, "headers": headers}
            await send(message)

        spread.started()
        try:
            await self.app(scope, receive, answered)
        finally:
            if counted:
                spread.ended()


def _large(scope: Scope) -> bool:
    for name, value in scope["headers"]:
        if name == b"content-length":
            return value.isdigit() and int(value) >= LARGE_BYTES
    return False

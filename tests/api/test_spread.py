"""Large calls spread over the server's processes (`api/spread.py`): the rule, on a real file."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

from starlette.types import Message, Receive, Scope, Send

from meterworks.api.spread import LARGE_BYTES, Spread, SpreadLargeCalls


def pair(tmp_path: Path) -> tuple[Spread, Spread]:
    path = str(tmp_path / "spread.connections")
    return Spread(path, 2, slot=0), Spread(path, 2, slot=1)


def serving(spread: Spread, calls: int) -> Spread:
    for _ in range(calls):
        spread.started()
    return spread


def test_a_process_serving_two_large_calls_more_than_another_closes_the_answered_ones_connection(
    tmp_path: Path,
) -> None:
    busy, quiet = pair(tmp_path)
    serving(quiet, 1)
    serving(busy, 2)
    assert busy.closing() is False  # 2 against 1
    serving(busy, 2)  # the client sent its next call, and another client came
    assert busy.closing() is True  # 3 against 1: this connection goes
    assert busy.closing() is False  # 2 against 1: the rest stay
    assert quiet.closing() is False


def test_a_process_serving_none_is_sent_one_of_two(tmp_path: Path) -> None:
    busy, quiet = pair(tmp_path)
    serving(busy, 2)
    assert busy.closing() is True  # 2 against none
    quiet.started()  # the client connected again, to the other process
    busy.started()
    assert busy.closing() is False  # 1 against 1


def test_a_call_ended_without_an_answer_is_no_longer_counted(tmp_path: Path) -> None:
    busy, quiet = pair(tmp_path)
    serving(quiet, 1)
    serving(busy, 3)
    busy.ended()  # failed before any answer was sent
    assert busy.closing() is False  # 2 against 1


def test_a_process_claims_a_slot_no_live_process_holds(tmp_path: Path) -> None:
    path = str(tmp_path / "spread.connections")
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys; from meterworks.api.spread import Spread; s = Spread(sys.argv[1], 2); "
         "[s.started() for _ in range(3)]; print(s._slot, flush=True); sys.stdin.read()", path],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "0"
        second = Spread(path, 2)
        assert second._slot == 1
        assert serving(second, 1).closing() is False  # 1 against the holder's 3
        # With a slot only for the holder, none is left: it counts nothing, closes nothing.
        third = Spread(path, 1)
        assert third._slot is None
        assert serving(third, 5).closing() is False
    finally:
        holder.communicate("", timeout=30)
    # The holder is gone: its slot is free again, and starts at none.
    again = Spread(path, 2)
    assert again._slot == 0
    serving(again, 2)
    assert again.closing() is True  # 2 against the second's none: the holder's 3 are gone


def test_the_middleware_closes_a_large_calls_connection_and_no_small_ones(tmp_path: Path) -> None:
    busy, _quiet = pair(tmp_path)
    release = asyncio.Event()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["path"] == "/slow":
            await release.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    middleware = SpreadLargeCalls(app, busy)

    async def call(path: str, length: int) -> list[Message]:
        sent: list[Message] = []

        async def receive() -> Message:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: Message) -> None:
            sent.append(message)

        scope = {"type": "http", "path": path,
                 "headers": [(b"content-length", str(length).encode())]}  # fmt: skip
        await middleware(scope, receive, send)
        return sent

    async def run() -> tuple[list[Message], list[Message], list[Message]]:
        slow = asyncio.create_task(call("/slow", LARGE_BYTES))
        await asyncio.sleep(0)
        small = await call("/fast", LARGE_BYTES - 1)  # small: not counted, never closed
        large = await call("/fast", LARGE_BYTES)  # 2 large calls against none: closed
        release.set()
        return small, large, await slow  # 1 against none: kept

    small, large, slow = asyncio.run(run())
    assert (b"connection", b"close") not in small[0]["headers"]
    assert (b"connection", b"close") in large[0]["headers"]
    assert (b"connection", b"close") not in slow[0]["headers"]
    assert busy._calls == 0


def test_a_file_that_cannot_be_opened_spreads_nothing(tmp_path: Path) -> None:
    spread = Spread(str(tmp_path / "missing" / "spread.connections"), 2)
    assert serving(spread, 5).closing() is False

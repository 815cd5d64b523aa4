"""The ledger writer on its own: a caller whose write is stuck is told so, never left with a 500."""

from __future__ import annotations

import fcntl
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy.engine import Connection

from meterworks.errors import InvalidInput, MeterworksError, Unavailable
from meterworks.kit.clock import FrozenClock
from meterworks.usage import service as usage_service
from meterworks.usage import writer as writer_module
from meterworks.usage.ingest import NewEvent
from meterworks.usage.ledger import BatchOutcome
from meterworks.usage.service import UsageService
from meterworks.usage.writer import LedgerWriter
from tests.api.builders import NOW, Api, event


def own_writer(api: Api) -> tuple[LedgerWriter, UsageService]:
    """A writer (not started) and a usage service over it, beside the server's own."""
    writer = LedgerWriter(api.server.db, FrozenClock(NOW))
    return writer, UsageService(api.server.db, writer, FrozenClock(NOW), api.server.settings)


@contextmanager
def held_writer(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[UsageService, Callable[[], None]]]:
    """A started writer of our own, held by a job (what a very slow commit looks like to the
    callers behind it), with a commit timeout of 0.2 s; yields its usage service and `let_go`,
    which ends the hold and gives callers the usual timeout again."""
    writer, usage = own_writer(api)
    holding, release = threading.Event(), threading.Event()
    writer.start()

    def hold(conn: object) -> tuple[None, set[str]]:
        holding.set()
        release.wait(30)
        return None, set()

    def let_go() -> None:
        release.set()
        monkeypatch.setattr(usage_service, "COMMIT_TIMEOUT_S", 30.0)

    try:
        writer.submit_job(api.org.id, hold)
        assert holding.wait(30), "the writer did not start the holding job"
        monkeypatch.setattr(usage_service, "COMMIT_TIMEOUT_S", 0.2)
        yield usage, let_go
    finally:
        release.set()
        writer.stop()


def test_a_write_that_does_not_commit_in_time_is_unavailable_and_safe_to_retry(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    setup = api.metered("sum")
    with held_writer(api, monkeypatch) as (usage, let_go):
        batch = [event("slow", subscription_id=setup.id, meter=setup.key("sum"), quantity=3)]
        with pytest.raises(Unavailable) as refused:
            usage.record(api.org.id, batch, source="native")
        assert refused.value.code == "commit_timeout"
        assert refused.value.status == 503
        let_go()
        # The first write landed after all: the retry is a duplicate, counted once.
        result = usage.record(api.org.id, batch, source="native")
        assert (result.accepted, result.duplicates) == (0, 1)
    assert api.quantities(setup.id) == {setup.key("sum"): "3"}


def test_a_stopped_writer_refuses_with_unavailable(api: Api) -> None:
    setup = api.metered("sum")
    _, usage = own_writer(api)
    batch = [event(subscription_id=setup.id, meter=setup.key("sum"))]
    with pytest.raises(Unavailable):
        usage.record(api.org.id, batch, source="native")
    assert api.ledger_rows() == 0


def test_a_caller_that_gives_up_before_its_turn_is_not_written_and_the_writer_lives_on(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    import asyncio

    setup = api.metered("sum")
    with held_writer(api, monkeypatch) as (usage, let_go):
        gone = [event("gone", subscription_id=setup.id, meter=setup.key("sum"), quantity=5)]
        # The async path cancels its future on timeout while the batch still waits in line.
        with pytest.raises(Unavailable):
            asyncio.run(usage.record_async(api.org.id, gone, source="native"))
        let_go()
        later = [event("later", subscription_id=setup.id, meter=setup.key("sum"), quantity=2)]
        result = usage.record(api.org.id, later, source="native")
        assert (result.accepted, result.duplicates) == (1, 0)
    assert api.ledger_rows() == 1
    assert api.quantities(setup.id) == {setup.key("sum"): "2"}


def test_small_batches_queued_together_are_validated_together_and_each_answered_alone(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    setup = api.metered("sum")
    sub, meter = setup.id, setup.key("sum")
    with held_writer(api, monkeypatch) as (usage, let_go):
        writer = usage.writer
        first = [event("a1", subscription_id=sub, meter=meter, quantity=2)]
        refused = [
            event("b1", subscription_id=sub, meter=meter, quantity=7),
            event("b2", subscription_id=sub, meter="no-such-meter", quantity=1),
        ]
        last = [
            event("c1", subscription_id=sub, meter=meter, quantity=3),
            event("c2", subscription_id=sub, meter=meter, quantity=4),
        ]
        futures = [
            writer.submit_unprepared(
                api.org.id, batch, source="native", validate=usage.validate_together
            )
            for batch in (first, refused, last)
        ]
        let_go()
        accepted = [futures[0].result(timeout=30), futures[2].result(timeout=30)]
        with pytest.raises(InvalidInput) as error:
            futures[1].result(timeout=30)
    assert [(o.accepted, o.duplicates) for o in accepted] == [(1, 0), (2, 0)]
    # The refused batch is told about its own events only, by its own indexes.
    assert [(d["index"], d["code"]) for d in error.value.details] == [(1, "meter_not_found")]
    assert error.value.message.startswith("1 of 2 events")
    # One transaction for the three batches (after the one that held the writer).
    assert writer.commits == 2
    assert api.ledger_rows() == 3
    assert api.quantities(sub) == {meter: "9"}


def test_callers_on_an_event_loop_are_answered_together_each_with_their_own_answer(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    import asyncio

    setup = api.metered("sum")
    sub, meter = setup.id, setup.key("sum")
    batches = [
        [event("a1", subscription_id=sub, meter=meter, quantity=2)],
        [event("b1", subscription_id=sub, meter="no-such-meter", quantity=1)],
        [event("c1", subscription_id=sub, meter=meter, quantity=3)],
        # A replay of the first call's event: a duplicate within the same group.
        [event("a1", subscription_id=sub, meter=meter, quantity=2)],
    ]
    handed_over: list[str] = []

    async def callers(usage: UsageService, let_go: Callable[[], None]) -> list[Any]:
        loop = asyncio.get_running_loop()
        own = loop.call_soon_threadsafe

        def counted(callback: Any, *args: Any, **kwargs: Any) -> Any:
            handed_over.append(threading.current_thread().name)
            return own(callback, *args, **kwargs)

        monkeypatch.setattr(loop, "call_soon_threadsafe", counted)
        calls = [
            asyncio.ensure_future(usage.record_async(api.org.id, batch, source="native"))
            for batch in batches
        ]
        await asyncio.sleep(0.05)  # every call is in the writer's queue
        let_go()
        return await asyncio.gather(*calls, return_exceptions=True)

    with held_writer(api, monkeypatch) as (usage, let_go):
        monkeypatch.setattr(usage_service, "COMMIT_TIMEOUT_S", 30.0)
        answers = asyncio.run(callers(usage, let_go))
        assert usage.writer.commits == 2  # the held job's, then the group's
    first, refused, last, replay = answers
    assert (first.accepted, first.duplicates) == (1, 0)
    assert isinstance(refused, InvalidInput)
    assert [(d["index"], d["code"]) for d in refused.details] == [(0, "meter_not_found")]
    assert (last.accepted, last.duplicates) == (1, 0)
    assert (replay.accepted, replay.duplicates) == (0, 1)
    # The writer woke the callers' loop once for the four of them.
    assert handed_over.count("ledger-writer") == 1
    assert api.quantities(sub) == {meter: "5"}


def test_valid_small_batches_validated_together_each_get_their_own_events(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    one, other = api.metered("sum"), api.metered("sum")
    with held_writer(api, monkeypatch) as (usage, let_go):
        batches = [
            [event("x1", subscription_id=one.id, meter=one.key("sum"), quantity=1)],
            [
                event(f"y{n}", subscription_id=other.id, meter=other.key("sum"), quantity=10)
                for n in range(3)
            ],
            # A replay of the first batch's event, and one new event.
            [
                event("x1", subscription_id=one.id, meter=one.key("sum"), quantity=1),
                event("x2", subscription_id=one.id, meter=one.key("sum"), quantity=100),
            ],
        ]
        futures = [
            usage.writer.submit_unprepared(
                api.org.id, batch, source="native", validate=usage.validate_together
            )
            for batch in batches
        ]
        let_go()
        outcomes = [f.result(timeout=30) for f in futures]
    assert [(o.accepted, o.duplicates) for o in outcomes] == [(1, 0), (3, 0), (1, 1)]
    assert usage.writer.commits == 2
    assert api.quantities(one.id) == {one.key("sum"): "101"}
    assert api.quantities(other.id) == {other.key("sum"): "30"}


def test_validating_a_large_batch_gives_way_while_the_writer_holds_the_write_turn(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On SQLite only: there the writer's turn locks every process's writers out. On
    PostgreSQL it is spent waiting for the server, and validation goes on meanwhile."""
    setup = api.metered("sum")
    batch = [
        event(f"big-{n}", subscription_id=setup.id, meter=setup.key("sum"), quantity=1)
        for n in range(500)
    ]
    with held_writer(api, monkeypatch) as (usage, let_go):
        prepared: list[int] = []
        thread = threading.Thread(
            target=lambda: prepared.append(len(usage.prepare(api.org.id, batch, source="native")))
        )
        thread.start()
        thread.join(0.5 if usage.db.dialect == "sqlite" else 30)
        if usage.db.dialect != "sqlite":
            assert prepared == [500]  # done while the writer is still held
            let_go()
            return
        # The writer is inside its write transaction (held): validation waits for it.
        assert thread.is_alive()
        assert not prepared
        let_go()
        thread.join(30)
        assert prepared == [500]
        # With the writer idle, validation runs straight through.
        assert len(usage.prepare(api.org.id, batch, source="native")) == 500


def test_a_slow_write_is_logged_with_its_wait_for_the_write_turn(
    api: Api, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(writer_module, "SLOW_WRITE_S", 0.2)
    setup = api.metered("sum")
    with (
        caplog.at_level(logging.WARNING, logger="meterworks.writer"),
        held_writer(api, monkeypatch) as (usage, let_go),
    ):
        time.sleep(0.4)
        let_go()
        # Answered after the held write: by then its warning is out.
        after = event("after", subscription_id=setup.id, meter=setup.key("sum"), quantity=1)
        assert usage.record(api.org.id, [after], source="native").accepted == 1
    slow = [r.getMessage() for r in caplog.records if "took" in r.getMessage()]
    assert len(slow) == 1
    assert slow[0].startswith("a ledger write of 1 calls (1 events) took ")
    assert "of it waiting for the database's write turn" in slow[0]


def test_a_slow_write_that_fails_is_logged_too(
    api: Api, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(writer_module, "SLOW_WRITE_S", 0.2)
    writer, _ = own_writer(api)
    writer.start()

    def slow_then_broken(conn: object) -> tuple[None, set[str]]:
        time.sleep(0.4)
        raise RuntimeError("broken")

    try:
        with caplog.at_level(logging.WARNING, logger="meterworks.writer"):
            future = writer.submit_job(api.org.id, slow_then_broken)
            with pytest.raises(Unavailable):
                future.result(30)
    finally:
        writer.stop()
    slow = [r.getMessage() for r in caplog.records if "took" in r.getMessage()]
    assert len(slow) == 1
    assert slow[0].startswith("a ledger write of 1 calls (1 events) took ")


@contextmanager
def write_turn_held(api: Api, writer: LedgerWriter) -> Iterator[None]:
    """Keep `writer` from starting its next write transaction. On SQLite through the write
    turn's lock file, as another process's writer holds it; on PostgreSQL, which has no turn,
    through the lock the writer takes at the same point (`LedgerWriter._writing`)."""
    database = api.server.db.engine.url.database
    if api.server.db.dialect != "sqlite" or not database:
        with writer._writing:
            yield
        return
    fd = os.open(f"{database}-writers.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def test_calls_that_arrive_while_a_write_waits_for_its_turn_share_its_commit(api: Api) -> None:
    writer, _ = own_writer(api)
    ran: list[str] = []

    def job(name: str) -> Callable[[object], tuple[str, set[str]]]:
        def run(conn: object) -> tuple[str, set[str]]:
            ran.append(name)
            return name, set()

        return run

    writer.start()
    try:
        with write_turn_held(api, writer):
            first = writer.submit_job(api.org.id, job("first"))
            time.sleep(0.3)  # its group (of one: nothing else is queued) waits for the turn
            later = [writer.submit_job(api.org.id, job(f"later-{n}")) for n in range(3)]
            time.sleep(0.1)
            assert ran == []
        answers = [future.result(30) for future in (first, *later)]
    finally:
        writer.stop()
    assert answers == ["first", "later-0", "later-1", "later-2"]
    assert ran == answers
    assert writer.commits == 1


def test_a_group_is_validated_before_it_waits_for_the_write_turn_and_joiners_within_it(
    api: Api,
) -> None:
    setup = api.metered("sum")
    sub, meter = setup.id, setup.key("sum")
    writer, usage = own_writer(api)
    validated: list[list[str]] = []

    def validate(
        conn: Connection, organization_id: str, source: str, batches: list[list[Any]]
    ) -> list[list[NewEvent] | MeterworksError]:
        validated.append([raw["idempotency_key"] for batch in batches for raw in batch])
        return usage.validate_together(conn, organization_id, source, batches)

    def submit(*events: dict[str, Any]) -> Future[BatchOutcome]:
        return writer.submit_unprepared(
            api.org.id, list(events), source="native", validate=validate
        )

    writer.start()
    try:
        with write_turn_held(api, writer):
            first = submit(event("first", subscription_id=sub, meter=meter, quantity=2))
            deadline = time.monotonic() + 30
            while not validated and time.monotonic() < deadline:
                time.sleep(0.01)
            # Validated while another writer holds the turn; nothing written yet.
            assert validated == [["first"]]
            assert api.ledger_rows() == 0
            joined = submit(event("joined", subscription_id=sub, meter=meter, quantity=3))
            refused = submit(event("refused", subscription_id=sub, meter="no-such-meter"))
            time.sleep(0.1)
            assert validated == [["first"]]
        assert (first.result(30).accepted, joined.result(30).accepted) == (1, 1)
        with pytest.raises(InvalidInput) as error:
            refused.result(30)
    finally:
        writer.stop()
    # The calls that joined while the group waited were validated in its turn, together; the
    # refused one wrote nothing, and the others share one commit.
    assert validated[1:] == [["joined", "refused"]]
    assert [d["code"] for d in error.value.details] == ["meter_not_found"]
    assert writer.commits == 1
    assert api.ledger_rows() == 2
    assert api.quantities(sub) == {meter: "5"}

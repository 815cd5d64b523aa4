"""The usage service every transport calls: record events, correct them, read usage."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from sqlalchemy.engine import Connection

from meterworks.config import Settings
from meterworks.db.engine import Database
from meterworks.errors import InvalidInput, MeterworksError, Unavailable
from meterworks.kit.clock import Clock
from meterworks.kit.instants import to_micros
from meterworks.usage.corrections import _UNSET, LedgerEvent, correct
from meterworks.usage.ingest import NewEvent, prepare_batch
from meterworks.usage.ledger import BatchOutcome
from meterworks.usage.writer import LedgerWriter

UNSET: Any = _UNSET
# How long a caller waits for its batch to commit before giving up (the write may still land;
# a retry with the same idempotency keys is then answered as duplicates).
COMMIT_TIMEOUT_S = 60.0
# Batches of up to this many events are validated by the ledger writer, a group of concurrent
# calls together in one read transaction just before it waits for the write turn: one
# transaction per group instead of one more per call, and no hop through a worker thread.
# Larger batches are validated in request threads, in parallel, so that the writer, the one
# serial part, only stores them.
VALIDATED_BY_WRITER = 100


# A guard sees a validated batch before it is written and names the events it refuses, as
# `{index, field, code, message}` items (e.g. billing refusing usage for a finalized period).
IngestGuard = Callable[[Connection, str, list[NewEvent]], list[dict[str, Any]]]


@dataclass(frozen=True, slots=True)
class IngestResult:
    accepted: int
    duplicates: int


class UsageService:
    def __init__(
        self, db: Database, writer: LedgerWriter, clock: Clock, settings: Settings
    ) -> None:
        self.db = db
        self.writer = writer
        self.clock = clock
        self.settings = settings
        self.guards: list[IngestGuard] = []

    def prepare(self, organization_id: str, raw_events: Any, *, source: str) -> list[NewEvent]:
        """Validate and resolve a batch (reads only); raises InvalidInput for the whole batch."""
        with self.db.read() as conn:
            return self.validate(
                conn, organization_id, raw_events, source=source, make_way=self.writer.make_way
            )

    def validate(
        self,
        conn: Connection,
        organization_id: str,
        raw_events: Any,
        *,
        source: str,
        max_events: int | None = None,
        make_way: Callable[[], None] | None = None,
    ) -> list[NewEvent]:
        """`prepare` on a connection of the caller's (the writer's, for small batches).

        A request thread passes the writer's `make_way`; the writer itself passes nothing."""
        events = prepare_batch(
            conn,
            organization_id,
            raw_events,
            source=source,
            now=self.clock.now(),
            max_events=max_events or self.settings.max_events_per_batch,
            future_tolerance_seconds=self.settings.future_tolerance_seconds,
            make_way=make_way,
        )
        refused = [item for guard in self.guards for item in guard(conn, organization_id, events)]
        if refused:
            refused.sort(key=lambda item: item["index"])
            raise InvalidInput(
                f"{len({i['index'] for i in refused})} of {len(events)} events are not valid; "
                "nothing was written",
                code="invalid_batch",
                details=refused,
            )
        return events

    def record(
        self, organization_id: str, raw_events: Any, *, source: str, rebuild_view: bool = True
    ) -> IngestResult:
        future = self._submit_small(organization_id, raw_events, source, rebuild_view)
        if future is None:
            events = self.prepare(organization_id, raw_events, source=source)
            future = self.writer.submit_events(organization_id, events, rebuild_view=rebuild_view)
        try:
            return _result(future.result(timeout=COMMIT_TIMEOUT_S))
        except TimeoutError as exc:
            raise _not_committed() from exc

    async def record_async(
        self, organization_id: str, raw_events: Any, *, source: str, rebuild_view: bool = True
    ) -> IngestResult:
        # The writer wakes this loop once for all its callers in a group (writer._answer).
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[BatchOutcome] = loop.create_future()
        future = self._submit_small(organization_id, raw_events, source, rebuild_view, waiter)
        if future is None:  # a larger batch: validated in a worker thread
            return await self.record_read_async(
                organization_id, lambda: raw_events, source=source, rebuild_view=rebuild_view
            )
        return await _committed(loop, waiter, future)

    async def record_read_async(
        self,
        organization_id: str,
        read: Callable[[], Any],
        *,
        source: str,
        rebuild_view: bool = True,
    ) -> IngestResult:
        """Record the events `read` returns, read and validated in one hop to a worker thread
        (a large body, decoded there: handed back to the event loop in between, its events
        would wait for the interpreter lock once more on the way out and in again)."""
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[BatchOutcome] = loop.create_future()

        def read_and_prepare() -> list[NewEvent]:
            return self.prepare(organization_id, read(), source=source)

        events = await asyncio.to_thread(read_and_prepare)
        future = self.writer.submit_events(
            organization_id, events, rebuild_view=rebuild_view, waiter=waiter
        )
        return await _committed(loop, waiter, future)

    def _submit_small(
        self,
        organization_id: str,
        raw_events: Any,
        source: str,
        rebuild_view: bool,
        waiter: asyncio.Future[BatchOutcome] | None = None,
    ) -> Future[BatchOutcome] | None:
        """A small batch, handed to the writer to validate and append; None for the others."""
        if not isinstance(raw_events, list) or not 0 < len(raw_events) <= VALIDATED_BY_WRITER:
            return None
        return self.writer.submit_unprepared(
            organization_id,
            raw_events,
            source=source,
            validate=self.validate_together,
            rebuild_view=rebuild_view,
            waiter=waiter,
        )

    def validate_together(
        self, conn: Connection, organization_id: str, source: str, batches: list[list[Any]]
    ) -> list[list[NewEvent] | MeterworksError]:
        """Validate several batches as one, then split the events back: one lookup of each
        subscription, meter and finalized period for all of them. Where any event is refused,
        each batch is validated on its own, to be answered with its own errors."""
        if len(batches) > 1:
            combined = [raw for batch in batches for raw in batch]
            try:
                events = self.validate(
                    conn, organization_id, combined, source=source, max_events=len(combined)
                )
            except InvalidInput:
                pass
            else:
                split: list[list[NewEvent] | MeterworksError] = []
                start = 0
                for batch in batches:
                    split.append(events[start : start + len(batch)])
                    start += len(batch)
                return split
        outcomes: list[list[NewEvent] | MeterworksError] = []
        for batch in batches:
            try:
                outcomes.append(self.validate(conn, organization_id, batch, source=source))
            except MeterworksError as exc:
                outcomes.append(exc)
        return outcomes

    def amend(
        self,
        organization_id: str,
        key: str,
        *,
        quantity: Any = UNSET,
        properties: Any = UNSET,
        source: str,
    ) -> LedgerEvent:
        return self._correct(
            organization_id, key, void=False, quantity=quantity, properties=properties,
            source=source,
        )  # fmt: skip

    def void(self, organization_id: str, key: str, *, source: str) -> LedgerEvent:
        return self._correct(organization_id, key, void=True, source=source)

    def _correct(self, organization_id: str, key: str, **kwargs: Any) -> LedgerEvent:
        received_at_us = to_micros(self.clock.now())

        def run(conn: Any) -> tuple[LedgerEvent, dict[str, int]]:
            event = correct(conn, organization_id, key, received_at_us=received_at_us, **kwargs)
            return event, {event.subscription_id: event.ts_us}

        future = self.writer.submit_job(organization_id, run)
        try:
            result: LedgerEvent = future.result(timeout=COMMIT_TIMEOUT_S)
        except TimeoutError as exc:
            raise _not_committed() from exc
        return result


async def _committed(
    loop: asyncio.AbstractEventLoop,
    waiter: asyncio.Future[BatchOutcome],
    future: Future[BatchOutcome],
) -> IngestResult:
    """The answer the writer gives `waiter` (for the write `future` is), once committed."""
    # One timer, cancelled once answered: `asyncio.wait_for` wraps the wait in futures and
    # callbacks of its own, which cost a single-event call more than the timer does.
    expiry = loop.call_later(COMMIT_TIMEOUT_S, _give_up, waiter)
    try:
        outcome = await waiter
    except TimeoutError as exc:
        future.cancel()  # not written, if the writer has not begun it
        raise _not_committed() from exc
    except asyncio.CancelledError:
        future.cancel()
        raise
    finally:
        expiry.cancel()
    return _result(outcome)


def _give_up(waiter: asyncio.Future[BatchOutcome]) -> None:
    """On the caller's loop, once its wait for the writer has run out: it raises TimeoutError
    (an answer that arrives later finds the waiter done, and is dropped)."""
    if not waiter.done():
        waiter.set_exception(TimeoutError())


def _result(outcome: BatchOutcome) -> IngestResult:
    return IngestResult(accepted=outcome.accepted, duplicates=outcome.duplicates)


def _not_committed() -> Unavailable:
    # The write may still land: a retry with the same idempotency keys is answered as duplicates.
    return Unavailable(
        f"the write was not committed within {COMMIT_TIMEOUT_S:.0f} s; retry it",
        code="commit_timeout",
    )

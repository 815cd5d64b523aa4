"""The one ingestion path: a writer thread that group-commits.

Every write of usage (native API, every facade, the CLI) is submitted here. The writer gathers
what concurrent requests have queued, writes it in ONE transaction (events, sequence and running
totals together) and answers each request only after that transaction has committed: durable
before acknowledged. A batch refused at write time (an idempotency conflict) writes nothing while
the rest of its group commits.

Small batches (single events, above all) reach the writer unvalidated: it validates the ones a
group gathers together, in one read transaction of its own just before it waits for the write
turn, so that the turn holds only the writing (on SQLite, another process's writer writes
meanwhile). Calls that join the group while it waits are validated inside the turn. Large
batches are validated in request threads beforehand, in parallel, and only stored here; on
SQLite a large group's rows are staged on the writer's connection before it waits for the turn,
and copied into the ledger inside it (`ledger.stage`); the large batches that reach the queue
while it waits are staged too, and join it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.engine import Connection

from meterworks.db.engine import Database
from meterworks.errors import MeterworksError, Unavailable
from meterworks.kit.clock import Clock
from meterworks.kit.instants import to_micros
from meterworks.usage.ingest import NewEvent
from meterworks.usage.ledger import (
    BatchOutcome,
    append,
    lock_sequence,
    sent_before,
    stage,
    unstage,
)

log = logging.getLogger("meterworks.writer")

# Called inside the commit's transaction with (connection, organization id, ids of the
# subscriptions whose usage changed and whose billing view is to be rebuilt).
InTransactionHook = Callable[[Connection, str, set[str]], None]

# Called inside the commit's transaction for every write, rebuild asked for or not, with
# (connection, organization id, {subscription id: earliest event timestamp written, µs}): what
# billing needs to notice usage that arrives for a period it has already finalized.
ChangeHook = Callable[[Connection, str, dict[str, int]], None]


# Validates raw batches of one organization, sent through one source, inside the writer's
# transaction (connection, organization id, source, batches): for each batch, its events or the
# MeterworksError that refuses it whole (the rest of the group commits).
Validate = Callable[[Connection, str, str, list[list[Any]]], list[list[NewEvent] | MeterworksError]]


@dataclass(slots=True)
class _Unprepared:
    raw: list[Any]
    source: str
    validate: Validate


@dataclass(slots=True)
class _Append:
    organization_id: str
    events: list[NewEvent]
    rebuild_view: bool
    size: int
    unprepared: _Unprepared | None = None
    # Set where validation refused the batch: it is answered so and writes nothing.
    refused: MeterworksError | None = None
    future: Future[BatchOutcome] = field(default_factory=Future)
    # A caller awaiting on an event loop: woken with the answer, with the rest of its group
    # (`_answer`).
    waiter: asyncio.Future[BatchOutcome] | None = None
    # Where its rows were staged on the writer's connection (`ledger.stage`); None if not.
    staged_at: int | None = None
    # Each subscription of its events, with the earliest timestamp among them (µs): worked out
    # by the writer before the write turn (`_write`), or in it for a call that joined there.
    earliest: dict[str, int] | None = None


# A job returns its answer and the subscriptions whose usage it changed: their ids, or a map
# of each id to the earliest event timestamp it changed (µs; ids alone count as "since ever").
Job = Callable[[Connection], tuple[Any, set[str] | dict[str, int]]]


@dataclass(slots=True)
class _Job:
    organization_id: str
    run: Job
    future: Future[Any] = field(default_factory=Future)
    waiter: asyncio.Future[Any] | None = None


_STOP = object()
# A write taking longer than this is logged, with how long it waited for its turn.
SLOW_WRITE_S = 10.0
# Calls that arrive while a group waits for its turn join it until it holds this many events.
JOIN_EVENTS = 1_000
# On SQLite, a group of at least this many validated events has its rows staged before it waits
# for the write turn (`ledger.stage`). A smaller one's rows cost less to write in the turn than
# the staging's own statements.
STAGED_FROM = 500
# A batch of at least this many events whose first key is in the ledger already (a client
# sending it again) has all its keys looked up before the write (`ledger.sent_before`).
SETTLED_FROM = 100
# Calls that reach the queue while a group waits for the others' writes join it, up to this many
# events in all: on SQLite, validated batches that arrive while a staged group waits for the
# write turn (`_stage_arrivals`); on PostgreSQL, the calls of the group's organizations that
# arrive while it waits for their sequence rows (`_join_locked`).
WAITING_JOIN_EVENTS = 20_000


class LedgerWriter:
    def __init__(
        self,
        db: Database,
        clock: Clock,
        *,
        gather_ms: float = 1.5,
        max_events: int = 50_000,
    ) -> None:
        self.db = db
        self.clock = clock
        self._gather_s = gather_ms / 1000
        self._max_events = max_events
        self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()
        # Taken from the queue while a group waited for its turn, but not for it: they come
        # first, before what is still queued (`_next`).
        self._held: deque[object] = deque()
        self._thread: threading.Thread | None = None
        self._hooks: list[InTransactionHook] = []
        self._change_hooks: list[ChangeHook] = []
        self._lock = threading.Lock()
        # Held while this writer holds the database's write turn (SQLite: every process's
        # writers wait for it). Request threads validating large batches give way to it between
        # steps (`make_way`): the process's threads share one interpreter lock, and a writer
        # that has to wait for it holds up the writers of every process.
        self._writing = threading.Lock()
        # Only on SQLite: there the writer holds the one write lock of every process while it
        # runs Python. A PostgreSQL writer spends its turn mostly waiting for the server, with
        # the interpreter lock free; request threads waiting for it then only sit idle.
        self._gives_way = db.dialect == "sqlite"
        self._concurrent = False
        # When the write being made got its turn (monotonic seconds); None before it does.
        self._entered: float | None = None
        # Write transactions committed.
        self.commits = 0

    def add_hook(self, hook: InTransactionHook) -> None:
        self._hooks.append(hook)

    def add_change_hook(self, hook: ChangeHook) -> None:
        self._change_hooks.append(hook)

    def start(self) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="ledger-writer", daemon=True)
                self._thread.start()

    def stop(self) -> None:
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is not None:
            self._queue.put(_STOP)
            thread.join(timeout=30)

    @property
    def running(self) -> bool:
        return self._thread is not None

    def make_way(self) -> None:
        """Wait while this process's writer holds the write turn (called between steps of long
        work in request threads; never from the writer itself)."""
        if self._gives_way and self._writing.locked():
            with self._writing:
                pass

    def submit_events(
        self,
        organization_id: str,
        events: list[NewEvent],
        *,
        rebuild_view: bool = True,
        waiter: asyncio.Future[BatchOutcome] | None = None,
    ) -> Future[BatchOutcome]:
        """Append a validated batch. The answer settles the returned future, and `waiter`
        too, where given (a caller on an event loop); cancelling the returned future before
        the write begins withdraws the batch."""
        item = _Append(organization_id, events, rebuild_view, len(events), waiter=waiter)
        self._enqueue(item)
        return item.future

    def submit_unprepared(
        self,
        organization_id: str,
        raw_events: list[Any],
        *,
        source: str,
        validate: Validate,
        rebuild_view: bool = True,
        waiter: asyncio.Future[BatchOutcome] | None = None,
    ) -> Future[BatchOutcome]:
        """Validate a batch of raw events and append it, in one transaction; answered as
        `submit_events`.

        The batches of one organization and source that a group gathers are validated together
        (`validate`), so their lookups are made once, on the writer's connection.
        """
        unprepared = _Unprepared(raw_events, source, validate)
        item = _Append(
            organization_id, [], rebuild_view, len(raw_events), unprepared, waiter=waiter
        )
        self._enqueue(item)
        return item.future

    def submit_job(
        self, organization_id: str, run: Job, *, waiter: asyncio.Future[Any] | None = None
    ) -> Future[Any]:
        """Run `run(connection)` in the writer's transaction (used by corrections); answered as
        `submit_events`."""
        item = _Job(organization_id, run, waiter=waiter)
        self._enqueue(item)
        return item.future

    def _enqueue(self, item: _Append | _Job) -> None:
        if self._thread is None:
            raise Unavailable("the ledger writer is not running")
        self._queue.put(item)

    # -- the writer thread ------------------------------------------------------------------

    def _run(self) -> None:
        stopping = False
        while not stopping:
            first = self._next(None)
            if first is _STOP:
                break
            group: list[_Append | _Job] = [first]  # type: ignore[list-item]
            size = _size(group[0])
            deadline = time.monotonic() + (self._gather_s if self._concurrent else 0)
            while size < self._max_events:
                try:
                    item = self._next(deadline - time.monotonic())
                except queue.Empty:
                    break
                if item is _STOP:
                    stopping = True
                    break
                group.append(item)  # type: ignore[arg-type]
                size += _size(item)  # type: ignore[arg-type]
            # Only wait to gather when requests are arriving together.
            self._concurrent = len(group) > 1
            # A caller that gave up before its turn (a timeout, a dropped connection) is not
            # written; from here on its future can no longer be cancelled, so every answer lands.
            group = [item for item in group if item.future.set_running_or_notify_cancel()]
            if group:
                self._commit(group)

    def _next(self, timeout: float | None) -> object:
        """The next item: one held back first, else the queue's, waiting for it up to `timeout`
        seconds (None: for good); raises `queue.Empty` if there is none by then."""
        if self._held:
            return self._held.popleft()
        if timeout is None:
            return self._queue.get()
        return self._queue.get(timeout=timeout) if timeout > 0 else self._queue.get_nowait()

    def _commit(self, group: list[_Append | _Job]) -> None:
        started = time.monotonic()
        self._entered = None
        try:
            if any(isinstance(item, _Append) and item.unprepared for item in group):
                with self.db.read() as conn:
                    _validate(conn, group)
            results = self._write(group)
        except Unavailable as exc:
            self._note_if_slow(group, started)
            _answer(group, [(False, exc)] * len(group))
            return
        except Exception as exc:
            self._note_if_slow(group, started)
            if len(group) > 1:
                # Isolate the item that failed: the others must not suffer for it.
                for item in group:
                    self._commit([item])
                return
            log.exception("ledger write failed")
            failure = exc if isinstance(exc, MeterworksError) else Unavailable("the write failed")
            _answer(group, [(False, failure)])
            return
        self._note_if_slow(group, started)
        _answer(group, results)

    def _next_joiner(self, joins: Callable[[_Append | _Job], bool]) -> _Append | _Job | None:
        """The next queued call, where it may join the group being written (`joins`). None
        where the queue is empty, or where the call may not join (or is the stop): that one is
        kept, first, for the next group (`_held`, not empty from then on), and the joining is
        over."""
        try:
            item = self._next(0)
        except queue.Empty:
            return None
        if isinstance(item, _Append | _Job) and joins(item):
            return item
        self._held.appendleft(item)  # after the stop, the loop ends with this commit
        return None

    def _join_waiting(self, group: list[_Append | _Job]) -> None:
        """SQLite: add to the group, in place, what reached the queue while it waited for the
        write turn: they share its commit instead of waiting for a turn of their own. With
        several processes, a writer often waits out another's commit; the calls that arrive
        meanwhile would make the next, small group. Only small groups grow so here
        (`JOIN_EVENTS`): a longer write would hold up the validation of the batches behind it
        (`make_way`), and a large group has taken in the validated batches already, staged
        while it waited (`_stage_arrivals`)."""
        size = sum(_size(item) for item in group)
        while size < min(self._max_events, JOIN_EVENTS):
            item = self._next_joiner(lambda _: True)
            if item is None:
                return
            if item.future.set_running_or_notify_cancel():
                group.append(item)
                size += _size(item)

    def _join_locked(self, conn: Connection, group: list[_Append | _Job]) -> dict[str, int]:
        """PostgreSQL: take the sequence rows of the group's organizations (in sorted order,
        as `append` does), then add to the group, in place, the calls of those organizations
        that reached the queue meanwhile, up to `WAITING_JOIN_EVENTS`.

        Two processes' writers of one organization take turns at its sequence row; while one
        commits, the other's calls queue up behind its waiting group, then would wait out a
        commit of its own each: a transaction's round trips and its commit cost the same
        whatever its size. A batch of the first call of another organization ends the
        joining (its row is not held, and taking it now could deadlock): it is kept for the
        next group. A large batch sent before is answered without being written
        (`sent_before`). Returns each held organization's next sequence number, for `append`."""
        held = {
            organization_id: lock_sequence(conn, organization_id)
            for organization_id in sorted({item.organization_id for item in group})
        }
        size = sum(_size(item) for item in group)
        while size < min(self._max_events, WAITING_JOIN_EVENTS):
            item = self._next_joiner(lambda item: item.organization_id in held)
            if item is None:
                break
            if not item.future.set_running_or_notify_cancel():
                continue
            # In the group first: if the look-up below fails, the group's failure answers it.
            group.append(item)
            if (
                isinstance(item, _Append)
                and item.unprepared is None
                and len(item.events) >= SETTLED_FROM
            ):
                [before] = sent_before(conn, item.organization_id, [item.events])
                if isinstance(before, BatchOutcome):
                    group.pop()
                    _answer([item], [_result(before)])
                    continue
            size += _size(item)
        return held

    def _note_if_slow(self, group: list[_Append | _Job], started: float) -> None:
        """Log a write that took over `SLOW_WRITE_S`, however it ended, with how long it waited
        for the write turn (all of it, if it never got in): callers give up at the commit
        timeout, and the log is what says where the time went."""
        now = time.monotonic()
        if now - started <= SLOW_WRITE_S:
            return
        waited = (self._entered if self._entered is not None else now) - started
        log.warning(
            "a ledger write of %d calls (%d events) took %.1f s, %.1f s of it waiting for "
            "the database's write turn",
            len(group),
            sum(_size(item) for item in group),
            now - started,
            waited,
        )

    def _write(self, group: list[_Append | _Job]) -> list[tuple[bool, Any]]:
        """Write the group in one transaction. A large batch sent before, whose answer the
        ledger settles already, is answered without it (`ledger.sent_before`): a client's retry
        of a whole batch takes no turn to write. On SQLite, a large group's rows are staged on
        the transaction's connection first, while another writer may hold the turn."""
        appends: list[_Append] = []
        for item in group:
            if isinstance(item, _Append):
                item.staged_at = None  # from an attempt before, if any
                if item.refused is None and item.events:
                    appends.append(item)
                    if item.earliest is None:
                        item.earliest = _earliest(item.events)
        # Staging is SQLite's only (where the writer also gives way): a PostgreSQL writer COPYs.
        staging = self._gives_way and _events(appends) >= STAGED_FROM
        if not staging and all(len(item.events) < SETTLED_FROM for item in appends):
            return self._write_on(group, None)
        answered, appends = self._sent_before(appends)
        settled = [item for item in group if id(item) in answered]
        # The group (the same list: the calls that join its write are added to it) is written
        # without them, and they are put back first, however the write ends.
        group[:] = [item for item in group if id(item) not in answered]
        try:
            results: list[tuple[bool, Any]] = []
            if group and self._gives_way and _events(appends) >= STAGED_FROM:
                results = self._write_staged(group, appends)
            elif group:
                results = self._write_on(group, None)
        finally:
            group[:0] = settled
        return [_result(answered[id(item)]) for item in settled] + results

    def _write_staged(
        self, group: list[_Append | _Job], appends: list[_Append]
    ) -> list[tuple[bool, Any]]:
        """`_write`, the rows of `appends` staged first on the transaction's connection."""
        with self.db.connect() as conn:
            starts = stage(conn, [item.events for item in appends])
            for item, start in zip(appends, starts, strict=True):
                item.staged_at = start
            staged = [_events(appends)]

            def waiting() -> bool:
                return self._stage_arrivals(conn, group, staged)

            try:
                return self._write_on(group, conn, waiting)
            finally:
                try:
                    unstage(conn)
                except sqlite3.Error:
                    # The write stands either way; the next staging on this connection, or
                    # closing it, drops the rows.
                    log.warning("dropping the rows staged for a write failed", exc_info=True)

    def _stage_arrivals(
        self, conn: Connection, group: list[_Append | _Job], staged: list[int]
    ) -> bool:
        """While a staged group waits for the write turn: stage the next validated batch that
        reached the queue meanwhile on its connection, after the `staged[0]` rows there, and
        add it to the group. Without it, with several processes, the batch would wait for the
        group's commit, then for a turn of its own: each turn has costs of its own (the commit,
        the running totals' reads and writes), a millisecond or more whatever its size.

        A batch sent before (`sent_before`) is answered here if the ledger settles its answer;
        the first call that cannot join (not validated, a job, partly written before) is held
        back for the next group, and ends the joining. Returns whether it took a call."""
        if self._held or staged[0] >= WAITING_JOIN_EVENTS:  # the joining is over
            return False

        def joins(item: _Append | _Job) -> bool:
            return (
                isinstance(item, _Append)
                and item.unprepared is None
                and item.refused is None
                and bool(item.events)
                and staged[0] + len(item.events) <= WAITING_JOIN_EVENTS
            )

        item = self._next_joiner(joins)
        if item is None:
            return False
        assert isinstance(item, _Append)
        if item.future.cancelled():
            return True  # withdrawn by its caller
        try:
            answered, fresh = self._sent_before([item])
        except BaseException:
            self._held.appendleft(item)  # not started: the next group takes it
            raise
        if not answered and not fresh:
            # Partly written before: it goes the plain way, in a group of its own.
            self._held.appendleft(item)
            return False
        # From here on its answer is due: it can no longer be withdrawn.
        if not item.future.set_running_or_notify_cancel():
            return True
        if answered:
            _answer([item], [_result(answered[id(item)])])
            return True
        item.earliest = _earliest(item.events)
        # In the group first: if the staging fails, the group's failure answers it too.
        group.append(item)
        [item.staged_at] = stage(conn, [item.events], after=staged[0])
        staged[0] += len(item.events)
        return True

    def _sent_before(self, appends: list[_Append]) -> tuple[dict[int, BatchOutcome], list[_Append]]:
        """The answers of the batches among `appends` that the ledger settles already (by the
        id of their call), and the batches not sent before (`ledger.sent_before`)."""
        by_organization: dict[str, list[_Append]] = {}
        for item in appends:
            by_organization.setdefault(item.organization_id, []).append(item)
        answered: dict[int, BatchOutcome] = {}
        fresh: list[_Append] = []
        with self.db.read() as conn:
            for organization_id, items in by_organization.items():
                again = sent_before(conn, organization_id, [item.events for item in items])
                for item, before in zip(items, again, strict=True):
                    if isinstance(before, BatchOutcome):
                        answered[id(item)] = before
                    elif not before:
                        fresh.append(item)
        return answered, fresh

    def _write_on(
        self,
        group: list[_Append | _Job],
        staged_on: Connection | None,
        waiting: Callable[[], bool] | None = None,
    ) -> list[tuple[bool, Any]]:
        with self.db.transaction(holding=self._writing, on=staged_on, waiting=waiting) as conn:
            self._entered = time.monotonic()
            # PostgreSQL: the organizations' next sequence numbers, their rows held already.
            locked: dict[str, int] = {}
            if self._gives_way:
                self._join_waiting(group)
            else:
                locked = self._join_locked(conn, group)
            results: list[tuple[bool, Any]] = [(False, None)] * len(group)
            received_at_us = to_micros(self.clock.now())
            appends: dict[str, list[int]] = {}
            jobs: dict[str, list[int]] = {}
            for position, item in enumerate(group):
                bucket = appends if isinstance(item, _Append) else jobs
                bucket.setdefault(item.organization_id, []).append(position)
            # Batches that joined while the group waited are validated here, before any
            # sequence lock is taken; the refused ones write nothing.
            _validate(conn, group)
            for position, item in enumerate(group):
                if isinstance(item, _Append) and item.refused is not None:
                    results[position] = (False, item.refused)
                    appends[item.organization_id].remove(position)
            touched: dict[str, set[str]] = {}
            changed: dict[str, dict[str, int]] = {}
            # Organizations in sorted order, each one's appends then its jobs: every process
            # takes the sequence-row locks in the same order, so two writers cannot deadlock.
            for organization_id in sorted(appends.keys() | jobs.keys()):
                positions = appends.get(organization_id, [])
                batches = [group[p].events for p in positions]  # type: ignore[union-attr]
                staged = (
                    [group[p].staged_at for p in positions]  # type: ignore[union-attr]
                    if staged_on is not None
                    else None
                )
                outcomes = (
                    append(
                        conn,
                        organization_id,
                        batches,
                        received_at_us,
                        staged,
                        next_seq=locked.get(organization_id),
                    )
                    if batches
                    else []
                )
                for position, outcome in zip(positions, outcomes, strict=True):
                    item = group[position]
                    assert isinstance(item, _Append)
                    results[position] = _result(outcome)
                    if outcome.error is not None:
                        continue
                    if not outcome.accepted:
                        continue
                    earliest = item.earliest
                    if earliest is None:
                        earliest = item.earliest = _earliest(item.events)
                    _note_changes(changed.setdefault(organization_id, {}), earliest.items())
                    if item.rebuild_view:
                        touched.setdefault(organization_id, set()).update(earliest)
                for position in jobs.get(organization_id, []):
                    job = group[position]
                    assert isinstance(job, _Job)
                    savepoint = conn.begin_nested()
                    try:
                        value, subscription_ids = job.run(conn)
                    except MeterworksError as exc:
                        savepoint.rollback()
                        results[position] = (False, exc)
                        continue
                    savepoint.commit()
                    results[position] = (True, value)
                    if not subscription_ids:  # a job that changed no usage: no hook is due
                        continue
                    touched.setdefault(organization_id, set()).update(subscription_ids)
                    _note_changes(
                        changed.setdefault(organization_id, {}),
                        subscription_ids.items()
                        if isinstance(subscription_ids, dict)
                        else ((sid, 0) for sid in subscription_ids),
                    )
            for organization_id, subscription_ids in touched.items():
                for hook in self._hooks:
                    hook(conn, organization_id, subscription_ids)
            for organization_id, changes in changed.items():
                for change_hook in self._change_hooks:
                    change_hook(conn, organization_id, changes)
        self.commits += 1
        return results


def _validate(conn: Connection, group: list[_Append | _Job]) -> None:
    """Validate the group's batches not validated yet, setting their events, or why they are
    refused; each batch is validated once."""
    together: dict[tuple[str, str, Validate], list[_Append]] = {}
    for item in group:
        if isinstance(item, _Append) and (unprepared := item.unprepared) is not None:
            key = (item.organization_id, unprepared.source, unprepared.validate)
            together.setdefault(key, []).append(item)
    for (organization_id, source, validate), items in together.items():
        batches = [item.unprepared.raw for item in items]  # type: ignore[union-attr]
        outcomes = validate(conn, organization_id, source, batches)
        for item, outcome in zip(items, outcomes, strict=True):
            item.unprepared = None
            if isinstance(outcome, MeterworksError):
                item.refused = outcome
            else:
                item.events = outcome


def _answer(group: list[_Append | _Job], results: list[tuple[bool, Any]]) -> None:
    """Settle each call of a group with its (ok, answer or error). The callers awaiting on an
    event loop are woken together, one hand-over to each loop for the whole group. With a
    hand-over per call (`asyncio.wrap_future`), a native single-event call took 111 µs of the
    loop's CPU in-process; 91 µs so."""
    woken: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Any], bool, Any]]] = {}
    for item, (ok, value) in zip(group, results, strict=True):
        if ok:
            item.future.set_result(value)
        else:
            item.future.set_exception(value)
        if item.waiter is not None:
            woken.setdefault(item.waiter.get_loop(), []).append((item.waiter, ok, value))
    for loop, answers in woken.items():
        with contextlib.suppress(RuntimeError):  # a closed loop: its callers are gone
            loop.call_soon_threadsafe(_wake, answers)


def _wake(answers: list[tuple[asyncio.Future[Any], bool, Any]]) -> None:
    """On the callers' loop: hand each waiter its answer, unless its caller gave up."""
    for waiter, ok, value in answers:
        if waiter.done():
            continue
        if ok:
            waiter.set_result(value)
        else:
            waiter.set_exception(value)


def _earliest(events: list[NewEvent]) -> dict[str, int]:
    """Each subscription of `events`, with the earliest timestamp among them (µs)."""
    earliest: dict[str, int] = {}
    _note_changes(earliest, ((e.subscription.id, e.ts_us) for e in events))
    return earliest


def _note_changes(into: dict[str, int], changes: Iterable[tuple[str, int]]) -> None:
    for subscription_id, ts_us in changes:
        held = into.get(subscription_id)
        if held is None or ts_us < held:
            into[subscription_id] = ts_us


def _result(outcome: BatchOutcome) -> tuple[bool, Any]:
    return (False, outcome.error) if outcome.error is not None else (True, outcome)


def _events(appends: list[_Append]) -> int:
    return sum(len(item.events) for item in appends)


def _size(item: _Append | _Job) -> int:
    return item.size if isinstance(item, _Append) else 1

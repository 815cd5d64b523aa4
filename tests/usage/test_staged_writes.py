"""Large groups on SQLite: their rows are staged before the write turn and copied into the ledger
inside it (`ledger.stage`). Every test runs on both databases; PostgreSQL never stages, and must
store exactly the same."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import text

from meterworks.errors import Conflict
from meterworks.usage import writer as writer_module
from meterworks.usage.ingest import NewEvent
from meterworks.usage.ledger import _add_runs, lock_sequence
from meterworks.usage.service import UsageService
from meterworks.usage.writer import LedgerWriter
from tests.api.builders import START, Api, event
from tests.support.tenancy import new_organization
from tests.usage.test_writer import own_writer, write_turn_held


@contextmanager
def started(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[LedgerWriter, UsageService, list[int]]]:
    """A started writer of our own and its usage service; the list gets the number of events
    each staging hands over."""
    writer, usage = own_writer(api)
    staged: list[int] = []
    stage = writer_module.stage

    def counted(conn: Any, batches: Sequence[Sequence[NewEvent]], *, after: int = 0) -> list[int]:
        starts = stage(conn, batches, after=after)
        staged.append(sum(len(batch) for batch in batches))
        return starts

    monkeypatch.setattr(writer_module, "stage", counted)
    writer.start()
    try:
        yield writer, usage, staged
    finally:
        writer.stop()


def events(prefix: str, subscription: Any, count: int, start: int = 0) -> list[dict[str, Any]]:
    """`count` events of the subscription's three meters in turn, a second apart; quantities
    with decimals, properties on every other one."""
    meters = [subscription.key(name) for name in ("sum", "max", "prorated")]
    made = []
    for n in range(start, start + count):
        extra = {"properties": {"region": f"r{n % 3}", "n": n}} if n % 2 else {}
        made.append(
            event(
                f"{prefix}-{n}",
                subscription_id=subscription.id,
                meter=meters[n % 3],
                timestamp=START + timedelta(seconds=n + 1),
                quantity=f"{n % 7}.{n % 10}5",
                operation="add" if n % 3 == 0 else "set",
                **extra,
            )
        )
    return made


def stored(api: Api, subscription_id: str) -> list[tuple[Any, ...]]:
    """The subscription's ledger rows in order, every value with the type SQLite (or
    PostgreSQL) stored it as, keys without their prefix."""
    sqlite = api.server.db.dialect == "sqlite"
    typed = "typeof({0}) || ':' || coalesce({0}, '')" if sqlite else "{0}::text"
    columns = ", ".join(
        typed.format(c)
        for c in (
            "revision", "kind", "meter_id", "ts_us", "operation", "quantity", "properties",
            "source", "received_at_us",
        )
    )  # fmt: skip
    with api.server.db.read() as conn:
        rows = conn.execute(
            text(
                f"SELECT seq, idempotency_key, {columns} FROM usage_events"
                " WHERE organization_id = :org AND subscription_id = :sub ORDER BY seq"
            ),
            {"org": api.org.id, "sub": subscription_id},
        ).all()
    return [(row[0], row[1].split("-", 1)[1], *row[2:]) for row in rows]


def by_aggregation(api: Api, subscription_id: str) -> dict[str, str]:
    """The subscription's quantities by aggregation (meter keys differ between setups)."""
    return {key.split("_")[0]: value for key, value in api.quantities(subscription_id).items()}


def sequences(api: Api) -> list[int]:
    with api.server.db.read() as conn:
        found = conn.execute(
            text("SELECT seq FROM usage_events WHERE organization_id = :org ORDER BY seq"),
            {"org": api.org.id},
        ).scalars()
        return list(found)


def test_a_large_group_is_staged_before_its_turn_and_stored_as_a_small_one_is(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    large, small = api.metered("sum", "max", "prorated"), api.metered("sum", "max", "prorated")
    sqlite = api.server.db.dialect == "sqlite"
    with started(api, monkeypatch) as (writer, usage, staged):
        batch = usage.prepare(api.org.id, events("large", large, 600), source="native")
        with write_turn_held(api, writer):
            future = writer.submit_events(api.org.id, batch)
            # Staged while another writer holds the write turn (SQLite): staging takes none.
            deadline = time.monotonic() + 30
            while sqlite and not staged and time.monotonic() < deadline:
                time.sleep(0.01)
            assert staged == ([600] if sqlite else [])
            assert api.ledger_rows() == 0
        assert (future.result(30).accepted, future.result(30).duplicates) == (600, 0)
        # The same events, 100 a call: under the staging threshold, written row by row.
        for start in range(0, 600, 100):
            small_batch = usage.prepare(
                api.org.id, events("small", small, 100, start), source="native"
            )
            assert writer.submit_events(api.org.id, small_batch).result(30).accepted == 100
        assert staged == ([600] if sqlite else [])
    large_rows, small_rows = stored(api, large.id), stored(api, small.id)
    assert len(large_rows) == 600
    assert sequences(api) == list(range(1, 1201))
    # Row for row the same, but for the sequence number and the meter ids (another subscription
    # has meters of its own).
    assert [row[1:4] + row[5:] for row in large_rows] == [row[1:4] + row[5:] for row in small_rows]
    assert [row[0] for row in large_rows] == list(range(1, 601))
    assert by_aggregation(api, large.id) == by_aggregation(api, small.id)
    api.assert_rollups_match_ledger()


@pytest.mark.parametrize(
    ("sent", "staged_events"),
    [(slice(100, 150), 1800), (slice(1, None, 4), 1800), (slice(0, None, 4), 1200)],
    ids=["in-runs", "more-runs-than-copied", "first-sent-before"],
)
def test_a_staged_group_writes_exactly_its_new_events_numbered_in_order(
    api: Api, monkeypatch: pytest.MonkeyPatch, sent: slice, staged_events: int
) -> None:
    """Duplicates break a staged group's rows into runs; past `_MOST_RUNS` of them the rows go
    the plain way, as do all where a batch whose first event was sent before (not staged) has
    new events. Either way, only the new events are written, numbered without a gap, and a
    batch refused for a key conflict writes nothing."""
    setup = api.metered("sum", "max", "prorated")
    sqlite = api.server.db.dialect == "sqlite"
    with started(api, monkeypatch) as (writer, usage, staged):
        first = events("e", setup, 600)
        # Sent before: some of the first batch's events, and one event the refused batch sends
        # again with another quantity.
        earlier = first[sent]
        before = usage.prepare(api.org.id, [*earlier, *events("x", setup, 1)], source="native")
        assert writer.submit_events(api.org.id, before).result(30).accepted == len(earlier) + 1
        changed = {**events("x", setup, 1)[0], "quantity": "99"}
        batches = [
            first,
            events("e", setup, 600, start=600),
            [*events("r", setup, 599), changed],
        ]
        prepared = [usage.prepare(api.org.id, batch, source="native") for batch in batches]
        with write_turn_held(api, writer):
            futures = [writer.submit_events(api.org.id, batch) for batch in prepared]
            time.sleep(0.3)  # one group: all three wait for the turn together
        outcomes = [future.result(30) for future in futures[:2]]
        with pytest.raises(Conflict):
            futures[2].result(30)
    assert [(o.accepted, o.duplicates) for o in outcomes] == [
        (600 - len(earlier), len(earlier)),
        (600, 0),
    ]
    assert staged == ([staged_events] if sqlite else [])
    total = len(earlier) + 1 + 1200 - len(earlier)
    assert sequences(api) == list(range(1, total + 1))
    rows = stored(api, setup.id)
    keys = [row[1] for row in rows]
    # The earlier events first, then the new ones in the order sent; nothing of the refused
    # batch (its keys start `r-`, but for the one sent before).
    expected_new = [e["idempotency_key"] for e in [*first, *batches[1]] if e not in earlier]
    assert keys == [e["idempotency_key"].split("-", 1)[1] for e in [*earlier, changed]] + [
        key.split("-", 1)[1] for key in expected_new
    ]
    assert api.ledger_rows() == total
    api.assert_rollups_match_ledger()


def wait_for(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 30
    while not condition():
        assert time.monotonic() < deadline, "waited 30 s"
        time.sleep(0.01)


def test_large_batches_that_arrive_while_a_staged_group_waits_for_its_turn_join_it(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On SQLite, validated batches that reach the writer while its staged group waits for
    another process's turn are staged too and share the group's commit; a batch sent before
    is answered meanwhile, without a turn; the first call that cannot join (a job) ends the
    joining, and is written after. PostgreSQL has no turn to wait for, and must store exactly
    the same."""
    setup = api.metered("sum", "max", "prorated")
    sqlite = api.server.db.dialect == "sqlite"
    seen_commits: list[int] = []

    def job(conn: object) -> tuple[str, set[str]]:
        seen_commits.append(writer.commits)
        return "ran", set()

    with started(api, monkeypatch) as (writer, usage, staged):
        sent = usage.prepare(api.org.id, events("sent", setup, 500), source="native")
        assert writer.submit_events(api.org.id, sent).result(30).accepted == 500
        prepared = [
            usage.prepare(api.org.id, events(name, setup, 600), source="native")
            for name in ("a", "b", "c", "d")
        ]
        commits = writer.commits
        with write_turn_held(api, writer):
            first = writer.submit_events(api.org.id, prepared[0])
            wait_for(lambda: len(staged) == 2 or not sqlite)
            joined = [writer.submit_events(api.org.id, batch) for batch in prepared[1:3]]
            wait_for(lambda: len(staged) == 4 or not sqlite)
            again = writer.submit_events(api.org.id, sent)
            if sqlite:  # answered while the turn is still held
                assert (again.result(30).accepted, again.result(30).duplicates) == (0, 500)
            after = [writer.submit_job(api.org.id, job)]
            after.append(writer.submit_events(api.org.id, prepared[3]))
            time.sleep(0.2)
            assert api.ledger_rows() == 500
            assert staged == ([500, 600, 600, 600] if sqlite else [])
        outcomes = [future.result(30) for future in (first, *joined, again)]
        assert after[0].result(30) == "ran"
        assert after[1].result(30).accepted == 600
    assert [(o.accepted, o.duplicates) for o in outcomes] == [(600, 0)] * 3 + [(0, 500)]
    if sqlite:
        # The three batches took one commit, before the job's.
        assert seen_commits == [commits + 1]
        assert staged == [500, 600, 600, 600, 600]
    assert sequences(api) == list(range(1, 2901))
    rows = stored(api, setup.id)
    order = [*sent, *prepared[0], *prepared[1], *prepared[2], *prepared[3]]
    assert [row[1] for row in rows] == [e.idempotency_key.split("-", 1)[1] for e in order]
    api.assert_rollups_match_ledger()


def test_a_batch_whose_staging_fails_as_it_joins_is_written_with_the_rest_of_its_group(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLite: where staging a joining batch fails, the batch is in the group already, and
    the group's failure sees to it: each of its calls is written again on its own, and
    answered."""
    if api.server.db.dialect != "sqlite":
        pytest.skip("only SQLite stages")
    setup = api.metered("sum", "max", "prorated")
    with started(api, monkeypatch) as (writer, usage, staged):
        counted = writer_module.stage
        failed: list[int] = []

        def failing(conn: Any, batches: Sequence[Sequence[NewEvent]], *, after: int = 0) -> Any:
            if after and not failed:
                failed.append(after)
                raise sqlite3.OperationalError("disk I/O error")
            return counted(conn, batches, after=after)

        monkeypatch.setattr(writer_module, "stage", failing)
        prepared = [
            usage.prepare(api.org.id, events(name, setup, 600), source="native")
            for name in ("a", "b")
        ]
        with write_turn_held(api, writer):
            first = writer.submit_events(api.org.id, prepared[0])
            wait_for(lambda: len(staged) == 1)
            second = writer.submit_events(api.org.id, prepared[1])
            wait_for(lambda: bool(failed))
            assert api.ledger_rows() == 0
        outcomes = [future.result(30) for future in (first, second)]
    assert failed == [600]
    assert [(o.accepted, o.duplicates) for o in outcomes] == [(600, 0), (600, 0)]
    # The group's first batch, then each batch again on its own.
    assert staged == [600, 600, 600]
    assert sequences(api) == list(range(1, 1201))
    api.assert_rollups_match_ledger()


def test_on_postgresql_calls_that_arrive_while_a_group_waits_for_its_sequence_row_join_it(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PostgreSQL: a writer takes its group's sequence rows first; the calls of the same
    organization queued while it waited for them (another process's writer committing) share
    its commit, a batch sent before is answered without being written, and a call of another
    organization is kept for the next group."""
    if api.server.db.dialect != "postgresql":
        pytest.skip("on SQLite, calls join at the write turn (the test above)")
    setup = api.metered("sum", "max", "prorated")
    seen_commits: list[int] = []

    def job(conn: object) -> tuple[str, set[str]]:
        seen_commits.append(writer.commits)
        return "ran", set()

    locked, release = threading.Event(), threading.Event()

    def hold() -> None:  # as another process's writer does while it commits
        with api.server.db.transaction() as conn:
            lock_sequence(conn, api.org.id)
            locked.set()
            release.wait(30)

    with (
        new_organization(api.server, "joined writes") as second,
        started(api, monkeypatch) as (writer, usage, _),
    ):
        other = Api(api.server, second)
        elsewhere = other.metered("sum", "max", "prorated")
        sent = usage.prepare(api.org.id, events("sent", setup, 500), source="native")
        assert writer.submit_events(api.org.id, sent).result(30).accepted == 500
        a, b = (
            usage.prepare(api.org.id, events(name, setup, 1000), source="native")
            for name in ("a", "b")
        )
        x = usage.prepare(second.id, events("x", elsewhere, 600), source="native")
        commits, entered = writer.commits, writer._entered
        holder = threading.Thread(target=hold)
        holder.start()
        try:
            assert locked.wait(10)
            first = writer.submit_events(api.org.id, a)
            # Its transaction has begun, and waits for the sequence row.
            wait_for(lambda: writer._entered not in (None, entered))
            joined = writer.submit_events(api.org.id, b)
            ran = writer.submit_job(api.org.id, job)
            again = writer.submit_events(api.org.id, sent)
            later = writer.submit_events(second.id, x)
            time.sleep(0.2)
            assert api.ledger_rows() == 500
        finally:
            release.set()
            holder.join(30)
        outcomes = [future.result(30) for future in (first, joined, again, later)]
        assert ran.result(30) == "ran"
        # One commit for the first organization's calls, one for the other's.
        assert writer.commits == commits + 2
    assert [(o.accepted, o.duplicates) for o in outcomes] == [
        (1000, 0),
        (1000, 0),
        (0, 500),
        (600, 0),
    ]
    assert seen_commits == [commits]  # the job ran in the first call's transaction
    assert sequences(api) == list(range(1, 2501))
    keys = [row[1] for row in stored(api, setup.id)]
    assert keys == [e.idempotency_key.split("-", 1)[1] for e in [*sent, *a, *b]]
    assert other.ledger_rows() == 600
    api.assert_rollups_match_ledger()


def test_a_large_batch_sent_again_is_answered_as_duplicates_without_staging(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    setup = api.metered("sum", "max", "prorated")
    sqlite = api.server.db.dialect == "sqlite"
    with started(api, monkeypatch) as (writer, usage, staged):
        batch = usage.prepare(api.org.id, events("again", setup, 700), source="native")
        outcomes = [writer.submit_events(api.org.id, batch).result(30) for _ in range(2)]
    assert [(o.accepted, o.duplicates) for o in outcomes] == [(700, 0), (0, 700)]
    assert staged == ([700] if sqlite else [])
    assert api.ledger_rows() == 700
    api.assert_rollups_match_ledger()


def test_concurrent_large_batches_from_threads_are_each_written_once(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    setup = api.metered("sum", "max", "prorated")
    with started(api, monkeypatch) as (writer, usage, _):
        prepared = [
            usage.prepare(api.org.id, events(f"t{n}", setup, 550), source="native")
            for n in range(4)
        ]
        answers: list[int] = []

        def send(batch: list[NewEvent]) -> None:
            answers.append(writer.submit_events(api.org.id, batch).result(30).accepted)

        threads = [threading.Thread(target=send, args=(batch,)) for batch in prepared]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
    assert sorted(answers) == [550] * 4
    assert sequences(api) == list(range(1, 2201))
    api.assert_rollups_match_ledger()


def test_staged_rows_to_copy_are_gathered_into_runs_of_place_and_number() -> None:
    runs: list[list[int]] = []
    # A whole batch of 5 staged at 0, numbered from 10: one run.
    _add_runs(runs, 0, [0, 1, 2, 3, 4], 10)
    assert runs == [[0, 4, 10]]
    # The next batch, staged right after it and numbered on: the same run grows.
    _add_runs(runs, 5, [0, 1, 2], 15)
    assert runs == [[0, 7, 10]]
    # A batch with duplicates (places 1, 4 and 5 not to copy): a run for each unbroken stretch;
    # the first follows on from the run before, in place and number, and joins it.
    _add_runs(runs, 8, [0, 2, 3, 6, 7], 18)
    assert runs == [[0, 8, 10], [10, 11, 19], [14, 15, 21]]
    # Places that follow on, but numbers that do not (a batch refused in between): a new run.
    _add_runs(runs, 16, [0], 30)
    assert runs == [[0, 8, 10], [10, 11, 19], [14, 15, 21], [16, 16, 30]]

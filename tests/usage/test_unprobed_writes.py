"""A write of many keys is made without looking them up first (`ledger.append`): the ledger's
unique index refuses a key it holds already, and the write is then undone and made again with
the keys looked up. Every test runs on both databases, and each must store and answer the same
(on SQLite, a large group's rows are copied from where they were staged: tests in
test_staged_writes.py)."""

from __future__ import annotations

from typing import Any

import pytest

from meterworks.errors import Conflict
from meterworks.kit.instants import to_micros
from meterworks.usage import ledger
from meterworks.usage.ingest import NewEvent
from meterworks.usage.ledger import UNPROBED_FROM, BatchOutcome, append
from meterworks.usage.service import UsageService
from tests.api.builders import NOW, Api, event
from tests.usage.test_staged_writes import events, sequences, started, stored
from tests.usage.test_writer import own_writer

SIZE = UNPROBED_FROM + 20


def raw(setup: Any, prefix: str, size: int = SIZE, quantity: int = 1) -> list[dict[str, Any]]:
    return [
        event(f"{prefix}-{n}", subscription_id=setup.id, meter=setup.key("sum"), quantity=quantity)
        for n in range(size)
    ]


def appended(api: Api, batches: list[list[NewEvent]]) -> list[BatchOutcome]:
    with api.server.db.transaction() as conn:
        return append(conn, api.org.id, batches, to_micros(NOW))


def probes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The number of keys each look-up of the ledger's keys asks for, from here on."""
    asked: list[int] = []
    known_hashes = ledger.known_hashes

    def counted(conn: Any, organization_id: str, keys: list[str]) -> dict[str, str]:
        asked.append(len(keys))
        return known_hashes(conn, organization_id, keys)

    monkeypatch.setattr(ledger, "known_hashes", counted)
    return asked


def writes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The number of keys known held when each attempt at a write begins, from here on."""
    attempts: list[int] = []
    append_knowing = ledger._append_knowing

    def counted(*args: Any) -> list[BatchOutcome]:
        attempts.append(len(args[6]))  # `known`
        return append_knowing(*args)

    monkeypatch.setattr(ledger, "_append_knowing", counted)
    return attempts


def prepared(usage: UsageService, api: Api, batch: list[dict[str, Any]]) -> list[NewEvent]:
    return usage.prepare(api.org.id, batch, source="native")


def test_new_keys_are_written_without_a_look_up(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    setup = api.metered("sum")
    _, usage = own_writer(api)
    batches = [prepared(usage, api, raw(setup, "a")), prepared(usage, api, raw(setup, "b"))]
    asked = probes(monkeypatch)
    outcomes = appended(api, batches)
    assert outcomes == [BatchOutcome(accepted=SIZE), BatchOutcome(accepted=SIZE)]
    assert asked == []
    assert sequences(api) == list(range(1, 2 * SIZE + 1))
    assert api.quantities(setup.id) == {setup.key("sum"): str(2 * SIZE)}
    api.assert_rollups_match_ledger()


def test_a_few_keys_are_looked_up_first(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    setup = api.metered("sum")
    _, usage = own_writer(api)
    batch = prepared(usage, api, raw(setup, "few", size=UNPROBED_FROM - 1))
    asked = probes(monkeypatch)
    assert appended(api, [batch]) == [BatchOutcome(accepted=UNPROBED_FROM - 1)]
    assert asked == [UNPROBED_FROM - 1]


def test_a_key_held_already_undoes_the_write_and_each_batch_is_answered_its_own(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    setup = api.metered("sum")
    _, usage = own_writer(api)
    before = raw(setup, "before", size=10)
    assert appended(api, [prepared(usage, api, before)]) == [BatchOutcome(accepted=10)]
    # One batch all new; one holding a key sent before with the same payload (a duplicate);
    # one holding a key sent before with another (a conflict, which refuses it whole).
    fresh = raw(setup, "fresh")
    again = [*raw(setup, "again", size=SIZE - 1), before[3]]
    changed = [*raw(setup, "changed", size=SIZE - 1), {**before[5], "quantity": 7}]
    batches = [prepared(usage, api, batch) for batch in (fresh, again, changed)]
    asked = probes(monkeypatch)
    outcomes = appended(api, batches)
    assert outcomes[:2] == [
        BatchOutcome(accepted=SIZE),
        BatchOutcome(accepted=SIZE - 1, duplicates=1),
    ]
    assert isinstance(outcomes[2].error, Conflict)
    assert outcomes[2].error.details[0]["index"] == SIZE - 1
    # The write was undone, then made again with every key looked up.
    assert asked == [3 * SIZE]
    # Nothing of the undone write is left: the numbers run on without a gap, and the totals
    # count each event once.
    assert sequences(api) == list(range(1, 10 + 2 * SIZE))
    assert api.quantities(setup.id) == {setup.key("sum"): str(10 + 2 * SIZE - 1)}
    api.assert_rollups_match_ledger()


def test_a_key_twice_in_one_batch_is_written_once(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    setup = api.metered("sum")
    _, usage = own_writer(api)
    sent = raw(setup, "twice")
    batch = prepared(usage, api, [*sent, sent[0]])
    asked = probes(monkeypatch)
    assert appended(api, [batch]) == [BatchOutcome(accepted=SIZE, duplicates=1)]
    assert asked == []
    assert api.ledger_rows() == SIZE


def test_a_staged_write_holding_a_key_sent_before_is_undone_and_made_again_looked_up(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A group of many keys is copied as if all were new (`ledger.append`); where one was sent
    before, the ledger's unique index refuses the copy, which is undone and made again from the
    same staged rows with every key looked up."""
    setup = api.metered("sum", "max", "prorated")
    sqlite = api.server.db.dialect == "sqlite"
    with started(api, monkeypatch) as (writer, usage, staged):
        batch = events("k", setup, 600)
        earlier = usage.prepare(api.org.id, [batch[300]], source="native")
        assert writer.submit_events(api.org.id, earlier).result(30).accepted == 1
        prepared = usage.prepare(api.org.id, batch, source="native")
        asked = probes(monkeypatch)
        attempts = writes(monkeypatch)
        outcome = writer.submit_events(api.org.id, prepared).result(30)
    assert (outcome.accepted, outcome.duplicates) == (599, 1)
    # Written first knowing no key, then again knowing the one held; the look-up of the whole
    # group's keys came in between. Before, the batch's first key only (`sent_before`).
    assert attempts == [0, 1]
    assert asked == [1, 0, 600]
    assert staged == ([600] if sqlite else [])
    assert sequences(api) == list(range(1, 601))
    keys = [row[1] for row in stored(api, setup.id)]
    assert keys == [
        batch[300]["idempotency_key"].split("-", 1)[1],
        *(e["idempotency_key"].split("-", 1)[1] for n, e in enumerate(batch) if n != 300),
    ]
    api.assert_rollups_match_ledger()

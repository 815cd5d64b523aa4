"""On PostgreSQL, a write of many keys is made without looking them up first (`ledger.append`):
the ledger's unique index refuses a key it holds already, and the write is then undone and made
again with the keys looked up. SQLite looks them up first. Every test runs on both databases,
and each must store and answer the same."""

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
from tests.usage.test_staged_writes import sequences
from tests.usage.test_writer import own_writer

SIZE = UNPROBED_FROM + 20


def raw(setup: Any, prefix: str, size: int = SIZE, quantity: int = 1) -> list[dict[str, Any]]:
    return [
        event(f"{prefix}-{n}", subscription_id=setup.id, meter=setup.key("sum"), quantity=quantity)
        for n in range(size)
    ]


def postgresql(api: Api) -> bool:
    return api.server.db.dialect == "postgresql"


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


def prepared(usage: UsageService, api: Api, batch: list[dict[str, Any]]) -> list[NewEvent]:
    return usage.prepare(api.org.id, batch, source="native")


def test_new_keys_are_written_without_a_look_up_on_postgresql(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    setup = api.metered("sum")
    _, usage = own_writer(api)
    batches = [prepared(usage, api, raw(setup, "a")), prepared(usage, api, raw(setup, "b"))]
    asked = probes(monkeypatch)
    outcomes = appended(api, batches)
    assert outcomes == [BatchOutcome(accepted=SIZE), BatchOutcome(accepted=SIZE)]
    assert asked == ([] if postgresql(api) else [2 * SIZE])
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
    # On PostgreSQL the write was undone, then made again with every key looked up.
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
    assert asked == ([] if postgresql(api) else [SIZE])
    assert api.ledger_rows() == SIZE

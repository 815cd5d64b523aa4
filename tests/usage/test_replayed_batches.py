"""A large batch sent again is answered from the ledger as it is, without a write, wherever the
ledger settles its answer; the rest of its group is written as usual."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from meterworks.errors import Conflict
from meterworks.usage.service import UsageService
from meterworks.usage.writer import SETTLED_FROM, LedgerWriter
from tests.api.builders import Api, event
from tests.usage.test_writer import own_writer

SIZE = SETTLED_FROM + 20


def batch(setup: Any, prefix: str, size: int = SIZE, quantity: int = 1) -> list[dict[str, Any]]:
    return [
        event(f"{prefix}-{n}", subscription_id=setup.id, meter=setup.key("sum"), quantity=quantity)
        for n in range(size)
    ]


def started(api: Api) -> tuple[LedgerWriter, UsageService]:
    writer, usage = own_writer(api)
    writer.start()
    return writer, usage


def test_a_large_batch_sent_again_is_answered_without_a_write(api: Api) -> None:
    setup = api.metered("sum")
    writer, usage = started(api)
    try:
        sent = batch(setup, "again")
        first = usage.record(api.org.id, sent, source="native")
        assert (first.accepted, first.duplicates) == (SIZE, 0)
        assert writer.commits == 1
        for _ in range(2):
            again = usage.record(api.org.id, sent, source="native")
            assert (again.accepted, again.duplicates) == (0, SIZE)
        assert writer.commits == 1  # no write transaction for either
    finally:
        writer.stop()
    assert api.ledger_rows() == SIZE
    assert api.quantities(setup.id) == {setup.key("sum"): str(SIZE)}


def test_a_large_batch_sent_again_with_an_event_changed_is_refused_without_a_write(
    api: Api,
) -> None:
    setup = api.metered("sum")
    writer, usage = started(api)
    try:
        sent = batch(setup, "changed")
        usage.record(api.org.id, sent, source="native")
        changed = [dict(raw) for raw in sent]
        changed[7]["quantity"] = 5
        changed.append(event("changed-new", subscription_id=setup.id, meter=setup.key("sum")))
        with pytest.raises(Conflict) as refused:
            usage.record(api.org.id, changed, source="native")
        assert writer.commits == 1
    finally:
        writer.stop()
    assert refused.value.code == "idempotency_conflict"
    assert [d["index"] for d in refused.value.details] == [7]
    assert api.ledger_rows() == SIZE  # the new event of the refused batch was not written


def test_a_large_batch_partly_sent_before_writes_its_new_events(api: Api) -> None:
    setup = api.metered("sum")
    writer, usage = started(api)
    try:
        sent = batch(setup, "partly")
        usage.record(api.org.id, sent, source="native")
        more = sent + batch(setup, "partly-more", size=30, quantity=2)
        answer = usage.record(api.org.id, more, source="native")
        assert (answer.accepted, answer.duplicates) == (30, SIZE)
        assert writer.commits == 2
    finally:
        writer.stop()
    assert api.ledger_rows() == SIZE + 30
    assert api.quantities(setup.id) == {setup.key("sum"): str(SIZE + 60)}


@pytest.mark.parametrize("size", [SIZE, 600])  # 600: a group staged on SQLite
def test_in_one_group_the_batches_sent_before_and_the_new_ones_are_each_answered_their_own(
    api: Api, size: int
) -> None:
    setup = api.metered("sum")
    writer, usage = own_writer(api)
    sent = batch(setup, "group", size=size)
    changed = [dict(raw) for raw in sent]
    changed[3]["quantity"] = 9
    holding, release = threading.Event(), threading.Event()

    def hold(conn: object) -> tuple[None, set[str]]:
        holding.set()
        release.wait(30)
        return None, set()

    writer.start()
    try:
        usage.record(api.org.id, sent, source="native")
        # Queued while the writer runs a job: its next group takes them all, in this order.
        writer.submit_job(api.org.id, hold)
        assert holding.wait(30)
        calls = [
            ("fresh", batch(setup, "fresh-a", size=size)),
            ("again", sent),
            ("changed", changed),
            ("small", batch(setup, "small", size=3)),
            ("fresh too", batch(setup, "fresh-b", size=size)),
        ]
        futures = {
            name: writer.submit_unprepared(
                api.org.id, raw, source="native", validate=usage.validate_together
            )
            for name, raw in calls
        }
        release.set()
        answers = {
            name: future.exception(30) or future.result(30) for name, future in futures.items()
        }
    finally:
        release.set()
        writer.stop()
    assert writer.commits == 3  # the first batch's, the job's, then the one group's
    expected = {"fresh": (size, 0), "again": (0, size), "small": (3, 0), "fresh too": (size, 0)}
    assert {
        name: (answer.accepted, answer.duplicates)
        for name, answer in answers.items()
        if name != "changed"
    } == expected
    assert isinstance(answers["changed"], Conflict)
    assert api.ledger_rows() == 3 * size + 3
    assert api.quantities(setup.id) == {setup.key("sum"): str(3 * size + 3)}

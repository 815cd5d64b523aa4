"""Idempotency: a replay is a duplicate counted once; a reused key with another payload is 409."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from meterworks.kit.decimals import format_decimal
from meterworks.usage.ingest import payload_hash
from tests.api.builders import START, Api, error_of, event


def test_a_replayed_batch_is_answered_as_duplicates_and_counted_once(api: Api) -> None:
    setup = api.metered("sum", "unique_count")
    batch = [
        event("a", subscription_id=setup.id, meter=setup.key("sum"), quantity="2.5"),
        event("b", subscription_id=setup.id, meter=setup.key("sum"), quantity=4),
        event(
            "c",
            subscription_id=setup.id,
            meter=setup.key("unique_count"),
            quantity=None,
            properties={"user": "u1"},
        ),
    ]
    assert api.record(batch) == {"accepted": 3, "duplicates": 0}
    for _ in range(3):
        assert api.record(batch) == {"accepted": 0, "duplicates": 3}
    assert api.quantities(setup.id) == {setup.key("sum"): "6.5", setup.key("unique_count"): "1"}
    assert api.ledger_rows() == 3


def test_the_same_event_written_differently_is_still_a_duplicate(api: Api) -> None:
    setup = api.metered("sum")
    meter = setup.key("sum")
    api.record(
        [event("k", subscription_id=setup.id, meter=meter, quantity="10", properties={"a": 1})]
    )
    same = [
        # The quantity as a number, or with trailing zeros; the instant at another offset;
        # the meter by id rather than key; the subscription reached through its customer.
        event("k", subscription_id=setup.id, meter=meter, quantity=10, properties={"a": 1}),
        event(
            "k",
            subscription_id=setup.id,
            meter=meter,
            quantity=Decimal("10.000"),
            properties={"a": 1},
        ),
        event(
            "k",
            subscription_id=setup.id,
            meter=setup.meters["sum"]["id"],
            quantity="1E+1",
            timestamp="2025-01-01T02:00:00+02:00",
            properties={"a": 1},
        ),
        event("k", meter=meter, customer_id=setup.customer["id"], quantity=10, properties={"a": 1}),
    ]
    for replay in same:
        assert api.record([replay]) == {"accepted": 0, "duplicates": 1}
    assert api.quantities(setup.id) == {meter: "10"}
    assert api.ledger_rows() == 1


def test_a_reused_key_with_another_payload_is_a_conflict_and_writes_nothing(api: Api) -> None:
    setup = api.metered("sum")
    meter = setup.key("sum")
    api.record([event("k", subscription_id=setup.id, meter=meter, quantity=1)])
    changed = [
        event("k", subscription_id=setup.id, meter=meter, quantity=2),
        event(
            "k",
            subscription_id=setup.id,
            meter=meter,
            quantity=1,
            timestamp=START + timedelta(seconds=1),
        ),
        event("k", subscription_id=setup.id, meter=meter, quantity=1, properties={"x": "y"}),
    ]
    for different in changed:
        fresh = event("fresh", subscription_id=setup.id, meter=meter, quantity=100)
        error = error_of(api.send([fresh, different]), 409)
        assert error["code"] == "idempotency_conflict"
        assert [(d["index"], d["field"], d["code"]) for d in error["details"]] == [
            (1, "idempotency_key", "idempotency_conflict")
        ]
    # Nothing of the refused batches was written: not even the fresh event beside the conflict.
    assert api.ledger_rows() == 1
    assert api.quantities(setup.id) == {meter: "1"}


def test_a_batch_mixing_new_and_replayed_events(api: Api) -> None:
    setup = api.metered("sum")
    meter = setup.key("sum")
    old = [event(f"old{i}", subscription_id=setup.id, meter=meter, quantity=1) for i in range(3)]
    new = [event(f"new{i}", subscription_id=setup.id, meter=meter, quantity=10) for i in range(2)]
    api.record(old)
    assert api.record([old[0], new[0], old[1], new[1], old[2]]) == {"accepted": 2, "duplicates": 3}
    assert api.quantities(setup.id) == {meter: "23"}
    assert api.ledger_rows() == 5


def test_the_same_key_twice_in_one_batch(api: Api) -> None:
    setup = api.metered("sum")
    meter = setup.key("sum")
    twice = event("twice", subscription_id=setup.id, meter=meter, quantity=5)
    assert api.record([twice, dict(twice)]) == {"accepted": 1, "duplicates": 1}
    assert api.quantities(setup.id) == {meter: "5"}
    # Twice with different payloads: the batch conflicts with itself and writes nothing.
    first = event("clash", subscription_id=setup.id, meter=meter, quantity=1)
    second = event("clash", subscription_id=setup.id, meter=meter, quantity=2)
    error = error_of(api.send([first, second]), 409)
    assert [d["index"] for d in error["details"]] == [1]
    assert api.ledger_rows() == 1
    assert api.quantities(setup.id) == {meter: "5"}


def test_keys_holding_quotes_commas_braces_or_backslashes_are_each_their_own_key(
    api: Api,
) -> None:
    # On PostgreSQL the keys of a batch are looked up as one array parameter, sent in the
    # array's text form: every character that form gives a meaning to must stay in its key.
    setup = api.metered("sum")
    meter = setup.key("sum")
    keys = ["a,b", "a", "b", '"a"', "a\\", "a\\,b", "{a}", "NULL", " a ", 'x"},{"y']
    batch = [
        event(key, subscription_id=setup.id, meter=meter, quantity=i + 1)
        for i, key in enumerate(keys)
    ]
    assert api.record(batch) == {"accepted": len(keys), "duplicates": 0}
    assert api.record(batch) == {"accepted": 0, "duplicates": len(keys)}
    # A key is found as itself: one of them sent again with another payload is a conflict.
    error = error_of(
        api.send([event('x"},{"y', subscription_id=setup.id, meter=meter, quantity=99)]), 409
    )
    assert error["code"] == "idempotency_conflict"
    total = sum(range(1, len(keys) + 1))
    assert api.quantities(setup.id) == {meter: str(total)}
    assert api.ledger_rows() == len(keys)


def test_keys_are_per_organization(api: Api) -> None:
    from tests.support.tenancy import new_organization

    setup = api.metered("sum")
    api.record([event("shared-key", subscription_id=setup.id, meter=setup.key("sum"), quantity=1)])
    with new_organization(api.server, "other") as other_org:
        other = Api(api.server, other_org)
        theirs = other.metered("sum")
        result = other.record(
            [event("shared-key", subscription_id=theirs.id, meter=theirs.key("sum"), quantity=7)]
        )
        assert result == {"accepted": 1, "duplicates": 0}
        assert other.quantities(theirs.id) == {theirs.key("sum"): "7"}
    assert api.quantities(setup.id) == {setup.key("sum"): "1"}


def test_properties_are_stored_as_sent_whatever_characters_they_hold(api: Api) -> None:
    # The ledger's rows go to the database in bulk (COPY on PostgreSQL), whose text format
    # escapes tabs, newlines and backslashes: each must come back exactly as sent.
    setup = api.metered("sum")
    properties = {
        "path": "C:\\temp\\new",
        "tab": "a\tb",
        "lines": "one\ntwo\r\n",
        "quote": 'say "hi"',
        "text": "zażółć ☃ \\u0041",
        "nested": {"list": [1, "x", None, True], "empty": {}},
    }
    sent = [event("p", subscription_id=setup.id, meter=setup.key("sum"), quantity=2,
                  properties=properties)]  # fmt: skip
    assert api.record(sent) == {"accepted": 1, "duplicates": 0}
    assert api.record(sent) == {"accepted": 0, "duplicates": 1}
    amended = api.client.patch("/v1/events/p", json={"quantity": "3"})
    assert amended.status_code == 200, amended.text
    assert amended.json()["properties"] == properties


def test_a_payload_hashes_as_it_always_has() -> None:
    """Stored hashes tell replays from conflicts for the life of the ledger: the hash of a given
    payload may never change (these values were computed when the ledger's format was set)."""
    assert [
        payload_hash("sub_1", "mtr_1", 1738317600000001, operation, format_decimal(q), props)
        for operation, q, props in [
            ("add", Decimal("1.50"), '{"region":"eu-west"}'),
            ("set", Decimal(0), None),
            ("set", Decimal("1E+3"), "{}"),
        ]
    ] == [
        "97fe4563b182a2e5c798d26984fb4748",
        "f35bd0f219d1069382db41327fe8dfc4",
        "816655c02ad477ca0ff228d111c3edc3",
    ]

"""`POST /v1/events`: addressing, exact quantities, limits, and refusals that write nothing."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from meterworks.api.events import DECODED_INLINE_BYTES
from tests.api.builders import NOW, START, Api, Metered, error_of, event

D = Decimal


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def test_addressing_by_subscription_customer_and_external_id(api: Api) -> None:
    setup = api.metered("sum", "count")
    calls, hits = setup.meters["sum"], setup.meters["count"]
    result = api.record(
        [
            event("a", subscription_id=setup.id, meter=calls["key"], quantity=1),
            event("b", meter=calls["id"], customer_id=setup.customer["id"], quantity="2"),
            event(
                "c",
                meter=calls["key"],
                external_customer_id=setup.customer["external_id"],
                quantity=D("4.5"),
            ),
            event("d", subscription_id=setup.id, meter=hits["key"], quantity=None),
            event("e", subscription_id=setup.id, meter=hits["id"], quantity=7),
        ]
    )
    assert result == {"accepted": 5, "duplicates": 0}
    assert api.quantities(setup.id) == {calls["key"]: "7.5", hits["key"]: "2"}
    assert api.ledger_rows() == 5


def test_a_customer_event_goes_to_the_subscription_running_at_its_timestamp(api: Api) -> None:
    meter = api.meter("sum")
    plan = api.plan([meter])
    customer = api.customer()
    january = api.subscription(
        customer["id"], plan["id"], utc(2024, 12, 1), ends_at="2025-01-10T00:00:00Z"
    )
    later = api.subscription(customer["id"], plan["id"], utc(2025, 1, 10))
    api.record(
        [
            event(
                meter=meter["key"],
                customer_id=customer["id"],
                timestamp=utc(2025, 1, 9),
                quantity=3,
            ),
            event(
                meter=meter["key"],
                customer_id=customer["id"],
                timestamp=utc(2025, 1, 10),
                quantity=5,
            ),
        ]
    )
    assert api.quantities(january["id"], at=utc(2025, 1, 9)) == {meter["key"]: "3"}
    assert api.quantities(later["id"]) == {meter["key"]: "5"}


def test_quantities_stay_exact(api: Api) -> None:
    setup = api.metered("sum", "latest")
    tiny = "0.100000000000000001"
    api.record(
        [
            event(subscription_id=setup.id, meter=setup.key("sum"), quantity=tiny),
            event(subscription_id=setup.id, meter=setup.key("sum"), quantity=D(tiny)),  # a number
            event(
                subscription_id=setup.id, meter=setup.key("sum"), quantity=" 0.100000000000000001 "
            ),
            event(
                subscription_id=setup.id,
                meter=setup.key("latest"),
                operation="set",
                quantity="99999999999999999999.999999999999999999",
            ),
            event(
                subscription_id=setup.id,
                meter=setup.key("latest"),
                timestamp=START + timedelta(seconds=1),
                quantity="0.000000000000000001",
            ),
        ]
    )
    assert api.quantities(setup.id) == {
        setup.key("sum"): "0.300000000000000003",
        setup.key("latest"): "100000000000000000000",
    }


def test_timestamps_may_be_up_to_five_minutes_ahead(api: Api) -> None:
    setup = api.metered("sum")
    api.at(NOW)
    ok = api.send(
        [
            event(
                subscription_id=setup.id,
                meter=setup.key("sum"),
                timestamp=NOW + timedelta(minutes=5),
            )
        ]
    )
    assert ok.status_code == 200, ok.text
    late = api.send(
        [
            event(
                subscription_id=setup.id,
                meter=setup.key("sum"),
                timestamp=NOW + timedelta(minutes=5, microseconds=1),
            )
        ]
    )
    assert [d["code"] for d in error_of(late, 422)["details"]] == ["timestamp_in_future"]
    assert api.ledger_rows() == 1


def test_timestamps_with_offsets_and_without(api: Api) -> None:
    setup = api.metered("sum")
    api.at(utc(2025, 2, 10))
    api.record(
        [
            event(
                subscription_id=setup.id,
                meter=setup.key("sum"),
                timestamp="2025-01-01T01:00:00+01:00",
            ),
            event(
                subscription_id=setup.id, meter=setup.key("sum"), timestamp="2025-01-01T00:00:00"
            ),
            event(
                subscription_id=setup.id,
                meter=setup.key("sum"),
                timestamp="2025-01-31T23:59:59.999999Z",
            ),
        ]
    )
    assert api.quantities(setup.id, at=START) == {setup.key("sum"): "3"}
    # One microsecond earlier than the window is outside it.
    refused = api.send(
        [
            event(
                subscription_id=setup.id,
                meter=setup.key("sum"),
                timestamp="2024-12-31T23:59:59.999999Z",
            )
        ]
    )
    assert [d["code"] for d in error_of(refused, 422)["details"]] == ["outside_subscription_window"]


def test_a_batch_of_exactly_10000_events_is_accepted_and_10001_refused(api: Api) -> None:
    setup = api.metered("sum")
    events = [
        event(f"k{i}", subscription_id=setup.id, meter=setup.key("sum"), quantity=1)
        for i in range(10_001)
    ]
    refused = api.send(events)
    error = error_of(refused, 422)
    assert error["code"] == "batch_too_large"
    assert error["details"] == {"max_events": 10_000, "received": 10_001}
    assert api.ledger_rows() == 0
    assert api.record(events[:10_000]) == {"accepted": 10_000, "duplicates": 0}
    assert api.quantities(setup.id) == {setup.key("sum"): "10000"}
    assert api.ledger_rows() == 10_000


# --- refusals: the whole batch, every bad index named, nothing written ----------------------


def bad_events(s: Metered, other_meter: str, ended: str) -> list[tuple[dict[str, Any], str, str]]:
    """(event, field, code): each refused for one reason."""
    calls, hits, level = s.key("sum"), s.key("count"), s.key("max")
    users = s.key("unique_count")
    sub = {"subscription_id": s.id}
    future = NOW + timedelta(minutes=5, seconds=1)
    return [
        (
            event(meter=calls, subscription_id="sub_nope"),
            "subscription_id",
            "subscription_not_found",
        ),
        (event(meter="no_such_meter", **sub), "meter", "meter_not_found"),
        (event(meter=other_meter, **sub), "meter", "meter_not_in_plan"),
        (
            event(meter=calls, timestamp=START - timedelta(days=1), **sub),
            "timestamp",
            "outside_subscription_window",
        ),
        (
            event(meter=calls, subscription_id=ended, timestamp=utc(2025, 1, 15)),
            "timestamp",
            "outside_subscription_window",
        ),
        (event(meter=calls, timestamp=future, **sub), "timestamp", "timestamp_in_future"),
        (event(meter=calls, quantity="-1", **sub), "quantity", "negative_quantity"),
        (event(meter=level, operation="set", quantity=-2, **sub), "quantity", "negative_quantity"),
        (event(meter=calls, operation="set", **sub), "operation", "operation_not_allowed"),
        (event(meter=hits, operation="set", **sub), "operation", "operation_not_allowed"),
        (
            event(meter=users, operation="set", properties={"user": "u"}, **sub),
            "operation",
            "operation_not_allowed",
        ),
        (event(meter=calls, operation="increment", **sub), "operation", "invalid_field"),
        (event(meter=calls, quantity="abc", **sub), "quantity", "invalid_quantity"),
        (event(meter=calls, quantity="NaN", **sub), "quantity", "invalid_quantity"),
        (event(meter=calls, quantity="Infinity", **sub), "quantity", "invalid_quantity"),
        (event(meter=calls, quantity="-Infinity", **sub), "quantity", "invalid_quantity"),
        (event(meter=calls, quantity="1e400", **sub), "quantity", "invalid_quantity"),
        (
            event(meter=calls, quantity="0.1000000000000000000001", **sub),
            "quantity",
            "invalid_quantity",
        ),
        (event(meter=calls, quantity=True, **sub), "quantity", "invalid_quantity"),
        (event(meter=calls, quantity=[1], **sub), "quantity", "invalid_quantity"),
        (event(meter=calls, quantity=None, **sub), "quantity", "missing_field"),
        (event(meter=users, **sub), "properties", "missing_property"),
        (event(meter=users, properties={"user": None}, **sub), "properties", "missing_property"),
        (event(meter=calls, properties=["x"], **sub), "properties", "invalid_field"),
        (
            event(meter=calls, properties={"blob": "x" * 17_000}, **sub),
            "properties",
            "properties_too_large",
        ),
        (event(meter=calls, timestamp="yesterday", **sub), "timestamp", "invalid_field"),
        (
            event(meter=calls, timestamp="2025-01-01T00:00:00+01:00x", **sub),
            "timestamp",
            "invalid_field",
        ),
        (event(meter=calls, customer_id="cus_nope"), "customer_id", "customer_not_found"),
        (
            event(meter=calls, external_customer_id="nobody"),
            "external_customer_id",
            "customer_not_found",
        ),
        (
            event(meter=calls, customer_id=s.customer["id"], timestamp=START - timedelta(days=3)),
            "customer_id",
            "no_active_subscription",
        ),
        (
            event(meter=other_meter, customer_id=s.customer["id"]),
            "customer_id",
            "no_active_subscription",
        ),
        (
            event(meter=calls, customer_id=s.customer["id"], **sub),
            "subscription_id",
            "invalid_field",
        ),
        (event(meter=calls), "subscription_id", "missing_field"),
        (event(meter=calls, subscription_id=["x"]), "subscription_id", "invalid_field"),
    ]


def without(body: dict[str, Any], *names: str) -> dict[str, Any]:
    return {k: v for k, v in body.items() if k not in names}


def test_each_invalid_event_refuses_the_whole_batch(api: Api) -> None:
    setup = api.metered("sum", "count", "max", "unique_count")
    other_meter = api.meter("sum")["key"]
    ended = api.subscription(
        setup.customer["id"], setup.plan["id"], utc(2024, 6, 1), ends_at="2024-07-01T00:00:00Z"
    )["id"]
    good = event("good", subscription_id=setup.id, meter=setup.key("sum"), quantity=1)
    sub = {"subscription_id": setup.id}
    cases = bad_events(setup, other_meter, ended)
    cases += [
        (
            without(event(meter=setup.key("sum"), **sub), "idempotency_key"),
            "idempotency_key",
            "missing_field",
        ),
        (
            {**event(meter=setup.key("sum"), **sub), "idempotency_key": "  "},
            "idempotency_key",
            "missing_field",
        ),
        (
            {**event(meter=setup.key("sum"), **sub), "idempotency_key": 12},
            "idempotency_key",
            "missing_field",
        ),
        (event("k" * 256, meter=setup.key("sum"), **sub), "idempotency_key", "invalid_field"),
        (without(event(meter=setup.key("sum"), **sub), "meter"), "meter", "missing_field"),
        (without(event(meter=setup.key("sum"), **sub), "timestamp"), "timestamp", "missing_field"),
    ]
    for bad, field, code in cases:
        response = api.send([good, bad])
        error = error_of(response, 422)
        assert error["code"] == "invalid_batch", (bad, error)
        assert [(d["index"], d["field"], d["code"]) for d in error["details"]] == [
            (1, field, code)
        ], (bad, error)
        assert all(d["message"] for d in error["details"])
    # Not an object at all.
    error = error_of(api.send([good, "event"]), 422)
    assert [(d["index"], d["code"]) for d in error["details"]] == [(1, "invalid_event")]
    assert api.ledger_rows() == 0
    assert api.rollup_rows() == 0


def test_every_bad_index_is_reported_at_once(api: Api) -> None:
    setup = api.metered("sum")
    good = event(subscription_id=setup.id, meter=setup.key("sum"))
    response = api.send(
        [
            event(subscription_id=setup.id, meter="nope"),
            good,
            event(subscription_id=setup.id, meter=setup.key("sum"), quantity="x", timestamp="y"),
            good | {"idempotency_key": "other"},
        ]
    )
    error = error_of(response, 422)
    assert error["message"] == "2 of 4 events are not valid; nothing was written"
    assert [(d["index"], d["field"], d["code"]) for d in error["details"]] == [
        (0, "meter", "meter_not_found"),
        (2, "timestamp", "invalid_field"),
        (2, "quantity", "invalid_quantity"),
    ]
    assert api.ledger_rows() == 0


def test_a_large_body_is_refused_as_a_small_one_is(api: Api) -> None:
    """A body of 64 KiB or more is decoded and validated away from the event loop: refused in
    the same shape, every bad index named, nothing written."""
    setup = api.metered("sum")
    events = [
        event(f"big-{n}", subscription_id=setup.id, meter=setup.key("sum"), quantity=1)
        for n in range(1_000)
    ]
    events[17] = events[17] | {"meter": "nope"}
    events[640] = events[640] | {"quantity": "x"}
    body = json.dumps({"events": events}).encode()
    assert len(body) > DECODED_INLINE_BYTES
    error = error_of(api.client.post("/v1/events", content=body), 422)
    assert error["message"] == "2 of 1000 events are not valid; nothing was written"
    assert [(d["index"], d["field"], d["code"]) for d in error["details"]] == [
        (17, "meter", "meter_not_found"),
        (640, "quantity", "invalid_quantity"),
    ]
    assert api.ledger_rows() == 0
    events[17] = events[17] | {"meter": setup.key("sum")}
    events[640] = events[640] | {"quantity": 1}
    assert api.record(events) == {"accepted": 1_000, "duplicates": 0}
    assert api.quantities(setup.id) == {setup.key("sum"): "1000"}


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        (b"{not json", 400, "invalid_json"),
        (b'{"events": [{"quantity": NaN}]}', 400, "invalid_json"),
        (b'{"events": [{"quantity": Infinity}]}', 400, "invalid_json"),
        (b"\xff\xfe", 400, "invalid_json"),
        (b"", 400, "invalid_json"),
        (b"[]", 422, "invalid_batch"),
        (b'{"events": []}', 422, "invalid_batch"),
        (b'{"events": {}}', 422, "invalid_batch"),
        (b'{"events": null}', 422, "invalid_batch"),
        (b'{"event": [{}]}', 422, "invalid_batch"),
        (b"[" * 100_000 + b"]" * 100_000, 400, "invalid_json"),
    ],
)
def test_malformed_bodies(api: Api, body: bytes, status: int, code: str) -> None:
    response = api.client.post("/v1/events", content=body)
    assert error_of(response, status)["code"] == code
    assert api.ledger_rows() == 0


def test_an_oversized_body_is_413(api: Api) -> None:
    setup = api.metered("sum")
    padding = "x" * (8 * 1024 * 1024)
    body = {"events": [event(subscription_id=setup.id, meter=setup.key("sum"))], "padding": padding}
    response = api.client.post("/v1/events", json=body)
    assert error_of(response, 413)["code"] == "payload_too_large"

    def chunks() -> Iterator[bytes]:
        # No Content-Length: the limit holds on what actually arrives.
        yield b'{"events": [], "padding": "'
        for _ in range(9):
            yield b"x" * (1024 * 1024)
        yield b'"}'

    response = api.client.post("/v1/events", content=chunks())
    assert error_of(response, 413)["code"] == "payload_too_large"
    assert api.ledger_rows() == 0


def test_a_meter_created_after_a_refusal_is_found_at_once(api: Api) -> None:
    # Each process keeps the meters it has found, never the ones it has not.
    setup = api.metered("sum")
    early = [event(subscription_id=setup.id, meter="created_later", quantity=1)]
    assert error_of(api.send(early), 422)["details"][0]["code"] == "meter_not_found"
    later = api.meter("sum", key="created_later")
    plan = api.plan([later])
    sub = api.subscription(setup.customer["id"], plan["id"])
    kept = [event(subscription_id=sub["id"], meter="created_later", quantity=2)]
    assert api.record(kept) == {"accepted": 1, "duplicates": 0}
    assert api.quantities(sub["id"]) == {"created_later": "2"}
    # The meter of the first plan is still known and still charged only by that plan.
    wrong = [event(subscription_id=setup.id, meter="created_later", quantity=1)]
    assert error_of(api.send(wrong), 422)["details"][0]["code"] == "meter_not_in_plan"

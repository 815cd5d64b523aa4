"""Drafts: a native body decoded in one pass reads exactly as the general path reads it."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

from hypothesis import example, given, settings
from hypothesis import strategies as st

from meterworks.api.jsonbody import parse_body
from meterworks.db.engine import dumps as stored_json
from meterworks.errors import InvalidInput
from meterworks.kit.decimals import format_decimal
from meterworks.usage.drafts import Draft, Errors, decode_batch, encode_properties, parse_event


def to_json(value: Any) -> str:
    """JSON text with each Decimal written as the number it is (as a client would send it)."""
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, dict):
        return "{" + ",".join(f"{json.dumps(k)}:{to_json(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ",".join(to_json(v) for v in value) + "]"
    return json.dumps(value, ensure_ascii=False)


def general_path(body: bytes) -> tuple[list[Draft | None], list[dict[str, Any]]]:
    errors = Errors()
    raw = parse_body(body)["events"]
    return [parse_event(index, event, errors) for index, event in enumerate(raw)], errors.items


def exactly(drafts: list[Draft | None]) -> list[Any]:
    """Drafts with their quantities as text: Decimal('1.50') == Decimal('1.5') hides a change."""
    return [(d, None if d is None or d.quantity is None else str(d.quantity)) for d in drafts]


# Text with what JSON encoders treat differently: quotes, backslashes, control characters, DEL,
# non-ASCII letters and characters outside the basic plane.
texts = st.text(alphabet=st.characters(blacklist_categories=["Cs"]), max_size=12) | st.sampled_from(
    ["eu-west", 'say "hi"', "back\\slash", "tab\there", "del\x7f", "café", "😀", ""]
)
plain_values = st.none() | st.booleans() | st.integers() | texts
decimals = st.decimals(allow_nan=False, allow_infinity=False, places=None)
property_values = st.recursive(
    plain_values | decimals,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(texts, inner, max_size=3),
    max_leaves=6,
)
properties = st.dictionaries(texts, property_values, max_size=4)

ABSENT = object()
ids = st.text(alphabet="abcxyz-_019é", min_size=1, max_size=8)
flat = st.dictionaries(ids, st.none() | st.booleans() | st.integers() | ids, max_size=3)
lists = st.lists(st.integers(), max_size=2)
TARGETS = ("subscription_id", "customer_id", "external_customer_id")


def sometimes_odd(ordinary: st.SearchStrategy[Any], odd: st.SearchStrategy[Any]) -> Any:
    """Mostly an ordinary value, one time in ten an odd one: a batch of ordinary events is
    what the quick path takes, and odd ones check that it leaves them alone."""
    return st.integers(0, 9).flatmap(lambda n: odd if n == 0 else ordinary)


timestamps = sometimes_odd(
    st.sampled_from(
        ["2025-01-31T10:00:00Z", "2025-01-31T10:00:00.123456Z", "2025-01-31T10:00:00+00:00"]
    ),
    st.sampled_from(
        ["2025-01-31T10:00:00z", "2025-01-31T12:00:00+02:00", "2025-01-31T10:00:00",
         "2025-01-31", " 2025-01-31T10:00:00Z", "1969-12-31T23:59:59Z", "9000-01-01T00:00:00Z",
         "2025-02-30T00:00:00Z", "yesterday", ""]
    ),
)  # fmt: skip
quantities = sometimes_odd(
    st.just(ABSENT)
    | st.none()
    | st.integers(min_value=-(10**18), max_value=10**18)
    | st.decimals(-(10**12), 10**12, allow_nan=False, allow_infinity=False, places=6)
    | st.sampled_from(["1.50", " 2 ", "-0", "0.000", "1e3", "1_000"]),
    st.booleans()
    | st.integers(min_value=-(10**25), max_value=10**25)
    | decimals
    | st.sampled_from(
        ["NaN", "Infinity", "", "x", "1" * 21, "0." + "1" * 19,
         "12345678901234567890.123456789012345678"]
    ),
)  # fmt: skip


@st.composite
def events(draw: st.DrawFn) -> dict[str, Any]:
    event: dict[str, Any] = {
        "idempotency_key": draw(sometimes_odd(ids, st.sampled_from([" ", "", "x" * 256]) | texts)),
        "meter": draw(sometimes_odd(st.sampled_from(["calls", "mtr_01"]), st.just(""))),
        "timestamp": draw(timestamps),
    }
    targets = draw(
        sometimes_odd(
            st.sampled_from(TARGETS).map(lambda name: [name]),
            st.lists(st.sampled_from(TARGETS), unique=True, max_size=3),
        )
    )
    for name in targets:
        event[name] = draw(sometimes_odd(ids, texts | st.integers() | st.none()))
    for name, values in (
        ("operation", sometimes_odd(st.sampled_from([ABSENT, "add", "set"]), st.just("sum"))),
        ("quantity", quantities),
        ("properties", sometimes_odd(st.just(ABSENT) | st.none() | flat, properties | lists)),
    ):
        value = draw(values)
        if value is not ABSENT:
            event[name] = value
    if draw(st.integers(0, 19)) == 0:
        del event[draw(st.sampled_from(["idempotency_key", "meter", "timestamp"]))]
    return event


@settings(max_examples=400)
@given(st.lists(events(), min_size=1, max_size=3))
@example([{"idempotency_key": "a", "meter": "calls", "timestamp": "2025-01-31T10:00:00Z",
           "subscription_id": "sub_1", "quantity": Decimal("1.50"),
           "properties": {"region": "eu-west", "n": 3, "ok": True, "none": None}}])  # fmt: skip
def test_a_decoded_body_reads_as_the_general_path_reads_it(batch: list[dict[str, Any]]) -> None:
    body = to_json({"events": batch}).encode()
    decoded = decode_batch(body)
    try:
        drafts, errors = general_path(body)
    except InvalidInput:  # text no database can store, say
        assert decoded is None
        return
    if decoded is not None:
        assert errors == []
        assert exactly(list(decoded)) == exactly(drafts)


def test_an_ordinary_batch_is_decoded_in_one_pass() -> None:
    """The quick path is taken by the bodies producers send: otherwise the test above is empty."""
    batch = [
        {"idempotency_key": f"k-{n}", "subscription_id": "sub_1", "meter": "calls",
         "timestamp": "2025-01-31T10:00:00.000001Z", "quantity": "1.50",
         "properties": {"region": "eu-west"}}
        for n in range(3)
    ] + [
        {"idempotency_key": "k-3", "external_customer_id": "acme", "meter": "seats",
         "timestamp": "2025-01-31T10:00:00+00:00", "operation": "set", "quantity": 7},
        {"idempotency_key": "k-4", "customer_id": "cus_1", "meter": "hits",
         "timestamp": "2025-01-31T10:00:00Z", "quantity": 2.5, "properties": {"n": 1.25}},
    ]  # fmt: skip
    body = to_json({"events": batch}).encode()
    decoded = decode_batch(body)
    assert decoded is not None
    assert exactly(list(decoded)) == exactly(general_path(body)[0])
    assert [d.ts_us for d in decoded] == [1738317600000001] * 3 + [1738317600000000] * 2
    assert decoded[1].properties_json == '{"region":"eu-west"}'
    assert str(decoded[4].quantity) == "2.5"
    # A decimal number among the properties takes the general encoders (stored as its text).
    assert (decoded[4].properties_json, decoded[4].properties_hashed) == ('{"n":"1.25"}',) * 2


def test_bodies_out_of_the_ordinary_are_left_to_the_general_path() -> None:
    ordinary = {"idempotency_key": "a", "subscription_id": "sub_1", "meter": "calls",
                "timestamp": "2025-01-31T10:00:00Z"}  # fmt: skip
    for body in [
        b"",
        b"[]",
        b'{"events": 3}',
        b'{"events": [1]}',
        json.dumps({"events": [{**ordinary, "subscription_id": 12}]}).encode(),
        json.dumps({"events": [{**ordinary, "quantity": "NaN"}]}).encode(),
        json.dumps({"events": [{**ordinary, "idempotency_key": "x" * 256}]}).encode(),
        json.dumps({"events": [{**ordinary, "meter": "caf\u00e9"}]}).encode(),  # a \u escape
        b'{"events": [{"idempotency_key": "a\xffb"}]}',  # not UTF-8
    ]:
        assert decode_batch(body) is None, body


@settings(max_examples=300)
@given(properties)
def test_properties_encode_as_the_general_encoders_do(value: dict[str, Any]) -> None:
    def has_decimal(item: Any) -> bool:
        if isinstance(item, dict):
            return any(has_decimal(v) for v in item.values())
        if isinstance(item, list):
            return any(has_decimal(v) for v in item)
        return isinstance(item, Decimal)

    def hashed(item: Any) -> Any:
        return format_decimal(item) if isinstance(item, Decimal) else str(item)

    canonical = json.dumps(value, sort_keys=True, separators=(",", ":"), default=hashed)
    stored = stored_json(value) if has_decimal(value) else canonical
    assert encode_properties(value) == (stored, canonical)

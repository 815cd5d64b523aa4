"""Reading each event of a batch on its own, before anything is looked up.

An event as a client sent it becomes a `Draft`: its fields checked and converted, or errors
naming what is wrong with it. Transports hand over events in the native shape, already decoded
from JSON (`parse_event`), or a native `POST /v1/events` body as it came (`decode_batch`), which
decodes ordinary batches straight into drafts and leaves every other body to the general path.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from typing import Any

import msgspec

from meterworks.db.engine import dumps as stored_json
from meterworks.kit.decimals import (
    DecimalInputError,
    bounded_decimal,
    format_decimal,
    parse_decimal,
)
from meterworks.kit.instants import instant_micros, to_micros

MAX_KEY_LENGTH = 255
# Events read, or validated (ingest.py), between two calls of `make_way`: a millisecond or two.
STEP = 200
MAX_PROPERTIES_BYTES = 16 * 1024


# A struct, not a dataclass: one is built per event, and a dataclass's __init__ (Python code
# assigning each field) took about four times as long. Never in a reference cycle (it holds
# text, numbers and properties), so the garbage collector need not track it.
class Draft(msgspec.Struct, gc=False):
    """One event's own fields, checked; its subscription and meter not yet looked up.

    `index` is its place in the batch being validated, set when that batch is read.
    """

    index: int
    key: str
    meter_ref: str
    ts_us: int
    operation: str
    quantity: Decimal | None
    properties: dict[str, Any] | None
    # `properties` as the ledger stores them (JSON text), and as the payload hash reads them.
    properties_json: str | None
    properties_hashed: str | None
    subscription_id: str | None
    customer_id: str | None
    external_customer_id: str | None


class Errors:
    """What is wrong with a batch, as `{index, field, code, message}` items."""

    def __init__(self) -> None:
        self.items: list[dict[str, Any]] = []

    def add(self, index: int, field: str, code: str, message: str) -> None:
        self.items.append({"index": index, "field": field, "code": code, "message": message})


def _strict(value: Any) -> Any:
    raise TypeError(type(value).__name__)


def _hash_default(value: Any) -> Any:
    return format_decimal(value) if isinstance(value, Decimal) else str(value)


# Built once: json.dumps with options builds an encoder per call, a cost paid per event here.
_PLAIN = json.JSONEncoder(sort_keys=True, separators=(",", ":"), default=_strict)
_HASHED = json.JSONEncoder(sort_keys=True, separators=(",", ":"), default=_hash_default)
_SORTED = msgspec.json.Encoder(order="sorted")
_PLAIN_VALUES = (str, int, bool, type(None))


def encode_properties(properties: dict[str, Any]) -> tuple[str, str]:
    """(the ledger's JSON text of `properties`, their canonical text for the payload hash).

    One encoding serves both, and the size check, unless a value is a decimal number: the
    ledger keeps its digits as sent (db/engine.py), the hash normalises them (1.50 is 1.5).
    """
    if all(type(value) in _PLAIN_VALUES for value in properties.values()):
        # Flat text, integers and flags (most properties): the compiled encoder gives the same
        # text as `_PLAIN` whenever its output needs no escape at all. `_PLAIN` escapes DEL and
        # everything outside ASCII; either way the text goes the general way.
        quick = _SORTED.encode(properties)
        if quick.isascii() and b"\\" not in quick and b"\x7f" not in quick:
            text = quick.decode()
            return text, text
    try:
        text = _PLAIN.encode(properties)
    except TypeError:
        return stored_json(properties), _HASHED.encode(properties)
    return text, text


def _text(raw: dict[str, Any], name: str) -> str | None:
    value = raw.get(name)
    if value is None:
        return None
    if isinstance(value, int | Decimal) and not isinstance(value, bool):
        return format_decimal(Decimal(value))
    if isinstance(value, str):
        return value
    return None


def parse_event(index: int, raw: Any, errors: Errors) -> Draft | None:
    """The draft of one event in the native shape (JSON already decoded, numbers as Decimal);
    None, with its errors added, where it is not valid on its own."""
    if not isinstance(raw, dict):
        errors.add(index, "", "invalid_event", "each event must be an object")
        return None
    before = len(errors.items)
    key = raw.get("idempotency_key")
    if not isinstance(key, str) or not key.strip():
        errors.add(index, "idempotency_key", "missing_field", "idempotency_key is required")
    elif len(key) > MAX_KEY_LENGTH:
        errors.add(index, "idempotency_key", "invalid_field", "at most 255 characters")
    meter_ref = raw.get("meter")
    if not isinstance(meter_ref, str) or not meter_ref:
        errors.add(index, "meter", "missing_field", "meter (id or key) is required")
    # The one target as text (ids may arrive as numbers); None where absent or not text.
    texts: dict[str, str | None] = {}
    for name in ("subscription_id", "customer_id", "external_customer_id"):
        value = raw.get(name)
        if value is not None:
            texts[name] = value if type(value) is str else _text(raw, name)
    if len(texts) != 1:
        errors.add(
            index,
            "subscription_id",
            "missing_field" if not texts else "invalid_field",
            "exactly one of subscription_id, customer_id, external_customer_id is required",
        )
    for name, text in texts.items():
        if text is None:
            errors.add(index, name, "invalid_field", f"{name} must be a string")
    ts_raw = raw.get("timestamp")
    ts_us: int | None = None
    if isinstance(ts_raw, datetime):
        ts_us = to_micros(ts_raw)
    elif isinstance(ts_raw, str):
        try:
            ts_us = instant_micros(ts_raw)
        except ValueError:
            errors.add(index, "timestamp", "invalid_field", "timestamp must be ISO-8601")
    else:
        errors.add(index, "timestamp", "missing_field", "timestamp (ISO-8601) is required")
    operation = raw.get("operation", "add")
    if operation not in ("add", "set"):
        errors.add(index, "operation", "invalid_field", "operation must be `add` or `set`")
    quantity: Decimal | None = None
    if raw.get("quantity") is not None:
        try:
            quantity = parse_decimal(raw["quantity"])
        except DecimalInputError as exc:
            errors.add(index, "quantity", "invalid_quantity", f"quantity {exc}")
    properties = raw.get("properties")
    properties_json: str | None = None
    properties_hashed: str | None = None
    if properties is not None:
        if not isinstance(properties, dict):
            errors.add(index, "properties", "invalid_field", "properties must be an object")
            properties = None
        else:
            properties_json, properties_hashed = encode_properties(properties)
            if len(properties_json) > MAX_PROPERTIES_BYTES:
                errors.add(index, "properties", "properties_too_large", "properties exceed 16 KiB")
    if len(errors.items) > before:
        return None
    assert isinstance(key, str)
    assert isinstance(meter_ref, str)
    assert ts_us is not None
    return Draft(
        index,
        key,
        meter_ref,
        ts_us,
        str(operation),
        quantity,
        properties,
        properties_json,
        properties_hashed,
        texts.get("subscription_id"),
        texts.get("customer_id"),
        texts.get("external_customer_id"),
    )


class _WireEvent(msgspec.Struct):
    """One event of a native body, in the types an ordinary event has (ids as text, say)."""

    idempotency_key: str
    meter: str
    timestamp: str
    subscription_id: str | None = None
    customer_id: str | None = None
    external_customer_id: str | None = None
    operation: str = "add"
    quantity: Decimal | None = None
    # As sent: producers repeat a few sets of properties, read once each (`_properties_of`).
    properties: msgspec.Raw = msgspec.Raw(b"")


class _WireBatch(msgspec.Struct):
    events: list[_WireEvent]


# Numbers become Decimal from their text, as `api/jsonbody.loads` makes them: never a float.
_DECODE = msgspec.json.Decoder(_WireBatch, float_hook=Decimal)
_DECODE_PROPERTIES = msgspec.json.Decoder(dict[str, Any], float_hook=Decimal)
_NO_PROPERTIES = (None, None, None)
# Properties as sent, up to this length, are remembered with what they were read as.
_REMEMBERED_BYTES = 512
_REMEMBERED_COUNT = 4096
_remembered: dict[bytes, tuple[dict[str, Any], str, str]] = {}


def _properties_of(
    raw: bytes,
) -> tuple[dict[str, Any], str, str] | tuple[None, None, None] | None:
    """(properties, their ledger text, their hashed text) from their JSON as sent; None where
    they are not an object. The same text gives the same dict each time: drafts never change
    their properties."""
    if not raw or raw == b"null":
        return _NO_PROPERTIES
    known = _remembered.get(raw)
    if known is not None:
        return known
    try:
        properties = _DECODE_PROPERTIES.decode(raw)
    except (msgspec.MsgspecError, ValueError, RecursionError):
        return None
    text, hashed = encode_properties(properties)
    known = (properties, text, hashed)
    if len(raw) <= _REMEMBERED_BYTES:
        if len(_remembered) >= _REMEMBERED_COUNT:
            _remembered.clear()
        _remembered[raw] = known
    return known


def decode_batch(body: bytes, make_way: Callable[[], None] | None = None) -> list[Draft] | None:
    """The drafts of a native `POST /v1/events` body, decoded in one pass; None where anything
    in it is out of the ordinary (or wrong), for the general path to read and answer.

    Every event decoded here becomes exactly the draft `parse_event` makes of it. A body holding
    a `\\u` escape is left to the general path, which checks for text no database can store.
    `make_way`, where given, is called every `STEP` events (the ledger writer's `make_way`).
    """
    if b"\\u" in body:
        return None
    try:
        wire = _DECODE.decode(body).events
    except (msgspec.MsgspecError, ValueError, RecursionError):  # invalid UTF-8 is a ValueError
        return None
    drafts: list[Draft] = []
    for index, event in enumerate(wire):
        if make_way is not None and index % STEP == 0:
            make_way()
        draft = _draft_of(index, event)
        if draft is None:
            return None
        drafts.append(draft)
    return drafts


def _draft_of(index: int, event: _WireEvent) -> Draft | None:
    key = event.idempotency_key
    if not key.strip() or len(key) > MAX_KEY_LENGTH or not event.meter:
        return None
    targets = (
        (event.subscription_id is not None)
        + (event.customer_id is not None)
        + (event.external_customer_id is not None)
    )
    if targets != 1 or event.operation not in ("add", "set"):
        return None
    try:
        ts_us = instant_micros(event.timestamp)
        quantity = None if event.quantity is None else bounded_decimal(event.quantity)
    except ValueError:  # DecimalInputError is one
        return None
    read = _properties_of(bytes(event.properties))
    if read is None:
        return None
    properties, properties_json, properties_hashed = read
    if properties_json is not None and len(properties_json) > MAX_PROPERTIES_BYTES:
        return None
    return Draft(
        index,
        key,
        event.meter,
        ts_us,
        event.operation,
        quantity,
        properties,
        properties_json,
        properties_hashed,
        event.subscription_id,
        event.customer_id,
        event.external_customer_id,
    )

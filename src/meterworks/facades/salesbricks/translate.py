"""Salesbricks words to meterworks words: bricks are meters, counters add, gauges set.

The one rule stated here is which kind of brick each vendor call may touch; every other check
(window, plan, negative quantities, dedupe) is the ingest path's own.
"""

from __future__ import annotations

import hashlib
from enum import StrEnum
from typing import Any

from meterworks.catalog.meters import Aggregation, Meter
from meterworks.errors import InvalidInput
from meterworks.kit.ids import new_id

SOURCE = "salesbricks"
# Ledger keys of REST v2 entries: `sb:` + transaction_id, so they never meet a native key.
TRANSACTION_PREFIX = "sb:"
# A transaction_id too long to take the prefix is stored under its hash (not shown back).
HASHED_TRANSACTION_PREFIX = "sb#"
LEDGER_KEY_MAX = 255
MAX_TRANSACTION_ID = 255
MAX_IDEMPOTENCY_KEY = 255


class BrickCall(StrEnum):
    """What a client asks of a brick; each kind of brick accepts one of them."""

    INCREMENT_COUNTER = "incrementCounter"  # a "Final value" brick: the sum of the period
    SET_GAUGE = "setGauge"  # a "Prorated" brick: Σ level × days

    @property
    def operation(self) -> str:
        return "add" if self is BrickCall.INCREMENT_COUNTER else "set"

    @property
    def quantity_argument(self) -> str:
        return "count" if self is BrickCall.INCREMENT_COUNTER else "value"


REQUIRED_AGGREGATION = {
    BrickCall.INCREMENT_COUNTER: Aggregation.SUM,
    BrickCall.SET_GAUGE: Aggregation.PRORATED,
}


def check_brick_kind(call: BrickCall, meter: Meter) -> None:
    """Refuse a counter call on a brick that is not a counter, and a gauge call likewise."""
    required = REQUIRED_AGGREGATION[call]
    if meter.aggregation is not required:
        raise InvalidInput(
            f"brick `{meter.key}` is a `{meter.aggregation.value}` meter; {call.value} needs a "
            f"`{required.value}` meter",
            code="wrong_brick_kind",
            details=[{"field": "meter", "code": "wrong_brick_kind"}],
        )


def call_for_brick(meter: Meter) -> BrickCall:
    """The call a REST v2 entry makes on this brick: counters add, gauges set."""
    for call, aggregation in REQUIRED_AGGREGATION.items():
        if meter.aggregation is aggregation:
            return call
    raise InvalidInput(
        f"brick `{meter.key}` is a `{meter.aggregation.value}` meter; usage entries need a "
        "`sum` (counter) or `prorated` (gauge) meter",
        code="wrong_brick_kind",
        details=[{"field": "meter", "code": "wrong_brick_kind"}],
    )


def transaction_key(transaction_id: str) -> str:
    """The ledger key of a REST v2 entry."""
    key = TRANSACTION_PREFIX + transaction_id
    if len(key) <= LEDGER_KEY_MAX:
        return key
    digest = hashlib.blake2b(transaction_id.encode(), digest_size=32).hexdigest()
    return HASHED_TRANSACTION_PREFIX + digest


def transaction_id_of(ledger_key: str) -> str | None:
    """The REST v2 transaction_id behind a ledger key, when there is one to show."""
    if ledger_key.startswith(TRANSACTION_PREFIX):
        return ledger_key[len(TRANSACTION_PREFIX) :]
    return None


def operation_key(idempotency_key: str | None, response_key: str) -> str:
    """The ledger key of one GraphQL mutation field.

    With the client's idempotency key the ledger key is derived from it (and from the field's
    response name, since one document may hold several mutations), so the ledger dedupes too;
    without one, every call is a new event, under a fresh time-ordered id (`sb_...`): keys made
    in order land together in the ledger's key index, where random ones would each touch a page
    of their own.
    """
    if idempotency_key is None:
        return new_id("sb")
    material = f"{idempotency_key}\x00{response_key}".encode()
    return "sb-op:" + hashlib.blake2b(material, digest_size=16).hexdigest()


# Domain codes as a Salesbricks client reads them (snake case; GraphQL shows them upper case).
_VENDOR_CODES = {
    "meter_not_found": "brick_not_found",
    "meter_not_in_plan": "brick_not_in_plan",
    "operation_not_allowed": "wrong_brick_kind",
    "event_not_found": "transaction_not_found",
    "event_voided": "transaction_deleted",
    "idempotency_conflict": "transaction_conflict",
}

# Native field names as the vendor calls them.
_GRAPHQL_ARGUMENTS = {
    "meter": "brickId",
    "subscription_id": "subscriptionId",
    "timestamp": "timestamp",
}
_REST_FIELDS = {
    "meter": "brick_id",
    "subscription_id": "subscription_id",
    "timestamp": "time",
    "properties": "properties",
}


def vendor_code(code: str, call: BrickCall = BrickCall.SET_GAUGE) -> str:
    """A domain error code in Salesbricks terms; quantity codes name the call's own argument."""
    if code == "negative_quantity":
        return f"negative_{call.quantity_argument}"
    if code == "invalid_quantity":
        return f"invalid_{call.quantity_argument}"
    return _VENDOR_CODES.get(code, code)


def graphql_argument(field: str, call: BrickCall) -> str | None:
    if field == "quantity":
        return call.quantity_argument
    return _GRAPHQL_ARGUMENTS.get(field)


def rest_field(field: str) -> str | None:
    if field == "quantity":
        return "value"
    return _REST_FIELDS.get(field)


# The field a lone domain error (not a refused batch) is about.
_FIELD_OF_CODE = {
    "meter_not_found": "meter",
    "subscription_not_found": "subscription_id",
    "wrong_brick_kind": "meter",
}


def first_problem(code: str, details: Any) -> tuple[str, str | None, str | None]:
    """(code, field, message) of a domain error: the first per-event problem of a refused
    batch when it lists them, else the error's own code."""
    if isinstance(details, list) and details and isinstance(details[0], dict):
        item = details[0]
        return (
            str(item.get("code") or code),
            item.get("field") or _FIELD_OF_CODE.get(code),
            item.get("message"),
        )
    return code, _FIELD_OF_CODE.get(code), None

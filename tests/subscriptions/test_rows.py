"""Subscriptions are read from rows by position: the order of `_COLUMNS` is what they follow."""

from __future__ import annotations

from typing import Any

from meterworks.subscriptions import service
from meterworks.subscriptions.service import subscription_from_row


def test_a_subscription_takes_each_field_from_its_own_column() -> None:
    names = [column.name for column in service._COLUMNS]
    # A value of its own per column; the interval must be one, the metadata a JSON object.
    special: dict[str, Any] = {"interval": "quarter", "metadata": {"from": "metadata"}}
    row = tuple(special.get(name, f"value of {name}") for name in names)
    sub = subscription_from_row(row)  # type: ignore[arg-type]
    assert {name: getattr(sub, name) for name in names} == dict(zip(names, row, strict=True))

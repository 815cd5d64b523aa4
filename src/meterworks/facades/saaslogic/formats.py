"""Saaslogic's value formats: dates without a zone (UTC), decimals as exact strings."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel

from meterworks.kit.clock import ensure_utc
from meterworks.kit.decimals import format_decimal


def saaslogic_date(value: datetime) -> str:
    """`2025-03-18T00:00:00`: Saaslogic writes UTC instants without a zone."""
    utc = ensure_utc(value)
    if utc.microsecond:
        return utc.strftime("%Y-%m-%dT%H:%M:%S.%f")
    return utc.strftime("%Y-%m-%dT%H:%M:%S")


def optional_date(value: datetime | None) -> str | None:
    return None if value is None else saaslogic_date(value)


def decimal_text(value: Decimal) -> str:
    return format_decimal(value)


class SaaslogicModel(BaseModel):
    """Fields named in Python's style, read and written in Saaslogic's camelCase."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)

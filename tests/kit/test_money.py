"""Money: minor units per ISO 4217 and the one rounding rule, half-up."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meterworks.kit.money import (
    CURRENCIES,
    exponent,
    format_amount,
    format_minor,
    from_minor,
    round_half_up,
    to_minor,
)

D = Decimal


@pytest.mark.parametrize(
    ("currency", "places"),
    [
        ("USD", 2),
        ("EUR", 2),
        ("usd", 2),
        ("JPY", 0),
        ("KRW", 0),
        ("BHD", 3),
        ("KWD", 3),
        ("CLF", 4),
    ],
)
def test_exponent(currency: str, places: int) -> None:
    assert exponent(currency) == places


@pytest.mark.parametrize(
    ("amount", "currency", "rounded"),
    [
        (D("2.345"), "USD", D("2.35")),  # half-up, not half-even
        (D("2.355"), "USD", D("2.36")),
        (D("2.3449999"), "USD", D("2.34")),
        (D("-2.345"), "USD", D("-2.35")),  # half away from zero
        (D("0.005"), "USD", D("0.01")),
        (D("1499.5"), "JPY", D(1500)),
        (D("1498.5"), "JPY", D(1499)),
        (D("0.0005"), "BHD", D("0.001")),
        (D("262"), "USD", D("262.00")),
    ],
)
def test_round_half_up(amount: Decimal, currency: str, rounded: Decimal) -> None:
    result = round_half_up(amount, currency)
    assert result == rounded
    assert result.as_tuple().exponent == -exponent(currency)


def test_minor_units_and_formatting() -> None:
    assert to_minor(D("262"), "USD") == 26200
    assert to_minor(D("0.125"), "USD") == 13
    assert to_minor(D("1500"), "JPY") == 1500
    assert to_minor(D("1.2345"), "KWD") == 1235
    assert from_minor(26200, "USD") == D("262.00")
    assert format_minor(26200, "USD") == "262.00"
    assert format_minor(5, "USD") == "0.05"
    assert format_minor(-5, "USD") == "-0.05"
    assert format_minor(1500, "JPY") == "1500"
    assert format_minor(1235, "KWD") == "1.235"
    assert format_amount(D("226"), "USD") == "226.00"
    assert format_amount(D("0.004"), "USD") == "0.00"


def test_currency_list_holds_the_codes_plans_use() -> None:
    assert {"USD", "EUR", "GBP", "JPY", "CHF", "BHD"} <= CURRENCIES
    assert all(len(code) == 3 and code.isupper() for code in CURRENCIES)


@settings(max_examples=300)
@given(
    units=st.integers(-(10**12), 10**12),
    places=st.integers(0, 8),
    currency=st.sampled_from(["USD", "JPY", "BHD", "CLF"]),
)
def test_minor_units_round_trip_and_rounding_is_half_up(
    units: int, places: int, currency: str
) -> None:
    amount = D(f"{units}e-{places}")
    minor = to_minor(amount, currency)
    back = from_minor(minor, currency)
    step = D(1).scaleb(-exponent(currency))
    # Never more than half a minor unit away, and exactly half only when rounding away from zero.
    distance = abs(back - amount)
    assert distance <= step / 2
    if distance == step / 2:
        assert abs(back) > abs(amount)
    assert to_minor(back, currency) == minor
    assert D(format_minor(minor, currency)) == back

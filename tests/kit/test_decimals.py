"""Exact decimals: parsing client input without float, rendering without exponent."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meterworks.kit.decimals import (
    MAX_DIGITS,
    MAX_SCALE,
    DecimalInputError,
    format_decimal,
    parse_decimal,
)

D = Decimal


@pytest.mark.parametrize(
    ("given_value", "expected"),
    [
        ("1", D(1)),
        ("0.1", D("0.1")),
        (" 42.50 ", D("42.50")),
        ("-3", D(-3)),
        ("1e3", D(1000)),
        ("0", D(0)),
        ("-0", D(0)),
        ("0.000", D(0)),
        (7, D(7)),
        (D("2.25"), D("2.25")),
        # The most the limits allow: 20 integer digits and 18 decimals, kept exactly.
        ("0.100000000000000001", D("0.100000000000000001")),
        ("-12.000000000000000001", D("-12.000000000000000001")),
        ("99999999999999999999.999999999999999999", D("99999999999999999999.999999999999999999")),
    ],
)
def test_parses_exactly(given_value: object, expected: Decimal) -> None:
    parsed = parse_decimal(given_value)
    assert parsed == expected
    assert format_decimal(parsed) == format_decimal(expected)


@pytest.mark.parametrize(
    "refused",
    [
        1.5,  # floats cannot carry an exact decimal value
        0.1,
        True,
        False,
        None,
        "",
        "   ",
        "abc",
        "1,5",
        "NaN",
        "nan",
        "sNaN",
        "Infinity",
        "-Infinity",
        "inf",
        D("NaN"),
        D("Infinity"),
        [1],
        {"value": 1},
        "0.1000000000000000001",  # 19 decimals
        "100000000000000000000",  # 21 integer digits
        "1e400",
        "1e-400",
    ],
)
def test_refuses_what_is_not_an_exact_finite_number(refused: object) -> None:
    with pytest.raises(DecimalInputError):
        parse_decimal(refused)


def test_zero_is_normalised_so_a_negative_zero_never_shows() -> None:
    assert format_decimal(parse_decimal("-0.00")) == "0"


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (D("30.0"), "30"),
        (D("1E+3"), "1000"),
        (D("1E-7"), "0.0000001"),
        (D("-2.500"), "-2.5"),
        (D("0E-10"), "0"),
        (D("-0"), "0"),
        (D("123456789012345678901234567890.123456789"), "123456789012345678901234567890.123456789"),
    ],
)
def test_format_has_no_exponent_and_no_trailing_zeros(value: Decimal, text: str) -> None:
    assert format_decimal(value) == text


exact_numbers = st.builds(
    lambda digits, places, negative: D(f"{'-' if negative else ''}{digits}e-{places}"),
    st.integers(0, 10 ** (MAX_DIGITS - MAX_SCALE) - 1),
    st.integers(0, MAX_SCALE),
    st.booleans(),
)


@settings(max_examples=500)
@given(exact_numbers)
def test_format_then_parse_round_trips(value: Decimal) -> None:
    text = format_decimal(value)
    assert "E" not in text
    assert "e" not in text
    assert not ("." in text and text.endswith(("0", ".")))
    assert parse_decimal(text) == value
    assert parse_decimal(value) == value


@settings(max_examples=200)
@given(st.floats(allow_nan=True, allow_infinity=True))
def test_every_float_is_refused(value: float) -> None:
    with pytest.raises(DecimalInputError):
        parse_decimal(value)

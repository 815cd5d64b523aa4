"""Instants: ISO-8601 in, integer microseconds in the ledger, `Z` out."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meterworks.kit.instants import (
    EARLIEST,
    LATEST,
    format_instant,
    from_micros,
    instant_micros,
    parse_instant,
    to_micros,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2025-01-31T00:00:00Z", datetime(2025, 1, 31, tzinfo=UTC)),
        ("2025-01-31T00:00:00z", datetime(2025, 1, 31, tzinfo=UTC)),
        ("2025-01-31T02:00:00+02:00", datetime(2025, 1, 31, tzinfo=UTC)),
        ("2025-01-31T00:00:00", datetime(2025, 1, 31, tzinfo=UTC)),  # no offset means UTC
        ("2025-01-31T00:00:00.000001Z", datetime(2025, 1, 31, 0, 0, 0, 1, tzinfo=UTC)),
        ("2025-01-31", datetime(2025, 1, 31, tzinfo=UTC)),
    ],
)
def test_parse(text: str, expected: datetime) -> None:
    assert parse_instant(text) == expected
    assert parse_instant(text).tzinfo == UTC
    assert instant_micros(text) == to_micros(expected)


@pytest.mark.parametrize(
    "text",
    [
        "",
        " ",
        "yesterday",
        "2025-02-30T00:00:00Z",
        "2025-01-01T25:00:00Z",
        "2025-01-01T00:00:00+25:00",
        # Out of the representable range once moved to UTC: refused, not an overflow.
        "0001-01-01T00:00:00+01:00",
        "9999-12-31T23:59:59-01:00",
        # Outside the instants clients may send.
        "1969-12-31T23:59:59.999999Z",
        "9000-01-01T00:00:00Z",
        "9999-12-31T00:00:00Z",
    ],
)
def test_parse_refuses_with_value_error(text: str) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - the callers catch exactly ValueError
        parse_instant(text)
    with pytest.raises(ValueError):  # noqa: PT011
        instant_micros(text)


def test_format() -> None:
    assert format_instant(datetime(2025, 1, 31, tzinfo=UTC)) == "2025-01-31T00:00:00Z"
    assert format_instant(datetime(999, 1, 1, tzinfo=UTC)) == "0999-01-01T00:00:00Z"
    assert (
        format_instant(datetime(2025, 1, 31, 1, tzinfo=timezone(timedelta(hours=1))))
        == "2025-01-31T00:00:00Z"
    )
    assert (
        format_instant(datetime(2025, 1, 31, 0, 0, 0, 120, tzinfo=UTC))
        == "2025-01-31T00:00:00.000120Z"
    )


@settings(max_examples=300)
@given(
    st.datetimes(
        min_value=datetime(1, 1, 1),  # noqa: DTZ001 - hypothesis bounds are naive
        max_value=datetime(9999, 12, 31),  # noqa: DTZ001
        timezones=st.just(UTC),
    )
)
def test_micros_round_trip(instant: datetime) -> None:
    assert from_micros(to_micros(instant)) == instant
    assert to_micros(instant + timedelta(microseconds=1)) == to_micros(instant) + 1
    if EARLIEST <= instant < LATEST:
        assert parse_instant(format_instant(instant)) == instant
    else:
        with pytest.raises(ValueError, match="between"):
            parse_instant(format_instant(instant))


def test_the_accepted_range_is_half_open() -> None:
    assert parse_instant("1970-01-01T00:00:00Z") == EARLIEST
    assert parse_instant("8999-12-31T23:59:59.999999Z") == LATEST - timedelta(microseconds=1)


@settings(max_examples=300)
@given(
    st.datetimes(
        min_value=datetime(1, 1, 2),  # noqa: DTZ001 - hypothesis bounds are naive
        max_value=datetime(9999, 12, 30),  # noqa: DTZ001
        timezones=st.sampled_from([UTC, timezone(timedelta(hours=-5)), timezone.min]),
    ),
    st.sampled_from(["Z", "z", "+00:00", "", " "]),
)
def test_instant_micros_is_parse_then_micros(instant: datetime, suffix: str) -> None:
    """The quick path answers exactly as parse_instant followed by to_micros, or refuses alike."""
    text = instant.replace(tzinfo=None).isoformat()
    if instant.utcoffset() == timedelta(0):
        text += suffix
    else:
        text = instant.isoformat()
    try:
        expected = to_micros(parse_instant(text))
    except ValueError:
        with pytest.raises(ValueError):  # noqa: PT011
            instant_micros(text)
        return
    assert instant_micros(text) == expected

"""Instants as integer microseconds since the Unix epoch, the ledger's own time unit.

Integers keep the ledger exact, compact and identically ordered on every database.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from meterworks.kit.clock import ensure_utc

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# The instants accepted from clients. Periods are computed a period or two beyond an instant,
# and datetime stops at year 9999: bounding input here keeps every later step from overflowing.
EARLIEST = EPOCH
LATEST = datetime(9000, 1, 1, tzinfo=UTC)
MICROS_PER_SECOND = 1_000_000
MICROS_PER_DAY = 86_400 * MICROS_PER_SECOND


def to_micros(value: datetime) -> int:
    delta = ensure_utc(value) - EPOCH
    return (delta.days * 86_400 + delta.seconds) * MICROS_PER_SECOND + delta.microseconds


def from_micros(value: int) -> datetime:
    return EPOCH + timedelta(microseconds=value)


def parse_instant(text: str) -> datetime:
    """ISO-8601; `Z` or an offset; no offset means UTC; from 1970 up to (not into) year 9000."""
    raw = text.strip()
    if not raw:
        raise ValueError("empty timestamp")
    if raw.endswith(("Z", "z")):
        raw = raw[:-1] + "+00:00"
    parsed = datetime.fromisoformat(raw)
    try:
        instant = ensure_utc(parsed)
    except OverflowError as exc:
        # Callers refuse bad input by catching ValueError; an offset near year 1 or 9999 is that.
        raise ValueError(f"{text!r} is out of range in UTC") from exc
    if not EARLIEST <= instant < LATEST:
        raise ValueError(f"{text!r} is not between 1970-01-01 and 9000-01-01")
    return instant


def instant_micros(text: str) -> int:
    """`to_micros(parse_instant(text))`, the same for every input, quicker for UTC instants."""
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        parsed = None
    if parsed is not None and parsed.tzinfo is UTC and EARLIEST <= parsed < LATEST:
        delta = parsed - EPOCH
        return (delta.days * 86_400 + delta.seconds) * MICROS_PER_SECOND + delta.microseconds
    return to_micros(parse_instant(text))


def format_instant(value: datetime) -> str:
    """`2024-01-31T00:00:00Z`, with microseconds only when there are some."""
    # isoformat, not strftime: strftime does not pad years before 1000 to four digits.
    naive = ensure_utc(value).replace(tzinfo=None)
    return naive.isoformat(timespec="microseconds" if naive.microsecond else "seconds") + "Z"

"""The events a benchmark sends: deterministic, spread over subscriptions and meters.

Each client process owns its own subscriptions and sends its events in time order, so the
level meters (`max`, `prorated`) take the writer's in-order path, as a live producer's events
do. Everything about an event follows from its stream and its number, so the expected totals
are recomputed here rather than trusted from the clients.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

# (key, aggregation, unit): one counter, one gauge read for its peak, one gauge integrated.
METERS: tuple[tuple[str, str, str], ...] = (
    ("bench_calls", "sum", "call"),
    ("bench_storage", "max", "GB"),
    ("bench_seats", "prorated", "seat"),
)
REGIONS = ("eu-west", "us-east", "ap-south", "sa-east")


def instant(us: int) -> str:
    return (EPOCH + timedelta(microseconds=us)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def micros(value: datetime) -> int:
    delta = value - EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


@dataclass(frozen=True, slots=True)
class Stream:
    """One client's events in one phase: `count` events, from `first_us`, `step_us` apart."""

    key_prefix: str
    subscriptions: tuple[str, ...]
    first_us: int
    step_us: int
    count: int

    def event(self, n: int) -> dict[str, Any]:
        subs = len(self.subscriptions)
        meter = (n // subs) % len(METERS)
        key, aggregation, _ = METERS[meter]
        raw: dict[str, Any] = {
            "idempotency_key": f"{self.key_prefix}-{n}",
            "subscription_id": self.subscriptions[n % subs],
            "meter": key,
            "timestamp": instant(self.first_us + n * self.step_us),
            "properties": {"region": REGIONS[n % len(REGIONS)]},
        }
        if aggregation == "sum":
            cents = n % 1000 + 1
            raw["quantity"] = f"{cents // 100}.{cents % 100:02d}"
        else:
            raw["operation"] = "set"
            raw["quantity"] = str(1 + (n * 7919) % 50)
        return raw

    def events(self, start: int = 0, stop: int | None = None) -> Iterator[dict[str, Any]]:
        for n in range(start, self.count if stop is None else min(stop, self.count)):
            yield self.event(n)

    def bodies(self, batch_size: int) -> list[bytes]:
        """The stream as `POST /v1/events` bodies of `batch_size` events, encoded up front."""
        return [
            json.dumps(
                {"events": list(self.events(start, start + batch_size))}, separators=(",", ":")
            ).encode()
            for start in range(0, self.count, batch_size)
        ]


def streams(
    prefix: str,
    subscriptions: Sequence[str],
    clients: int,
    events: int,
    first_us: int,
    last_us: int,
) -> list[Stream]:
    """Split `events` over `clients` streams, each owning every `clients`-th subscription."""
    per_client = -(-events // clients)
    step = max(1, (last_us - first_us) // max(1, per_client))
    result = []
    left = events
    for client in range(clients):
        count = min(per_client, left)
        left -= count
        owned = tuple(subscriptions[client::clients])
        if count and not owned:
            raise ValueError("more clients than subscriptions")
        result.append(Stream(f"{prefix}-c{client}", owned, first_us, step, count))
    return result


@dataclass(slots=True)
class Expected:
    """What the ledger must hold after the streams: per (subscription, meter key)."""

    counts: dict[tuple[str, str], int] = field(default_factory=dict)
    sums: dict[tuple[str, str], Decimal] = field(default_factory=dict)
    peaks: dict[tuple[str, str], Decimal] = field(default_factory=dict)

    @property
    def events(self) -> int:
        return sum(self.counts.values())

    def add(self, raw: dict[str, Any]) -> None:
        pair = (str(raw["subscription_id"]), str(raw["meter"]))
        quantity = Decimal(str(raw["quantity"]))
        self.counts[pair] = self.counts.get(pair, 0) + 1
        aggregation = next(agg for key, agg, _ in METERS if key == pair[1])
        if aggregation == "sum":
            self.sums[pair] = self.sums.get(pair, Decimal(0)) + quantity
        elif aggregation == "max":
            self.peaks[pair] = max(self.peaks.get(pair, Decimal(0)), quantity)

    def merge(self, other: Expected) -> None:
        for pair, count in other.counts.items():
            self.counts[pair] = self.counts.get(pair, 0) + count
        for pair, total in other.sums.items():
            self.sums[pair] = self.sums.get(pair, Decimal(0)) + total
        for pair, peak in other.peaks.items():
            self.peaks[pair] = max(self.peaks.get(pair, Decimal(0)), peak)


def expected_of(all_streams: Sequence[Stream]) -> Expected:
    expected = Expected()
    for stream in all_streams:
        for raw in stream.events():
            expected.add(raw)
    return expected

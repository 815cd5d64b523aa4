"""Batched ingestion: `POST /v1/events` with 1,000 and 10,000 events a call, then replayed.

Per dialect: a fresh database, `meterworks serve` in its own process, an organization with
three meters (sum, max, prorated) and N subscriptions made through the API; then a few client
processes send every event once (fresh keys), replay the same batches in full (all must come
back as duplicates), and the ledger is checked against what was sent. The floor writes the same
rows, cut into the same batches, straight into a bare table from one process.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import floor
from bench.databases import fresh_database
from bench.load import BatchClient, Timed, percentile, run_batches
from bench.server import ServerProcess
from bench.tenant import build_tenant
from bench.verify import LostOrDoubled, verify
from bench.workload import Stream, expected_of, streams


@dataclass(frozen=True, slots=True)
class IngestOptions:
    subscriptions: int = 100
    clients: int = 4
    small_batch: int = 1_000
    small_events: int = 200_000
    large_batch: int = 10_000
    large_events: int = 200_000


COLUMNS = (
    "dialect", "case", "events", "seconds", "events/s", "floor events/s", "× floor",
    "server CPU µs/event", "p50 ms/request", "p99 ms/request",
)  # fmt: skip


def _check(step: Timed, events: int, replay: bool, label: str) -> None:
    result = step.result
    if result.failures:
        raise LostOrDoubled(f"{label}: {len(result.failures)} refused calls: {result.failures[:3]}")
    want = (0, events) if replay else (events, 0)
    if (result.accepted, result.duplicates) != want:
        raise LostOrDoubled(
            f"{label}: answered accepted={result.accepted} duplicates={result.duplicates}, "
            f"expected accepted={want[0]} duplicates={want[1]}"
        )


def run(dialect: str, workdir: Path, options: IngestOptions) -> dict[str, Any]:
    run_id = secrets.token_hex(3)
    log = workdir / f"server-ingest-{dialect}.log"
    with fresh_database(dialect, workdir, "ingest") as url, ServerProcess(url, log) as server:
        tenant = build_tenant(url, server.base_url, f"ingest {run_id}", options.subscriptions)
        first, last = tenant.window_us()
        middle = (first + last) // 2
        # The small batches are dated before the large ones: every pair stays in time order.
        small = streams(
            f"{run_id}-s", tenant.subscriptions, options.clients, options.small_events,
            first, middle,
        )  # fmt: skip
        large = streams(
            f"{run_id}-l", tenant.subscriptions, options.clients, options.large_events,
            middle, last,
        )  # fmt: skip
        clients = [
            BatchClient(
                server.base_url,
                tenant.token,
                ((small[c], options.small_batch), (large[c], options.large_batch)),
                (0, 0, 1, 1),
            )
            for c in range(options.clients)
        ]
        steps = run_batches(clients, server.pid)
        cases = [
            (f"fresh, batches of {options.small_batch:,}", options.small_events, False),
            (f"replay, batches of {options.small_batch:,}", options.small_events, True),
            (f"fresh, batches of {options.large_batch:,}", options.large_events, False),
            (f"replay, batches of {options.large_batch:,}", options.large_events, True),
        ]
        for step, (label, events, replay) in zip(steps, cases, strict=True):
            _check(step, events, replay, f"{dialect} {label}")
        verified = verify(dialect, url, tenant, expected_of([*small, *large]))
        peak_rss_kib = server.peak_rss_kib()
        meter_ids = tenant.meter_ids
    floors = _floor(dialect, workdir, options, small, large, meter_ids)
    rows = []
    for step, (label, events, _), floor_s in zip(steps, cases, floors, strict=True):
        rate = events / step.seconds
        floor_rate = events / floor_s
        rows.append(
            {
                "dialect": dialect,
                "case": label,
                "events": events,
                "seconds": round(step.seconds, 3),
                "events_per_s": round(rate),
                "floor_events_per_s": round(floor_rate),
                "ratio_to_floor": round(rate / floor_rate, 3),
                "server_cpu_s": round(step.server_cpu_s, 2),
                "server_cpu_us_per_event": round(step.server_cpu_s / events * 1e6, 1),
                "requests": step.result.requests,
                "request_p50_ms": round(percentile(step.result.latencies, 0.5) * 1000, 1),
                "request_p99_ms": round(percentile(step.result.latencies, 0.99) * 1000, 1),
                "floor_seconds": round(floor_s, 3),
            }
        )
    return {
        "dialect": dialect,
        "rows": rows,
        "verified": verified.summary(),
        "ledger_verify_s": (
            None if verified.ledger_verify_s is None else round(verified.ledger_verify_s, 1)
        ),
        "server_peak_rss_mib": round(peak_rss_kib / 1024, 1),
    }


def _floor(
    dialect: str,
    workdir: Path,
    options: IngestOptions,
    small: list[Stream],
    large: list[Stream],
    meter_ids: dict[str, str],
) -> list[float]:
    with fresh_database(dialect, workdir, "floor") as url:
        floor.create_table(dialect, url)
        small_rows = floor.rows_of(small, options.small_batch, meter_ids, 1)
        large_rows = floor.rows_of(large, options.large_batch, meter_ids, 1 + options.small_events)
        seconds = [
            floor.write(dialect, url, small_rows, replay=False),
            floor.write(dialect, url, small_rows, replay=True),
            floor.write(dialect, url, large_rows, replay=False),
            floor.write(dialect, url, large_rows, replay=True),
        ]
        stored = floor.count_rows(dialect, url)
        if stored != options.small_events + options.large_events:
            raise LostOrDoubled(f"the floor table holds {stored} rows")
        return seconds


def table_rows(result: dict[str, Any]) -> list[list[Any]]:
    return [
        [
            r["dialect"], r["case"], r["events"], r["seconds"], r["events_per_s"],
            r["floor_events_per_s"], r["ratio_to_floor"], r["server_cpu_us_per_event"],
            r["request_p50_ms"], r["request_p99_ms"],
        ]
        for r in result["rows"]
    ]  # fmt: skip

"""Single-event requests: one event per `POST /v1/events`, from many concurrent connections.

The floor is `GET /healthz` under the same load from the same clients: the app has no no-op
endpoint, and /healthz is the nearest one (routing, JSON answer, one `SELECT 1`), so the ratio
is the price of authentication, validation and the durable group commit.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.databases import fresh_database
from bench.load import Timed, percentile, run_requests
from bench.server import ServerProcess
from bench.tenant import build_tenant
from bench.verify import LostOrDoubled, verify


@dataclass(frozen=True, slots=True)
class SingleOptions:
    processes: int = 4
    connections: int = 64  # in all, spread over the processes
    duration_s: float = 15.0
    subscriptions: int = 128


COLUMNS = (
    "dialect", "calls", "connections", "requests", "requests/s", "floor requests/s", "× floor",
    "p50 ms", "p99 ms", "floor p50 ms", "floor p99 ms", "server CPU µs/request",
)  # fmt: skip


def summary(timed: Timed) -> dict[str, Any]:
    result = timed.result
    return {
        "requests": result.requests,
        "seconds": round(timed.seconds, 3),
        "requests_per_s": round(result.requests / timed.seconds),
        "p50_ms": round(percentile(result.latencies, 0.5) * 1000, 2),
        "p90_ms": round(percentile(result.latencies, 0.9) * 1000, 2),
        "p99_ms": round(percentile(result.latencies, 0.99) * 1000, 2),
        "max_ms": round(max(result.latencies, default=float("nan")) * 1000, 2),
        "server_cpu_s": round(timed.server_cpu_s, 2),
        "server_cpu_us_per_request": round(timed.server_cpu_s / max(1, result.requests) * 1e6),
        "failures": result.failures[:5],
    }


def run(dialect: str, workdir: Path, options: SingleOptions) -> dict[str, Any]:
    run_id = secrets.token_hex(3)
    log = workdir / f"server-single-{dialect}.log"
    per_process = options.connections // options.processes
    with fresh_database(dialect, workdir, "single") as url, ServerProcess(url, log) as server:
        tenant = build_tenant(url, server.base_url, f"single {run_id}", options.subscriptions)
        common: dict[str, Any] = {
            "processes": options.processes,
            "connections": per_process,
            "duration_s": options.duration_s,
            "server_pid": server.pid,
        }
        floor = run_requests("healthz", server.base_url, tenant.token, **common)
        events = run_requests(
            "event",
            server.base_url,
            tenant.token,
            subscriptions=tenant.subscriptions,
            key_prefix=run_id,
            **common,
        )
        for label, timed in (("healthz", floor), ("single events", events)):
            if timed.result.failures:
                raise LostOrDoubled(
                    f"{dialect} {label}: {len(timed.result.failures)} failed calls: "
                    f"{timed.result.failures[:3]}"
                )
        result = events.result
        if (result.accepted, result.duplicates) != (result.requests, 0):
            raise LostOrDoubled(
                f"{dialect}: {result.requests} single events sent, answered "
                f"accepted={result.accepted} duplicates={result.duplicates}"
            )
        verified = verify(dialect, url, tenant, result.expected)
        peak_rss_kib = server.peak_rss_kib()
    return {
        "dialect": dialect,
        "connections": per_process * options.processes,
        "events": summary(events),
        "floor_healthz": summary(floor),
        "ratio_to_floor": round(
            (events.result.requests / events.seconds) / (floor.result.requests / floor.seconds), 3
        ),
        "verified": verified.summary(),
        "server_peak_rss_mib": round(peak_rss_kib / 1024, 1),
    }


def table_rows(result: dict[str, Any]) -> list[list[Any]]:
    e, f = result["events"], result["floor_healthz"]
    return [
        [
            result["dialect"], "1 event / POST /v1/events", result["connections"], e["requests"],
            e["requests_per_s"], f["requests_per_s"], result["ratio_to_floor"], e["p50_ms"],
            e["p99_ms"], f["p50_ms"], f["p99_ms"], e["server_cpu_us_per_request"],
        ]
    ]  # fmt: skip

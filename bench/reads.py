"""Reads: current-period usage and invoice previews of random subscriptions, many events stored.

The ledger is filled first through the batched API (5,000 events a call, from two client
processes); once the server has gone idle (it rebuilds billing views after the writes stop),
`GET /v1/subscriptions/{id}/usage` and `/invoice-preview` are called for random subscriptions,
alone and from concurrent connections. The floor is `GET /healthz` from the same clients.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import wrk_reads
from bench.databases import fresh_database
from bench.load import BatchClient, run_batches, run_requests, wait_idle
from bench.server import ServerProcess
from bench.single import summary
from bench.tenant import build_tenant
from bench.verify import LostOrDoubled, verify
from bench.workload import expected_of, streams


@dataclass(frozen=True, slots=True)
class ReadsOptions:
    events: int = 100_000
    subscriptions: int = 1_000
    # Two clients of 5,000-event calls keep each call's wait well under the server's 60 s
    # commit timeout, which 4 × 10,000 in flight exceeded on PostgreSQL (see README).
    clients: int = 2
    batch: int = 5_000
    duration_s: float = 10.0
    # (processes, connections per process) for each measured load.
    loads: tuple[tuple[int, int], ...] = ((1, 1), (4, 4))


COLUMNS = (
    "dialect", "events stored", "subscriptions", "read", "connections", "reads/s", "p50 ms",
    "p99 ms",
    "floor reads/s", "floor p50 ms", "floor p99 ms", "server CPU µs/read",
)  # fmt: skip


def run(dialect: str, workdir: Path, options: ReadsOptions) -> dict[str, Any]:
    run_id = secrets.token_hex(3)
    log = workdir / f"server-reads-{dialect}.log"
    with fresh_database(dialect, workdir, "reads") as url, ServerProcess(url, log) as server:
        tenant = build_tenant(url, server.base_url, f"reads {run_id}", options.subscriptions)
        first, last = tenant.window_us()
        fill = streams(run_id, tenant.subscriptions, options.clients, options.events, first, last)
        clients = [
            BatchClient(server.base_url, tenant.token, ((s, options.batch),), (0,)) for s in fill
        ]
        (filled,) = run_batches(clients, server.pid)
        if filled.result.failures or filled.result.accepted != options.events:
            raise LostOrDoubled(
                f"{dialect} fill: accepted {filled.result.accepted} of {options.events}: "
                f"{filled.result.failures[:3]}"
            )
        verified = verify(dialect, url, tenant, expected_of(fill), ledger=False)
        settled_s = wait_idle(server.pid)
        loads = []
        for processes, connections in options.loads:
            common: dict[str, Any] = {
                "processes": processes,
                "connections": connections,
                "duration_s": options.duration_s,
                "server_pid": server.pid,
            }
            floor = run_requests("healthz", server.base_url, tenant.token, **common)
            for kind in ("usage", "invoice-preview"):
                reads = run_requests(
                    kind,
                    server.base_url,
                    tenant.token,
                    subscriptions=tenant.subscriptions,
                    **common,
                )
                for label, timed in (("healthz", floor), (kind, reads)):
                    if timed.result.failures:
                        raise LostOrDoubled(f"{dialect} {label}: {timed.result.failures[:3]}")
                loads.append(
                    {
                        "read": kind,
                        "connections": processes * connections,
                        "reads": summary(reads),
                        "floor_healthz": summary(floor),
                    }
                )
        measured_by_wrk = []
        if wrk_reads.available():
            for connections in (1, 16):
                for kind in ("healthz", "usage", "invoice-preview"):
                    measured_by_wrk.append(
                        wrk_reads.measure(
                            kind,
                            server.base_url,
                            tenant.token,
                            list(tenant.subscriptions),
                            connections=connections,
                            duration_s=options.duration_s,
                            server_pid=server.pid,
                        )
                    )
        peak_rss_kib = server.peak_rss_kib()
    return {
        "dialect": dialect,
        "events_stored": options.events,
        "subscriptions": options.subscriptions,
        "fill_seconds": round(filled.seconds, 1),
        "fill_events_per_s": round(options.events / filled.seconds),
        "verified": verified.summary(),
        # How long the server kept working after the fill (and its check) before going idle.
        "settled_after_fill_s": round(settled_s, 1),
        "loads": loads,
        "wrk": measured_by_wrk,
        "server_peak_rss_mib": round(peak_rss_kib / 1024, 1),
    }


def table_rows(result: dict[str, Any]) -> list[list[Any]]:
    rows = []
    for load in result["loads"]:
        r, f = load["reads"], load["floor_healthz"]
        rows.append(
            [
                result["dialect"], result["events_stored"], result["subscriptions"],
                load["read"], load["connections"], r["requests_per_s"], r["p50_ms"], r["p99_ms"],
                f["requests_per_s"], f["p50_ms"], f["p99_ms"], r["server_cpu_us_per_request"],
            ]
        )  # fmt: skip
    return rows


WRK_COLUMNS = (
    "dialect", "events stored", "read", "connections", "reads/s", "p50 ms", "p90 ms", "p99 ms",
    "server CPU µs/read",
)  # fmt: skip


def wrk_rows(result: dict[str, Any]) -> list[list[Any]]:
    return [
        [
            result["dialect"], result["events_stored"], m["read"], m["connections"],
            m["requests_per_s"], m["p50_ms"], m["p90_ms"], m["p99_ms"],
            m["server_cpu_us_per_request"],
        ]
        for m in result.get("wrk", [])
    ]  # fmt: skip

"""Single-usage requests: one event per call, from many concurrent connections.

Through the native API (`POST /v1/events` with one event) and each facade's single-usage call:
Salesbricks GraphQL `incrementCounter`, Gradient set unit count, Saaslogic
`POST /subscriptions/{id}/resources` with one usage detail. The floor is `GET /healthz` under the
same load in the same run: the app has no no-op endpoint, and /healthz is the nearest one
(routing, a JSON answer, one `SELECT 1`), so the ratio is the price of authentication,
validation and the durable group commit.

The load comes from wrk (bench/wrk.py) when it is installed, else from Python clients
(bench/load.py), which on a 2-core machine compete with the server for the cores. After the
run the ledger must hold exactly the events of the calls answered with success.
"""

from __future__ import annotations

import base64
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from bench import wrk
from bench.databases import fresh_database
from bench.load import Timed, percentile, run_requests
from bench.server import ServerProcess
from bench.tenant import Tenant, build_tenant
from bench.verify import LostOrDoubled, verify
from bench.workload import Expected, micros


@dataclass(frozen=True, slots=True)
class SingleOptions:
    processes: int = 4  # Python clients only
    connections: int = 64  # in all
    duration_s: float = 15.0
    subscriptions: int = 128
    calls: tuple[str, ...] = ("native", *wrk.FACADES)
    load: str = "auto"  # wrk when installed, else python
    wrk_threads: int = 2
    tail_s: float = 5.0  # wrk: how long the last answers may take once sending stops


COLUMNS = (
    "dialect", "call", "connections", "requests", "requests/s", "floor requests/s", "× floor",
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


@contextmanager
def _environment(**values: str) -> Iterator[None]:
    """Variables the server process inherits (bench/server.py passes the environment on)."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _facade_credentials(tenant: Tenant) -> tuple[str, str]:
    """(GRADIENT-TOKEN value, Saaslogic bearer JWT) for the tenant's key."""
    with httpx.Client(base_url=tenant.base_url, headers=tenant.headers, timeout=60) as client:
        partner = client.post("/v1/partners", json={"name": "bench"})
        if partner.status_code != 201:
            raise RuntimeError(f"POST /v1/partners: {partner.status_code} {partner.text}")
        partner_key = str(partner.json()["partner_key"])
        access_key, _, secret_key = tenant.token.partition(".")
        issued = client.post(
            "/saaslogic/v1/token", json={"accessKey": access_key, "secretKey": secret_key}
        )
        if issued.status_code != 200:
            raise RuntimeError(f"POST /saaslogic/v1/token: {issued.status_code} {issued.text}")
    gradient_token = base64.b64encode(f"{tenant.token}:{partner_key}".encode()).decode()
    return gradient_token, str(issued.json()["accessToken"])


def _run_wrk(
    dialect: str, url: str, server: ServerProcess, workdir: Path, options: SingleOptions
) -> dict[str, Any]:
    run_id = secrets.token_hex(3)
    tenant = build_tenant(url, server.base_url, f"single {run_id}", options.subscriptions)
    gradient_token, saaslogic_token = _facade_credentials(tenant)
    target = wrk.Target(
        token=tenant.token,
        subscriptions=tenant.subscriptions,
        # An hour ago: inside the current period, and a thread's events (1 ms apart) stay in
        # the past for the whole run.
        first_us=micros(datetime.now(UTC) - timedelta(hours=1)),
        key_prefix=run_id,
        gradient_token=gradient_token,
        saaslogic_token=saaslogic_token,
    )
    common: dict[str, Any] = {
        "workdir": workdir,
        "server_pid": server.pid,
        "threads": options.wrk_threads,
        "connections": options.connections,
        "duration_s": options.duration_s,
        "tail_s": options.tail_s,
    }
    floor = wrk.run(wrk.HEALTHZ, server.base_url, target, **common)
    results: list[wrk.WrkResult] = []
    expected = Expected()
    for name in options.calls:
        call = wrk.CALLS[name]
        result = wrk.run(call, server.base_url, target, **common)
        results.append(result)
        expected.merge(wrk.expected(call, target, result, options.wrk_threads))
    verified = verify(dialect, url, tenant, expected)
    return {
        "dialect": dialect,
        "load": "wrk",
        "connections": options.connections,
        "floor_healthz": floor.summary(),
        "calls": [
            {
                **r.summary(),
                "label": wrk.CALLS[r.call].label,
                "ratio_to_floor": round(r.requests_per_s / floor.requests_per_s, 3),
            }
            for r in results
        ],
        "verified": verified.summary(),
        "server_peak_rss_mib": round(server.peak_rss_kib() / 1024, 1),
    }


def _run_python(
    dialect: str, url: str, server: ServerProcess, options: SingleOptions
) -> dict[str, Any]:
    """Python clients (httpx), native API only: for machines without wrk."""
    run_id = secrets.token_hex(3)
    tenant = build_tenant(url, server.base_url, f"single {run_id}", options.subscriptions)
    per_process = options.connections // options.processes
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
    events_summary = summary(events)
    floor_summary = summary(floor)
    return {
        "dialect": dialect,
        "load": "python",
        "connections": per_process * options.processes,
        "floor_healthz": floor_summary,
        "calls": [
            {
                **events_summary,
                "call": "native",
                "label": wrk.NATIVE.label,
                "ratio_to_floor": round(
                    events_summary["requests_per_s"] / max(1, floor_summary["requests_per_s"]), 3
                ),
            }
        ],
        "verified": verified.summary(),
        "server_peak_rss_mib": round(server.peak_rss_kib() / 1024, 1),
    }


def run(dialect: str, workdir: Path, options: SingleOptions) -> dict[str, Any]:
    log = workdir / f"server-single-{dialect}.log"
    use_wrk = options.load == "wrk" or (options.load == "auto" and wrk.available())
    # The Gradient facade limits each token to 100 requests/s, as the vendor does; the
    # benchmark measures the path behind the limit, so the limit is off for its server.
    with (
        _environment(METERWORKS_GRADIENT_RATE_LIMIT_PER_SECOND="0"),
        fresh_database(dialect, workdir, "single") as url,
        ServerProcess(url, log) as server,
    ):
        if use_wrk:
            return _run_wrk(dialect, url, server, workdir, options)
        return _run_python(dialect, url, server, options)


def table_rows(result: dict[str, Any]) -> list[list[Any]]:
    f = result["floor_healthz"]
    return [
        [
            result["dialect"], c["label"], result["connections"], c["requests"],
            c["requests_per_s"], f["requests_per_s"], c["ratio_to_floor"], c["p50_ms"],
            c["p99_ms"], f["p50_ms"], f["p99_ms"], c["server_cpu_us_per_request"],
        ]
        for c in result["calls"]
    ]  # fmt: skip

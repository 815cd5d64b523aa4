"""The invoice run: `meterworks billing run` over many subscriptions with usage in a closed period.

Per dialect: a fresh database; the key from `meterworks keys create`; meters and plan created
in-process with the product's own service functions, customers and subscriptions inserted in
bulk in-process (100,000 of each through HTTP, or even through the services, would take longer
than the run measured); every subscription started on the same day some six weeks ago, so its
first monthly period has closed. The usage goes through the real
ingest path: `meterworks serve` in its own process, batched `POST /v1/events` from separate
client processes, as in the ingest benchmark. Then `meterworks billing run --as-of T` runs in a
process of its own, T two hours after the closed period's end (past the one-hour grace), and is
timed from start to exit; its peak resident memory and CPU time are measured by GNU time.

Verified afterwards, or the benchmark fails: every subscription has exactly one finalized
period invoice and one opening invoice; invoice numbers are exactly 1…2N; every period
invoice's total equals a computation from what was sent (the plan's prices applied to the
sums, peaks and unit-days of the events, independently of the product's rollups); for a sample,
the lines read through `GET /v1/invoices` carry the expected quantities and amounts; and a
second run finds nothing to do.
"""

from __future__ import annotations

import json
import os
import random
import re
import secrets
import sqlite3
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import ROUND_CEILING, ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

import httpx
import psycopg

from bench.databases import fresh_database, libpq_url
from bench.load import BatchClient, process_tree, run_batches
from bench.report import RESULTS
from bench.server import (
    ServerProcess,
    create_key,
    meterworks_command,
    server_environment,
    status_kib,
)
from bench.tenant import CHARGES
from bench.verify import LostOrDoubled
from bench.workload import METERS, Stream, micros, streams

PRICE_CALLS = Decimal("0.001")  # bench_calls, per unit
STORAGE_PACKAGE, PRICE_STORAGE = Decimal(10), Decimal("1.00")  # bench_storage, per package
PRICE_SEATS = Decimal("0.30")  # bench_seats, per unit-day
FIXED_MINOR = 1_000  # Platform, 10.00 a month
MICROS_PER_DAY = 86_400_000_000
CENT = Decimal("0.01")
SETUP_CHUNK = 1_000


@dataclass(frozen=True, slots=True)
class InvoiceOptions:
    subscriptions: int = 100_000
    # Events per subscription, spread over its three meters (a multiple of 3).
    events_per_subscription: int = 6
    clients: int = 4
    batch: int = 5_000
    sample: int = 200  # subscriptions whose invoices are read back through the API
    profile: bool = False  # run the first billing run under py-spy (no peak RSS then)


COLUMNS = (
    "dialect", "subscriptions", "events stored", "invoices created", "seconds", "CPU seconds",
    "subscriptions/s", "peak RSS MiB", "second run s", "load average (1 min) before/after",
)  # fmt: skip


# --- what the bills must be, from what is sent --------------------------------------------------


@dataclass(slots=True)
class Usage:
    """One subscription's usage of the closed period, folded from the events sent."""

    calls: Decimal = Decimal(0)
    storage_peak: Decimal = Decimal(0)
    seats_level: Decimal = Decimal(0)
    seats_since_us: int = 0
    seats_integral: Decimal = Decimal(0)  # unit·µs up to seats_since_us

    def seat_days(self, period_end_us: int) -> Decimal:
        integral = self.seats_integral + self.seats_level * (period_end_us - self.seats_since_us)
        # Unit-days, kept to 12 decimals (the product's stated precision for them).
        return (integral / MICROS_PER_DAY).quantize(Decimal("1e-12")).normalize()


@dataclass(frozen=True, slots=True)
class Bill:
    calls: Decimal
    storage: Decimal
    seat_days: Decimal
    amounts: dict[str, int]  # meter key (or "fixed") -> minor units

    @property
    def total_minor(self) -> int:
        return sum(self.amounts.values())


def _minor(amount: Decimal) -> int:
    return int(amount.quantize(CENT, rounding=ROUND_HALF_UP) * 100)


def expected_bills(
    sent: Sequence[Stream], period_start_us: int, period_end_us: int
) -> dict[str, Bill]:
    """The period invoice of every subscription, computed from the events sent."""
    usage: dict[str, Usage] = {}
    for stream in sent:
        for raw in stream.events():  # in time order per subscription
            u = usage.setdefault(raw["subscription_id"], Usage(seats_since_us=period_start_us))
            quantity = Decimal(raw["quantity"])
            if raw["meter"] == "bench_calls":
                u.calls += quantity
            elif raw["meter"] == "bench_storage":
                u.storage_peak = max(u.storage_peak, quantity)
            else:
                ts = micros(datetime.strptime(raw["timestamp"], "%Y-%m-%dT%H:%M:%S.%f%z"))
                u.seats_integral += u.seats_level * (ts - u.seats_since_us)
                u.seats_level, u.seats_since_us = quantity, ts
    bills = {}
    for sub, u in usage.items():
        seat_days = u.seat_days(period_end_us)
        packages = (u.storage_peak / STORAGE_PACKAGE).to_integral_value(ROUND_CEILING)
        bills[sub] = Bill(
            u.calls,
            u.storage_peak,
            seat_days,
            {
                "fixed": FIXED_MINOR,  # the next period's fixed charge, billed in advance
                "bench_calls": _minor(u.calls * PRICE_CALLS),
                "bench_storage": _minor(packages * PRICE_STORAGE),
                "bench_seats": _minor(seat_days * PRICE_SEATS),
            },
        )
    return bills


# --- set-up ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Catalog:
    organization_id: str
    subscriptions: list[str]
    period_start: datetime  # the closed period every subscription is billed for
    period_end: datetime
    seconds: float  # the set-up took


def create_catalog(url: str, org_name: str, count: int, starts_at: datetime) -> Catalog:
    """Meters and the plan through the product's services; then `count` customers, each on a
    subscription, inserted in bulk (the rows the services write: through the services, the
    set-up of 100,000 took longer than the run measured)."""
    from meterworks.catalog.meters import create_meter
    from meterworks.catalog.plans import create_plan
    from meterworks.db import tables as t
    from meterworks.db.engine import Database
    from meterworks.kit.ids import new_id
    from meterworks.subscriptions.service import get_subscription
    from meterworks.tenancy.service import ensure_organization

    started = time.perf_counter()
    ids: list[str] = []
    db = Database(url)
    try:
        now = datetime.now(UTC)
        with db.transaction() as conn:
            org = ensure_organization(conn, org_name, now).id
            for key, aggregation, unit in METERS:
                create_meter(conn, org, key=key, name=key, unit=unit, aggregation=aggregation,
                             now=now)  # fmt: skip
            plan = create_plan(conn, org, name="Bench", currency="USD", interval="month",
                               charges=CHARGES, now=now)  # fmt: skip
        for first in range(0, count, SETUP_CHUNK):
            customers: list[dict[str, Any]] = []
            subscriptions: list[dict[str, Any]] = []
            for n in range(first, min(count, first + SETUP_CHUNK)):
                customer_id, subscription_id = new_id("cus"), new_id("sub")
                customers.append(
                    {"organization_id": org, "id": customer_id, "external_id": f"bench-{n}",
                     "name": f"Customer {n}", "email": None, "address": None, "tax_rate": None,
                     "metadata": {}, "created_at": now, "updated_at": now}
                )  # fmt: skip
                subscriptions.append(
                    {"organization_id": org, "id": subscription_id, "customer_id": customer_id,
                     "plan_id": plan.id, "starts_at": starts_at, "ends_at": None,
                     "billing_anchor": starts_at, "metadata": {}, "created_at": now}
                )  # fmt: skip
                ids.append(subscription_id)
            with db.transaction() as conn:
                conn.execute(t.customers.insert(), customers)
                conn.execute(t.subscriptions.insert(), subscriptions)
        with db.read() as conn:
            period = get_subscription(conn, org, ids[0]).period_at(starts_at)
    finally:
        db.engine.dispose()
    return Catalog(org, ids, period.start, period.end, time.perf_counter() - started)


@contextmanager
def _views_off() -> Iterator[None]:
    """Start the server without its billing-view loop: after a fill of N subscriptions it would
    rebuild N views (minutes at 100,000), competing with the run for the same two cores."""
    before = os.environ.get("METERWORKS_VIEWS_ENABLED")
    os.environ["METERWORKS_VIEWS_ENABLED"] = "false"
    try:
        yield
    finally:
        if before is None:
            del os.environ["METERWORKS_VIEWS_ENABLED"]
        else:
            os.environ["METERWORKS_VIEWS_ENABLED"] = before


# --- the measured run -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BillingRun:
    seconds: float
    # User + system CPU of the billing process and its workers (steadier on a busy machine).
    cpu_seconds: float
    peak_rss_kib: int | None  # summed over the run's processes
    drafted: int
    finalized: int
    output: str


RUN_LINE = re.compile(r"drafted (\d+), finalized (\d+)")


TIME = Path("/usr/bin/time")


def billing_run(url: str, as_of: datetime, profile_to: Path | None = None) -> BillingRun:
    """`meterworks billing run` in a process of its own: wall time, CPU time and peak RSS.

    The run bills with worker processes of its own. Its peak RSS is the sum of the high-water
    marks (`VmHWM`) of the run's processes, sampled every 0.2 s while they live; at least GNU
    time's `%M` (the largest one's `ru_maxrss`), which covers a run shorter than a sample. Not
    the `ru_maxrss` this process gets from `wait4`: Linux carries the high-water mark of the
    forking process's memory across `exec`, and this process holds every expected bill.
    """
    command = [
        meterworks_command(), "billing", "run", "--db", url,
        "--as-of", as_of.strftime("%Y-%m-%dT%H:%M:%SZ"),
    ]  # fmt: skip
    if profile_to is not None:
        py_spy = str(Path(meterworks_command()).parent / "py-spy")
        # The worker processes too: their samples carry their own pid.
        command = [py_spy, "record", "--rate", "100", "--subprocesses", "--format", "raw",
                   "-o", str(profile_to), "--", *command]  # fmt: skip
    if not TIME.exists():
        raise RuntimeError(f"{TIME} (GNU time) is needed to measure the run's peak memory")
    with tempfile.NamedTemporaryFile("r", suffix=".time") as measured:
        command = [str(TIME), "-o", measured.name, "-f", "%U %S %M", *command]
        started = time.perf_counter()
        with tempfile.TemporaryFile() as captured:
            done = subprocess.Popen(
                command,
                stdout=captured,
                stderr=subprocess.STDOUT,
                env={**server_environment(), "COLUMNS": "500"},
            )
            peak_sum = 0
            while done.poll() is None:
                # The run's processes: GNU time's child and everything below it.
                members = process_tree(done.pid) - {done.pid}
                peak_sum = max(peak_sum, sum(status_kib(pid, "VmHWM") for pid in members))
                time.sleep(0.2)
            seconds = time.perf_counter() - started
            captured.seek(0)
            output = captured.read().decode(errors="replace")
        figures = measured.read().split()
    if done.returncode != 0:
        raise RuntimeError(f"meterworks billing run failed ({done.returncode}):\n{output}")
    found = RUN_LINE.search(output)
    if found is None:
        raise RuntimeError(f"unexpected output of meterworks billing run:\n{output}")
    user, system, peak_kib = float(figures[-3]), float(figures[-2]), int(figures[-1])
    return BillingRun(
        seconds,
        user + system,
        None if profile_to is not None else max(peak_kib, peak_sum),
        int(found.group(1)),
        int(found.group(2)),
        output.strip(),
    )


def load_1min() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0])


# --- verification -----------------------------------------------------------------------------


def _rows(dialect: str, url: str, query: str) -> list[tuple[Any, ...]]:
    if dialect == "sqlite":
        conn = sqlite3.connect(url.removeprefix("sqlite:///"))
        try:
            return conn.execute(query).fetchall()
        finally:
            conn.close()
    with psycopg.connect(libpq_url(url)) as pg:
        return pg.execute(query).fetchall()


def verify_invoices(
    dialect: str, url: str, catalog: Catalog, bills: dict[str, Bill]
) -> dict[str, int]:
    """Raise LostOrDoubled unless every subscription was billed exactly as expected."""
    rows = _rows(
        dialect,
        url,
        "SELECT subscription_id, kind, status, number, total_minor FROM invoices "
        f"WHERE organization_id = '{catalog.organization_id}'",
    )
    per_sub: dict[str, dict[str, list[tuple[str, int | None, int]]]] = {}
    numbers = []
    for sub, kind, status, number, total in rows:
        per_sub.setdefault(sub, {}).setdefault(kind, []).append((status, number, int(total)))
        if number is not None:
            numbers.append(int(number))
    problems = []
    for sub in catalog.subscriptions:
        kinds = per_sub.get(sub, {})
        period, opening = kinds.get("period", []), kinds.get("opening", [])
        if len(period) != 1 or len(opening) != 1 or set(kinds) - {"period", "opening"}:
            problems.append(f"{sub}: invoices {kinds}")
            continue
        for status, number, _ in (*period, *opening):
            if status not in ("finalized", "paid") or number is None:
                problems.append(f"{sub}: an invoice is {status} with number {number}")
        if opening[0][2] != FIXED_MINOR:
            problems.append(f"{sub}: opening total {opening[0][2]}, expected {FIXED_MINOR}")
        if period[0][2] != bills[sub].total_minor:
            problems.append(
                f"{sub}: period total {period[0][2]}, expected {bills[sub].total_minor} "
                f"({bills[sub].amounts})"
            )
        if len(problems) >= 5:
            break
    if sorted(numbers) != list(range(1, 2 * len(catalog.subscriptions) + 1)):
        problems.append(
            f"invoice numbers are not exactly 1..{2 * len(catalog.subscriptions)}: "
            f"{len(numbers)} numbers, {len(set(numbers))} distinct, max {max(numbers, default=0)}"
        )
    if len(rows) != 2 * len(catalog.subscriptions):
        problems.append(f"{len(rows)} invoices stored, {2 * len(catalog.subscriptions)} expected")
    if problems:
        raise LostOrDoubled("the invoice run did not bill as expected: " + "; ".join(problems))
    return {"invoices": len(rows), "checked_totals": len(catalog.subscriptions)}


def verify_sample(
    base_url: str, token: str, catalog: Catalog, bills: dict[str, Bill], sample: int
) -> int:
    """Read a sample's invoices through the API: period, lines' quantities and amounts."""
    chosen = random.Random(7).sample(catalog.subscriptions, min(sample, len(catalog.subscriptions)))
    start = catalog.period_start.strftime("%Y-%m-%dT%H:%M:%S")
    end = catalog.period_end.strftime("%Y-%m-%dT%H:%M:%S")
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=base_url, headers=headers, timeout=60) as client:
        for sub in chosen:
            response = client.get("/v1/invoices", params={"subscription_id": sub})
            if response.status_code != 200:
                raise LostOrDoubled(f"invoices of {sub}: {response.status_code} {response.text}")
            (invoice,) = [i for i in response.json()["data"] if i["kind"] == "period"]
            bill = bills[sub]
            got_period = (invoice["period"]["start"][:19], invoice["period"]["end"][:19])
            want: dict[str, tuple[Decimal | None, int]] = {
                "bench_calls": (bill.calls, bill.amounts["bench_calls"]),
                "bench_storage": (bill.storage, bill.amounts["bench_storage"]),
                "bench_seats": (bill.seat_days, bill.amounts["bench_seats"]),
            }
            got: dict[str, tuple[Decimal | None, int]] = {}
            fixed = 0
            for line in invoice["lines"]:
                amount = int(Decimal(line["amount"]) * 100)
                if line["type"] == "usage":
                    got[line["meter_key"]] = (Decimal(line["quantity"]), amount)
                else:
                    fixed += amount
            if got_period != (start, end) or got != want or fixed != FIXED_MINOR:
                raise LostOrDoubled(
                    f"{sub}: invoice {json.dumps(invoice)[:2000]} differs from the expected "
                    f"period {start}..{end}, usage {want}, fixed {FIXED_MINOR}"
                )
    return len(chosen)


# --- the benchmark ------------------------------------------------------------------------------


def run(dialect: str, workdir: Path, options: InvoiceOptions) -> dict[str, Any]:
    if options.events_per_subscription % len(METERS):
        raise ValueError("events per subscription must be a multiple of 3")
    if options.subscriptions % options.clients:
        raise ValueError("subscriptions must be a multiple of the client processes")
    run_id = secrets.token_hex(3)
    # Six weeks ago at midnight: the first monthly period ended 10-17 days ago.
    starts_at = (datetime.now(UTC) - timedelta(days=45)).replace(
        hour=0, minute=0, second=0, microsecond=0
    )
    log = workdir / f"server-invoice-{dialect}.log"
    with fresh_database(dialect, workdir, "invoice") as url:
        org_name = f"bench invoice {run_id}"
        token = create_key(url, org_name)
        catalog = create_catalog(url, org_name, options.subscriptions, starts_at)
        first_us = micros(catalog.period_start) + 1_000_000
        last_us = micros(catalog.period_end) - 60_000_000
        events = options.subscriptions * options.events_per_subscription
        fill = streams(run_id, catalog.subscriptions, options.clients, events, first_us, last_us)
        bills = expected_bills(fill, micros(catalog.period_start), micros(catalog.period_end))
        with _views_off(), ServerProcess(url, log) as server:
            clients = [
                BatchClient(server.base_url, token, ((s, options.batch),), (0,)) for s in fill
            ]
            (filled,) = run_batches(clients, server.pid)
            if filled.result.failures or filled.result.accepted != events:
                raise LostOrDoubled(
                    f"{dialect} fill: accepted {filled.result.accepted} of {events}: "
                    f"{filled.result.failures[:3]}"
                )
            as_of = catalog.period_end + timedelta(hours=2)
            load_before = load_1min()
            profile_to = RESULTS / f"profile-invoice-{dialect}.txt" if options.profile else None
            if profile_to is not None:
                RESULTS.mkdir(parents=True, exist_ok=True)
            first = billing_run(url, as_of, profile_to)
            load_after = load_1min()
            verified = verify_invoices(dialect, url, catalog, bills)
            sampled = verify_sample(server.base_url, token, catalog, bills, options.sample)
            second = billing_run(url, as_of)
            if (second.drafted, second.finalized) != (0, 0):
                raise LostOrDoubled(f"a second run was not idle: {second.output}")
            again = verify_invoices(dialect, url, catalog, bills)
    created = verified["invoices"]
    return {
        "dialect": dialect,
        "subscriptions": options.subscriptions,
        "events_stored": events,
        "setup_seconds": round(catalog.seconds, 1),
        "fill_seconds": round(filled.seconds, 1),
        "fill_events_per_s": round(events / filled.seconds),
        "as_of": as_of.isoformat(),
        "invoices_created": created,
        "drafted": first.drafted,
        "finalized": first.finalized,
        "run_seconds": round(first.seconds, 2),
        "subscriptions_per_s": round(options.subscriptions / first.seconds),
        "run_cpu_seconds": round(first.cpu_seconds, 2),
        "peak_rss_mib": (
            None if first.peak_rss_kib is None else round(first.peak_rss_kib / 1024, 1)
        ),
        "profile": None if profile_to is None else str(profile_to),
        "second_run_seconds": round(second.seconds, 2),
        "second_run_peak_rss_mib": round((second.peak_rss_kib or 0) / 1024, 1),
        "load_1min_before_run": load_before,
        "load_1min_after_run": load_after,
        "run_output": first.output,
        "verified": (
            f"verified: {options.subscriptions} subscriptions each with one finalized period "
            f"invoice and one opening invoice, numbers 1..{created} without a gap, all "
            f"{verified['checked_totals']} period totals as computed from the events sent, "
            f"{sampled} invoices' lines read back through the API, a second run idle "
            f"({again['invoices']} invoices)"
        ),
    }


def table_rows(result: dict[str, Any]) -> list[list[Any]]:
    return [
        [
            result["dialect"], result["subscriptions"], result["events_stored"],
            result["invoices_created"], result["run_seconds"], result["run_cpu_seconds"],
            result["subscriptions_per_s"],
            result["peak_rss_mib"], result["second_run_seconds"],
            f"{result['load_1min_before_run']} / {result['load_1min_after_run']}",
        ]
    ]  # fmt: skip

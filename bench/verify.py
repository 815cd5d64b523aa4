"""After a run: the stored totals must be exactly what was sent, or the benchmark fails.

Three independent checks: the ledger's row count per (subscription, meter), read from the
database; the billed quantities of the `sum` and `max` meters, read through the API; and
`meterworks ledger verify`, which recomputes every running total (the `prorated` ones too)
from the ledger alone.
"""

from __future__ import annotations

import sqlite3
import subprocess
import time
from dataclasses import dataclass
from decimal import Decimal

import httpx
import psycopg

from bench.databases import libpq_url
from bench.server import meterworks_command, server_environment
from bench.tenant import Tenant
from bench.workload import METERS, Expected


class LostOrDoubled(AssertionError):
    """The ledger does not hold exactly what was sent."""


@dataclass(frozen=True, slots=True)
class Verified:
    events: int
    ledger_verify_s: float | None

    def summary(self) -> str:
        ledger = (
            "ledger verify not run"
            if self.ledger_verify_s is None
            else f"ledger verify ok ({self.ledger_verify_s:.1f} s)"
        )
        return (
            f"verified: {self.events} events stored exactly once; per-subscription sums and "
            f"peaks match; {ledger}"
        )


def stored_counts(dialect: str, db_url: str) -> dict[tuple[str, str], int]:
    query = (
        "SELECT subscription_id, meter_id, count(*) FROM usage_events "
        "WHERE kind = 'event' GROUP BY subscription_id, meter_id"
    )
    if dialect == "sqlite":
        conn = sqlite3.connect(db_url.removeprefix("sqlite:///"))
        try:
            rows = conn.execute(query).fetchall()
        finally:
            conn.close()
    else:
        with psycopg.connect(libpq_url(db_url)) as pg:
            rows = pg.execute(query).fetchall()
    return {(str(s), str(m)): int(c) for s, m, c in rows}


def verify(
    dialect: str, db_url: str, tenant: Tenant, expected: Expected, *, ledger: bool = True
) -> Verified:
    """Raise LostOrDoubled unless the ledger holds exactly `expected`; `ledger` adds the
    full recomputation of `meterworks ledger verify` (slow on large ledgers)."""
    key_of = {meter_id: key for key, meter_id in tenant.meter_ids.items()}
    stored = {
        (sub, key_of[meter]): count
        for (sub, meter), count in stored_counts(dialect, db_url).items()
    }
    if stored != expected.counts:
        lost = {p: (c, stored.get(p, 0)) for p, c in expected.counts.items() if stored.get(p) != c}
        extra = {p: c for p, c in stored.items() if p not in expected.counts}
        raise LostOrDoubled(
            f"ledger rows differ from what was sent: {sum(stored.values())} stored, "
            f"{expected.events} sent; (sent, stored) per pair: {dict(list(lost.items())[:5])}; "
            f"unexpected pairs: {dict(list(extra.items())[:5])}"
        )
    aggregation = {key: agg for key, agg, _ in METERS}
    with httpx.Client(base_url=tenant.base_url, headers=tenant.headers, timeout=60) as client:
        for sub in tenant.subscriptions:
            response = client.get(f"/v1/subscriptions/{sub}/usage")
            if response.status_code != 200:
                raise LostOrDoubled(f"usage of {sub}: {response.status_code} {response.text}")
            for line in response.json()["meters"]:
                key = line["key"]
                got = Decimal(line["quantity"])
                if aggregation[key] == "sum":
                    want = expected.sums.get((sub, key), Decimal(0))
                elif aggregation[key] == "max":
                    want = expected.peaks.get((sub, key), Decimal(0))
                else:
                    continue
                if got != want:
                    raise LostOrDoubled(f"{sub} {key}: the API answers {got}, {want} was sent")
    if not ledger:
        return Verified(expected.events, None)
    started = time.perf_counter()
    done = subprocess.run(
        [meterworks_command(), "ledger", "verify", "--db", db_url],
        capture_output=True,
        text=True,
        env=server_environment(),
        check=False,
    )
    took = time.perf_counter() - started
    if done.returncode != 0:
        raise LostOrDoubled(f"meterworks ledger verify failed:\n{done.stdout[-3000:]}{done.stderr}")
    return Verified(expected.events, took)

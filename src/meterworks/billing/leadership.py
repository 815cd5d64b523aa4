"""Leadership for the billing scheduler: one process bills at a time, decided in the database.

PostgreSQL: a transaction-scoped advisory lock, held on a connection of its own for as long as the
leader works; it is released when that transaction ends, even if the process dies. SQLite (no
advisory locks): a row of `leases` naming the holder until it expires; the leader renews it as it
works, and a dead leader's lease simply runs out.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import delete, select

from meterworks.db import tables as t
from meterworks.db.dialect import try_advisory_lock, upsert
from meterworks.db.engine import Database
from meterworks.kit.clock import Clock

# pg_advisory_xact_lock key of the billing scheduler ("mw-bill" in ASCII, fits a signed bigint).
ADVISORY_KEY = 0x6D772D62696C6C
LEASE_NAME = "billing"


class LeadershipLost(Exception):
    """The lease ran out and another process holds it now: stop billing."""


@dataclass(frozen=True, slots=True)
class Leader:
    holder: str
    # Extends the lease (SQLite); a no-op where the lock lives as long as its connection.
    renew: Callable[[], None]


@contextmanager
def leadership(
    db: Database, clock: Clock, holder: str, *, lease_seconds: float = 120.0
) -> Iterator[Leader | None]:
    """Yield a Leader if this holder may bill now, else None; leadership ends with the block."""
    if db.dialect == "postgresql":
        with db.engine.connect() as conn:
            transaction = conn.begin()
            try:
                if try_advisory_lock(conn, ADVISORY_KEY):
                    yield Leader(holder, lambda: None)
                else:
                    yield None
            finally:
                transaction.rollback()
        return
    ttl = timedelta(seconds=lease_seconds)

    def take() -> bool:
        now = clock.now()
        with db.transaction() as conn:
            row = conn.execute(
                select(t.leases.c.holder, t.leases.c.expires_at).where(
                    t.leases.c.name == LEASE_NAME
                )
            ).first()
            if row is not None and row.holder != holder and row.expires_at > now:
                return False
            conn.execute(
                upsert(
                    conn,
                    t.leases,
                    ["name"],
                    {"holder": holder, "expires_at": now + ttl},
                ).values(name=LEASE_NAME, holder=holder, expires_at=now + ttl)
            )
            return True

    def renew() -> None:
        if not take():
            raise LeadershipLost("another process took the billing lease")

    if not take():
        yield None
        return
    try:
        yield Leader(holder, renew)
    finally:
        with db.transaction() as conn:
            conn.execute(
                delete(t.leases).where(t.leases.c.name == LEASE_NAME, t.leases.c.holder == holder)
            )

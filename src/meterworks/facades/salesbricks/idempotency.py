"""Stored first answers for `X-SALESBRICKS-IDEMPOTENT-OPERATION-KEY`, safe across processes.

A key is claimed by inserting a `pending` record in its own committed transaction (ON CONFLICT
DO NOTHING): of concurrent requests, in this process or another, exactly one wins the insert and
runs; the others see the record. The winner then stores its answer (`complete`), which every
later request with the same key and payload gets back unchanged.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, select, update

from meterworks.db import tables as t
from meterworks.db.dialect import insert_ignore
from meterworks.db.engine import Database

# A pending record older than this belongs to a request that died (a process crash between the
# claim and the answer): the next request takes the key over instead of being refused forever.
# Longer than any request may run (the ledger's own commit timeout is 60 s).
ABANDONED_AFTER = timedelta(minutes=5)


def request_hash(payload: Any) -> str:
    """The same request gives the same hash whatever its key order or spacing."""
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Claimed:
    """This request holds the key: it runs, then completes or releases it."""


@dataclass(frozen=True, slots=True)
class Replay:
    status_code: int
    body: str


@dataclass(frozen=True, slots=True)
class InFlight:
    """Another request with this key has not answered yet."""


@dataclass(frozen=True, slots=True)
class Mismatch:
    """The key was first used with another payload."""


Claim = Claimed | Replay | InFlight | Mismatch


class IdempotencyStore:
    def __init__(self, db: Database, scope: str) -> None:
        self.db = db
        self.scope = scope

    def claim(self, organization_id: str, key: str, payload_hash: str, now: datetime) -> Claim:
        r = t.idempotency_records.c
        with self.db.transaction() as conn:
            # RETURNING, not rowcount: drivers disagree on rowcount after ON CONFLICT DO NOTHING.
            inserted = conn.execute(
                insert_ignore(conn, t.idempotency_records)
                .values(
                    organization_id=organization_id,
                    scope=self.scope,
                    key=key,
                    request_hash=payload_hash,
                    state="pending",
                    created_at=now,
                )
                .returning(r.key)
            ).first()
            if inserted is not None:
                return Claimed()
            row = conn.execute(
                select(r.request_hash, r.state, r.status_code, r.response_body, r.created_at).where(
                    r.organization_id == organization_id, r.scope == self.scope, r.key == key
                )
            ).first()
            if row is None:
                # Released between our insert and our read: the caller may simply retry.
                return InFlight()
            if row.request_hash != payload_hash:
                return Mismatch()
            if row.state == "complete":
                return Replay(status_code=int(row.status_code), body=str(row.response_body))
            if now - row.created_at < ABANDONED_AFTER:
                return InFlight()
            # Take an abandoned claim over; the conditional update lets only one taker win.
            taken = conn.execute(
                update(t.idempotency_records)
                .where(
                    r.organization_id == organization_id,
                    r.scope == self.scope,
                    r.key == key,
                    r.state == "pending",
                    r.created_at == row.created_at,
                )
                .values(created_at=now)
                .returning(r.key)
            ).first()
            return Claimed() if taken is not None else InFlight()

    def complete(self, organization_id: str, key: str, status_code: int, body: str) -> None:
        r = t.idempotency_records.c
        with self.db.transaction() as conn:
            conn.execute(
                update(t.idempotency_records)
                .where(r.organization_id == organization_id, r.scope == self.scope, r.key == key)
                .values(state="complete", status_code=status_code, response_body=body)
            )

    def release(self, organization_id: str, key: str) -> None:
        """Forget a claim whose request failed on our side, so that a retry runs again."""
        r = t.idempotency_records.c
        with self.db.transaction() as conn:
            conn.execute(
                delete(t.idempotency_records).where(
                    r.organization_id == organization_id,
                    r.scope == self.scope,
                    r.key == key,
                    r.state == "pending",
                )
            )

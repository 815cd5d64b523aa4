"""Organizations, API keys and partner keys."""

from __future__ import annotations

import hashlib
import hmac
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.engine import Connection

from meterworks.db import tables as t
from meterworks.db.dialect import insert_ignore
from meterworks.errors import InvalidInput, Unauthorized
from meterworks.kit.ids import new_id, random_secret


@dataclass(frozen=True, slots=True)
class Organization:
    id: str
    name: str
    late_usage_policy: str


@dataclass(frozen=True, slots=True)
class IssuedKey:
    id: str
    organization_id: str
    name: str
    token: str


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _organization(row: object) -> Organization:
    return Organization(
        id=row.id,  # type: ignore[attr-defined]
        name=row.name,  # type: ignore[attr-defined]
        late_usage_policy=row.late_usage_policy,  # type: ignore[attr-defined]
    )


def get_organization(conn: Connection, organization_id: str) -> Organization:
    row = conn.execute(select(t.organizations).where(t.organizations.c.id == organization_id)).one()
    return _organization(row)


def ensure_organization(conn: Connection, name: str, now: datetime) -> Organization:
    """The organization called `name`, created if it does not exist yet."""
    name = name.strip()
    if not name or len(name) > 200:
        raise InvalidInput(
            "an organization needs a name of 1-200 characters",
            details=[{"field": "name", "message": "1-200 characters"}],
        )
    conn.execute(
        insert_ignore(conn, t.organizations).values(
            id=new_id("org"), name=name, late_usage_policy="adjust", settings={}, created_at=now
        )
    )
    row = conn.execute(select(t.organizations).where(t.organizations.c.name == name)).one()
    conn.execute(insert_ignore(conn, t.ledger_sequences).values(organization_id=row.id, next_seq=1))
    return _organization(row)


def set_late_usage_policy(conn: Connection, organization_id: str, policy: str) -> Organization:
    if policy not in {"adjust", "reject"}:
        raise InvalidInput("late_usage_policy must be `adjust` or `reject`")
    conn.execute(
        t.organizations.update()
        .where(t.organizations.c.id == organization_id)
        .values(late_usage_policy=policy)
    )
    return get_organization(conn, organization_id)


def create_api_key(conn: Connection, organization_id: str, name: str, now: datetime) -> IssuedKey:
    key_id = new_id("key")
    secret = random_secret()
    conn.execute(
        t.api_keys.insert().values(
            id=key_id,
            organization_id=organization_id,
            name=name,
            secret_hash=_hash(secret),
            created_at=now,
        )
    )
    return IssuedKey(key_id, organization_id, name, f"{key_id}.{secret}")


def split_token(token: str) -> tuple[str, str]:
    key_id, dot, secret = token.strip().partition(".")
    if not dot or not key_id or not secret:
        raise Unauthorized("the API key is malformed; expected `<key id>.<secret>`")
    return key_id, secret


def verify_key(conn: Connection, key_id: str, secret: str) -> str:
    """The organization id owning this key, or Unauthorized."""
    row = conn.execute(
        select(
            t.api_keys.c.organization_id, t.api_keys.c.secret_hash, t.api_keys.c.revoked_at
        ).where(t.api_keys.c.id == key_id)
    ).first()
    if row is None or row.revoked_at is not None:
        raise Unauthorized("the API key is not valid")
    if not hmac.compare_digest(row.secret_hash, _hash(secret)):
        raise Unauthorized("the API key is not valid")
    return str(row.organization_id)


@dataclass(frozen=True, slots=True)
class IssuedPartner:
    id: str
    name: str
    partner_key: str


def create_partner(
    conn: Connection, organization_id: str, name: str, now: datetime
) -> IssuedPartner:
    name = name.strip()
    if not name or len(name) > 200:
        raise InvalidInput(
            "a partner needs a name of 1-200 characters",
            details=[{"field": "name", "message": "1-200 characters"}],
        )
    partner_id = new_id("prt")
    partner_key = f"pk_{random_secret()}"
    conn.execute(
        t.partners.insert().values(
            organization_id=organization_id,
            id=partner_id,
            name=name,
            key_hash=_hash(partner_key),
            created_at=now,
        )
    )
    return IssuedPartner(partner_id, name, partner_key)


def verify_partner_key(conn: Connection, organization_id: str, partner_key: str) -> str:
    """The partner id for this organization's partner key, or Unauthorized."""
    row = conn.execute(
        select(t.partners.c.id).where(
            t.partners.c.organization_id == organization_id,
            t.partners.c.key_hash == _hash(partner_key),
        )
    ).first()
    if row is None:
        raise Unauthorized("the partner key is not valid")
    return str(row.id)


class Authenticator:
    """Token → organization id, with a short in-process cache of verified tokens.

    Shared by the native API and every facade: one auth store for all transports.
    """

    def __init__(self, ttl_seconds: float) -> None:
        self._ttl = ttl_seconds
        self._cache: dict[str, tuple[str, float]] = {}
        self._lock = threading.Lock()

    def organization_for(
        self, conn_factory: Callable[[], AbstractContextManager[Connection]], token: str
    ) -> str:
        key_id, secret = split_token(token)
        cache_key = _hash(token)
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get(cache_key)
        if hit is not None and hit[1] > now:
            return hit[0]
        with conn_factory() as conn:
            organization_id = verify_key(conn, key_id, secret)
        with self._lock:
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[cache_key] = (organization_id, now + self._ttl)
        return organization_id

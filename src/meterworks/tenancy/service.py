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
    """Credentials → ids, with a short in-process cache of verified credentials.

    Shared by the native API and every facade: one auth store for all transports. Only
    successful verifications are cached, keyed on a hash of what was presented, for `ttl_seconds`
    (`auth_cache_seconds`); a failed one is checked against the database every time. The cached
    lookups take no database connection, so a request whose credentials were verified moments
    ago is authenticated on the event loop, without a hop to a worker thread.
    """

    MAX_ENTRIES = 10_000

    def __init__(self, ttl_seconds: float) -> None:
        self._ttl = ttl_seconds
        self._cache: dict[str, tuple[str, float]] = {}
        self._lock = threading.Lock()

    def _get(self, cache_key: str) -> str | None:
        hit = self._cache.get(cache_key)
        if hit is None or hit[1] <= time.monotonic():
            return None
        return hit[0]

    def _put(self, cache_key: str, value: str, verified_at: float) -> None:
        with self._lock:
            if len(self._cache) > self.MAX_ENTRIES:
                self._cache.clear()
            self._cache[cache_key] = (value, verified_at + self._ttl)

    def cached(self, token: str) -> str | None:
        """The organization of a token verified less than `ttl_seconds` ago, else None."""
        return self._get(_hash(token))

    def organization_for(
        self, conn_factory: Callable[[], AbstractContextManager[Connection]], token: str
    ) -> str:
        key_id, secret = split_token(token)
        return self._verified(
            _hash(token), conn_factory, lambda conn: verify_key(conn, key_id, secret)
        )

    def _verified(
        self,
        cache_key: str,
        conn_factory: Callable[[], AbstractContextManager[Connection]],
        verify: Callable[[Connection], str],
    ) -> str:
        """The cached answer, else `verify`'s (kept only when it succeeds)."""
        hit = self._get(cache_key)
        if hit is not None:
            return hit
        verified_at = time.monotonic()
        with conn_factory() as conn:
            value = verify(conn)
        self._put(cache_key, value, verified_at)
        return value

    @staticmethod
    def _partner_cache_key(organization_id: str, partner_key: str) -> str:
        # A prefix no token hash can have: partner keys and API tokens never share an entry.
        return f"partner:{organization_id}:{_hash(partner_key)}"

    def cached_partner(self, organization_id: str, partner_key: str) -> str | None:
        """The partner id of a partner key verified less than `ttl_seconds` ago, else None."""
        return self._get(self._partner_cache_key(organization_id, partner_key))

    def partner_for(
        self,
        conn_factory: Callable[[], AbstractContextManager[Connection]],
        organization_id: str,
        partner_key: str,
    ) -> str:
        """The partner id of this organization's partner key, or Unauthorized."""
        return self._verified(
            self._partner_cache_key(organization_id, partner_key),
            conn_factory,
            lambda conn: verify_partner_key(conn, organization_id, partner_key),
        )

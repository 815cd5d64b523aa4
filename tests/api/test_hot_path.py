"""The single-request hot path: the auth cache, the units of work's BEGIN, /healthz."""

from __future__ import annotations

import json
import sqlite3
from contextlib import AbstractContextManager
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from meterworks.api import billing, events, hot, subscriptions
from meterworks.db.engine import Database
from meterworks.db.migrate import upgrade
from meterworks.errors import Unauthorized
from meterworks.tenancy.service import (
    Authenticator,
    create_api_key,
    create_partner,
    ensure_organization,
)
from tests.api.builders import Api, dumps, event, iso
from tests.support.hot import Sent, answered_both_ways
from tests.support.server import TEST_EPOCH, RunningServer


@pytest.fixture
def sqlite_db(tmp_path: Path) -> Any:
    db = Database(f"sqlite:///{tmp_path / 'hot.db'}")
    upgrade(db.engine)
    yield db
    db.dispose()


class CountingReads:
    """A connection factory that counts how often the database was asked."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.calls = 0

    def __call__(self) -> AbstractContextManager[Any]:
        self.calls += 1
        return self.db.read()


def test_a_verified_token_is_answered_from_the_cache_until_it_expires(sqlite_db: Database) -> None:
    with sqlite_db.transaction() as conn:
        organization = ensure_organization(conn, "cache", TEST_EPOCH)
        key = create_api_key(conn, organization.id, "k", TEST_EPOCH)
    reads = CountingReads(sqlite_db)
    authenticator = Authenticator(30.0)
    assert authenticator.cached(key.token) is None
    assert authenticator.organization_for(reads, key.token) == organization.id
    assert authenticator.cached(key.token) == organization.id
    assert authenticator.organization_for(reads, key.token) == organization.id
    assert reads.calls == 1
    expired = Authenticator(0.0)
    assert expired.organization_for(reads, key.token) == organization.id
    assert expired.cached(key.token) is None
    assert expired.organization_for(reads, key.token) == organization.id
    assert reads.calls == 3


def test_a_refused_credential_is_never_cached(sqlite_db: Database) -> None:
    with sqlite_db.transaction() as conn:
        organization = ensure_organization(conn, "refused", TEST_EPOCH)
        key = create_api_key(conn, organization.id, "k", TEST_EPOCH)
        partner = create_partner(conn, organization.id, "p", TEST_EPOCH)
    reads = CountingReads(sqlite_db)
    authenticator = Authenticator(30.0)
    wrong = key.token.split(".")[0] + ".wrong"
    for _ in range(2):
        with pytest.raises(Unauthorized):
            authenticator.organization_for(reads, wrong)
        with pytest.raises(Unauthorized):
            authenticator.partner_for(reads, organization.id, "pk_wrong")
    assert reads.calls == 4
    assert authenticator.cached(wrong) is None
    assert authenticator.cached_partner(organization.id, "pk_wrong") is None
    # A partner key is cached for the organization it was verified for, and only for it.
    assert authenticator.partner_for(reads, organization.id, partner.partner_key) == partner.id
    assert authenticator.cached_partner(organization.id, partner.partner_key) == partner.id
    assert authenticator.cached_partner("org_other", partner.partner_key) is None
    assert authenticator.cached(partner.partner_key) is None


def test_on_sqlite_a_write_takes_the_lock_at_begin_and_a_read_takes_none(
    sqlite_db: Database, tmp_path: Path
) -> None:
    other = sqlite3.connect(tmp_path / "hot.db", timeout=0, isolation_level=None)
    try:
        with sqlite_db.transaction() as conn:
            # Nothing written yet, and the write lock is already held.
            with pytest.raises(sqlite3.OperationalError, match="locked"):
                other.execute("BEGIN IMMEDIATE")
            # Reads go on meanwhile, and hold no lock of their own.
            with sqlite_db.read() as read:
                assert read.execute(text("SELECT 1")).scalar_one() == 1
            conn.execute(text("SELECT 1"))
        with sqlite_db.read() as read:
            other.execute("BEGIN IMMEDIATE")
            assert read.execute(text("SELECT count(*) FROM organizations")).scalar_one() == 0
            other.execute("ROLLBACK")
    finally:
        other.close()


def test_healthz_names_the_database(server: RunningServer) -> None:
    response = httpx.get(f"{server.base_url}/healthz", timeout=30)
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": server.db.dialect}


def test_post_events_is_answered_below_the_framework_exactly_as_by_its_route(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """api/hot.py answers `POST /v1/events`; a query string sends the call through the route
    instead (FastAPI ignores the unknown parameter). Both must answer every call alike."""
    through_layer: list[str] = []

    async def ingest(context: Any, organization_id: str, body: bytes) -> Any:
        through_layer.append(organization_id)
        return await events.ingest(context, organization_id, body)

    monkeypatch.setattr(hot, "ingest", ingest)
    setup = api.metered("sum")
    meter = setup.key("sum")
    limit = api.server.settings.max_body_bytes

    def batch(key: str, of: str = meter, **changes: Any) -> bytes:
        one = event(key, subscription_id=setup.id, meter=of, quantity="1.50", **changes)
        return dumps({"events": [one]}).encode()

    token = api.client.headers["authorization"]
    url = f"{api.server.base_url}/v1/events"
    calls = [
        Sent(name, url, headers, body)
        for name, headers, body in [
            ("valid", {"authorization": token}, batch("{}-first")),
            ("replay", {"authorization": token}, batch("{}-first")),
            ("conflict", {"authorization": token}, batch("{}-first", properties={"a": 1})),
            ("no key", {}, batch("{}-nokey")),
            ("bad scheme", {"authorization": "Basic abc"}, batch("{}-basic")),
            ("unknown key", {"authorization": "Bearer nope.nope"}, batch("{}-unknown")),
            ("not json", {"authorization": token}, b'{"events": ['),
            ("no events", {"authorization": token}, b'{"event": []}'),
            ("empty list", {"authorization": token}, b'{"events": []}'),
            ("bad meter", {"authorization": token}, batch("{}-meter", of="missing")),
            ("NUL in text", {"authorization": token}, batch("{}-nul\x00")),
            ("too large", {"authorization": token}, b" " * (limit + 1)),
        ]
    ]
    # Every authenticated call but the one refused while its body was read.
    answers = answered_both_ways(
        calls,
        route_query="?via=route",
        header="www-authenticate",
        reached=through_layer,
        reaching=len(calls) - 4,
    )
    statuses = {name: answer.status for name, answer in answers.items()}
    assert statuses == {
        "valid": 200, "replay": 200, "conflict": 409, "no key": 401, "bad scheme": 401,
        "unknown key": 401, "not json": 400, "no events": 422, "empty list": 422,
        "bad meter": 422, "NUL in text": 400, "too large": 413,
    }  # fmt: skip
    assert json.loads(answers["valid"].text) == {"accepted": 1, "duplicates": 0}
    assert json.loads(answers["replay"].text) == {"accepted": 0, "duplicates": 1}
    # One event from each path, nothing from the refused calls.
    assert api.ledger_rows() == 2
    assert api.quantities(setup.id) == {meter: "3"}


def test_an_unexpected_error_in_a_call_answered_below_the_framework_is_a_500_as_by_its_route(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The layer stands in front of FastAPI's middleware, whose last handler answers what
    nothing else caught: the layer answers such an error the same way."""
    through_layer: list[str] = []

    async def broken(context: Any, organization_id: str, body: bytes) -> Any:
        raise RuntimeError("broken")

    async def broken_in_layer(context: Any, organization_id: str, body: bytes) -> Any:
        through_layer.append(organization_id)
        return await broken(context, organization_id, body)

    monkeypatch.setattr(hot, "ingest", broken_in_layer)
    monkeypatch.setattr(events, "ingest", broken)
    setup = api.metered("sum")
    one = event("{}-broken", subscription_id=setup.id, meter=setup.key("sum"), quantity=1)
    sent = Sent(
        "broken",
        f"{api.server.base_url}/v1/events",
        {"authorization": api.client.headers["authorization"]},
        dumps({"events": [one]}).encode(),
    )
    answers = answered_both_ways(
        [sent], route_query="?via=route", header="content-type", reached=through_layer, reaching=1
    )
    assert answers["broken"].status == 500
    assert json.loads(answers["broken"].text) == {
        "error": {
            "code": "internal_error",
            "message": "an unexpected error occurred",
            "details": None,
        }
    }
    assert api.ledger_rows() == 0


def test_usage_and_preview_reads_are_answered_below_the_framework_exactly_as_by_their_routes(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """api/hot.py answers `GET /v1/subscriptions/{id}/usage` and `/invoice-preview` without a
    query string; with one, their routes do. Both must answer every call alike: the quantities
    and lines, and every refusal in the API's error shape."""
    through_layer: list[str] = []

    def usage_of(context: Any, organization_id: str, subscription_id: str, at: Any) -> Any:
        through_layer.append(subscription_id)
        return subscriptions.usage_of(context, organization_id, subscription_id, at)

    def billing_of(context: Any) -> Any:
        through_layer.append("preview")
        return billing.billing(context)

    monkeypatch.setattr(hot, "usage_of", usage_of)
    monkeypatch.setattr(hot, "billing", billing_of)
    setup = api.metered("sum", "max", "prorated")
    now = api.server.clock.now()
    api.record(
        [
            event("reads-1", subscription_id=setup.id, meter=setup.key("sum"), quantity="1.50"),
            event("reads-2", subscription_id=setup.id, meter=setup.key("max"), quantity="4",
                  operation="set"),
        ]
    )  # fmt: skip
    ended = api.subscription(
        setup.customer["id"],
        setup.plan["id"],
        now - timedelta(days=2),
        ends_at=iso(now - timedelta(days=1)),
    )
    token = api.client.headers["authorization"]
    base = f"{api.server.base_url}/v1/subscriptions"
    calls = [
        Sent(f"{read} {name}", f"{base}/{sub}/{read}", headers, b"", "GET")
        for read in ("usage", "invoice-preview")
        for name, sub, headers in [
            ("valid", setup.id, {"authorization": token}),
            ("again", setup.id, {"authorization": token}),
            ("ended", ended["id"], {"authorization": token}),
            ("unknown", "sub_missing", {"authorization": token}),
            ("NUL in id", "sub%00x", {"authorization": token}),
            ("no key", setup.id, {}),
            ("bad scheme", setup.id, {"authorization": "Basic abc"}),
            ("unknown key", setup.id, {"authorization": "Bearer nope.nope"}),
        ]
    ]
    # Every call with a good key and a storable id reaches the layer's read.
    answers = answered_both_ways(
        calls, route_query="?via=route", header="www-authenticate", reached=through_layer,
        reaching=8,
    )  # fmt: skip
    statuses = {name: answer.status for name, answer in answers.items()}
    assert statuses == {
        "usage valid": 200, "usage again": 200, "usage ended": 200, "usage unknown": 404,
        "usage NUL in id": 400, "usage no key": 401, "usage bad scheme": 401,
        "usage unknown key": 401,
        "invoice-preview valid": 200, "invoice-preview again": 200,
        "invoice-preview ended": 409, "invoice-preview unknown": 404,
        "invoice-preview NUL in id": 400, "invoice-preview no key": 401,
        "invoice-preview bad scheme": 401, "invoice-preview unknown key": 401,
    }  # fmt: skip
    usage = json.loads(answers["usage valid"].text)
    assert {m["key"]: m["quantity"] for m in usage["meters"]} == {
        setup.key("sum"): "1.5", setup.key("max"): "4", setup.key("prorated"): "0",
    }  # fmt: skip
    preview = json.loads(answers["invoice-preview valid"].text)
    assert preview["subscription_id"] == setup.id
    assert {line["meter"] for line in preview["lines"] if line["meter"]} == {
        m["id"] for m in setup.meters.values()
    }
    assert json.loads(answers["usage unknown"].text)["error"]["code"] == "subscription_not_found"
    assert answers["usage no key"].header == "Bearer"

"""The per-token rate limit: a second real server with a low limit, on both dialects."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

from meterworks.config import Settings
from meterworks.db.engine import Database
from meterworks.facades.gradient.ratelimit import TokenBuckets
from meterworks.kit.clock import FrozenClock
from tests.facades.gradient.support import PREFIX, Vendor, gradient_vendor, ledger_rows
from tests.facades.gradient.support import mapped_account as map_account
from tests.support.server import TEST_EPOCH, RunningServer, serve
from tests.support.tenancy import new_organization

LIMIT_PER_SECOND = 2.0
BURST = 12


@pytest.fixture(scope="module")
def limited_server(database_url: str, database: Database) -> Iterator[RunningServer]:
    settings = Settings().with_overrides(
        database_url=database_url,
        scheduler_enabled=False,
        gradient_rate_limit_per_second=LIMIT_PER_SECOND,
    )
    with serve(settings, database, FrozenClock(TEST_EPOCH)) as running:
        yield running


@pytest.fixture
def limited_vendor(
    limited_server: RunningServer, request: pytest.FixtureRequest
) -> Iterator[Vendor]:
    with (
        new_organization(limited_server, request.node.name) as org,
        gradient_vendor(limited_server, org) as vendor,
    ):
        yield vendor


def test_a_burst_past_the_limit_is_429_with_retry_after(limited_vendor: Vendor) -> None:
    mapping = map_account(limited_vendor)  # two calls: service and accounts
    body = {"accountId": mapping.account_id, "unitCount": 1}
    path = f"/service/{mapping.service_id}/count"
    time.sleep(1 / LIMIT_PER_SECOND * 2)  # setting up spent the bucket; let it refill

    answers = [limited_vendor.client.post(path, json=body) for _ in range(BURST)]

    limited = [a for a in answers if a.status_code == 429]
    accepted = [a for a in answers if a.status_code == 201]
    assert len(limited) + len(accepted) == BURST
    assert limited, "a burst of 12 at 2 requests per second must be limited"
    assert accepted, "a full bucket lets the start of the burst through"
    for answer in limited:
        assert answer.json() == {
            "statusCode": 429,
            "message": "Too Many Requests: at most 2 requests per second per token",
        }
        assert int(answer.headers["Retry-After"]) >= 1
    # Refused calls wrote nothing: one ledger entry per accepted call.
    assert ledger_rows(limited_vendor) == len(accepted)


def test_the_limit_is_per_token(limited_vendor: Vendor, limited_server: RunningServer) -> None:
    for _ in range(BURST):
        limited_vendor.client.get("/organization")
    assert limited_vendor.client.get("/organization").status_code == 429

    with (
        new_organization(limited_server, "another token") as other,
        gradient_vendor(limited_server, other) as second,
    ):
        assert second.client.get("/organization").status_code == 200


def test_the_default_server_allows_a_hundred_per_second(vendor: Vendor) -> None:
    url = f"{vendor.server.base_url}{PREFIX}/organization"
    with httpx.Client(headers={"Gradient-Token": vendor.token}, timeout=30) as client:
        statuses = {client.get(url).status_code for _ in range(20)}
    assert statuses == {200}


def test_buckets_refill_with_time() -> None:
    now = [0.0]
    buckets = TokenBuckets(2.0, now=lambda: now[0])

    assert [buckets.take("t") for _ in range(3)] == [None, None, 1]
    now[0] += 0.5
    assert buckets.take("t") is None
    assert buckets.take("t") == 1
    assert buckets.take("other") is None
    assert TokenBuckets(0).take("t") is None  # 0 turns the limit off

"""`X-SALESBRICKS-IDEMPOTENT-OPERATION-KEY`: replay, 400 for another payload, 409 while pending."""

from __future__ import annotations

import httpx

from meterworks.db import tables as t
from meterworks.facades.salesbricks.idempotency import request_hash
from tests.facades.salesbricks.support import (
    IDEMPOTENCY_HEADER,
    Company,
    at,
    company,
    ledger_rows,
    native_quantity,
)
from tests.facades.salesbricks.test_graphql import INCREMENT, USAGE
from tests.support.server import RunningServer
from tests.support.tenancy import IsolatedOrganization


def body(sb: Company, count: int) -> dict[str, object]:
    return {
        "query": INCREMENT,
        "variables": {
            "timestamp": "2025-01-10T00:00:00Z",
            "subscriptionId": sb.subscription_id,
            "brickId": sb.counter_id,
            "count": count,
        },
    }


def send(sb: Company, count: int, key: str | None) -> httpx.Response:
    headers = {IDEMPOTENCY_HEADER: key} if key is not None else {}
    return sb.client.post(USAGE, json=body(sb, count), headers=headers)


def test_the_same_key_and_payload_replays_the_first_answer(
    server: RunningServer, org: IsolatedOrganization
) -> None:
    server.clock.set(at("2025-01-20T00:00:00Z"))
    with company(server, org) as sb:
        first = send(sb, 5, "op-1")
        again = send(sb, 5, "op-1")
        assert first.status_code == again.status_code == 200
        assert first.json() == again.json() == {"data": {"incrementCounter": {"success": True}}}
        assert "idempotent-replayed" not in first.headers
        assert again.headers["idempotent-replayed"] == "true"
        assert ledger_rows(server, org.id) == 1
        assert native_quantity(org, sb.subscription_id, "api_calls", "2025-01-10T00:00:00Z") == "5"


def test_the_same_key_with_another_payload_is_400(
    server: RunningServer, org: IsolatedOrganization
) -> None:
    server.clock.set(at("2025-01-20T00:00:00Z"))
    with company(server, org) as sb:
        assert send(sb, 5, "op-2").status_code == 200
        other = send(sb, 6, "op-2")
        assert other.status_code == 400, other.text
        assert other.json()["errors"][0]["extensions"]["code"] == "IDEMPOTENCY_KEY_REUSED"
        assert ledger_rows(server, org.id) == 1
        assert native_quantity(org, sb.subscription_id, "api_calls", "2025-01-10T00:00:00Z") == "5"


def test_a_duplicate_while_the_first_is_pending_is_409(
    server: RunningServer, org: IsolatedOrganization
) -> None:
    server.clock.set(at("2025-01-20T00:00:00Z"))
    with company(server, org) as sb:
        # A request with this key is in flight (in this process or another).
        with server.db.transaction() as conn:
            conn.execute(
                t.idempotency_records.insert().values(
                    organization_id=org.id,
                    scope="salesbricks:v1",
                    key="op-3",
                    request_hash=request_hash(body(sb, 5)),
                    state="pending",
                    created_at=server.clock.now(),
                )
            )
        response = send(sb, 5, "op-3")
        assert response.status_code == 409, response.text
        assert response.json()["errors"][0]["extensions"]["code"] == "IDEMPOTENCY_KEY_IN_USE"
        assert ledger_rows(server, org.id) == 0
        # A claim whose request died long ago is taken over rather than refused forever.
        server.clock.set(at("2025-01-20T00:06:00Z"))
        taken = send(sb, 5, "op-3")
        assert taken.status_code == 200, taken.text
        assert ledger_rows(server, org.id) == 1


def test_a_refusal_is_stored_and_replayed_too(
    server: RunningServer, org: IsolatedOrganization
) -> None:
    server.clock.set(at("2025-01-20T00:00:00Z"))
    with company(server, org) as sb:
        first = send(sb, -2, "op-4")
        again = send(sb, -2, "op-4")
        assert first.status_code == again.status_code == 200
        assert first.json() == again.json()
        assert first.json()["errors"][0]["extensions"]["code"] == "NEGATIVE_COUNT"
        assert again.headers["idempotent-replayed"] == "true"
        assert ledger_rows(server, org.id) == 0


def test_without_a_key_every_call_is_a_new_event(
    server: RunningServer, org: IsolatedOrganization
) -> None:
    server.clock.set(at("2025-01-20T00:00:00Z"))
    with company(server, org) as sb:
        assert send(sb, 5, None).status_code == 200
        assert send(sb, 5, None).status_code == 200
        assert ledger_rows(server, org.id) == 2
        assert native_quantity(org, sb.subscription_id, "api_calls", "2025-01-10T00:00:00Z") == (
            "10"
        )


def test_keys_are_per_organization_and_at_most_255_characters(
    server: RunningServer, org: IsolatedOrganization
) -> None:
    server.clock.set(at("2025-01-20T00:00:00Z"))
    with company(server, org) as sb:
        too_long = send(sb, 5, "k" * 256)
        assert too_long.status_code == 400
        assert too_long.json()["errors"][0]["extensions"]["code"] == "INVALID_IDEMPOTENCY_KEY"
        assert ledger_rows(server, org.id) == 0
        assert send(sb, 5, "k" * 255).status_code == 200
        assert ledger_rows(server, org.id) == 1


def test_two_mutations_in_one_keyed_document_are_two_events(
    server: RunningServer, org: IsolatedOrganization
) -> None:
    server.clock.set(at("2025-01-20T00:00:00Z"))
    with company(server, org) as sb:
        args = (
            f'timestamp: "2025-01-10T00:00:00Z", subscriptionId: "{sb.subscription_id}", '
            f'brickId: "{sb.counter_id}"'
        )
        document = f"""mutation {{
  first: incrementCounter({args}, count: 2) {{ success }}
  second: incrementCounter({args}, count: 3) {{ success }}
}}"""
        for _ in range(2):
            response = sb.client.post(
                USAGE, json={"query": document}, headers={IDEMPOTENCY_HEADER: "op-5"}
            )
            assert response.json() == {
                "data": {"first": {"success": True}, "second": {"success": True}}
            }
        assert ledger_rows(server, org.id) == 2
        assert native_quantity(org, sb.subscription_id, "api_calls", "2025-01-10T00:00:00Z") == "5"

"""Set unit count through the real server, on both dialects: it sets a level, exactly."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy.engine import Connection

from meterworks.facades.gradient import integration
from meterworks.kit.instants import format_instant
from tests.facades.gradient.support import (
    PREFIX,
    Vendor,
    create_account,
    create_service,
    gradient_token,
    ledger,
    ledger_rows,
    mapped_account,
    subscribe,
    usage,
)
from tests.support.hot import Sent, answered_both_ways
from tests.support.server import RunningServer
from tests.support.tenancy import new_organization

CREATED = {"status": 201, "message": "Created service unit count"}


def count(vendor: Vendor, service_id: str, body: Any, **params: str) -> httpx.Response:
    return vendor.client.post(f"/service/{service_id}/count", json=body, params=params)


def test_set_5_then_7_reads_7(vendor: Vendor) -> None:
    mapping = mapped_account(vendor)

    first = count(vendor, mapping.service_id, {"accountId": "acct-1", "unitCount": 5})
    second = count(vendor, mapping.service_id, {"accountId": "acct-1", "unitCount": 7})

    assert (first.status_code, first.json()) == (201, CREATED)
    assert (second.status_code, second.json()) == (201, CREATED)
    assert usage(vendor, mapping.subscription_id, mapping.service_id) == "7"
    assert ledger(vendor) == [
        ("set", "5", "gradient", mapping.service_id),
        ("set", "7", "gradient", mapping.service_id),
    ]


def test_repeating_the_same_count_is_harmless(vendor: Vendor) -> None:
    mapping = mapped_account(vendor)
    body = {"accountId": "acct-1", "unitCount": 3}

    for _ in range(3):
        assert count(vendor, mapping.service_id, body).status_code == 201

    assert usage(vendor, mapping.subscription_id, mapping.service_id) == "3"


def test_decimal_unit_counts_are_exact(vendor: Vendor) -> None:
    mapping = mapped_account(vendor)

    answer = vendor.client.post(
        f"/service/{mapping.service_id}/count",
        content=b'{"accountId": "acct-1", "unitCount": 12.5}',
        headers={"Content-Type": "application/json"},
    )

    assert answer.status_code == 201
    assert usage(vendor, mapping.subscription_id, mapping.service_id) == "12.5"
    # A number no float can hold survives as sent.
    exact = b'{"accountId": "acct-1", "unitCount": 1234567890.123456789}'
    answer = vendor.client.post(f"/service/{mapping.service_id}/count", content=exact)
    assert answer.status_code == 201
    assert usage(vendor, mapping.subscription_id, mapping.service_id) == "1234567890.123456789"


@pytest.mark.parametrize("field", ["clientOId", "clientOid"])
def test_deprecated_client_id_spellings_address_the_account(vendor: Vendor, field: str) -> None:
    mapping = mapped_account(vendor)

    answer = count(vendor, mapping.service_id, {field: "acct-1", "unitCount": 4})

    assert (answer.status_code, answer.json()) == (201, CREATED)
    assert usage(vendor, mapping.subscription_id, mapping.service_id) == "4"


def test_a_service_key_addresses_the_service_too(vendor: Vendor) -> None:
    service = create_service(vendor, "Storage")
    create_account(vendor, "acct-1")
    subscription_id = subscribe(vendor, "acct-1", [service["id"]])

    answer = count(vendor, service["key"], {"accountId": "acct-1", "unitCount": 9})

    assert answer.status_code == 201
    assert usage(vendor, subscription_id, service["id"]) == "9"


@pytest.mark.parametrize("no_build", ["true", "false"])
def test_no_build_is_accepted(vendor: Vendor, no_build: str) -> None:
    mapping = mapped_account(vendor)

    answer = count(
        vendor, mapping.service_id, {"accountId": "acct-1", "unitCount": 2}, no_build=no_build
    )

    assert (answer.status_code, answer.json()) == (201, CREATED)
    assert usage(vendor, mapping.subscription_id, mapping.service_id) == "2"


def test_no_build_skips_the_view_rebuild(vendor: Vendor, server: RunningServer) -> None:
    assert server.context is not None
    mapping = mapped_account(vendor)
    rebuilds: list[set[str]] = []

    def observe(_: Connection, organization_id: str, subscription_ids: set[str]) -> None:
        # The writer calls its hooks for the subscriptions whose billing view must be rebuilt.
        if organization_id == vendor.org.id:
            rebuilds.append(set(subscription_ids))

    server.context.writer.add_hook(observe)
    body = {"accountId": "acct-1", "unitCount": 1}

    assert count(vendor, mapping.service_id, body, no_build="true").status_code == 201
    assert rebuilds == []
    assert count(vendor, mapping.service_id, body).status_code == 201
    assert count(vendor, mapping.service_id, body, no_build="false").status_code == 201
    assert rebuilds == [{mapping.subscription_id}, {mapping.subscription_id}]


def test_levels_on_prorated_and_max_services(vendor: Vendor) -> None:
    create_account(vendor, "acct-1")
    prorated = create_service(vendor, "Seats", aggregation="prorated")
    peak = create_service(vendor, "Peak", aggregation="max")
    subscribe(vendor, "acct-1", [prorated["id"], peak["id"]])

    for service, units in ((prorated, 10), (peak, 6), (peak, 4)):
        body = {"accountId": "acct-1", "unitCount": units}
        assert count(vendor, service["id"], body).status_code == 201

    assert [row[:2] for row in ledger(vendor)] == [("set", "10"), ("set", "6"), ("set", "4")]


def test_last_synced_at_follows_unit_counts(vendor: Vendor) -> None:
    mapping = mapped_account(vendor)
    assert vendor.client.get("/organization").json()["lastSyncedAt"] is None

    assert (
        count(vendor, mapping.service_id, {"accountId": "acct-1", "unitCount": 1}).status_code
        == 201
    )

    expected = format_instant(vendor.server.clock.now())
    assert vendor.client.get("/organization").json()["lastSyncedAt"] == expected

    # Kept to the second: a count within a second of it leaves it, a later one moves it.
    first = vendor.server.clock.now()
    for later, shown in ((timedelta(milliseconds=900), first), (timedelta(seconds=2), None)):
        vendor.server.clock.set(first + later)
        body = {"accountId": "acct-1", "unitCount": 2}
        assert count(vendor, mapping.service_id, body).status_code == 201
        wanted = format_instant(shown or first + later)
        assert vendor.client.get("/organization").json()["lastSyncedAt"] == wanted


# --- refusals: the vendor's status and shape, and nothing written -----------------------------


def refused(answer: httpx.Response, status: int, message: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = answer.json()
    assert answer.status_code == status, answer.text
    assert set(body) == {"statusCode", "message"}
    assert body["statusCode"] == status
    if message is not None:
        assert body["message"] == message
    return body


@pytest.mark.parametrize(
    "body",
    [
        {"accountId": "acct-1"},
        {"accountId": "acct-1", "unitCount": None},
        {"accountId": "acct-1", "unitCount": "seven"},
        {"accountId": "acct-1", "unitCount": True},
        {"accountId": "acct-1", "unitCount": -1},
        {"accountId": "acct-1", "unitCount": [1]},
        {"accountId": 1, "unitCount": 1},
        {"accountId": "", "unitCount": 1},
        {"unitCount": 1},
        {"clientOId": {"id": "acct-1"}, "unitCount": 1},
        ["acct-1", 1],
        "acct-1",
    ],
)
def test_invalid_bodies_are_400_and_write_nothing(vendor: Vendor, body: Any) -> None:
    mapping = mapped_account(vendor)

    refused(count(vendor, mapping.service_id, body), 400)

    assert ledger_rows(vendor) == 0


def test_malformed_json_and_bad_flags_are_400(vendor: Vendor) -> None:
    mapping = mapped_account(vendor)
    path = f"/service/{mapping.service_id}/count"

    refused(vendor.client.post(path, content=b'{"accountId": "acct-1", "unitCount": '), 400)
    refused(vendor.client.post(path, content=b'{"accountId": "acct-1", "unitCount": NaN}'), 400)
    refused(
        count(
            vendor, mapping.service_id, {"accountId": "acct-1", "unitCount": 1}, no_build="maybe"
        ),
        400,
    )
    refused(count(vendor, "not a service id!", {"accountId": "acct-1", "unitCount": 1}), 400)

    assert ledger_rows(vendor) == 0


def summed_service(vendor: Vendor, account_id: str) -> dict[str, Any]:
    """A `sum` meter (made natively: the facade creates only level services), charged by a new
    account's subscription."""
    meter: dict[str, Any] = vendor.org.client.post(
        "/v1/meters",
        json={"key": "api-calls", "name": "API calls", "unit": "call", "aggregation": "sum"},
    ).json()
    create_account(vendor, account_id)
    subscribe(vendor, account_id, [meter["id"]])
    return meter


def test_a_sum_service_is_refused_with_a_clear_message(vendor: Vendor) -> None:
    meter = summed_service(vendor, "acct-1")

    refused(
        count(vendor, meter["id"], {"accountId": "acct-1", "unitCount": 1}),
        400,
        f"service {meter['id']} is a `sum` meter; a unit count sets a level, so the service "
        "must be a latest, max or prorated meter",
    )
    assert ledger_rows(vendor) == 0


def test_unmapped_accounts_are_404_with_the_vendor_message(vendor: Vendor) -> None:
    mapping = mapped_account(vendor)
    create_account(vendor, "no-subscription")
    other = create_service(vendor, "Not in the plan")

    for service_id, account_id in (
        (mapping.service_id, "nobody"),  # unknown account
        (mapping.service_id, "no-subscription"),  # no active subscription
        (other["id"], "acct-1"),  # subscription whose plan does not charge this service
    ):
        refused(
            count(vendor, service_id, {"accountId": account_id, "unitCount": 1}),
            404,
            f"No account map found with id: {account_id}",
        )
    assert ledger_rows(vendor) == 0


def test_a_subscription_not_yet_started_is_not_a_map(vendor: Vendor) -> None:
    service = create_service(vendor)
    create_account(vendor, "later")
    plan = vendor.org.client.post(
        "/v1/plans",
        json={
            "name": "p",
            "currency": "USD",
            "interval": "month",
            "charges": [
                {"type": "usage", "meter": service["id"], "model": "per_unit", "unit_price": "1"}
            ],
        },
    )
    customer = vendor.org.client.get("/v1/customers").json()["data"][0]
    starts = format_instant(vendor.server.clock.now() + timedelta(days=3))
    created = vendor.org.client.post(
        "/v1/subscriptions",
        json={"customer_id": customer["id"], "plan_id": plan.json()["id"], "starts_at": starts},
    )
    assert created.status_code == 201

    refused(
        count(vendor, service["id"], {"accountId": "later", "unitCount": 1}),
        404,
        "No account map found with id: later",
    )
    assert ledger_rows(vendor) == 0


def test_unknown_services_are_404_naming_the_service(vendor: Vendor) -> None:
    mapped_account(vendor)

    refused(
        count(vendor, "mtr_unknown", {"accountId": "acct-1", "unitCount": 1}),
        404,
        "No service found with id: mtr_unknown",
    )
    assert ledger_rows(vendor) == 0


def test_another_organizations_service_is_404(vendor: Vendor, server: RunningServer) -> None:
    with new_organization(server, "other gradient vendor") as other:
        meter = other.client.post(
            "/v1/meters",
            json={"key": "seats", "name": "Seats", "unit": "seat", "aggregation": "latest"},
        ).json()
    mapped_account(vendor)

    refused(
        count(vendor, meter["id"], {"accountId": "acct-1", "unitCount": 1}),
        404,
        f"No service found with id: {meter['id']}",
    )
    assert ledger_rows(vendor) == 0


def test_bad_tokens_are_401(vendor: Vendor, server: RunningServer) -> None:
    mapping = mapped_account(vendor)
    path = f"{server.base_url}{PREFIX}/service/{mapping.service_id}/count"
    body = {"accountId": "acct-1", "unitCount": 1}
    with new_organization(server, "stranger") as stranger:
        strangers_partner = stranger.client.post("/v1/partners", json={"name": "x"}).json()
    api_key, partner_key = vendor.org.token, vendor.partner_key
    tokens: list[dict[str, str]] = [
        {},
        {"Gradient-Token": ""},
        {"Gradient-Token": "not base64 at all!"},
        {"Gradient-Token": api_key},  # not encoded
        {"Gradient-Token": gradient_token(api_key, "pk_wrong")},
        {"Gradient-Token": gradient_token(api_key, strangers_partner["partner_key"])},
        {"Gradient-Token": gradient_token(stranger.token, partner_key)},
        {"Gradient-Token": gradient_token("key_nope.secret", partner_key)},
        {"Gradient-Token": gradient_token(api_key, "")},
        {"Gradient-Token": gradient_token("key\x00x.secret", partner_key)},
        {"Authorization": f"Bearer {api_key}"},  # the native header is not a Gradient token
    ]
    for headers in tokens:
        answer = httpx.post(path, json=body, headers=headers, timeout=30)
        assert refused(answer, 401)["message"].startswith("Unauthorized"), headers

    assert ledger_rows(vendor) == 0


def test_the_header_name_is_case_insensitive(vendor: Vendor, server: RunningServer) -> None:
    mapping = mapped_account(vendor)
    path = f"{server.base_url}{PREFIX}/service/{mapping.service_id}/count"

    answer = httpx.post(
        path,
        json={"accountId": "acct-1", "unitCount": 8},
        headers={"GRADIENT-TOKEN": vendor.token},
        timeout=30,
    )

    assert answer.status_code == 201
    assert usage(vendor, mapping.subscription_id, mapping.service_id) == "8"


def test_a_disabled_integration_is_403_until_reactivated(vendor: Vendor) -> None:
    mapping = mapped_account(vendor)
    body = {"accountId": "acct-1", "unitCount": 6}
    assert vendor.client.patch("/organization/status/disabled").status_code == 200

    refused(count(vendor, mapping.service_id, body), 403)
    assert ledger_rows(vendor) == 0

    assert vendor.client.patch("/organization/status/active").status_code == 200
    assert count(vendor, mapping.service_id, body).status_code == 201
    assert usage(vendor, mapping.subscription_id, mapping.service_id) == "6"


def test_a_service_counted_before_is_refused_while_disabled(vendor: Vendor) -> None:
    # Once the process knows the service, a count reads no status before it is written: the
    # status is checked in the transaction that writes the count.
    mapping = mapped_account(vendor)
    assert (
        count(vendor, mapping.service_id, {"accountId": "acct-1", "unitCount": 6}).status_code
        == 201
    )
    assert vendor.client.patch("/organization/status/disabled").status_code == 200

    refused(
        count(vendor, mapping.service_id, {"accountId": "acct-1", "unitCount": 9}),
        403,
        integration.SUSPENDED_MESSAGE,
    )

    assert ledger_rows(vendor) == 1
    assert usage(vendor, mapping.subscription_id, mapping.service_id) == "6"


def test_while_disabled_the_status_is_answered_before_the_service_and_account(
    vendor: Vendor,
) -> None:
    mapping = mapped_account(vendor)
    summed = summed_service(vendor, "acct-2")
    assert (
        count(vendor, mapping.service_id, {"accountId": "acct-1", "unitCount": 1}).status_code
        == 201
    )
    assert vendor.client.patch("/organization/status/disabled").status_code == 200

    for service_id, account_id in (
        (mapping.service_id, "nobody"),  # an unknown account
        (summed["id"], "acct-2"),  # a service that takes no levels
        ("no-such-service", "acct-1"),  # an unknown service
    ):
        refused(
            count(vendor, service_id, {"accountId": account_id, "unitCount": 2}),
            403,
            integration.SUSPENDED_MESSAGE,
        )
    assert ledger_rows(vendor) == 1


@pytest.mark.parametrize("status", ["inactive", "pending", "error"])
def test_other_statuses_do_not_suspend_unit_counts(vendor: Vendor, status: str) -> None:
    mapping = mapped_account(vendor)
    assert vendor.client.patch(f"/organization/status/{status}").status_code == 200

    answer = count(vendor, mapping.service_id, {"accountId": "acct-1", "unitCount": 1})

    assert answer.status_code == 201


@pytest.mark.parametrize(
    "raw",
    [
        b'{"accountId": "acct\\u0000-1", "unitCount": 1}',
        b'{"accountId": "\\ud800", "unitCount": 1}',
        b'{"accountId": "acct-1", "unitCount": 1, "\\ud800": 1}',
        b"[" * 100_000 + b"]" * 100_000,
        b'{"accountId": "acct-1", "unitCount": 1e999999}',
        b"\xff\xfe",
    ],
)
def test_bodies_no_database_could_store_are_400(vendor: Vendor, raw: bytes) -> None:
    mapping = mapped_account(vendor)

    refused(vendor.client.post(f"/service/{mapping.service_id}/count", content=raw), 400)

    assert ledger_rows(vendor) == 0


def test_an_oversized_body_is_413(vendor: Vendor) -> None:
    mapping = mapped_account(vendor)
    padding = " " * (vendor.server.settings.max_body_bytes + 1)
    raw = f'{{"accountId": "acct-1", "unitCount": 1}}{padding}'.encode()

    refused(
        vendor.client.post(f"/service/{mapping.service_id}/count", content=raw),
        413,
        f"the request body exceeds {vendor.server.settings.max_body_bytes} bytes",
    )
    assert ledger_rows(vendor) == 0


def test_a_unit_count_is_answered_below_the_framework_exactly_as_by_its_route(
    vendor: Vendor, server: RunningServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """facades/gradient/hot.py answers set unit count; a query string sends the call through
    the route instead (an empty `no_build`, which the route reads as absent). Both must answer
    every call alike."""
    from meterworks.facades.gradient import counts, hot

    through_layer: list[str] = []
    set_count_of_route = counts.set_count

    async def counted(context: Any, caller: Any, service_id: str, *rest: Any) -> Any:
        through_layer.append(service_id)
        return await set_count_of_route(context, caller, service_id, *rest)

    # The layer looks the function up on its module at each call; the route calls it directly.
    monkeypatch.setattr(hot, "set_count", counted)
    mapping = mapped_account(vendor)
    summed = summed_service(vendor, "acct-2")
    token = vendor.token
    limit = server.settings.max_body_bytes

    def body(account: str = "acct-1", units: Any = 3) -> bytes:
        return json.dumps({"accountId": account, "unitCount": units}).encode()

    good = {"Gradient-Token": token}
    service = mapping.service_id
    counts_sent = [
        ("valid", service, good, body()),
        ("again", service, good, body(units="4.5")),
        ("no token", service, {}, body()),
        ("bad token", service, {"Gradient-Token": "not base64 at all!"}, body()),
        ("wrong partner", service, {"Gradient-Token": gradient_token(vendor.org.token, "pk_x")},
         body()),
        ("not json", service, good, b"{not json"),
        ("empty body", service, good, b""),
        ("negative", service, good, body(units=-1)),
        ("unmapped account", service, good, body("acct-nobody")),
        ("unknown service", "svc_missing", good, body()),
        ("bad service id", "no such service!", good, body()),
        ("sum service", summed["id"], good, body("acct-2")),
        ("NUL in path", "svc%00x", good, body()),
        ("too large", service, good, b" " * (limit + 1)),
    ]  # fmt: skip
    base = f"{server.base_url}{PREFIX}/service"
    calls = [Sent(name, f"{base}/{target}/count", h, b) for name, target, h, b in counts_sent]
    # Every call past the path, token and body checks.
    answers = answered_both_ways(
        calls,
        route_query="?no_build=",
        header="retry-after",
        reached=through_layer,
        reaching=len(calls) - 6,
    )
    statuses = {name: answer.status for name, answer in answers.items()}
    assert statuses == {
        "valid": 201, "again": 201, "no token": 401, "bad token": 401, "wrong partner": 401,
        "not json": 400, "empty body": 400, "negative": 400, "unmapped account": 404,
        "unknown service": 404, "bad service id": 400, "sum service": 400, "NUL in path": 400,
        "too large": 413,
    }  # fmt: skip
    assert usage(vendor, mapping.subscription_id, mapping.service_id) == "4.5"
    assert ledger_rows(vendor) == 4

"""Reading usage: the current billing cycle per resource, and the subscription itself."""

from __future__ import annotations

from tests.facades.saaslogic.support import Merchant, create_meter, subscribe


def add(merchant: Merchant, subscription_id: str, details: list[dict[str, object]]) -> None:
    answer = merchant.client.post(
        f"/subscriptions/{subscription_id}/resources",
        json={"usageDate": "2024-07-20T10:00:00", "reportingType": "Add", "usageDetails": details},
    )
    assert answer.status_code == 200, answer.text


def test_resources_answer_the_current_billing_cycle(merchant: Merchant) -> None:
    scene = subscribe(merchant.org, {"storage": "sum", "seats": "latest"})
    add(merchant, scene.subscription_id, [{"resourceId": "storage", "value": 123.45},
                                          {"resourceId": "storage", "value": "0.55"},
                                          {"resourceId": "seats", "value": 3}])  # fmt: skip
    answer = merchant.client.get(f"/subscriptions/{scene.subscription_id}/resources")
    assert answer.status_code == 200
    assert answer.json() == {
        "subscriptionId": scene.subscription_id,
        "billingCycleStartDate": "2024-07-01T00:00:00",
        "billingCycleEndDate": "2024-08-01T00:00:00",
        "countedUntil": "2024-07-26T00:00:00",
        "resources": [
            {
                "resourceId": scene.meters["storage"]["id"],
                "resourceKey": "storage",
                "resourceName": "Storage",
                "uomName": "GB",
                "aggregation": "sum",
                "quantity": "124",
            },
            {
                "resourceId": scene.meters["seats"]["id"],
                "resourceKey": "seats",
                "resourceName": "Seats",
                "uomName": "GB",
                "aggregation": "latest",
                "quantity": "3",
            },
        ],
    }


def test_one_resource_by_id_or_key(merchant: Merchant) -> None:
    scene = subscribe(merchant.org, {"storage": "sum", "seats": "latest"})
    add(merchant, scene.subscription_id, [{"resourceId": "storage", "value": 7.5}])
    for ref in (scene.meters["storage"]["id"], "storage"):
        answer = merchant.client.get(f"/subscriptions/{scene.subscription_id}/resources/{ref}")
        assert answer.status_code == 200
        body = answer.json()
        assert body["billingCycleStartDate"] == "2024-07-01T00:00:00"
        assert [(r["resourceKey"], r["quantity"]) for r in body["resources"]] == [
            ("storage", "7.5")
        ]


def test_an_unknown_or_unplanned_resource_is_404(merchant: Merchant) -> None:
    scene = subscribe(merchant.org, {"storage": "sum"})
    create_meter(merchant.org, "unplanned")
    missing = merchant.client.get(f"/subscriptions/{scene.subscription_id}/resources/nope")
    assert missing.status_code == 404
    assert missing.json()["message"] == "RESOURCE_NOT_FOUND"
    unplanned = merchant.client.get(f"/subscriptions/{scene.subscription_id}/resources/unplanned")
    assert unplanned.status_code == 404
    assert unplanned.json()["message"] == "RESOURCE_NOT_IN_PLAN"
    absent = merchant.client.get("/subscriptions/sub_nope/resources")
    assert absent.status_code == 404
    assert absent.json()["message"] == "SUBSCRIPTION_NOT_FOUND"


def test_a_subscription_in_saaslogic_shape(merchant: Merchant) -> None:
    scene = subscribe(merchant.org, {"storage": "sum"})
    add(merchant, scene.subscription_id, [{"resourceId": "storage", "value": 123.45}])
    answer = merchant.client.get(f"/subscriptions/{scene.subscription_id}")
    assert answer.status_code == 200
    assert answer.json() == {
        "subscriptionId": scene.subscription_id,
        "customerId": scene.customer_id,
        "productId": "prod_storage",
        "planId": scene.plan_id,
        "planName": "Storage",
        "statusName": "Active",
        "currencyISOCode": "USD",
        "billingFrequencyName": "Monthly",
        "subscriptionStartDate": "2024-07-01T00:00:00",
        "subscriptionEndDate": None,
        "billingCycleStartDate": "2024-07-01T00:00:00",
        "billingCycleEndDate": "2024-08-01T00:00:00",
        "isAutoRenewEnabled": True,
        "resourceQuantities": [
            {
                "resourceId": scene.meters["storage"]["id"],
                "resourceKey": "storage",
                "resourceName": "Storage",
                "uomName": "GB",
                "quantity": "123.45",
            }
        ],
    }


def test_a_subscription_with_an_end_does_not_renew(merchant: Merchant) -> None:
    scene = subscribe(merchant.org, {"storage": "sum"}, ends_at="2024-07-28T12:00:00Z")
    body = merchant.client.get(f"/subscriptions/{scene.subscription_id}").json()
    assert body["isAutoRenewEnabled"] is False
    assert body["subscriptionEndDate"] == "2024-07-28T12:00:00"
    assert body["billingCycleEndDate"] == "2024-07-28T12:00:00"

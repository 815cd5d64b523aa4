"""`GET /products/{productId}/plans`: a product's plans, priced per resource."""

from __future__ import annotations

from tests.facades.saaslogic.support import Merchant, create_meter, create_plan


def test_the_plans_of_a_product_with_their_pricing_tiers(merchant: Merchant) -> None:
    storage = create_meter(merchant.org, "storage", unit="GB")
    calls = create_meter(merchant.org, "api_calls", unit="call")
    seats = create_meter(merchant.org, "seats", aggregation="latest", unit="seat")
    basic = create_plan(
        merchant.org,
        [
            {"type": "fixed", "name": "Platform fee", "amount": "49.00"},
            {"type": "usage", "meter": "storage", "model": "per_unit", "unit_price": "0.25",
             "included_quantity": "10"},
            {"type": "usage", "meter": "api_calls", "model": "package", "unit_price": "5",
             "package_size": "1000"},
        ],
        product_id="prod_cloud",
        name="Basic",
    )  # fmt: skip
    tiered = create_plan(
        merchant.org,
        [{"type": "usage", "meter": "seats", "model": "volume",
          "tiers": [{"up_to": "10", "unit_price": "8"},
                    {"up_to": None, "unit_price": "6.5", "flat_fee": "20"}]}],
        product_id="prod_cloud",
        name="Teams",
        currency="EUR",
    )  # fmt: skip
    create_plan(merchant.org, [{"type": "fixed", "name": "Other", "amount": "1"}], product_id="x")
    answer = merchant.client.get("/products/prod_cloud/plans")
    assert answer.status_code == 200
    storage_tier = {
        "resourceId": storage["id"], "resourceName": "Storage", "uomName": "GB",
        "pricingModel": "PerUnit", "rangeFrom": "0", "rangeTo": None, "price": "0.25",
        "setSize": "1", "flatFee": "0", "includedQuantity": "10",
        "priceCalculationType": "PerUnit",
    }  # fmt: skip
    calls_tier = {
        "resourceId": calls["id"], "resourceName": "Api Calls", "uomName": "call",
        "pricingModel": "Package", "rangeFrom": "0", "rangeTo": None, "price": "5",
        "setSize": "1000", "flatFee": "0", "includedQuantity": "0",
        "priceCalculationType": "PerSet",
    }  # fmt: skip
    seat_common = {
        "resourceId": seats["id"], "resourceName": "Seats", "uomName": "seat",
        "pricingModel": "Volume", "setSize": "1", "includedQuantity": "0",
        "priceCalculationType": "PerUnit",
    }  # fmt: skip
    assert answer.json() == {
        "productId": "prod_cloud",
        "productName": "prod_cloud",
        "plans": [
            {
                "planId": basic["id"],
                "name": "Basic",
                "billingFrequencyName": "Monthly",
                "pricingModel": "Mixed",
                "tierCalculationType": None,
                "currencyISOCode": "USD",
                "pricingTiers": [storage_tier, calls_tier],
                "fixedCharges": [{"name": "Platform fee", "amount": "49"}],
            },
            {
                "planId": tiered["id"],
                "name": "Teams",
                "billingFrequencyName": "Monthly",
                "pricingModel": "Volume",
                "tierCalculationType": "Volume",
                "currencyISOCode": "EUR",
                "pricingTiers": [
                    {**seat_common, "rangeFrom": "0", "rangeTo": "10", "price": "8",
                     "flatFee": "0"},
                    {**seat_common, "rangeFrom": "10", "rangeTo": None, "price": "6.5",
                     "flatFee": "20"},
                ],
                "fixedCharges": [],
            },
        ],
    }  # fmt: skip


def test_a_product_without_plans_is_404(merchant: Merchant) -> None:
    answer = merchant.client.get("/products/prod_none/plans")
    assert answer.status_code == 404
    assert answer.json()["message"] == "PRODUCT_NOT_FOUND"

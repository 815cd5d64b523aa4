"""Pricing models on hand-worked examples: exact amounts, breakdowns and refusals."""

from __future__ import annotations

import subprocess
import sys
from decimal import Decimal

import pytest

from meterworks.billing.pricing import Priced, PricedStep, price_usage
from meterworks.catalog.plans import PricingModel, Tier, UsageCharge

D = Decimal

# [0–100 at 0.10, 100–1000 at 0.08, beyond at 0.05]
TIERS = (
    Tier(D("100"), D("0.10"), D("0")),
    Tier(D("1000"), D("0.08"), D("0")),
    Tier(None, D("0.05"), D("0")),
)
TIERS_WITH_FEES = (
    Tier(D("100"), D("0.10"), D("1.00")),
    Tier(D("1000"), D("0.08"), D("5.00")),
    Tier(None, D("0.05"), D("0")),
)


def charge(
    model: PricingModel,
    *,
    unit_price: str | None = None,
    tiers: tuple[Tier, ...] = (),
    package_size: str | None = None,
    included: str = "0",
) -> UsageCharge:
    return UsageCharge(
        meter_id="mtr_1",
        meter_key="api_calls",
        name="API calls",
        model=model,
        unit_price=None if unit_price is None else D(unit_price),
        tiers=tiers,
        package_size=None if package_size is None else D(package_size),
        included_quantity=D(included),
    )


def per_unit(price: str, included: str = "0") -> UsageCharge:
    return charge(PricingModel.PER_UNIT, unit_price=price, included=included)


def graduated(tiers: tuple[Tier, ...] = TIERS, included: str = "0") -> UsageCharge:
    return charge(PricingModel.GRADUATED, tiers=tiers, included=included)


def volume(tiers: tuple[Tier, ...] = TIERS, included: str = "0") -> UsageCharge:
    return charge(PricingModel.VOLUME, tiers=tiers, included=included)


def package(size: str, price: str, included: str = "0") -> UsageCharge:
    return charge(PricingModel.PACKAGE, unit_price=price, package_size=size, included=included)


def lines(priced: Priced) -> list[tuple[str, Decimal]]:
    return [(s.description, s.amount) for s in priced.breakdown]


# per_unit


def test_per_unit_multiplies_quantity_by_unit_price() -> None:
    priced = price_usage(per_unit("2.00"), D("30"))
    assert priced == Priced(
        billable_quantity=D("30"),
        amount=D("60.00"),
        breakdown=(PricedStep("30 × 2.00", D("30"), D("2.00"), D("60.00")),),
        display_unit_price=D("2.00"),
    )


def test_per_unit_salesbricks_gauge_unit_days() -> None:
    assert price_usage(per_unit("2"), D("113")).amount == D("226")


def test_per_unit_prices_fractional_unit_days_exactly() -> None:
    priced = price_usage(per_unit("2"), D("113.5"))
    assert priced.amount == D("227.0")
    assert lines(priced) == [("113.5 × 2", D("227.0"))]


def test_per_unit_amount_is_not_rounded_to_the_currency() -> None:
    assert price_usage(per_unit("0.005"), D("1")).amount == D("0.005")
    assert price_usage(per_unit("0.333"), D("3")).amount == D("0.999")


def test_per_unit_keeps_every_digit_of_large_exact_inputs() -> None:
    # 20 integer digits and 18 decimals each (kit.decimals' limits): 76 significant digits.
    quantity = D("99999999999999999999.999999999999999999")
    price = D("88888888888888888888.888888888888888888")
    product = 99999999999999999999999999999999999999 * 88888888888888888888888888888888888888
    expected = D(f"{product}e-36")  # built from an int: no decimal context involved
    assert price_usage(per_unit(str(price)), quantity).amount == expected


def test_included_quantity_above_usage_leaves_nothing_to_bill() -> None:
    priced = price_usage(per_unit("2.00", included="50"), D("30"))
    assert priced == Priced(D("0"), D("0"), (), D("2.00"))


def test_included_quantity_is_deducted_before_pricing() -> None:
    priced = price_usage(per_unit("2.00", included="50"), D("80"))
    assert priced.billable_quantity == D("30")
    assert priced.amount == D("60.00")


# graduated


def test_graduated_prices_each_tier_at_its_own_rate() -> None:
    priced = price_usage(graduated(), D("1500"))
    assert lines(priced) == [
        ("tier 1: 100 × 0.10", D("10.00")),
        ("tier 2: 900 × 0.08", D("72.00")),
        ("tier 3: 500 × 0.05", D("25.00")),
    ]
    assert priced.amount == D("107.00")
    assert priced.billable_quantity == D("1500")
    assert priced.display_unit_price == D("0.07133333333333333333333333333")


@pytest.mark.parametrize(
    ("quantity", "amount"),
    [
        ("1", "0.10"),
        ("100", "10.00"),
        ("100.5", "10.040"),
        ("1000", "82.00"),
        ("1001", "82.05"),
    ],
)
def test_graduated_tier_boundaries(quantity: str, amount: str) -> None:
    assert price_usage(graduated(), D(quantity)).amount == D(amount)


def test_graduated_charges_the_flat_fee_of_every_tier_entered() -> None:
    priced = price_usage(graduated(TIERS_WITH_FEES), D("1500"))
    assert lines(priced) == [
        ("tier 1: 100 × 0.10", D("10.00")),
        ("flat fee tier 1", D("1.00")),
        ("tier 2: 900 × 0.08", D("72.00")),
        ("flat fee tier 2", D("5.00")),
        ("tier 3: 500 × 0.05", D("25.00")),
    ]
    assert priced.amount == D("113.00")
    assert priced.breakdown[1] == PricedStep("flat fee tier 1", D("1"), D("1.00"), D("1.00"))


def test_graduated_flat_fee_only_once_quantity_passes_the_lower_bound() -> None:
    assert price_usage(graduated(TIERS_WITH_FEES), D("100")).amount == D("11.00")
    assert price_usage(graduated(TIERS_WITH_FEES), D("100.5")).amount == D("16.040")


def test_graduated_zero_enters_no_tier() -> None:
    assert price_usage(graduated(TIERS_WITH_FEES), D("0")) == Priced(D("0"), D("0"), (), D("0"))


def test_graduated_tiers_apply_to_the_billable_quantity() -> None:
    # 1500 used, 100 included: 1400 billable = 100 × 0.10 + 900 × 0.08 + 400 × 0.05.
    priced = price_usage(graduated(included="100"), D("1500"))
    assert priced.billable_quantity == D("1400")
    assert priced.amount == D("102.00")
    assert priced.display_unit_price == D("0.07285714285714285714285714286")


def test_single_unbounded_tier_is_per_unit() -> None:
    tiers = (Tier(None, D("0.25"), D("3")),)
    assert lines(price_usage(graduated(tiers), D("8"))) == [
        ("tier 1: 8 × 0.25", D("2.00")),
        ("flat fee tier 1", D("3")),
    ]


# volume


@pytest.mark.parametrize(
    ("quantity", "description", "amount"),
    [
        ("1500", "tier 3: 1500 × 0.05", "75.00"),
        ("100", "tier 1: 100 × 0.10", "10.00"),
        ("101", "tier 2: 101 × 0.08", "8.08"),
        ("1000", "tier 2: 1000 × 0.08", "80.00"),
        ("100.5", "tier 2: 100.5 × 0.08", "8.040"),
    ],
)
def test_volume_prices_everything_at_the_tier_reached(
    quantity: str, description: str, amount: str
) -> None:
    priced = price_usage(volume(), D(quantity))
    assert lines(priced) == [(description, D(amount))]
    assert priced.amount == D(amount)


def test_volume_adds_the_flat_fee_of_the_tier_reached_only() -> None:
    priced = price_usage(volume(TIERS_WITH_FEES), D("101"))
    assert lines(priced) == [("tier 2: 101 × 0.08", D("8.08")), ("flat fee tier 2", D("5.00"))]
    assert priced.amount == D("13.08")
    assert priced.display_unit_price == D("0.1295049504950495049504950495")


def test_volume_zero_usage_is_not_charged_even_with_a_flat_fee() -> None:
    assert price_usage(volume(TIERS_WITH_FEES), D("0")) == Priced(D("0"), D("0"), (), D("0"))


def test_volume_included_quantity_can_move_usage_to_a_lower_tier() -> None:
    # 1050 used, 100 included: 950 billable reaches tier 2.
    assert price_usage(volume(included="100"), D("1050")).amount == D("76.00")


# package


@pytest.mark.parametrize(
    ("quantity", "description", "amount"),
    [
        ("250", "3 packages of 100 × 5.00", "15.00"),
        ("200", "2 packages of 100 × 5.00", "10.00"),
        ("1", "1 package of 100 × 5.00", "5.00"),
        ("100.01", "2 packages of 100 × 5.00", "10.00"),
    ],
)
def test_package_rounds_started_packages_up(quantity: str, description: str, amount: str) -> None:
    priced = price_usage(package("100", "5.00"), D(quantity))
    assert lines(priced) == [(description, D(amount))]
    assert priced.display_unit_price == D("5.00")


def test_package_zero_usage_buys_no_package() -> None:
    assert price_usage(package("100", "5.00"), D("0")) == Priced(D("0"), D("0"), (), D("5.00"))


def test_package_rounds_up_exactly_with_decimal_sizes() -> None:
    priced = price_usage(package("0.5", "2.50"), D("1.2"))
    assert priced.breakdown == (
        PricedStep("3 packages of 0.5 × 2.50", D("3"), D("2.50"), D("7.50")),
    )
    assert price_usage(package("0.5", "2.50"), D("1.5")).amount == D("7.50")
    assert price_usage(package("0.5", "2.50"), D("1.0")).amount == D("5.00")
    assert price_usage(package("0.1", "1"), D("0.30000000000000000001")).amount == D("4")


def test_package_counts_packages_of_the_billable_quantity() -> None:
    priced = price_usage(package("100", "5.00", included="50"), D("250"))
    assert priced.billable_quantity == D("200")
    assert priced.amount == D("10.00")


# the factory and refusals


@pytest.mark.parametrize("model", list(PricingModel))
def test_every_catalog_model_can_be_priced(model: PricingModel) -> None:
    configured = charge(model, unit_price="1", tiers=TIERS, package_size="10")
    assert price_usage(configured, D("10")).amount > 0


@pytest.mark.parametrize("model", list(PricingModel))
def test_negative_quantity_is_refused(model: PricingModel) -> None:
    configured = charge(model, unit_price="1", tiers=TIERS, package_size="10")
    with pytest.raises(ValueError, match="quantity must not be negative"):
        price_usage(configured, D("-1"))


@pytest.mark.parametrize("bad", [D("NaN"), D("Infinity"), 3.0, 3])
def test_non_decimal_or_non_finite_quantity_is_refused(bad: object) -> None:
    with pytest.raises(ValueError, match="quantity"):
        price_usage(per_unit("1"), bad)  # type: ignore[arg-type]


def test_negative_included_quantity_is_refused() -> None:
    with pytest.raises(ValueError, match="included_quantity must not be negative"):
        price_usage(per_unit("1", included="-5"), D("10"))


@pytest.mark.parametrize(
    ("configured", "message"),
    [
        (charge(PricingModel.PER_UNIT), "needs a unit_price"),
        (charge(PricingModel.PACKAGE, unit_price="5"), "needs a package_size"),
        (charge(PricingModel.PACKAGE, package_size="100"), "needs a unit_price"),
        (charge(PricingModel.PACKAGE, unit_price="5", package_size="0"), "greater than zero"),
        (charge(PricingModel.PER_UNIT, unit_price="-1"), "unit_price must not be negative"),
        (charge(PricingModel.GRADUATED), "at least one tier"),
        (
            volume((Tier(D("100"), D("1"), D("0")),)),
            "the last tier must be unbounded",
        ),
        (
            graduated((Tier(None, D("1"), D("0")), Tier(None, D("1"), D("0")))),
            "only the last tier may be unbounded",
        ),
        (
            graduated((Tier(D("100"), D("1"), D("0")), Tier(D("100"), D("1"), D("0")), TIERS[2])),
            "strictly increasing",
        ),
        (
            volume((Tier(D("0"), D("1"), D("0")), TIERS[2])),
            "greater than zero",
        ),
        (
            graduated((Tier(D("10"), D("1"), D("-1")), TIERS[2])),
            "flat_fee must not be negative",
        ),
    ],
)
def test_malformed_charges_are_refused(configured: UsageCharge, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        price_usage(configured, D("10"))


def test_pricing_imports_no_database_code() -> None:
    probe = (
        "import sys, meterworks.billing.pricing; "
        "print(sorted(m for m in sys.modules if m.startswith(('sqlalchemy', 'meterworks.db', "
        "'meterworks.catalog'))))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"

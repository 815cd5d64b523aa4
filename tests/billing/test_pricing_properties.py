"""Pricing models against independent oracles, and the properties every model keeps.

The oracles are written differently from the code under test: graduated unit by unit and by
clamping, volume by counting the bounds passed, package and per-unit in integer arithmetic.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Context, Decimal, Inexact, localcontext

from hypothesis import given, settings
from hypothesis import strategies as st

from meterworks.billing.pricing import price_usage
from meterworks.catalog.plans import PricingModel, Tier, UsageCharge

D = Decimal


def exact_oracle_context() -> Context:
    return Context(prec=500, rounding=ROUND_HALF_UP, traps=[Inexact])


def scaled(units: int, places: int) -> Decimal:
    """units × 10^-places, built from text so no decimal context can round it."""
    return D(f"{units}e-{places}")


def money(max_units: int = 10**6) -> st.SearchStrategy[Decimal]:
    return st.builds(scaled, st.integers(0, max_units), st.integers(0, 4))


def quantities(max_units: int = 10**7) -> st.SearchStrategy[Decimal]:
    return st.builds(scaled, st.integers(0, max_units), st.integers(0, 6))


@st.composite
def tier_lists(
    draw: st.DrawFn,
    *,
    bounds: st.SearchStrategy[int],
    places: int | None = None,
    min_bounded: int = 0,
) -> tuple[Tier, ...]:
    """1–5 tiers: strictly increasing bounds (`bounds` units × 10^-places), the last unbounded."""
    scale = draw(st.integers(0, 6)) if places is None else places
    raw = draw(st.lists(bounds, min_size=min_bounded, max_size=4, unique=True))
    upper_bounds: list[Decimal | None] = [scaled(b, scale) for b in sorted(raw)]
    upper_bounds.append(None)
    return tuple(Tier(b, draw(money()), draw(money())) for b in upper_bounds)


def usage_charge(
    model: PricingModel,
    *,
    unit_price: Decimal | None = None,
    tiers: tuple[Tier, ...] = (),
    package_size: Decimal | None = None,
    included: Decimal = D(0),
) -> UsageCharge:
    return UsageCharge(
        meter_id="mtr_1",
        meter_key="storage",
        name="Storage",
        model=model,
        unit_price=unit_price,
        tiers=tiers,
        package_size=package_size,
        included_quantity=included,
    )


@st.composite
def charges(draw: st.DrawFn, included: st.SearchStrategy[Decimal] | None = None) -> UsageCharge:
    """Any valid charge of any model."""
    return usage_charge(
        draw(st.sampled_from(PricingModel)),
        unit_price=draw(money()),
        tiers=draw(tier_lists(bounds=st.integers(1, 10**7))),
        package_size=draw(st.builds(scaled, st.integers(1, 10**5), st.integers(0, 3))),
        included=D(0) if included is None else draw(included),
    )


# Oracles


def graduated_unit_by_unit(tiers: tuple[Tier, ...], steps: int, step_size: Decimal) -> Decimal:
    """Walk the quantity one grid step at a time; bounds lie on the grid, so no step straddles."""
    with localcontext(exact_oracle_context()):
        amount = D(0)
        entered: set[int] = set()
        for k in range(1, steps + 1):
            top = k * step_size
            index = next(i for i, t in enumerate(tiers) if t.up_to is None or top <= t.up_to)
            amount += step_size * tiers[index].unit_price
            entered.add(index)
        return amount + sum((tiers[i].flat_fee for i in entered), D(0))


def graduated_by_clamping(tiers: tuple[Tier, ...], quantity: Decimal) -> Decimal:
    with localcontext(exact_oracle_context()):
        lowers = [D(0)] + [t.up_to for t in tiers if t.up_to is not None]
        amount = D(0)
        for lower, tier in zip(lowers, tiers, strict=True):
            upper = quantity if tier.up_to is None else tier.up_to
            amount += max(D(0), min(quantity, upper) - lower) * tier.unit_price
            amount += tier.flat_fee if quantity > lower else D(0)
        return amount


def volume_by_scanning(tiers: tuple[Tier, ...], quantity: Decimal) -> Decimal:
    if quantity == 0:
        return D(0)
    passed = sum(1 for t in tiers if t.up_to is not None and t.up_to < quantity)
    tier = tiers[passed]
    with localcontext(exact_oracle_context()):
        return quantity * tier.unit_price + tier.flat_fee


def package_in_integers(quantity_units: int, size_units: int, price: Decimal) -> Decimal:
    packages = -(-quantity_units // size_units)  # ceiling division on integers
    with localcontext(exact_oracle_context()):
        return packages * price


# Equality with the oracles


@given(
    quantity_units=st.integers(0, 10**38 - 1),
    quantity_places=st.integers(0, 18),
    price_units=st.integers(0, 10**38 - 1),
    price_places=st.integers(0, 18),
)
def test_per_unit_equals_the_integer_product(
    quantity_units: int, quantity_places: int, price_units: int, price_places: int
) -> None:
    charge = usage_charge(PricingModel.PER_UNIT, unit_price=scaled(price_units, price_places))
    priced = price_usage(charge, scaled(quantity_units, quantity_places))
    assert priced.amount == scaled(quantity_units * price_units, quantity_places + price_places)


@settings(deadline=None)
@given(
    places=st.integers(0, 2),
    data=st.data(),
    steps=st.integers(0, 1500),
)
def test_graduated_equals_the_unit_by_unit_walk(
    places: int, data: st.DataObject, steps: int
) -> None:
    tiers = data.draw(tier_lists(bounds=st.integers(1, 1500), places=places))
    step_size = scaled(1, places)
    charge = usage_charge(PricingModel.GRADUATED, tiers=tiers)
    priced = price_usage(charge, scaled(steps, places))
    assert priced.amount == graduated_unit_by_unit(tiers, steps, step_size)


@given(tiers=tier_lists(bounds=st.integers(1, 10**7)), quantity=quantities())
def test_graduated_equals_the_sum_of_clamped_tiers(
    tiers: tuple[Tier, ...], quantity: Decimal
) -> None:
    priced = price_usage(usage_charge(PricingModel.GRADUATED, tiers=tiers), quantity)
    assert priced.amount == graduated_by_clamping(tiers, quantity)


@given(tiers=tier_lists(bounds=st.integers(1, 10**7)), quantity=quantities())
def test_volume_equals_the_scanned_tier(tiers: tuple[Tier, ...], quantity: Decimal) -> None:
    priced = price_usage(usage_charge(PricingModel.VOLUME, tiers=tiers), quantity)
    assert priced.amount == volume_by_scanning(tiers, quantity)


@given(
    tiers=tier_lists(bounds=st.integers(1, 1000), places=0, min_bounded=1),
    bound_index=st.integers(0, 3),
    offset=st.sampled_from([D("-0.001"), D(0), D("0.001")]),
)
def test_volume_and_graduated_at_tier_bounds(
    tiers: tuple[Tier, ...], bound_index: int, offset: Decimal
) -> None:
    """Quantities just below, on and just above a bound: the off-by-one places."""
    bounds = [t.up_to for t in tiers if t.up_to is not None]
    quantity = bounds[min(bound_index, len(bounds) - 1)] + offset
    graduated = price_usage(usage_charge(PricingModel.GRADUATED, tiers=tiers), quantity)
    volume = price_usage(usage_charge(PricingModel.VOLUME, tiers=tiers), quantity)
    assert graduated.amount == graduated_by_clamping(tiers, quantity)
    assert volume.amount == volume_by_scanning(tiers, quantity)


@given(
    quantity_units=st.integers(0, 10**9),
    size_units=st.integers(1, 10**6),
    places=st.integers(0, 6),
    price=money(),
)
def test_package_equals_integer_ceiling_division(
    quantity_units: int, size_units: int, places: int, price: Decimal
) -> None:
    charge = usage_charge(
        PricingModel.PACKAGE, unit_price=price, package_size=scaled(size_units, places)
    )
    priced = price_usage(charge, scaled(quantity_units, places))
    assert priced.amount == package_in_integers(quantity_units, size_units, price)


# Properties of every model


@given(charge=charges(), quantity=quantities())
def test_breakdown_explains_the_amount_exactly(charge: UsageCharge, quantity: Decimal) -> None:
    priced = price_usage(charge, quantity)
    with localcontext(exact_oracle_context()):
        assert sum((s.amount for s in priced.breakdown), D(0)) == priced.amount
        for s in priced.breakdown:
            assert s.quantity * s.unit_price == s.amount
    if priced.billable_quantity == 0:
        assert priced.breakdown == ()
        assert priced.amount == 0


@given(
    charge=charges(included=quantities()),
    quantity=quantities(),
)
def test_included_quantity_shifts_the_quantity(charge: UsageCharge, quantity: Decimal) -> None:
    with localcontext(exact_oracle_context()):
        remaining = max(D(0), quantity - charge.included_quantity)
    without_included = usage_charge(
        charge.model,
        unit_price=charge.unit_price,
        tiers=charge.tiers,
        package_size=charge.package_size,
    )
    priced = price_usage(charge, quantity)
    assert priced.billable_quantity == remaining
    assert priced == price_usage(without_included, remaining)


@given(
    charge=charges(included=quantities(10**5)),
    quantities_=st.lists(quantities(), min_size=2, max_size=6),
)
def test_amount_never_decreases_as_usage_grows(
    charge: UsageCharge, quantities_: list[Decimal]
) -> None:
    # Volume pricing is exempt by design: 101 units at 0.08 cost less than 100 at 0.10.
    if charge.model is PricingModel.VOLUME:
        return
    amounts = [price_usage(charge, q).amount for q in sorted(quantities_)]
    assert amounts == sorted(amounts)


@given(charge=charges(), quantity=quantities())
def test_display_unit_price_by_model(charge: UsageCharge, quantity: Decimal) -> None:
    priced = price_usage(charge, quantity)
    if charge.model in (PricingModel.PER_UNIT, PricingModel.PACKAGE):
        assert priced.display_unit_price == charge.unit_price
    elif quantity == 0:
        assert priced.display_unit_price == 0
    else:
        with localcontext(Context(prec=28, rounding=ROUND_HALF_UP)):
            assert priced.display_unit_price == priced.amount / quantity

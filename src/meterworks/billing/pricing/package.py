"""Package pricing: usage is sold in packages of a fixed size; a started package is a whole one.

    packages = ⌈billable quantity / package size⌉
    amount   = packages × package price

Worked examples, packages of 100 at 5.00: 250 units → 3 packages → 15.00; 200 units → 2 → 10.00;
0 units → 0 packages → 0 (empty breakdown). Quantities and sizes may be fractional and the
rounding up stays exact: 1.2 GB in packages of 0.5 GB is 3 packages.
"""

from __future__ import annotations

from decimal import Decimal

from meterworks.billing.pricing.exact import exact, require_non_negative, require_positive
from meterworks.billing.pricing.priced import Priced, plain, step, total


def package_count(quantity: Decimal, package_size: Decimal) -> Decimal:
    """⌈quantity / package_size⌉ as an exact integer-valued Decimal."""
    with exact():
        # Integer division and remainder are exact; only the quotient's size could make them fail,
        # and with EXACT_PRECISION digits it cannot.
        whole, rest = divmod(quantity, package_size)
        return whole + 1 if rest != 0 else whole


def price_package(quantity: Decimal, package_size: Decimal, package_price: Decimal) -> Priced:
    """Price a billable `quantity` (included quantity already deducted) in whole packages."""
    require_non_negative("quantity", quantity)
    require_positive("package_size", package_size)
    require_non_negative("package price", package_price)
    packages = package_count(quantity, package_size)
    noun = "package" if packages == 1 else "packages"
    steps = (
        ()
        if packages == 0
        else (
            step(
                f"{plain(packages)} {noun} of {plain(package_size)} × {plain(package_price)}",
                packages,
                package_price,
            ),
        )
    )
    return Priced(quantity, total(steps), steps, package_price)

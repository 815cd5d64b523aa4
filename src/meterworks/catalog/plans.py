"""Plans: a currency, an interval, fixed charges (in advance) and usage charges (in arrears)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Connection, Row

from meterworks.catalog.meters import Meter, meters_by_ref
from meterworks.db import tables as t
from meterworks.errors import InvalidInput, NotFound
from meterworks.kit.decimals import DecimalInputError, format_decimal, parse_decimal
from meterworks.kit.ids import new_id
from meterworks.kit.money import CURRENCIES
from meterworks.kit.periods import Interval


class PricingModel(StrEnum):
    PER_UNIT = "per_unit"
    GRADUATED = "graduated"
    VOLUME = "volume"
    PACKAGE = "package"


@dataclass(frozen=True, slots=True)
class Tier:
    up_to: Decimal | None  # None: no upper limit
    unit_price: Decimal
    flat_fee: Decimal


@dataclass(frozen=True, slots=True)
class FixedCharge:
    name: str
    amount: Decimal
    type: str = "fixed"


@dataclass(frozen=True, slots=True)
class UsageCharge:
    meter_id: str
    meter_key: str
    name: str
    model: PricingModel
    unit_price: Decimal | None
    tiers: tuple[Tier, ...]
    package_size: Decimal | None
    included_quantity: Decimal
    type: str = "usage"


Charge = FixedCharge | UsageCharge


@dataclass(frozen=True, slots=True)
class Plan:
    id: str
    name: str
    currency: str
    interval: Interval
    product_id: str | None
    charges: tuple[Charge, ...]
    created_at: datetime

    @property
    def usage_charges(self) -> tuple[UsageCharge, ...]:
        return tuple(c for c in self.charges if isinstance(c, UsageCharge))

    @property
    def fixed_charges(self) -> tuple[FixedCharge, ...]:
        return tuple(c for c in self.charges if isinstance(c, FixedCharge))


class _Problems:
    def __init__(self) -> None:
        self.items: list[dict[str, str]] = []

    def add(self, field: str, message: str) -> None:
        self.items.append({"field": field, "message": message})

    def decimal(
        self, field: str, value: Any, *, required: bool = True, positive: bool = False
    ) -> Decimal | None:
        if value is None:
            if required:
                self.add(field, "is required")
            return None
        try:
            number = parse_decimal(value)
        except DecimalInputError as exc:
            self.add(field, str(exc))
            return None
        if number < 0 or (positive and number == 0):
            self.add(field, "must be greater than zero" if positive else "must not be negative")
            return None
        return number


def _parse_tiers(raw: Any, where: str, problems: _Problems) -> tuple[Tier, ...]:
    if not isinstance(raw, list) or not raw:
        problems.add(f"{where}.tiers", "at least one tier is required for this model")
        return ()
    tiers: list[Tier] = []
    previous: Decimal = Decimal(0)
    for index, item in enumerate(raw):
        field = f"{where}.tiers[{index}]"
        if not isinstance(item, dict):
            problems.add(field, "must be an object")
            continue
        last = index == len(raw) - 1
        up_to_raw = item.get("up_to")
        up_to: Decimal | None = None
        if up_to_raw is None:
            if not last:
                problems.add(f"{field}.up_to", "only the last tier may be unbounded (null)")
        else:
            up_to = problems.decimal(f"{field}.up_to", up_to_raw, positive=True)
            if up_to is not None and up_to <= previous:
                problems.add(f"{field}.up_to", "tiers must have strictly increasing bounds")
            if last:
                problems.add(f"{field}.up_to", "the last tier must be unbounded (null)")
            previous = up_to if up_to is not None else previous
        unit_price = problems.decimal(f"{field}.unit_price", item.get("unit_price"))
        flat_fee = problems.decimal(f"{field}.flat_fee", item.get("flat_fee"), required=False)
        tiers.append(Tier(up_to, unit_price or Decimal(0), flat_fee or Decimal(0)))
    return tuple(tiers)


def parse_charges(raw: Any, meters: dict[str, Meter], problems: _Problems) -> tuple[Charge, ...]:
    if not isinstance(raw, list):
        problems.add("charges", "must be a list")
        return ()
    charges: list[Charge] = []
    seen_meters: set[str] = set()
    for index, item in enumerate(raw):
        where = f"charges[{index}]"
        if not isinstance(item, dict):
            problems.add(where, "must be an object")
            continue
        kind = item.get("type")
        if kind == "fixed":
            name = str(item.get("name") or "").strip()
            if not name:
                problems.add(f"{where}.name", "is required")
            amount = problems.decimal(f"{where}.amount", item.get("amount"))
            charges.append(FixedCharge(name, amount or Decimal(0)))
        elif kind == "usage":
            ref = item.get("meter")
            meter = meters.get(ref) if isinstance(ref, str) else None
            if meter is None:
                problems.add(f"{where}.meter", f"meter `{ref}` not found")
                continue
            if meter.id in seen_meters:
                problems.add(f"{where}.meter", "a plan charges each meter at most once")
            seen_meters.add(meter.id)
            try:
                model = PricingModel(str(item.get("model")))
            except ValueError:
                problems.add(
                    f"{where}.model", "must be one of " + ", ".join(m.value for m in PricingModel)
                )
                continue
            unit_price: Decimal | None = None
            tiers: tuple[Tier, ...] = ()
            package_size: Decimal | None = None
            if model in (PricingModel.PER_UNIT, PricingModel.PACKAGE):
                unit_price = problems.decimal(f"{where}.unit_price", item.get("unit_price"))
            if model in (PricingModel.GRADUATED, PricingModel.VOLUME):
                tiers = _parse_tiers(item.get("tiers"), where, problems)
            if model is PricingModel.PACKAGE:
                package_size = problems.decimal(
                    f"{where}.package_size", item.get("package_size"), positive=True
                )
            included = problems.decimal(
                f"{where}.included_quantity", item.get("included_quantity"), required=False
            )
            name = str(item.get("name") or "").strip() or meter.name
            charges.append(
                UsageCharge(
                    meter_id=meter.id,
                    meter_key=meter.key,
                    name=name,
                    model=model,
                    unit_price=unit_price,
                    tiers=tiers,
                    package_size=package_size,
                    included_quantity=included or Decimal(0),
                )
            )
        else:
            problems.add(f"{where}.type", "must be `fixed` or `usage`")
    return tuple(charges)


def _charge_json(charge: Charge) -> dict[str, Any]:
    if isinstance(charge, FixedCharge):
        return {"type": "fixed", "name": charge.name, "amount": format_decimal(charge.amount)}
    return {
        "type": "usage",
        "meter_id": charge.meter_id,
        "meter_key": charge.meter_key,
        "name": charge.name,
        "model": charge.model.value,
        "unit_price": None if charge.unit_price is None else format_decimal(charge.unit_price),
        "tiers": [
            {
                "up_to": None if tier.up_to is None else format_decimal(tier.up_to),
                "unit_price": format_decimal(tier.unit_price),
                "flat_fee": format_decimal(tier.flat_fee),
            }
            for tier in charge.tiers
        ],
        "package_size": None
        if charge.package_size is None
        else format_decimal(charge.package_size),
        "included_quantity": format_decimal(charge.included_quantity),
    }


def _charge_from_json(data: dict[str, Any]) -> Charge:
    if data["type"] == "fixed":
        return FixedCharge(data["name"], Decimal(data["amount"]))
    return UsageCharge(
        meter_id=data["meter_id"],
        meter_key=data["meter_key"],
        name=data["name"],
        model=PricingModel(data["model"]),
        unit_price=None if data["unit_price"] is None else Decimal(data["unit_price"]),
        tiers=tuple(
            Tier(
                None if tier["up_to"] is None else Decimal(tier["up_to"]),
                Decimal(tier["unit_price"]),
                Decimal(tier["flat_fee"]),
            )
            for tier in data["tiers"]
        ),
        package_size=None if data["package_size"] is None else Decimal(data["package_size"]),
        included_quantity=Decimal(data["included_quantity"]),
    )


def charge_to_json(charge: Charge) -> dict[str, Any]:
    return _charge_json(charge)


def plan_from_row(row: Row[Any]) -> Plan:
    return Plan(
        id=row.id,
        name=row.name,
        currency=row.currency,
        interval=Interval(row.interval),
        product_id=row.product_id,
        charges=tuple(_charge_from_json(c) for c in row.charges),
        created_at=row.created_at,
    )


def create_plan(
    conn: Connection,
    organization_id: str,
    *,
    name: str,
    currency: str,
    interval: str,
    charges: Any,
    product_id: str | None = None,
    now: datetime,
) -> Plan:
    problems = _Problems()
    if not (name or "").strip() or len(name.strip()) > 200:
        problems.add("name", "is required, at most 200 characters")
    if product_id is not None and not 0 < len(product_id) <= 200:
        problems.add("product_id", "1-200 characters")
    code = (currency or "").upper()
    if code not in CURRENCIES:
        problems.add("currency", "must be an ISO 4217 currency code")
    try:
        plan_interval = Interval(interval)
    except ValueError:
        problems.add("interval", "must be one of month, quarter, year")
        plan_interval = Interval.MONTH
    refs = {
        c.get("meter")
        for c in (charges if isinstance(charges, list) else [])
        if isinstance(c, dict) and isinstance(c.get("meter"), str)
    }
    meters = meters_by_ref(conn, organization_id, {r for r in refs if r})
    parsed = parse_charges(charges, meters, problems)
    if problems.items:
        raise InvalidInput("the plan is not valid", details=problems.items)
    plan = Plan(
        id=new_id("pln"),
        name=name.strip(),
        currency=code,
        interval=plan_interval,
        product_id=product_id,
        charges=parsed,
        created_at=now,
    )
    conn.execute(
        t.plans.insert().values(
            organization_id=organization_id,
            id=plan.id,
            name=plan.name,
            currency=plan.currency,
            interval=plan.interval.value,
            product_id=plan.product_id,
            charges=[_charge_json(c) for c in plan.charges],
            created_at=now,
        )
    )
    usage = plan.usage_charges
    if usage:
        conn.execute(
            t.plan_meters.insert(),
            [
                {"organization_id": organization_id, "plan_id": plan.id, "meter_id": c.meter_id}
                for c in usage
            ],
        )
    return plan


# A plan never changes once created (a new price is a new plan), so every process may keep the
# plans it has read: usage reads, ingestion and billing look the same few plans up again and again.
_PLANS: dict[tuple[str, str], Plan] = {}
_PLANS_KEPT = 10_000


def get_plan(conn: Connection, organization_id: str, plan_id: str) -> Plan:
    kept = _PLANS.get((organization_id, plan_id))
    if kept is not None:
        return kept
    row = conn.execute(
        select(t.plans).where(t.plans.c.organization_id == organization_id, t.plans.c.id == plan_id)
    ).first()
    if row is None:
        raise NotFound(f"plan `{plan_id}` not found", code="plan_not_found")
    plan = plan_from_row(row)
    if len(_PLANS) >= _PLANS_KEPT:
        _PLANS.clear()
    _PLANS[(organization_id, plan_id)] = plan
    return plan


def list_plans(
    conn: Connection, organization_id: str, *, product_id: str | None = None
) -> list[Plan]:
    query = select(t.plans).where(t.plans.c.organization_id == organization_id)
    if product_id is not None:
        query = query.where(t.plans.c.product_id == product_id)
    rows = conn.execute(query.order_by(t.plans.c.created_at, t.plans.c.id)).all()
    return [plan_from_row(row) for row in rows]

"""Explaining an invoice: per line, the arithmetic and the ledger entries behind it.

A usage line is re-aggregated from the ledger entries as they stood when the invoice was
finalized (below its ledger watermark; a draft: the ledger now), so any line can be traced to the
events that made it, and the recomputed quantity is shown beside the billed one.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from sqlalchemy.engine import Connection

from meterworks.billing.model import Invoice, InvoiceKind, Line, LineType
from meterworks.billing.tracing import Trace, days_text, trace
from meterworks.catalog.meters import Aggregation, Meter, meters_by_ref
from meterworks.kit.decimals import format_decimal
from meterworks.kit.money import exponent, format_minor, to_minor

# Sums and segments are written out term by term up to this many terms.
TERMS_SHOWN = 20


def explain(conn: Connection, organization_id: str, invoice: Invoice) -> dict[str, Any]:
    # An on-demand invoice has no subscription: its lines carry no meter, so none is traced.
    subscription_id = invoice.subscription_id or ""
    ids = {line.meter_id for line in invoice.lines if line.meter_id}
    meters = {m.id: m for m in meters_by_ref(conn, organization_id, ids).values()}
    currency = invoice.currency
    lines = []
    for position, line in enumerate(invoice.lines, start=1):
        item: dict[str, Any] = {
            "position": position,
            "type": line.type.value,
            "description": line.description,
            "quantity": format_decimal(line.quantity),
            "amount": format_minor(line.amount_minor, currency),
            "exact_amount": format_decimal(line.exact_amount),
        }
        meter = meters.get(line.meter_id or "")
        if line.type is LineType.FIXED:
            item["arithmetic"] = _fixed(line, currency)
        elif line.type is LineType.FIXED_ADJUSTMENT:
            item["arithmetic"] = _fixed_adjustment(line, currency)
        elif line.type is LineType.ITEM:
            item["arithmetic"] = [str(step) for step in line.details.get("arithmetic", [])]
        elif meter is not None and line.type is LineType.USAGE:
            found = trace(
                conn, organization_id, subscription_id, meter, line.service,
                below_seq=invoice.ledger_watermark,
            )  # fmt: skip
            item["arithmetic"] = _aggregation(meter, found) + _pricing(line.details, currency)
            item["ledger"] = _ledger(meter, found, line.quantity)
        elif meter is not None:
            late_from = line.details.get("ledger_watermark")
            found = trace(
                conn, organization_id, subscription_id, meter, line.service,
                below_seq=invoice.ledger_watermark,
                late_from_seq=int(late_from) if late_from is not None else None,
            )  # fmt: skip
            rated = line.details.get("rated", {})
            billed = int(line.details.get("billed_minor", 0))
            item["arithmetic"] = [
                *_aggregation(meter, found),
                *_pricing(rated, currency),
                f"rated now {format_minor(int(line.details['rated_minor']), currency)} − billed "
                f"before {format_minor(billed, currency)} = "
                f"{format_minor(line.amount_minor, currency)}",
            ]
            item["ledger"] = _ledger(meter, found, Decimal(rated.get("quantity", "0")))
        lines.append(item)
    rate = invoice.tax_rate
    totals = [
        "subtotal = Σ line amounts = " + format_minor(invoice.subtotal_minor, currency),
        (
            f"tax = {format_minor(invoice.subtotal_minor, currency)} × {format_decimal(rate)} % "
            f"= {format_minor(invoice.tax_minor, currency)} (rounded half-up)"
            if rate
            else f"tax = Σ line taxes = {format_minor(invoice.tax_minor, currency)}"
            if invoice.kind is InvoiceKind.ON_DEMAND
            else "tax = 0 (no tax rate)"
        ),
        f"total = subtotal + tax = {format_minor(invoice.total_minor, currency)}",
    ]
    return {
        "invoice_id": invoice.id,
        "number": invoice.number,
        "status": invoice.status.value,
        "currency": currency,
        "ledger_watermark": invoice.ledger_watermark,
        "ledger_note": (
            f"ledger entries with sequence below {invoice.ledger_watermark} (as finalized)"
            if invoice.ledger_watermark is not None
            else "the ledger as it stands now (a draft)"
        ),
        "rounding": f"each line is rounded once, half-up, to {exponent(currency)} decimal(s)",
        "lines": lines,
        "totals": totals,
    }


def _fixed(line: Line, currency: str) -> list[str]:
    d = line.details
    rounded = format_minor(line.amount_minor, currency)
    if d.get("ratio") == "1":
        return [f"{d['charge']}: {d['amount']} for the whole period = {rounded}"]
    return [
        f"{d['charge']}: {d['amount']} × {d['ratio']} ({d['service_days']} of {d['grid_days']} "
        f"days) = {d['exact_amount']} → {rounded} (rounded half-up)"
    ]


def _fixed_adjustment(line: Line, currency: str) -> list[str]:
    d = line.details
    return [
        f"{d['charge']} for {d['service']['start']} – {d['service']['end']}: {d['amount']} × "
        f"{d['ratio']} ({d['service_days']} of {d['grid_days']} days) = "
        f"{format_minor(int(d['expected_minor']), currency)}",
        f"billed before (invoices {', '.join(d.get('billed_on', [])) or 'none'}): "
        f"{format_minor(int(d['billed_minor']), currency)}",
        f"adjustment = {format_minor(int(d['expected_minor']), currency)} − "
        f"{format_minor(int(d['billed_minor']), currency)} = "
        f"{format_minor(line.amount_minor, currency)}",
    ]


def _aggregation(meter: Meter, found: Trace) -> list[str]:
    q = format_decimal(found.quantity)
    unit = meter.unit
    aggregation = meter.aggregation
    if aggregation is Aggregation.SUM:
        terms = [e["quantity"] for e in found.entries if e["operation"] == "add"]
        if 0 < found.counted <= TERMS_SHOWN:
            return [f"sum of the period's entries: {' + '.join(terms)} = {q} {unit}"]
        return [f"sum of the period's {found.counted} entries = {q} {unit}"]
    if aggregation is Aggregation.COUNT:
        return [f"count of the period's entries = {q}"]
    if aggregation is Aggregation.UNIQUE_COUNT:
        return [f"distinct values of `{meter.property}` in the period = {q}"]
    carried = format_decimal(found.carried_level or Decimal(0))
    if aggregation is Aggregation.MAX:
        return [f"highest level in the period (carried in: {carried}) = {q} {unit}"]
    if aggregation is Aggregation.LATEST:
        return [f"level at the end of the period (carried in: {carried}) = {q} {unit}"]
    terms = [f"{format_decimal(level)} × {days_text(held)} days" for level, held in found.segments]
    if found.segments_complete and len(terms) <= TERMS_SHOWN:
        written = " + ".join(terms) if terms else "0"
        return [f"level × days held (carried in: {carried}): {written} = {q} {unit}-days"]
    return [f"level × days held over {len(found.segments)}+ segments = {q} {unit}-days"]


def _pricing(details: dict[str, Any], currency: str) -> list[str]:
    if not details:
        return []
    lines = []
    included = details.get("included_quantity", "0")
    if included != "0":
        lines.append(
            f"included {included}: billable = max(0, {details['quantity']} − {included}) = "
            f"{details['billable_quantity']}"
        )
    # A step's description already reads `quantity × price` (a flat fee: its tier).
    lines.extend(f"{step['description']} = {step['amount']}" for step in details.get("steps", []))
    lines.append(
        f"exact amount {details.get('exact_amount', '0')} → "
        f"{format_minor(_minor(details.get('exact_amount', '0'), currency), currency)} "
        "(rounded half-up)"
    )
    return lines


def _minor(exact: str, currency: str) -> int:
    return to_minor(Decimal(exact), currency)


def _ledger(meter: Meter, found: Trace, billed_quantity: Decimal) -> dict[str, Any]:
    return {
        "meter": {"id": meter.id, "key": meter.key, "aggregation": meter.aggregation.value},
        "carried_level": None
        if found.carried_level is None
        else format_decimal(found.carried_level),
        "entries": found.entries,
        "entries_counted": found.counted,
        "entries_shown": len(found.entries),
        "entries_voided": found.voided,
        "recomputed_quantity": format_decimal(found.quantity),
        "matches_line": found.quantity == billed_quantity,
    }

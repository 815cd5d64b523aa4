"""The schema, defined once for both dialects.

Every key and index of tenant data leads with `organization_id`, the shard key: the ledger can be
distributed by organization (e.g. Citus) without changing a query. `organizations` and `api_keys`
are small reference tables that authentication reads before it knows the organization.

Instants in the ledger and its rollups are integer microseconds since the epoch (`*_us`): exact,
compact and ordered the same on both databases. Quantities and prices are `ExactDecimal`;
money amounts are integer minor units (`*_minor`).
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    ForeignKeyConstraint,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects import postgresql

from meterworks.db.types import ExactDecimal, UTCDateTime

naming_convention = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
metadata = MetaData(naming_convention=naming_convention)

Json = JSON().with_variant(postgresql.JSONB(), "postgresql")
# A document written whole and read whole, never queried inside (a line's details, a billing
# view's body): PostgreSQL's `json` keeps the text as sent, where `jsonb` parses it into its
# binary form on every write (about twice the cost of a COPY'd line's details) and prints it
# back on every read.
Document = JSON()

organizations = Table(
    "organizations",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("name", String(200), nullable=False, unique=True),
    # What happens to usage for a period whose invoice is already finalized: adjust | reject.
    Column("late_usage_policy", String(16), nullable=False, server_default="adjust"),
    Column("settings", Json, nullable=False, server_default=text("'{}'")),
    Column("created_at", UTCDateTime(), nullable=False),
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("organization_id", String(40), nullable=False),
    Column("name", String(200), nullable=False),
    # sha256 of the secret: secrets are 120-bit random, so a fast hash is enough.
    Column("secret_hash", String(64), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("revoked_at", UTCDateTime(), nullable=True),
    ForeignKeyConstraint(["organization_id"], ["organizations.id"]),
    Index(None, "organization_id"),
)

partners = Table(
    "partners",
    metadata,
    Column("organization_id", String(40), nullable=False),
    Column("id", String(40), nullable=False),
    Column("name", String(200), nullable=False),
    Column("key_hash", String(64), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    PrimaryKeyConstraint("organization_id", "id"),
    UniqueConstraint("organization_id", "key_hash"),
    ForeignKeyConstraint(["organization_id"], ["organizations.id"]),
)

meters = Table(
    "meters",
    metadata,
    Column("organization_id", String(40), nullable=False),
    Column("id", String(40), nullable=False),
    Column("key", String(200), nullable=False),
    Column("name", String(200), nullable=False),
    Column("unit", String(64), nullable=False),
    Column("aggregation", String(16), nullable=False),
    # The property counted by `unique_count`.
    Column("property", String(200), nullable=True),
    Column("description", Text, nullable=True),
    Column("metadata", Json, nullable=False, server_default=text("'{}'")),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
    PrimaryKeyConstraint("organization_id", "id"),
    UniqueConstraint("organization_id", "key"),
    ForeignKeyConstraint(["organization_id"], ["organizations.id"]),
)

plans = Table(
    "plans",
    metadata,
    Column("organization_id", String(40), nullable=False),
    Column("id", String(40), nullable=False),
    Column("name", String(200), nullable=False),
    Column("currency", String(3), nullable=False),
    Column("interval", String(16), nullable=False),
    Column("product_id", String(200), nullable=True),
    # The validated charges, decimals as strings: a plan is an immutable price list.
    Column("charges", Json, nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    PrimaryKeyConstraint("organization_id", "id"),
    ForeignKeyConstraint(["organization_id"], ["organizations.id"]),
)

# Which meters a plan charges, so "the plan has that meter" is an indexed lookup.
plan_meters = Table(
    "plan_meters",
    metadata,
    Column("organization_id", String(40), nullable=False),
    Column("plan_id", String(40), nullable=False),
    Column("meter_id", String(40), nullable=False),
    PrimaryKeyConstraint("organization_id", "plan_id", "meter_id"),
    ForeignKeyConstraint(["organization_id", "plan_id"], ["plans.organization_id", "plans.id"]),
    ForeignKeyConstraint(["organization_id", "meter_id"], ["meters.organization_id", "meters.id"]),
    Index(None, "organization_id", "meter_id"),
)

customers = Table(
    "customers",
    metadata,
    Column("organization_id", String(40), nullable=False),
    Column("id", String(40), nullable=False),
    Column("external_id", String(200), nullable=False),
    Column("name", String(200), nullable=False),
    Column("email", String(320), nullable=True),
    Column("address", Json, nullable=True),
    # Percentage, e.g. 20 for 20 %; null means no tax.
    Column("tax_rate", ExactDecimal(), nullable=True),
    Column("metadata", Json, nullable=False, server_default=text("'{}'")),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
    Column("deleted_at", UTCDateTime(), nullable=True),
    PrimaryKeyConstraint("organization_id", "id"),
    ForeignKeyConstraint(["organization_id"], ["organizations.id"]),
    # One live customer per external id; a deleted one frees its id.
    Index(
        "uq_customers_live_external_id",
        "organization_id",
        "external_id",
        unique=True,
        sqlite_where=text("deleted_at IS NULL"),
        postgresql_where=text("deleted_at IS NULL"),
    ),
)

subscriptions = Table(
    "subscriptions",
    metadata,
    Column("organization_id", String(40), nullable=False),
    Column("id", String(40), nullable=False),
    Column("customer_id", String(40), nullable=False),
    Column("plan_id", String(40), nullable=False),
    Column("starts_at", UTCDateTime(), nullable=False),
    Column("ends_at", UTCDateTime(), nullable=True),
    Column("billing_anchor", UTCDateTime(), nullable=False),
    Column("canceled_at", UTCDateTime(), nullable=True),
    Column("metadata", Json, nullable=False, server_default=text("'{}'")),
    Column("created_at", UTCDateTime(), nullable=False),
    PrimaryKeyConstraint("organization_id", "id"),
    ForeignKeyConstraint(
        ["organization_id", "customer_id"], ["customers.organization_id", "customers.id"]
    ),
    ForeignKeyConstraint(["organization_id", "plan_id"], ["plans.organization_id", "plans.id"]),
    Index(None, "organization_id", "customer_id"),
)

# Per-organization ledger sequence. Taking this row's lock first serialises writers of one
# organization across processes, so dedupe-then-insert cannot race.
ledger_sequences = Table(
    "ledger_sequences",
    metadata,
    Column("organization_id", String(40), primary_key=True),
    Column("next_seq", BigInteger, nullable=False),
)

# The ledger: append-only. A correction is a new row with the same idempotency key and a higher
# revision (kind `amend` or `void`); the highest revision of a key is the one that counts.
usage_events = Table(
    "usage_events",
    metadata,
    Column("organization_id", String(40), nullable=False),
    Column("seq", BigInteger, nullable=False),
    Column("idempotency_key", String(255), nullable=False),
    Column("revision", Integer, nullable=False),
    Column("kind", String(8), nullable=False),  # event | amend | void
    Column("subscription_id", String(40), nullable=False),
    Column("meter_id", String(40), nullable=False),
    Column("ts_us", BigInteger, nullable=False),
    Column("operation", String(4), nullable=False),  # add | set
    Column("quantity", ExactDecimal(), nullable=False),
    Column("properties", Json, nullable=True),
    Column("source", String(16), nullable=False),
    Column("received_at_us", BigInteger, nullable=False),
    # Hash of what the client sent, so a replay can be told from a different payload.
    Column("payload_hash", String(32), nullable=False),
    PrimaryKeyConstraint("organization_id", "seq"),
    # Dedupe for the life of the ledger.
    UniqueConstraint("organization_id", "idempotency_key", "revision"),
    # Reading a subscription's usage of one meter over a span (rebuilds, traces) reads this
    # range and skips its other meters' entries. Without the meter in the key, a write of
    # interleaved meters lands in one place per subscription instead of one per pair: on
    # SQLite this index cost more than the rest of the row's insert. Without the organization
    # (every read names it too, and checks it on the row), each entry is some 30 bytes
    # shorter: fewer pages to change and commit in SQLite's one write turn.
    Index(None, "subscription_id", "ts_us"),
)

# Running totals per (subscription, meter, period), updated in the events' own transaction.
# A period with no row carries the level of the latest earlier row (level meters).
usage_rollups = Table(
    "usage_rollups",
    metadata,
    Column("organization_id", String(40), nullable=False),
    Column("subscription_id", String(40), nullable=False),
    Column("meter_id", String(40), nullable=False),
    Column("period_start_us", BigInteger, nullable=False),
    Column("event_count", BigInteger, nullable=False),
    Column("total", ExactDecimal(), nullable=False),  # sum of add quantities
    Column("opening_level", ExactDecimal(), nullable=False),
    Column("level", ExactDecimal(), nullable=False),  # level after the last event
    Column("max_level", ExactDecimal(), nullable=False),
    # Time integral of the level from the period start to `last_ts_us`, in unit·microseconds.
    Column("integral", ExactDecimal(), nullable=False),
    Column("last_ts_us", BigInteger, nullable=False),
    Column("last_seq", BigInteger, nullable=False),
    Column("distinct_count", BigInteger, nullable=False),
    PrimaryKeyConstraint("organization_id", "subscription_id", "meter_id", "period_start_us"),
)

# Distinct property values per period for `unique_count`, with how many live events carry each.
usage_rollup_values = Table(
    "usage_rollup_values",
    metadata,
    Column("organization_id", String(40), nullable=False),
    Column("subscription_id", String(40), nullable=False),
    Column("meter_id", String(40), nullable=False),
    Column("period_start_us", BigInteger, nullable=False),
    Column("value", String(255), nullable=False),
    Column("occurrences", BigInteger, nullable=False),
    PrimaryKeyConstraint(
        "organization_id", "subscription_id", "meter_id", "period_start_us", "value"
    ),
)

# Responses stored for header-keyed idempotency (facades whose vendors use such a header).
idempotency_records = Table(
    "idempotency_records",
    metadata,
    Column("organization_id", String(40), nullable=False),
    Column("scope", String(40), nullable=False),
    Column("key", String(255), nullable=False),
    Column("request_hash", String(64), nullable=False),
    Column("state", String(12), nullable=False),  # pending | complete
    Column("status_code", Integer, nullable=True),
    Column("response_body", Text, nullable=True),
    Column("created_at", UTCDateTime(), nullable=False),
    PrimaryKeyConstraint("organization_id", "scope", "key"),
)

# Billing-view rebuild requests, debounced: one row per subscription, pushed forward by writes.
billing_view_requests = Table(
    "billing_view_requests",
    metadata,
    Column("organization_id", String(40), nullable=False),
    Column("subscription_id", String(40), nullable=False),
    Column("requested_at", UTCDateTime(), nullable=False),
    Column("due_at", UTCDateTime(), nullable=False),
    # Set by the view loop that is building it (others skip it until then); a write clears it.
    Column("claimed_until", UTCDateTime(), nullable=True),
    PrimaryKeyConstraint("organization_id", "subscription_id"),
    Index(None, "due_at"),
)

# Leadership for in-process jobs where the database has no advisory locks (SQLite).
leases = Table(
    "leases",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("holder", String(64), nullable=False),
    Column("expires_at", UTCDateTime(), nullable=False),
)

# Invoices. `kind`: `period` (one per closed period: its usage in arrears, the next period's
# fixed charges in advance), `opening` (the first period's fixed charges, at the start) or
# `adjustment` (late usage of a subscription that has no next invoice). Money in minor units.
invoices = Table(
    "invoices",
    metadata,
    Column("organization_id", String(40), nullable=False),
    Column("id", String(40), nullable=False),
    # Null for an on-demand invoice, which bills a customer outside any subscription.
    Column("subscription_id", String(40), nullable=True),
    Column("customer_id", String(40), nullable=False),
    Column("kind", String(12), nullable=False),
    Column("period_start", UTCDateTime(), nullable=False),
    Column("period_end", UTCDateTime(), nullable=False),
    # When it was due to be drafted; finalized at closes_at + the grace period.
    Column("closes_at", UTCDateTime(), nullable=False),
    Column("status", String(12), nullable=False),  # draft | finalized | paid | void
    Column("currency", String(3), nullable=False),
    # Gapless per organization, given at finalization and kept when voided.
    Column("number", BigInteger, nullable=True),
    Column("subtotal_minor", BigInteger, nullable=False),
    Column("tax_minor", BigInteger, nullable=False),
    Column("total_minor", BigInteger, nullable=False),
    Column("tax_rate", ExactDecimal(), nullable=True),
    Column("paid_minor", BigInteger, nullable=False),
    # The organization's next ledger sequence when finalized: the invoice counts exactly the
    # ledger entries below it, and any later entry for its period is late usage.
    Column("ledger_watermark", BigInteger, nullable=True),
    Column("issued_at", UTCDateTime(), nullable=True),
    Column("due_at", UTCDateTime(), nullable=True),
    Column("paid_at", UTCDateTime(), nullable=True),
    Column("voided_at", UTCDateTime(), nullable=True),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
    PrimaryKeyConstraint("organization_id", "id"),
    ForeignKeyConstraint(
        ["organization_id", "subscription_id"],
        ["subscriptions.organization_id", "subscriptions.id"],
    ),
    Index(None, "organization_id", "subscription_id", "closes_at"),
    Index(None, "organization_id", "customer_id"),
    # Listing an organization's invoices in billing order, a page at a time.
    Index(None, "organization_id", "closes_at", "id"),
    # One invoice per (subscription, period), one opening invoice per subscription: what makes
    # a billing run safe to repeat and to run from several processes at once.
    Index(
        "uq_invoices_period",
        "organization_id",
        "subscription_id",
        "period_start",
        unique=True,
        sqlite_where=text("kind = 'period'"),
        postgresql_where=text("kind = 'period'"),
    ),
    Index(
        "uq_invoices_opening",
        "organization_id",
        "subscription_id",
        unique=True,
        sqlite_where=text("kind = 'opening'"),
        postgresql_where=text("kind = 'opening'"),
    ),
    UniqueConstraint("organization_id", "number"),
)

invoice_lines = Table(
    "invoice_lines",
    metadata,
    Column("organization_id", String(40), nullable=False),
    Column("invoice_id", String(40), nullable=False),
    Column("position", Integer, nullable=False),
    Column("subscription_id", String(40), nullable=True),  # null on on-demand invoices
    Column(
        "type", String(24), nullable=False
    ),  # fixed | usage | fixed_adjustment | usage_adjustment
    # Which plan charge the line bills (`fixed/<index>` or `usage/<meter id>`) and for which
    # service period: what reconciles adjustments with what was billed before.
    Column("charge_ref", String(80), nullable=False),
    Column("service_start", UTCDateTime(), nullable=False),
    Column("service_end", UTCDateTime(), nullable=False),
    Column("description", String(500), nullable=False),
    Column("meter_id", String(40), nullable=True),
    Column("quantity", ExactDecimal(), nullable=False),
    Column("unit_price", ExactDecimal(), nullable=True),
    # The exact amount beside the rounded one (minor units, half-up, rounded once here).
    Column("exact_amount", ExactDecimal(), nullable=False),
    Column("amount_minor", BigInteger, nullable=False),
    Column("details", Document, nullable=False),
    PrimaryKeyConstraint("organization_id", "invoice_id", "position"),
    # Deferrable: the billing run writes a page's lines before it takes the ledger lock, and
    # their invoices under it (`billing/batch.py`); checked at commit there, at once elsewhere.
    ForeignKeyConstraint(
        ["organization_id", "invoice_id"],
        ["invoices.organization_id", "invoices.id"],
        deferrable=True,
        initially="IMMEDIATE",
    ),
    Index(None, "organization_id", "subscription_id", "service_start"),
)

payments = Table(
    "payments",
    metadata,
    Column("organization_id", String(40), nullable=False),
    Column("id", String(40), nullable=False),
    Column("invoice_id", String(40), nullable=False),
    Column("amount_minor", BigInteger, nullable=False),
    Column("paid_at", UTCDateTime(), nullable=False),
    Column("reference", String(255), nullable=True),
    Column("created_at", UTCDateTime(), nullable=False),
    PrimaryKeyConstraint("organization_id", "id"),
    ForeignKeyConstraint(
        ["organization_id", "invoice_id"], ["invoices.organization_id", "invoices.id"]
    ),
    Index(None, "organization_id", "invoice_id"),
    # A payment retried with its reference is recorded once.
    Index(
        "uq_payments_reference",
        "organization_id",
        "invoice_id",
        "reference",
        unique=True,
        sqlite_where=text("reference IS NOT NULL"),
        postgresql_where=text("reference IS NOT NULL"),
    ),
)

# The next invoice number per organization; its row lock makes numbering gapless.
invoice_numbers = Table(
    "invoice_numbers",
    metadata,
    Column("organization_id", String(40), primary_key=True),
    Column("next_number", BigInteger, nullable=False),
)

# Subscriptions whose usage changed after one of their periods was finalized, from the earliest
# instant changed: written in the ledger writer's transaction, consumed by the next invoice.
billing_late_marks = Table(
    "billing_late_marks",
    metadata,
    Column("organization_id", String(40), nullable=False),
    Column("subscription_id", String(40), nullable=False),
    Column("from_us", BigInteger, nullable=False),
    Column("marked_at", UTCDateTime(), nullable=False),
    PrimaryKeyConstraint("organization_id", "subscription_id"),
)

# The billing view of each subscription: its current period priced, rebuilt (debounced) after
# usage writes; `builds` counts rebuilds.
billing_views = Table(
    "billing_views",
    metadata,
    Column("organization_id", String(40), nullable=False),
    Column("subscription_id", String(40), nullable=False),
    Column("period_start", UTCDateTime(), nullable=False),
    Column("built_at", UTCDateTime(), nullable=False),
    Column("builds", BigInteger, nullable=False),
    Column("body", Document, nullable=False),
    PrimaryKeyConstraint("organization_id", "subscription_id"),
)

# Secrets of the server itself, not of a tenant (e.g. the key signing issued tokens): kept here
# so every process over this database agrees on them and they survive restarts.
server_secrets = Table(
    "server_secrets",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("value", String(255), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
)

__all__ = [
    "api_keys",
    "billing_late_marks",
    "billing_view_requests",
    "billing_views",
    "customers",
    "idempotency_records",
    "invoice_lines",
    "invoice_numbers",
    "invoices",
    "leases",
    "ledger_sequences",
    "metadata",
    "meters",
    "organizations",
    "partners",
    "payments",
    "plan_meters",
    "plans",
    "server_secrets",
    "subscriptions",
    "usage_events",
    "usage_rollup_values",
    "usage_rollups",
]

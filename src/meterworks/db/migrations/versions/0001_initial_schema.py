"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-22 17:13:36.368151
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy import Text
from sqlalchemy.dialects import postgresql

import meterworks.db.types

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:

    op.create_table(
        "billing_view_requests",
        sa.Column("organization_id", sa.String(length=40), nullable=False),
        sa.Column("subscription_id", sa.String(length=40), nullable=False),
        sa.Column("requested_at", meterworks.db.types.UTCDateTime(), nullable=False),
        sa.Column("due_at", meterworks.db.types.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint(
            "organization_id", "subscription_id", name=op.f("pk_billing_view_requests")
        ),
    )
    with op.batch_alter_table("billing_view_requests", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_billing_view_requests_due_at"), ["due_at"], unique=False
        )

    op.create_table(
        "idempotency_records",
        sa.Column("organization_id", sa.String(length=40), nullable=False),
        sa.Column("scope", sa.String(length=40), nullable=False),
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("request_hash", sa.String(length=64), nullable=False),
        sa.Column("state", sa.String(length=12), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("response_body", sa.Text(), nullable=True),
        sa.Column("created_at", meterworks.db.types.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint(
            "organization_id", "scope", "key", name=op.f("pk_idempotency_records")
        ),
    )
    op.create_table(
        "leases",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("holder", sa.String(length=64), nullable=False),
        sa.Column("expires_at", meterworks.db.types.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_leases")),
    )
    op.create_table(
        "server_secrets",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("value", sa.String(length=255), nullable=False),
        sa.Column("created_at", meterworks.db.types.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_server_secrets")),
    )
    op.create_table(
        "ledger_sequences",
        sa.Column("organization_id", sa.String(length=40), nullable=False),
        sa.Column("next_seq", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("organization_id", name=op.f("pk_ledger_sequences")),
    )
    op.create_table(
        "organizations",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column(
            "late_usage_policy", sa.String(length=16), server_default="adjust", nullable=False
        ),
        sa.Column(
            "settings",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=Text()), "postgresql"),
            server_default=sa.text("'{}'"),
            nullable=False,
        ),
        sa.Column("created_at", meterworks.db.types.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_organizations")),
        sa.UniqueConstraint("name", name=op.f("uq_organizations_name")),
    )
    op.create_table(
        "usage_events",
        sa.Column("organization_id", sa.String(length=40), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("idempotency_key", sa.String(length=255), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("subscription_id", sa.String(length=40), nullable=False),
        sa.Column("meter_id", sa.String(length=40), nullable=False),
        sa.Column("ts_us", sa.BigInteger(), nullable=False),
        sa.Column("operation", sa.String(length=4), nullable=False),
        sa.Column("quantity", meterworks.db.types.ExactDecimal(), nullable=False),
        sa.Column(
            "properties",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=Text()), "postgresql"),
            nullable=True,
        ),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("received_at_us", sa.BigInteger(), nullable=False),
        sa.Column("payload_hash", sa.String(length=32), nullable=False),
        sa.PrimaryKeyConstraint("organization_id", "seq", name=op.f("pk_usage_events")),
        sa.UniqueConstraint(
            "organization_id",
            "idempotency_key",
            "revision",
            name=op.f("uq_usage_events_organization_id_idempotency_key_revision"),
        ),
    )
    with op.batch_alter_table("usage_events", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_usage_events_organization_id_subscription_id_meter_id_ts_us"),
            ["organization_id", "subscription_id", "meter_id", "ts_us"],
            unique=False,
        )

    op.create_table(
        "usage_rollup_values",
        sa.Column("organization_id", sa.String(length=40), nullable=False),
        sa.Column("subscription_id", sa.String(length=40), nullable=False),
        sa.Column("meter_id", sa.String(length=40), nullable=False),
        sa.Column("period_start_us", sa.BigInteger(), nullable=False),
        sa.Column("value", sa.String(length=255), nullable=False),
        sa.Column("occurrences", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint(
            "organization_id",
            "subscription_id",
            "meter_id",
            "period_start_us",
            "value",
            name=op.f("pk_usage_rollup_values"),
        ),
    )
    op.create_table(
        "usage_rollups",
        sa.Column("organization_id", sa.String(length=40), nullable=False),
        sa.Column("subscription_id", sa.String(length=40), nullable=False),
        sa.Column("meter_id", sa.String(length=40), nullable=False),
        sa.Column("period_start_us", sa.BigInteger(), nullable=False),
        sa.Column("event_count", sa.BigInteger(), nullable=False),
        sa.Column("total", meterworks.db.types.ExactDecimal(), nullable=False),
        sa.Column("opening_level", meterworks.db.types.ExactDecimal(), nullable=False),
        sa.Column("level", meterworks.db.types.ExactDecimal(), nullable=False),
        sa.Column("max_level", meterworks.db.types.ExactDecimal(), nullable=False),
        sa.Column("integral", meterworks.db.types.ExactDecimal(), nullable=False),
        sa.Column("last_ts_us", sa.BigInteger(), nullable=False),
        sa.Column("last_seq", sa.BigInteger(), nullable=False),
        sa.Column("distinct_count", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint(
            "organization_id",
            "subscription_id",
            "meter_id",
            "period_start_us",
            name=op.f("pk_usage_rollups"),
        ),
    )
    op.create_table(
        "api_keys",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("organization_id", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("secret_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", meterworks.db.types.UTCDateTime(), nullable=False),
        sa.Column("revoked_at", meterworks.db.types.UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=op.f("fk_api_keys_organization_id_organizations"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_keys")),
    )
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_api_keys_organization_id"), ["organization_id"], unique=False
        )

    op.create_table(
        "customers",
        sa.Column("organization_id", sa.String(length=40), nullable=False),
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("external_id", sa.String(length=200), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=True),
        sa.Column(
            "address",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=Text()), "postgresql"),
            nullable=True,
        ),
        sa.Column("tax_rate", meterworks.db.types.ExactDecimal(), nullable=True),
        sa.Column(
            "metadata",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=Text()), "postgresql"),
            server_default=sa.text("'{}'"),
            nullable=False,
        ),
        sa.Column("created_at", meterworks.db.types.UTCDateTime(), nullable=False),
        sa.Column("updated_at", meterworks.db.types.UTCDateTime(), nullable=False),
        sa.Column("deleted_at", meterworks.db.types.UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=op.f("fk_customers_organization_id_organizations"),
        ),
        sa.PrimaryKeyConstraint("organization_id", "id", name=op.f("pk_customers")),
    )
    with op.batch_alter_table("customers", schema=None) as batch_op:
        batch_op.create_index(
            "uq_customers_live_external_id",
            ["organization_id", "external_id"],
            unique=True,
            sqlite_where=sa.text("deleted_at IS NULL"),
            postgresql_where=sa.text("deleted_at IS NULL"),
        )

    op.create_table(
        "meters",
        sa.Column("organization_id", sa.String(length=40), nullable=False),
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("unit", sa.String(length=64), nullable=False),
        sa.Column("aggregation", sa.String(length=16), nullable=False),
        sa.Column("property", sa.String(length=200), nullable=True),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column(
            "metadata",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=Text()), "postgresql"),
            server_default=sa.text("'{}'"),
            nullable=False,
        ),
        sa.Column("created_at", meterworks.db.types.UTCDateTime(), nullable=False),
        sa.Column("updated_at", meterworks.db.types.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=op.f("fk_meters_organization_id_organizations"),
        ),
        sa.PrimaryKeyConstraint("organization_id", "id", name=op.f("pk_meters")),
        sa.UniqueConstraint("organization_id", "key", name=op.f("uq_meters_organization_id_key")),
    )
    op.create_table(
        "partners",
        sa.Column("organization_id", sa.String(length=40), nullable=False),
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("key_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", meterworks.db.types.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=op.f("fk_partners_organization_id_organizations"),
        ),
        sa.PrimaryKeyConstraint("organization_id", "id", name=op.f("pk_partners")),
        sa.UniqueConstraint(
            "organization_id", "key_hash", name=op.f("uq_partners_organization_id_key_hash")
        ),
    )
    op.create_table(
        "plans",
        sa.Column("organization_id", sa.String(length=40), nullable=False),
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("interval", sa.String(length=16), nullable=False),
        sa.Column("product_id", sa.String(length=200), nullable=True),
        sa.Column(
            "charges",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("created_at", meterworks.db.types.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=op.f("fk_plans_organization_id_organizations"),
        ),
        sa.PrimaryKeyConstraint("organization_id", "id", name=op.f("pk_plans")),
    )
    op.create_table(
        "plan_meters",
        sa.Column("organization_id", sa.String(length=40), nullable=False),
        sa.Column("plan_id", sa.String(length=40), nullable=False),
        sa.Column("meter_id", sa.String(length=40), nullable=False),
        sa.ForeignKeyConstraint(
            ["organization_id", "meter_id"],
            ["meters.organization_id", "meters.id"],
            name=op.f("fk_plan_meters_organization_id_meter_id_meters"),
        ),
        sa.ForeignKeyConstraint(
            ["organization_id", "plan_id"],
            ["plans.organization_id", "plans.id"],
            name=op.f("fk_plan_meters_organization_id_plan_id_plans"),
        ),
        sa.PrimaryKeyConstraint(
            "organization_id", "plan_id", "meter_id", name=op.f("pk_plan_meters")
        ),
    )
    with op.batch_alter_table("plan_meters", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_plan_meters_organization_id_meter_id"),
            ["organization_id", "meter_id"],
            unique=False,
        )

    op.create_table(
        "subscriptions",
        sa.Column("organization_id", sa.String(length=40), nullable=False),
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("customer_id", sa.String(length=40), nullable=False),
        sa.Column("plan_id", sa.String(length=40), nullable=False),
        sa.Column("starts_at", meterworks.db.types.UTCDateTime(), nullable=False),
        sa.Column("ends_at", meterworks.db.types.UTCDateTime(), nullable=True),
        sa.Column("billing_anchor", meterworks.db.types.UTCDateTime(), nullable=False),
        sa.Column("canceled_at", meterworks.db.types.UTCDateTime(), nullable=True),
        sa.Column(
            "metadata",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=Text()), "postgresql"),
            server_default=sa.text("'{}'"),
            nullable=False,
        ),
        sa.Column("created_at", meterworks.db.types.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["organization_id", "customer_id"],
            ["customers.organization_id", "customers.id"],
            name=op.f("fk_subscriptions_organization_id_customer_id_customers"),
        ),
        sa.ForeignKeyConstraint(
            ["organization_id", "plan_id"],
            ["plans.organization_id", "plans.id"],
            name=op.f("fk_subscriptions_organization_id_plan_id_plans"),
        ),
        sa.PrimaryKeyConstraint("organization_id", "id", name=op.f("pk_subscriptions")),
    )
    with op.batch_alter_table("subscriptions", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_subscriptions_organization_id_customer_id"),
            ["organization_id", "customer_id"],
            unique=False,
        )

    op.create_table(
        "invoices",
        sa.Column("organization_id", sa.String(length=40), nullable=False),
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("subscription_id", sa.String(length=40), nullable=True),
        sa.Column("customer_id", sa.String(length=40), nullable=False),
        sa.Column("kind", sa.String(length=12), nullable=False),
        sa.Column("period_start", meterworks.db.types.UTCDateTime(), nullable=False),
        sa.Column("period_end", meterworks.db.types.UTCDateTime(), nullable=False),
        sa.Column("closes_at", meterworks.db.types.UTCDateTime(), nullable=False),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("number", sa.BigInteger(), nullable=True),
        sa.Column("subtotal_minor", sa.BigInteger(), nullable=False),
        sa.Column("tax_minor", sa.BigInteger(), nullable=False),
        sa.Column("total_minor", sa.BigInteger(), nullable=False),
        sa.Column("tax_rate", meterworks.db.types.ExactDecimal(), nullable=True),
        sa.Column("paid_minor", sa.BigInteger(), nullable=False),
        sa.Column("ledger_watermark", sa.BigInteger(), nullable=True),
        sa.Column("issued_at", meterworks.db.types.UTCDateTime(), nullable=True),
        sa.Column("due_at", meterworks.db.types.UTCDateTime(), nullable=True),
        sa.Column("paid_at", meterworks.db.types.UTCDateTime(), nullable=True),
        sa.Column("voided_at", meterworks.db.types.UTCDateTime(), nullable=True),
        sa.Column("created_at", meterworks.db.types.UTCDateTime(), nullable=False),
        sa.Column("updated_at", meterworks.db.types.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["organization_id", "subscription_id"],
            ["subscriptions.organization_id", "subscriptions.id"],
            name=op.f("fk_invoices_organization_id_subscription_id_subscriptions"),
        ),
        sa.PrimaryKeyConstraint("organization_id", "id", name=op.f("pk_invoices")),
        sa.UniqueConstraint(
            "organization_id", "number", name=op.f("uq_invoices_organization_id_number")
        ),
    )
    with op.batch_alter_table("invoices", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_invoices_organization_id_subscription_id_closes_at"),
            ["organization_id", "subscription_id", "closes_at"],
            unique=False,
        )
        batch_op.create_index(
            batch_op.f("ix_invoices_organization_id_customer_id"),
            ["organization_id", "customer_id"],
            unique=False,
        )
        batch_op.create_index(
            batch_op.f("ix_invoices_organization_id_closes_at_id"),
            ["organization_id", "closes_at", "id"],
            unique=False,
        )
        batch_op.create_index(
            "uq_invoices_period",
            ["organization_id", "subscription_id", "period_start"],
            unique=True,
            sqlite_where=sa.text("kind = 'period'"),
            postgresql_where=sa.text("kind = 'period'"),
        )
        batch_op.create_index(
            "uq_invoices_opening",
            ["organization_id", "subscription_id"],
            unique=True,
            sqlite_where=sa.text("kind = 'opening'"),
            postgresql_where=sa.text("kind = 'opening'"),
        )

    op.create_table(
        "invoice_lines",
        sa.Column("organization_id", sa.String(length=40), nullable=False),
        sa.Column("invoice_id", sa.String(length=40), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("subscription_id", sa.String(length=40), nullable=True),
        sa.Column("type", sa.String(length=24), nullable=False),
        sa.Column("charge_ref", sa.String(length=80), nullable=False),
        sa.Column("service_start", meterworks.db.types.UTCDateTime(), nullable=False),
        sa.Column("service_end", meterworks.db.types.UTCDateTime(), nullable=False),
        sa.Column("description", sa.String(length=500), nullable=False),
        sa.Column("meter_id", sa.String(length=40), nullable=True),
        sa.Column("quantity", meterworks.db.types.ExactDecimal(), nullable=False),
        sa.Column("unit_price", meterworks.db.types.ExactDecimal(), nullable=True),
        sa.Column("exact_amount", meterworks.db.types.ExactDecimal(), nullable=False),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.Column(
            "details",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=Text()), "postgresql"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["organization_id", "invoice_id"],
            ["invoices.organization_id", "invoices.id"],
            name=op.f("fk_invoice_lines_organization_id_invoice_id_invoices"),
        ),
        sa.PrimaryKeyConstraint(
            "organization_id", "invoice_id", "position", name=op.f("pk_invoice_lines")
        ),
    )
    with op.batch_alter_table("invoice_lines", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_invoice_lines_organization_id_subscription_id_service_start"),
            ["organization_id", "subscription_id", "service_start"],
            unique=False,
        )

    op.create_table(
        "payments",
        sa.Column("organization_id", sa.String(length=40), nullable=False),
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("invoice_id", sa.String(length=40), nullable=False),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("paid_at", meterworks.db.types.UTCDateTime(), nullable=False),
        sa.Column("reference", sa.String(length=255), nullable=True),
        sa.Column("created_at", meterworks.db.types.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["organization_id", "invoice_id"],
            ["invoices.organization_id", "invoices.id"],
            name=op.f("fk_payments_organization_id_invoice_id_invoices"),
        ),
        sa.PrimaryKeyConstraint("organization_id", "id", name=op.f("pk_payments")),
    )
    with op.batch_alter_table("payments", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_payments_organization_id_invoice_id"),
            ["organization_id", "invoice_id"],
            unique=False,
        )
        batch_op.create_index(
            "uq_payments_reference",
            ["organization_id", "invoice_id", "reference"],
            unique=True,
            sqlite_where=sa.text("reference IS NOT NULL"),
            postgresql_where=sa.text("reference IS NOT NULL"),
        )

    op.create_table(
        "invoice_numbers",
        sa.Column("organization_id", sa.String(length=40), nullable=False),
        sa.Column("next_number", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("organization_id", name=op.f("pk_invoice_numbers")),
    )
    op.create_table(
        "billing_late_marks",
        sa.Column("organization_id", sa.String(length=40), nullable=False),
        sa.Column("subscription_id", sa.String(length=40), nullable=False),
        sa.Column("from_us", sa.BigInteger(), nullable=False),
        sa.Column("marked_at", meterworks.db.types.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint(
            "organization_id", "subscription_id", name=op.f("pk_billing_late_marks")
        ),
    )
    op.create_table(
        "billing_views",
        sa.Column("organization_id", sa.String(length=40), nullable=False),
        sa.Column("subscription_id", sa.String(length=40), nullable=False),
        sa.Column("period_start", meterworks.db.types.UTCDateTime(), nullable=False),
        sa.Column("built_at", meterworks.db.types.UTCDateTime(), nullable=False),
        sa.Column("builds", sa.BigInteger(), nullable=False),
        sa.Column(
            "body",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=Text()), "postgresql"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint(
            "organization_id", "subscription_id", name=op.f("pk_billing_views")
        ),
    )


def downgrade() -> None:

    op.drop_table("billing_views")
    op.drop_table("billing_late_marks")
    op.drop_table("invoice_numbers")
    with op.batch_alter_table("payments", schema=None) as batch_op:
        batch_op.drop_index(
            "uq_payments_reference",
            sqlite_where=sa.text("reference IS NOT NULL"),
            postgresql_where=sa.text("reference IS NOT NULL"),
        )
        batch_op.drop_index(batch_op.f("ix_payments_organization_id_invoice_id"))

    op.drop_table("payments")
    with op.batch_alter_table("invoice_lines", schema=None) as batch_op:
        batch_op.drop_index(
            batch_op.f("ix_invoice_lines_organization_id_subscription_id_service_start")
        )

    op.drop_table("invoice_lines")
    with op.batch_alter_table("invoices", schema=None) as batch_op:
        batch_op.drop_index(
            "uq_invoices_opening",
            sqlite_where=sa.text("kind = 'opening'"),
            postgresql_where=sa.text("kind = 'opening'"),
        )
        batch_op.drop_index(
            "uq_invoices_period",
            sqlite_where=sa.text("kind = 'period'"),
            postgresql_where=sa.text("kind = 'period'"),
        )
        batch_op.drop_index(batch_op.f("ix_invoices_organization_id_closes_at_id"))
        batch_op.drop_index(batch_op.f("ix_invoices_organization_id_customer_id"))
        batch_op.drop_index(batch_op.f("ix_invoices_organization_id_subscription_id_closes_at"))

    op.drop_table("invoices")

    with op.batch_alter_table("subscriptions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_subscriptions_organization_id_customer_id"))

    op.drop_table("subscriptions")
    with op.batch_alter_table("plan_meters", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_plan_meters_organization_id_meter_id"))

    op.drop_table("plan_meters")
    op.drop_table("plans")
    op.drop_table("partners")
    op.drop_table("meters")
    with op.batch_alter_table("customers", schema=None) as batch_op:
        batch_op.drop_index(
            "uq_customers_live_external_id",
            sqlite_where=sa.text("deleted_at IS NULL"),
            postgresql_where=sa.text("deleted_at IS NULL"),
        )

    op.drop_table("customers")
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_api_keys_organization_id"))

    op.drop_table("api_keys")
    op.drop_table("usage_rollups")
    op.drop_table("usage_rollup_values")
    with op.batch_alter_table("usage_events", schema=None) as batch_op:
        batch_op.drop_index(
            batch_op.f("ix_usage_events_organization_id_subscription_id_meter_id_ts_us")
        )

    op.drop_table("usage_events")
    op.drop_table("organizations")
    op.drop_table("ledger_sequences")
    op.drop_table("server_secrets")
    op.drop_table("leases")
    op.drop_table("idempotency_records")
    with op.batch_alter_table("billing_view_requests", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_billing_view_requests_due_at"))

    op.drop_table("billing_view_requests")

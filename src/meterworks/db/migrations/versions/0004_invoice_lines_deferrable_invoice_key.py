"""invoice lines may name their invoice before it is written, within one transaction

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23 09:00:00
"""

from __future__ import annotations

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_KEY = "fk_invoice_lines_organization_id_invoice_id_invoices"


def _invoice_key(deferrable: bool) -> None:
    # Still checked at once unless a transaction defers it: only the billing run does.
    with op.batch_alter_table("invoice_lines", schema=None) as batch_op:
        batch_op.drop_constraint(_KEY, type_="foreignkey")
        batch_op.create_foreign_key(
            _KEY,
            "invoices",
            ["organization_id", "invoice_id"],
            ["organization_id", "id"],
            deferrable=True if deferrable else None,
            initially="IMMEDIATE" if deferrable else None,
        )


def upgrade() -> None:
    _invoice_key(deferrable=True)


def downgrade() -> None:
    _invoice_key(deferrable=False)

"""invoice line details and billing view bodies kept as JSON text on PostgreSQL

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23 14:40:00
"""

from __future__ import annotations

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

# Documents written and read whole. SQLite stores every JSON column as text already.
_DOCUMENTS = (("invoice_lines", "details"), ("billing_views", "body"))


def _retype(kind: str) -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table, column in _DOCUMENTS:
        op.execute(f"ALTER TABLE {table} ALTER COLUMN {column} TYPE {kind} USING {column}::{kind}")


def upgrade() -> None:
    _retype("json")


def downgrade() -> None:
    _retype("jsonb")

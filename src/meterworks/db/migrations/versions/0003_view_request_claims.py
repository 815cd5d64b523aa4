"""billing view requests claimed by the loop building them

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23 04:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import meterworks.db.types

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("billing_view_requests", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("claimed_until", meterworks.db.types.UTCDateTime(), nullable=True)
        )


def downgrade() -> None:
    with op.batch_alter_table("billing_view_requests", schema=None) as batch_op:
        batch_op.drop_column("claimed_until")

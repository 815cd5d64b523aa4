"""usage events indexed by subscription and time, without the organization

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-24 10:40:00
"""

from __future__ import annotations

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_OLD = "ix_usage_events_organization_id_subscription_id_ts_us"
_NEW = "ix_usage_events_subscription_id_ts_us"


def upgrade() -> None:
    # Built before the old one goes: reads of a subscription's usage never lose their index.
    with op.batch_alter_table("usage_events", schema=None) as batch_op:
        batch_op.create_index(_NEW, ["subscription_id", "ts_us"], unique=False)
    with op.batch_alter_table("usage_events", schema=None) as batch_op:
        batch_op.drop_index(_OLD)


def downgrade() -> None:
    with op.batch_alter_table("usage_events", schema=None) as batch_op:
        batch_op.create_index(_OLD, ["organization_id", "subscription_id", "ts_us"], unique=False)
    with op.batch_alter_table("usage_events", schema=None) as batch_op:
        batch_op.drop_index(_NEW)

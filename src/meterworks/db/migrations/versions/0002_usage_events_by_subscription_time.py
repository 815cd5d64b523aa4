"""usage events indexed by subscription and time, without the meter

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23 04:20:00
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_OLD = "ix_usage_events_organization_id_subscription_id_meter_id_ts_us"
_NEW = "ix_usage_events_organization_id_subscription_id_ts_us"


def upgrade() -> None:
    # Built before the old one goes: reads of a subscription's usage never lose their index.
    with op.batch_alter_table("usage_events", schema=None) as batch_op:
        batch_op.create_index(_NEW, ["organization_id", "subscription_id", "ts_us"], unique=False)
    with op.batch_alter_table("usage_events", schema=None) as batch_op:
        batch_op.drop_index(_OLD)


def downgrade() -> None:
    with op.batch_alter_table("usage_events", schema=None) as batch_op:
        batch_op.create_index(
            _OLD, ["organization_id", "subscription_id", "meter_id", "ts_us"], unique=False
        )
    with op.batch_alter_table("usage_events", schema=None) as batch_op:
        batch_op.drop_index(_NEW)

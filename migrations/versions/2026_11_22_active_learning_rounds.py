"""Active-learning rounds: loop settings per project; round parameters, curve point, message

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("project", schema=None) as batch_op:
        batch_op.add_column(sa.Column("strategy", sa.String(length=50), server_default="hybrid", nullable=False))
        batch_op.add_column(sa.Column("round_budget", sa.Float(), server_default=sa.text("30"), nullable=False))
        batch_op.add_column(sa.Column("mask_share", sa.Float(), server_default=sa.text("0.5"), nullable=False))
        batch_op.add_column(sa.Column("auto_round_labels", sa.Integer(), nullable=True))

    with op.batch_alter_table("round", schema=None) as batch_op:
        batch_op.add_column(sa.Column("params", sa.JSON(), server_default=sa.text("'{}'"), nullable=False))
        batch_op.add_column(sa.Column("metrics", sa.JSON(), server_default=sa.text("'{}'"), nullable=False))
        batch_op.add_column(sa.Column("message", sa.String(length=500), server_default="", nullable=False))


def downgrade() -> None:
    with op.batch_alter_table("round", schema=None) as batch_op:
        batch_op.drop_column("message")
        batch_op.drop_column("metrics")
        batch_op.drop_column("params")

    with op.batch_alter_table("project", schema=None) as batch_op:
        batch_op.drop_column("auto_round_labels")
        batch_op.drop_column("mask_share")
        batch_op.drop_column("round_budget")
        batch_op.drop_column("strategy")

"""Mask provenance: the proposal a mask task showed, how each mask answer came to be, the mask cost model

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

ORIGINS = ("accepted", "edited", "drawn")
COST_MODELS = ("flat", "edit")


def upgrade() -> None:
    with op.batch_alter_table("ls_task", schema=None) as batch_op:
        batch_op.add_column(sa.Column("proposal_png", sa.LargeBinary(), nullable=True))
    with op.batch_alter_table("label", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "mask_origin",
                sa.Enum(*ORIGINS, name="mask_origin", native_enum=False, create_constraint=True, length=16),
                nullable=True,
            )
        )
        batch_op.add_column(sa.Column("proposal_iou", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("mask_edit", sa.Float(), nullable=True))
    with op.batch_alter_table("project", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "mask_cost_model",
                sa.Enum(*COST_MODELS, name="mask_cost_model", native_enum=False, create_constraint=True, length=16),
                server_default="edit",
                nullable=False,
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("project", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("ck_project_mask_cost_model"), type_="check")
        batch_op.drop_column("mask_cost_model")
    with op.batch_alter_table("label", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("ck_label_mask_origin"), type_="check")
        batch_op.drop_column("mask_edit")
        batch_op.drop_column("proposal_iou")
        batch_op.drop_column("mask_origin")
    with op.batch_alter_table("ls_task", schema=None) as batch_op:
        batch_op.drop_column("proposal_png")

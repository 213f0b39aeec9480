"""Label Studio tasks: one per image and ask, so a verdict answered there can be upgraded to a mask

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22
"""

from __future__ import annotations

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("ls_task", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("uq_ls_task_ls_project_id_image_id"), type_="unique")
        batch_op.create_unique_constraint(
            batch_op.f("uq_ls_task_ls_project_id_image_id_ask"), ["ls_project_id", "image_id", "ask"]
        )


def downgrade() -> None:
    # a second (mask) task of an image cannot survive the one-task-per-image rule
    op.execute(
        "DELETE FROM ls_task WHERE ask = 'mask' AND image_id IN "
        "(SELECT image_id FROM ls_task t2 WHERE t2.ask <> 'mask' AND t2.ls_project_id = ls_task.ls_project_id)"
    )
    with op.batch_alter_table("ls_task", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("uq_ls_task_ls_project_id_image_id_ask"), type_="unique")
        batch_op.create_unique_constraint(
            batch_op.f("uq_ls_task_ls_project_id_image_id"), ["ls_project_id", "image_id"]
        )

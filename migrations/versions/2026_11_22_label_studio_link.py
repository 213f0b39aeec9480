"""Label Studio link: project id, tasks and annotations seen

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ls_annotation",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("ls_project_id", sa.Integer(), nullable=False),
        sa.Column("ls_annotation_id", sa.Integer(), nullable=False),
        sa.Column("image_id", sa.Integer(), nullable=True),
        sa.Column("ls_updated_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("label_id", sa.Integer(), nullable=True),
        sa.Column("deleted", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.ForeignKeyConstraint(
            ["image_id"], ["image.id"], name=op.f("fk_ls_annotation_image_id_image"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["label_id"], ["label.id"], name=op.f("fk_ls_annotation_label_id_label"), ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(
            ["project_id"], ["project.id"], name=op.f("fk_ls_annotation_project_id_project"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ls_annotation")),
        sa.UniqueConstraint(
            "ls_project_id", "ls_annotation_id", name=op.f("uq_ls_annotation_ls_project_id_ls_annotation_id")
        ),
    )
    with op.batch_alter_table("ls_annotation", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_ls_annotation_project_id"), ["project_id"], unique=False)

    op.create_table(
        "ls_task",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("image_id", sa.Integer(), nullable=False),
        sa.Column("ls_project_id", sa.Integer(), nullable=False),
        sa.Column("ls_task_id", sa.Integer(), nullable=False),
        sa.Column("rank", sa.Integer(), nullable=True),
        sa.Column("ask", sa.String(length=16), nullable=False),
        sa.Column("model_version_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["image_id"], ["image.id"], name=op.f("fk_ls_task_image_id_image"), ondelete="CASCADE"),
        sa.ForeignKeyConstraint(
            ["model_version_id"],
            ["model_version.id"],
            name=op.f("fk_ls_task_model_version_id_model_version"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["project_id"], ["project.id"], name=op.f("fk_ls_task_project_id_project"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ls_task")),
        sa.UniqueConstraint("ls_project_id", "image_id", name=op.f("uq_ls_task_ls_project_id_image_id")),
        sa.UniqueConstraint("ls_project_id", "ls_task_id", name=op.f("uq_ls_task_ls_project_id_ls_task_id")),
    )
    with op.batch_alter_table("ls_task", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_ls_task_project_id"), ["project_id"], unique=False)

    with op.batch_alter_table("project", schema=None) as batch_op:
        batch_op.add_column(sa.Column("ls_project_id", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("project", schema=None) as batch_op:
        batch_op.drop_column("ls_project_id")

    with op.batch_alter_table("ls_task", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_ls_task_project_id"))

    op.drop_table("ls_task")
    with op.batch_alter_table("ls_annotation", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_ls_annotation_project_id"))

    op.drop_table("ls_annotation")

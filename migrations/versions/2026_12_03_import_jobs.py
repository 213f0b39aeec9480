"""Folder imports can run as jobs: the job kind ``import`` joins the kinds a job may have

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

_BEFORE = ("train", "predict", "evaluate", "sync")
_AFTER = (*_BEFORE, "import")


def _kinds(kinds: tuple[str, ...]) -> sa.TextClause:
    return sa.text("kind IN (" + ", ".join(f"'{k}'" for k in kinds) + ")")


def _set_kinds(kinds: tuple[str, ...]) -> None:
    with op.batch_alter_table("job", recreate="auto") as batch_op:
        batch_op.drop_constraint(op.f("ck_job_job_kind"), type_="check")
        batch_op.create_check_constraint(op.f("ck_job_job_kind"), _kinds(kinds))


def upgrade() -> None:
    _set_kinds(_AFTER)


def downgrade() -> None:
    op.execute(sa.text("DELETE FROM job WHERE kind = 'import'"))
    _set_kinds(_BEFORE)

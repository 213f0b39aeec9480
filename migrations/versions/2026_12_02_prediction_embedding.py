"""A prediction's embedding gets a column of its own (float32 bytes) instead of riding in the
uncertainty statistics as a JSON list; existing rows are moved over

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02
"""

from __future__ import annotations

import json

import numpy as np
import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

_prediction = sa.table(
    "prediction",
    sa.column("id", sa.Integer),
    sa.column("uncertainty", sa.JSON),
    sa.column("embedding", sa.LargeBinary),
)


def _as_dict(value: object) -> dict:
    return json.loads(value) if isinstance(value, str) else dict(value or {})  # type: ignore[call-overload]


def upgrade() -> None:
    with op.batch_alter_table("prediction") as batch:
        batch.add_column(sa.Column("embedding", sa.LargeBinary(), nullable=True))
    conn = op.get_bind()
    rows = conn.execute(sa.select(_prediction.c.id, _prediction.c.uncertainty)).all()
    for pid, unc in rows:
        u = _as_dict(unc)
        if "embedding" not in u:
            continue
        emb = np.asarray(u.pop("embedding"), dtype="<f4").tobytes()
        conn.execute(_prediction.update().where(_prediction.c.id == pid).values(uncertainty=u, embedding=emb))


def downgrade() -> None:
    conn = op.get_bind()
    rows = conn.execute(
        sa.select(_prediction.c.id, _prediction.c.uncertainty, _prediction.c.embedding).where(
            _prediction.c.embedding.is_not(None)
        )
    ).all()
    for pid, unc, emb in rows:
        u = _as_dict(unc)
        u["embedding"] = [round(float(x), 5) for x in np.frombuffer(emb, dtype="<f4")]
        conn.execute(_prediction.update().where(_prediction.c.id == pid).values(uncertainty=u))
    with op.batch_alter_table("prediction") as batch:
        batch.drop_column("embedding")

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, inspect

from backend.db.migrate import downgrade, upgrade
from backend.db.tables import Base

#: project 1, as a migration test's rows need it
ONE_PROJECT = (
    "INSERT INTO project (id, name, image_height, image_width, backbone, profile, train_defaults, "
    "cost_image_label, cost_mask_label, created_at) VALUES (1, 'p', 8, 8, 'b', 'fast', '{}', 1, 10, "
    "CURRENT_TIMESTAMP)"
)
TABLES = {"project", "image", "label", "round", "model_version", "prediction", "job"}


def test_upgrade_downgrade_upgrade(engine: Engine) -> None:
    upgrade(engine)
    assert TABLES <= set(inspect(engine).get_table_names())
    downgrade(engine)
    assert not TABLES & set(inspect(engine).get_table_names())
    upgrade(engine)
    assert TABLES <= set(inspect(engine).get_table_names())


def test_orm_metadata_matches_the_migrated_schema(migrated: Engine) -> None:
    with migrated.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True})
        diff = compare_metadata(ctx, Base.metadata)
    assert diff == []


def test_embeddings_move_out_of_the_uncertainty_statistics_and_back(engine: Engine) -> None:
    """0007 moves a prediction's embedding from its uncertainty JSON into a float32 column (and
    the downgrade puts it back), leaving the other statistics as they were."""
    import json

    import numpy as np
    from sqlalchemy import text

    from backend.services.predictions import decode_embedding

    upgrade(engine, "0006")
    with engine.begin() as c:
        c.execute(text(ONE_PROJECT))
        c.execute(
            text(
                "INSERT INTO image (id, project_id, uri, sha256, width, height, split, added_at) "
                "VALUES (1, 1, '/x.png', 'a', 8, 8, 'pool', CURRENT_TIMESTAMP)"
            )
        )
        c.execute(
            text(
                "INSERT INTO model_version (id, project_id, name, regime, profile, config, artifact_path, "
                "artifact_sha256, thresholds, metrics, label_ids, is_active, created_at) VALUES "
                "(1, 1, 'v1', 'weak', 'fast', '{}', '/m', 's', '{}', '{}', '[]', false, CURRENT_TIMESTAMP)"
            )
        )
        unc = {"map_max": 0.75, "embedding": [0.5, -1.25, 3.0]}
        c.execute(
            text(
                "INSERT INTO prediction (id, model_version_id, image_id, score, decision, uncertainty, "
                "created_at) VALUES (1, 1, 1, 0.9, true, :u, CURRENT_TIMESTAMP)"
            ),
            {"u": json.dumps(unc)},
        )
    upgrade(engine, "0007")
    with engine.connect() as c:
        u, emb = c.execute(text("SELECT uncertainty, embedding FROM prediction WHERE id = 1")).one()
    u = json.loads(u) if isinstance(u, str) else u
    assert u == {"map_max": 0.75}
    assert np.array_equal(decode_embedding(bytes(emb)), np.array([0.5, -1.25, 3.0], np.float32))
    downgrade(engine, "0006")
    with engine.connect() as c:
        u = c.execute(text("SELECT uncertainty FROM prediction WHERE id = 1")).scalar_one()
    u = json.loads(u) if isinstance(u, str) else u
    assert u == {"map_max": 0.75, "embedding": [0.5, -1.25, 3.0]}
    downgrade(engine)


def test_import_jobs_are_a_kind_from_0008_and_the_downgrade_removes_them(engine: Engine) -> None:
    """0008 lets a job be of kind ``import`` (the CHECK constraint lists it); the downgrade
    deletes import jobs and restores the older list, which refuses them again."""
    import pytest
    from sqlalchemy import text
    from sqlalchemy.exc import IntegrityError

    def add_job(kind: str) -> None:
        with engine.begin() as c:
            c.execute(
                text(
                    "INSERT INTO job (kind, project_id, status, progress, message, payload, result, created_at) "
                    "VALUES (:k, 1, 'queued', 0, '', '{}', '{}', CURRENT_TIMESTAMP)"
                ),
                {"k": kind},
            )

    upgrade(engine, "0007")
    with engine.begin() as c:
        c.execute(text(ONE_PROJECT))
    with pytest.raises(IntegrityError):
        add_job("import")
    upgrade(engine, "0008")
    add_job("import")
    add_job("train")
    with pytest.raises(IntegrityError):  # the rebuilt table kept its one-active-retrain index
        add_job("train")
    downgrade(engine, "0007")
    with engine.connect() as c:
        assert [k for (k,) in c.execute(text("SELECT kind FROM job"))] == ["train"]
    with pytest.raises(IntegrityError):
        add_job("import")
    with pytest.raises(IntegrityError):
        add_job("train")
    downgrade(engine)

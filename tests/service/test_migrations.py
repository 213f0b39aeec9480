from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, inspect

from backend.db.migrate import downgrade, upgrade
from backend.db.tables import Base

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

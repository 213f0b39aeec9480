"""`defectloop db ...`: database maintenance."""

from __future__ import annotations

from typing import Annotated

import typer

from backend.cli.errors import CommandError

db_app = typer.Typer(help="Database maintenance.", no_args_is_help=True, add_completion=False)


@db_app.command("upgrade")
def upgrade(
    revision: Annotated[str, typer.Argument(help="Target revision.")] = "head",
    database_url: Annotated[
        str | None, typer.Option(help="Database URL (default: DEFECTLOOP_DATABASE_URL or the data dir's SQLite file).")
    ] = None,
) -> None:
    """Apply the schema migrations (the service also does this on start)."""
    from sqlalchemy.exc import OperationalError

    from backend.db.engine import make_engine
    from backend.db.migrate import upgrade as run_upgrade
    from backend.settings import Settings

    url = database_url or Settings().resolved_database_url()
    engine = make_engine(url)
    try:
        run_upgrade(engine, revision)
    except OperationalError as e:
        where = engine.url.render_as_string(hide_password=True)
        raise CommandError(f"cannot reach the database at {where}: {e.orig}") from None
    finally:
        engine.dispose()
    typer.echo(f"database at {engine.url.render_as_string(hide_password=True)} is at revision {revision}")

"""The ``defectloop`` command line: one typer app holding every command.

The commands live by subject beside this module: ``ml_commands`` (train, evaluate, predict,
assist, demo-data, split: files only), ``service`` (serve, worker), ``db``, ``project``
(create, import, retrain, status), ``round``, ``labelstudio``, ``demo`` and ``simulate``.
Every one of them reports errors the same way (``backend.cli.errors``).
"""

from __future__ import annotations

import sys

import typer

from backend.cli.db import db_app
from backend.cli.demo import demo_cmd
from backend.cli.errors import echo_error, guard_commands
from backend.cli.labelstudio import ls_app
from backend.cli.ml_commands import assist, demo_data, evaluate, predict, split, train
from backend.cli.project import import_images, project_app, retrain, status
from backend.cli.round import round_cmd
from backend.cli.service import serve, worker
from backend.cli.simulate import simulate_cmd

app = typer.Typer(
    name="defectloop",
    help="Active-learning workbench for surface-defect detection (SuperSimpleNet).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",  # docstring lines join into paragraphs; a blank line parts them
)

app.add_typer(db_app, name="db")
app.command()(serve)
app.command()(worker)
app.add_typer(project_app, name="project")
app.add_typer(ls_app, name="labelstudio")
app.command("import")(import_images)
app.command("retrain")(retrain)
app.command("status")(status)
app.command("round")(round_cmd)
app.command("simulate")(simulate_cmd)
app.command("demo")(demo_cmd)
app.command()(train)
app.command()(evaluate)
app.command()(predict)
app.command()(assist)
app.command("demo-data")(demo_data)
app.command()(split)
guard_commands(app)  # every command above, and those of the sub-apps, on the one error path


def main() -> None:
    """The console script: check the settings, run the command, exit 130 on Ctrl-C."""
    from pydantic import ValidationError

    from backend.settings import Settings
    from ml import set_max_pixels

    try:
        set_max_pixels(Settings().max_image_pixels)
    except ValidationError as e:
        echo_error(f"invalid DEFECTLOOP_ setting: {e}")
        sys.exit(2)
    try:
        app()
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)

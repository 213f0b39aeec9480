"""`defectloop labelstudio ...`: the local Label Studio server and a project's link to it."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from backend.cli.errors import CommandError

if TYPE_CHECKING:
    from backend.client import WorkbenchClient
    from backend.settings import Settings

ls_app = typer.Typer(
    help="Label Studio: run a local server, send batches, sync answers.", no_args_is_help=True, add_completion=False
)


def _settings() -> Settings:
    from backend.settings import Settings

    return Settings()


@ls_app.command("start")
def start(
    document_root: Annotated[
        Path | None, typer.Option(help="Folder Label Studio may serve images from (default: the first import root).")
    ] = None,
    port: Annotated[
        int | None,
        typer.Option(help="Port on 127.0.0.1 (default: the one it ran on last time while free, else a free one)."),
    ] = None,
) -> None:
    """Start Label Studio (installing its own environment on first use) and print how to log in."""
    from backend.services.labelstudio_link import home, start_local
    from labelstudio.server import load_credentials

    settings = _settings()
    root = document_root or (settings.import_roots[0] if settings.import_roots else None)
    if root is None:
        raise ValueError("name the image folder with --document-root (or set DEFECTLOOP_IMPORT_ROOTS)")
    info = start_local(settings, home(settings), document_root=root, port=port, say=lambda m: typer.echo(m, err=True))
    creds = load_credentials(home(settings))
    if creds is None:
        raise CommandError(f"Label Studio started without its credentials file {home(settings) / 'credentials.json'}")
    typer.echo(f"Label Studio runs at {info.url} (pid {info.pid}), serving images under {info.document_root}")
    typer.echo(f"log in as {creds.username} / {creds.password}  (credentials: {home(settings) / 'credentials.json'})")


@ls_app.command("stop")
def stop() -> None:
    """Stop the local Label Studio."""
    from backend.services.labelstudio_link import home
    from labelstudio.server import stop as stop_server

    typer.echo("stopped" if stop_server(home(_settings())) else "no Label Studio was running")


@ls_app.command("status")
def status() -> None:
    """Whether the local Label Studio runs, and where."""
    from backend.services.labelstudio_link import home
    from labelstudio.server import status as server_status

    info = server_status(home(_settings()))
    if info is None:
        typer.echo("not running")
        raise typer.Exit(1)
    typer.echo(f"running at {info.url} (pid {info.pid}), serving images under {info.document_root}")


def _project_call(
    project: str, action: str, body: dict[str, Any] | None = None
) -> tuple[WorkbenchClient, int, dict[str, Any]]:
    """The client, the project's id and the answer of its Label Studio ``action``."""
    from backend.client import make_client

    client = make_client(_settings())
    pid = int(client.find_project(project)["id"])
    return client, pid, client.labelstudio(pid, action, body)


@ls_app.command("setup")
def setup(project: Annotated[str, typer.Argument(help="Project name or id.")]) -> None:
    """Create or update the project's Label Studio project (config, instructions, webhook)."""
    _, _, res = _project_call(project, "setup")
    typer.echo(f"Label Studio project {res['ls_project_id']} is set up")


@ls_app.command("push")
def push(
    project: Annotated[str, typer.Argument(help="Project name or id.")],
    image_ids: Annotated[list[int] | None, typer.Argument(help="Image ids, best first.")] = None,
    ranking: Annotated[Path | None, typer.Option(help="A file of image ids, one per line, best first.")] = None,
    masks: Annotated[bool, typer.Option("--masks", help="Ask for masks, not only verdicts.")] = False,
    include_labelled: Annotated[bool, typer.Option(help="Also send images that already have a human label.")] = False,
) -> None:
    """Send a ranked batch to Label Studio as pre-annotated tasks, in rank order."""
    ids = list(image_ids or [])
    if ranking is not None:
        try:
            lines = [ln.strip() for ln in ranking.read_text().splitlines() if ln.strip() and not ln.startswith("#")]
            ids += [int(ln.split(",")[0]) for ln in lines]
        except (OSError, ValueError) as e:
            raise ValueError(f"{ranking}: {e}") from None
    if not ids:
        raise ValueError("no images: pass image ids or --ranking FILE")
    asks = {i: "mask" for i in ids} if masks else {}
    _, _, res = _project_call(project, "push", {"image_ids": ids, "asks": asks, "include_labelled": include_labelled})
    by = res["model_version"] or "no model yet"
    typer.echo(
        f"{res['pushed']} tasks created ({res['with_prediction']} pre-annotated by {by}); "
        f"{len(res['already_in_labelstudio'])} already in Label Studio, {len(res['already_labelled'])} already labelled"
    )


@ls_app.command("sync")
def sync(project: Annotated[str, typer.Argument(help="Project name or id.")]) -> None:
    """Pull every annotation from Label Studio and repair whatever webhooks missed."""
    from backend.client import LocalClient

    client, _, job = _project_call(project, "sync")
    if isinstance(client, LocalClient):
        client.run_job_here(job["id"])
    import time

    while (job := client.job(job["id"]))["status"] in ("queued", "running"):
        time.sleep(0.5)
    if job["status"] != "succeeded":
        raise CommandError(f"sync job {job['id']} {job['status']}: {job.get('error') or job['message']}")
    r = job["result"]
    typer.echo(
        f"{r['annotations']} annotations in {r['tasks']} tasks: "
        + ", ".join(f"{n} {k}" for k, n in sorted(r["counts"].items()))
    )
    for rej in r["rejected"]:
        typer.echo(f"rejected: {rej['reason']}")


@ls_app.command("connect")
def connect(project: Annotated[str, typer.Argument(help="Project name or id.")]) -> None:
    """Register the running service as the project's ML backend in Label Studio."""
    _, _, res = _project_call(project, "connect")
    typer.echo(f"ML backend {res['ml_backend_id']} connected to Label Studio project {res['ls_project_id']}")


@ls_app.command("links")
def links(
    project: Annotated[str, typer.Argument(help="Project name or id.")],
    rotate: Annotated[
        bool, typer.Option("--rotate", help="First revoke every signed link of the project (a new key).")
    ] = False,
) -> None:
    """Sign the image and overlay links in the project's Label Studio tasks anew (a new lifetime)."""
    _, _, res = _project_call(project, "links", {"rotate": rotate})
    typer.echo(
        ("link key rotated: every earlier link is revoked; " if res["rotated"] else "")
        + f"{res['tasks_updated']} tasks got fresh links"
    )

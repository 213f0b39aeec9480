"""Project commands: create, import, retrain, status (over HTTP or on the local data dir).

Also what the loop's other commands share: the client (:func:`client`) and following a job
to its end (:func:`follow`, :func:`running_job`).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Protocol

import typer

from backend.cli.errors import CommandError
from backend.domain.enums import ImportLabels
from ml import ProfileName

if TYPE_CHECKING:
    from backend.client import ClientError, WorkbenchClient

project_app = typer.Typer(help="Projects.", no_args_is_help=True, add_completion=False)


def client() -> WorkbenchClient:
    """The service at DEFECTLOOP_SERVER_URL, else the local data directory's database."""
    from backend.client import make_client
    from backend.settings import Settings

    return make_client(Settings())


@project_app.command("create")
def create(
    name: Annotated[str, typer.Argument(help="Project name (unique).")],
    image_size: Annotated[tuple[int, int] | None, typer.Option(help="Model input height and width.")] = None,
    backbone: Annotated[str | None, typer.Option(help="Backbone for this project's models.")] = None,
    profile: Annotated[ProfileName | None, typer.Option(help="fast or paper.")] = None,
    cost_image: Annotated[float | None, typer.Option(help="Cost units of an image-level label.")] = None,
    cost_mask: Annotated[float | None, typer.Option(help="Cost units of a mask label.")] = None,
) -> None:
    """Create a project."""
    body: dict[str, Any] = {
        "name": name,
        "backbone": backbone,
        "profile": profile,
        "cost_image_label": cost_image,
        "cost_mask_label": cost_mask,
    }
    if image_size:
        body["image_height"], body["image_width"] = image_size
    p = client().create_project({k: v for k, v in body.items() if v is not None})
    typer.echo(f"project {p['id']} {p['name']!r} created")


def import_images(
    project: Annotated[str, typer.Argument(help="Project name or id.")],
    path: Annotated[Path, typer.Argument(help="Folder of images, labels.csv folder or MVTec layout.")],
    labels: Annotated[
        ImportLabels,
        typer.Option(
            help=(
                "For a labelled dataset: all, test (only the test split keeps its labels; the rest joins the "
                "pool unlabelled) or none."
            )
        ),
    ] = ImportLabels.ALL,
    wait: Annotated[
        bool,
        typer.Option(
            "--wait/--no-wait",
            help="With a service: follow the import job to its end with a progress bar (--no-wait: queue it "
            "for the service's workers and print its id).",
        ),
    ] = True,
) -> None:
    """Import images (and their labels, if any) from a folder, 1,000 files at a time;
    interrupted, it keeps what it stored, and run again it imports the rest.

    With a service (DEFECTLOOP_SERVER_URL) the import is a job its workers run, followed here
    with its progress; on the local data directory it runs in this process."""
    from backend.client import LocalClient

    c = client()
    pid = c.find_project(project)["id"]
    if isinstance(c, LocalClient):
        if not wait:
            raise CommandError("--no-wait needs a service (DEFECTLOOP_SERVER_URL): a local import runs here")
        res = c.import_path(pid, path, labels.value)
        _print_import(res, [r for r in res["results"] if r["status"] == "rejected"])
        return
    job = c.import_job(pid, path, labels.value)
    typer.echo(f"import job {job['id']} queued")
    if not wait:
        return
    health = c.health()
    if health.get("status") == "degraded":
        typer.echo(f"note: {health.get('detail', 'no job worker is running')}: the import waits for one")
    res = follow(c, job["id"])["result"]
    _print_import(res, res.get("rejected_files", []))


def _print_import(res: dict[str, Any], rejected: list[dict[str, Any]]) -> None:
    """The rejected files with their reasons, then the counts."""
    for r in rejected:
        typer.echo(f"rejected: {r['file']}: {r['reason']}")
    if res["rejected"] > len(rejected):
        typer.echo(f"(the first {len(rejected)} of {res['rejected']} rejected files listed)")
    typer.echo(f"{res['imported']} imported, {res['duplicate']} duplicate, {res['rejected']} rejected")


def retrain(
    project: Annotated[str, typer.Argument(help="Project name or id.")],
    wait: Annotated[
        bool, typer.Option("--wait", help="Wait for the job, with a progress bar (also for one already running).")
    ] = False,
) -> None:
    """Start a retrain: snapshot the labels, train, evaluate, register a model version."""
    from backend.client import ClientError, LocalClient

    c = client()
    pid = c.find_project(project)["id"]
    try:
        job = c.retrain(pid)
        typer.echo(f"retrain job {job['id']} queued")
    except ClientError as e:
        job = running_job(c, e, wait)
    if not wait:
        if isinstance(c, LocalClient):
            typer.echo("it runs when `defectloop worker` or `defectloop serve` is running (or use --wait)")
        return
    if isinstance(c, LocalClient):
        import threading

        runner = threading.Thread(target=c.run_job_here, args=(job["id"],), daemon=True)
        runner.start()
    follow(c, job["id"])


class _Jobs(Protocol):
    """What following a job needs of a client."""

    def job(self, job_id: int) -> dict[str, Any]: ...


def running_job(c: WorkbenchClient, e: ClientError, wait: bool) -> dict[str, Any]:
    """The job a 409 names, when ``--wait`` should follow it (a retrain is already running);
    any other error is raised again (the command ends on it)."""
    if not (wait and e.job_id is not None and str(e).startswith("409")):
        raise e
    typer.echo(f"{e}\nfollowing job {e.job_id}")
    return c.job(e.job_id)


def follow(c: _Jobs, job_id: int) -> dict[str, Any]:
    """Follow a job to its end: a live bar on a terminal; elsewhere (a log, a pipe) a line per
    stage and at most one every 30 s, so a piped run is never silent for minutes. A job that
    did not succeed ends the command with status 1; the job, as it ended."""
    import sys

    if not sys.stdout.isatty():
        job = _follow_plain(c, job_id)
    else:
        job = _follow_bar(c, job_id)
    if job["status"] != "succeeded":
        # one line: the error's first (its traceback stays on the job record)
        why = (job.get("error") or "").strip().splitlines()[:1] or [job["message"]]
        raise CommandError(f"job {job_id} {job['status']}: {why[0]}", exit_code=1)
    if job.get("kind", "train") == "train":
        typer.echo(f"model version {job['result'].get('model_version_id')} ({job['result'].get('regime')}) registered")
    return job


def _follow_plain(c: _Jobs, job_id: int, every_s: float = 30.0) -> dict[str, Any]:
    last_stage, last_at = None, 0.0
    while True:
        job = c.job(job_id)
        stage = job["message"].split(" ")[0]
        if stage != last_stage or time.monotonic() - last_at >= every_s:
            typer.echo(f"job {job_id}: {job['progress']:.0%} {job['message']}")
            last_stage, last_at = stage, time.monotonic()
        if job["status"] not in ("queued", "running"):
            return job
        time.sleep(1)


def _follow_bar(c: _Jobs, job_id: int) -> dict[str, Any]:
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        TextColumn("{task.fields[msg]}"),
        TimeElapsedColumn(),
    ) as bar:
        task = bar.add_task(f"job {job_id}", total=1.0, msg="")
        while True:
            job = c.job(job_id)
            bar.update(task, completed=job["progress"], msg=job["message"])
            if job["status"] not in ("queued", "running"):
                return job
            time.sleep(1)


#: how many of the latest rounds `status` lists (all of them: the curves page)
STATUS_ROUNDS = 5


def status(project: Annotated[str, typer.Argument(help="Project name or id.")]) -> None:
    """Labels, model versions, the last rounds and recent jobs of a project."""
    c = client()
    pid = c.find_project(project)["id"]
    st = c.status(pid)
    p, lb = st["project"], st["labels"]
    review = f", {lb['review']} flagged for review" if lb.get("review") else ""
    typer.echo(
        f"project {p['id']} {p['name']!r}: {lb['images']} images, {lb['labelled']} labelled "
        f"({lb['normal']} normal, {lb['image_level']} image-level, {lb['mask']} masks{review})"
    )
    for mv in st["model_versions"]:
        m = mv["metrics"]
        auroc = m.get("image_auroc")
        typer.echo(
            f"  {'*' if mv['is_active'] else ' '} {mv['name']}: {mv['regime']}, image AUROC "
            f"{'n/a' if auroc is None else f'{auroc:.3f}'}, {mv['n_labels']} labels"
        )
    for r in c.rounds(pid)[-STATUS_ROUNDS:]:
        masks = sum(kind == "mask" for _, kind in r["asks"])
        asked = f", {len(r['asks'])} asked ({masks} masks)" if r["asks"] else ""
        said = f"; {r['message']}" if r["message"] else ""
        typer.echo(f"  round {r['index']}: {r['status']}{asked}{said}")
    for j in st["jobs"]:
        typer.echo(f"  job {j['id']} {j['kind']}: {j['status']} ({j['progress']:.0%}) {j['message']}")
    health = st.get("health") or {}
    if health.get("status") == "degraded":
        typer.echo(f"note: {health.get('detail', 'no job worker is running')}")

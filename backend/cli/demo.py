"""`defectloop demo`: the whole workbench on one machine, ready for an annotator.

Generates the demo data (or takes ``--data``), starts Label Studio and the service on the
embedded default (SQLite, in-process job worker), imports the images as a new line would
have them (the test split labelled, everything else unlabelled in the pool), runs the
bootstrap round, pushes the first ranked batch and prints where to click. Everything lives
under ``--dir``; ``--stop`` ends both servers; running it again continues where it stands.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from backend.cli.errors import CommandError

if TYPE_CHECKING:
    from backend.client import HttpClient

PROJECT = "demo"


def _env(out: Path, data_root: Path, port: int, token: str) -> dict[str, str]:
    return {
        "DEFECTLOOP_DATA_DIR": str(out / "workbench"),
        "DEFECTLOOP_API_TOKEN": token,
        "DEFECTLOOP_SERVER_URL": f"http://127.0.0.1:{port}",
        "DEFECTLOOP_PUBLIC_URL": f"http://127.0.0.1:{port}",
        "DEFECTLOOP_IMPORT_ROOTS": json.dumps([str(data_root)]),
    }


def write_env_script(path: Path, env: dict[str, str]) -> None:
    """``source PATH`` points the shell's commands at the demo's service and puts this
    installation's ``defectloop`` (the virtual environment's bin folder) first on PATH."""
    from shlex import quote

    bin_dir = Path(sys.executable).parent
    lines = [f"export {k}={quote(v)}\n" for k, v in env.items()]
    lines.append(f'export PATH={quote(str(bin_dir))}:"$PATH"\n')
    path.write_text("".join(lines))
    path.chmod(0o600)  # it holds the API token


def _healthy(url: str) -> bool:
    import httpx

    try:
        return httpx.get(f"{url}/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _start_service(out: Path, env: dict[str, str], port: int) -> None:
    url = env["DEFECTLOOP_SERVER_URL"]
    if _healthy(url):
        return
    log = (out / "serve.log").open("ab")
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "defectloop"), "serve", "--port", str(port)],
        env={**os.environ, **env},
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    (out / "serve.pid").write_text(str(proc.pid))
    deadline = time.monotonic() + 90
    while not _healthy(url):
        if proc.poll() is not None or time.monotonic() > deadline:
            tail = (out / "serve.log").read_text(errors="replace")[-2000:]
            raise CommandError(f"the service did not start on {url} (log {out / 'serve.log'}):\n{tail}")
        time.sleep(0.5)


def _default_dir() -> Path:
    """The demo whose env.sh this shell sourced (its data dir is DIR/workbench), else out/demo."""
    from backend.settings import Settings

    data_dir = Settings().data_dir
    if data_dir.name == "workbench" and (data_dir.parent / "env.sh").is_file():
        return data_dir.parent
    return Path("out/demo")


def _stop(out: Path) -> None:
    from backend.services.labelstudio_link import home
    from backend.settings import Settings
    from labelstudio.server import stop as stop_ls

    if not (out / "env.sh").is_file():
        raise CommandError(f"no demo in {out}: pass --dir with the folder `./run demo` used")
    pid_file = out / "serve.pid"
    if pid_file.is_file():
        try:
            os.kill(int(pid_file.read_text()), signal.SIGTERM)
            typer.echo("service stopped")
        except (ProcessLookupError, ValueError):
            pass
        pid_file.unlink(missing_ok=True)
    settings = Settings(data_dir=out / "workbench")
    typer.echo("Label Studio stopped" if stop_ls(home(settings)) else "no Label Studio was running")


def _bootstrapped(client: HttpClient, pid: int) -> None:
    """Run round 0 unless it is done, and wait for it and for the pool scoring."""
    from backend.cli.project import follow

    rounds = client.rounds(pid)
    if not rounds or rounds[0]["status"] == "failed":
        res = client.round_action(pid, "bootstrap")
        typer.echo("round 0 (bootstrap): unsupervised training on the pool, then scoring it")
        follow(client, res["job"]["id"])
    elif rounds[0]["status"] == "training":
        typer.echo("round 0 is training: waiting")
        while client.rounds(pid)[0]["status"] == "training":
            time.sleep(2)


def _first_batch(client: HttpClient, pid: int) -> dict[str, Any] | None:
    """Push round 1 once the pool is scored (None when a round is open already)."""
    if any(r["status"] in ("annotating", "training", "planned") for r in client.rounds(pid)):
        return None
    deadline = time.monotonic() + 900
    while any(j["status"] in ("queued", "running") for j in client.status(pid)["jobs"]) and time.monotonic() < deadline:
        time.sleep(2)  # the bootstrap's pool scoring
    return client.round_action(pid, "start", {})


def demo_cmd(
    data: Annotated[
        Path | None,
        typer.Option(
            help="Your own dataset (labels.csv with a test split, or MVTec layout) instead of the generated one."
        ),
    ] = None,
    workdir: Annotated[
        Path | None,
        typer.Option(
            "--dir",
            help="Where the demo keeps its data, workbench, logs and env.sh (default: out/demo, or the demo "
            "whose env.sh this shell sourced).",
        ),
    ] = None,
    port: Annotated[int, typer.Option(help="Port of the defectloop service on 127.0.0.1.")] = 8000,
    image_size: Annotated[int, typer.Option(help="Training resolution of the demo project.")] = 256,
    stop: Annotated[bool, typer.Option("--stop", help="Stop the demo's service and Label Studio.")] = False,
) -> None:
    """Start the workbench with Label Studio, run the bootstrap round and push the first ranked batch."""
    from backend.client import ClientError, HttpClient
    from backend.services.labelstudio_link import home, start_local
    from backend.settings import Settings
    from labelstudio import server
    from ml import DemoSpec, generate

    out = (workdir or _default_dir()).resolve()
    if stop:
        _stop(out)
        return
    out.mkdir(parents=True, exist_ok=True)
    if data is None:
        data = out / "data"
        if not (data / "labels.csv").is_file():
            typer.echo(f"generating the demo data in {data}")
            generate(data, DemoSpec())
    data = data.resolve()
    token_file = out / "token"
    if not token_file.is_file():
        token_file.write_text(secrets.token_urlsafe(24))
        token_file.chmod(0o600)
    token = token_file.read_text().strip()
    env = _env(out, data, port, token)
    write_env_script(out / "env.sh", env)
    settings = Settings(data_dir=out / "workbench")
    info = start_local(settings, home(settings), document_root=data, say=typer.echo)
    _start_service(out, env, port)
    client = HttpClient(env["DEFECTLOOP_SERVER_URL"], token)
    try:
        pid = client.find_project(PROJECT)["id"]
    except ClientError:
        pid = client.create_project({"name": PROJECT, "image_height": image_size, "image_width": image_size})["id"]
        res = client.import_path(pid, data, labels="test")
        typer.echo(
            f"imported {res['imported']} images (the test split with its labels, the rest unlabelled in the pool)"
        )
    _bootstrapped(client, pid)
    batch = _first_batch(client, pid)
    if batch is not None:
        typer.echo(f"round {batch['index']}: {batch['message']}")
    # setup, and the service as the project's interactive ML backend: one-click masks work from the start
    ls_project = client.labelstudio(pid, "connect")["ls_project_id"]
    creds = server.load_credentials(home(settings))
    if creds is None:
        raise CommandError(f"Label Studio's credentials are missing from {home(settings)}")
    typer.echo(f"""
Label Studio:   {info.url}/projects/{ls_project}/data
  log in as     {creds.username} / {creds.password}
  its API       {info.url}/api   (header "Authorization: Token ...", the token in {home(settings) / "credentials.json"})
Curves, rounds: {env["DEFECTLOOP_SERVER_URL"]}/projects/{pid}/curves#token={token}
API docs:       {env["DEFECTLOOP_SERVER_URL"]}/docs   (token: {token_file})

Annotate the batch in Label Studio, then close the round (sync, retrain, record):
  source {out / "env.sh"}
  defectloop round {PROJECT} --close --wait     # then `defectloop round {PROJECT}` for the next batch
Stop everything: defectloop demo --stop      # from a shell that sourced env.sh; else --dir {out}""")

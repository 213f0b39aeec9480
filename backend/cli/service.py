"""`defectloop serve` and `defectloop worker`: the service and its job executors."""

from __future__ import annotations

import logging
import os
from typing import Annotated

import typer

from backend.cli.errors import CommandError


def serve(
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.")] = 8000,
    dev: Annotated[
        bool, typer.Option("--dev", help="Local development: no API token, bound to 127.0.0.1 only.")
    ] = False,
    workers: Annotated[bool, typer.Option(help="Start the embedded job worker (off when jobs go to RQ).")] = True,
) -> None:
    """Upgrade the database, start the job worker and serve the API."""
    import uvicorn

    from backend.api.app import create_app
    from backend.db.engine import make_engine
    from backend.db.migrate import upgrade
    from backend.jobs.supervisor import WorkerSupervisor
    from backend.settings import Settings

    settings = Settings()
    if not settings.api_token:
        if not dev:
            raise CommandError("set DEFECTLOOP_API_TOKEN (or pass --dev for a local, token-less server on 127.0.0.1)")
        if host != "127.0.0.1":
            typer.echo(f"note: --dev serves without a token, so it binds to 127.0.0.1 instead of {host}", err=True)
        host = "127.0.0.1"
    logging.basicConfig(level=logging.INFO, format="%(levelname)s:     %(name)s: %(message)s")
    engine = make_engine(settings.resolved_database_url())
    upgrade(engine)
    supervisor = None
    if workers and not settings.redis_url:  # restarted whenever it dies; stops by itself when this process does
        supervisor = WorkerSupervisor.embedded(os.getpid()).start()
    try:
        uvicorn.run(create_app(settings, engine=engine), host=host, port=port, log_level="info")
    finally:
        if supervisor is not None:
            supervisor.stop()


def worker(
    burst: Annotated[bool, typer.Option(help="Exit when the queue is empty (RQ only).")] = False,
    device: Annotated[str | None, typer.Option(help="auto, cpu or cuda (default: DEFECTLOOP_DEVICE).")] = None,
) -> None:
    """Run jobs: an RQ worker when DEFECTLOOP_REDIS_URL is set, else the embedded polling worker."""
    from backend.settings import Settings

    settings = Settings()
    if device:
        if device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"--device must be auto, cpu or cuda, got {device!r}")
        settings = settings.model_copy(update={"device": device})
        os.environ["DEFECTLOOP_DEVICE"] = device  # RQ runs each job in a child that reads its settings anew
    if settings.redis_url:
        from backend.handlers import preload
        from backend.jobs.rq_executor import work

        work(settings, burst=burst, preload=preload)
    else:
        from backend.handlers import job_handlers
        from backend.jobs.worker import worker_loop

        worker_loop(settings, job_handlers())

"""The embedded executor: one worker process polling the database for queued jobs.

``defectloop serve`` starts it as a child process (``python -m backend.handlers``);
``defectloop worker`` runs it directly (or an RQ worker when DEFECTLOOP_REDIS_URL is set). It also reaps jobs whose
heartbeat
lapsed, so a killed worker's job ends up failed.
"""

from __future__ import annotations

import logging
import os
import signal
import threading

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from backend.db.engine import make_engine, session_factory
from backend.db.tables import WorkerKind
from backend.jobs.dispatch import dispatch_on_commit
from backend.jobs.presence import Presence
from backend.jobs.queue import next_queued, reap_stale
from backend.jobs.runner import Handlers, execute
from backend.settings import Settings
from ml import set_max_pixels

log = logging.getLogger("defectloop.worker")


def _watch_parent(parent_pid: int, stop: threading.Event, poll_s: float) -> None:
    """Set ``stop`` once the parent is gone (the worker is then re-parented)."""
    while not stop.wait(poll_s):
        if os.getppid() != parent_pid:
            stop.set()


def worker_loop(
    settings: Settings,
    handlers: Handlers,
    stop: threading.Event | None = None,
    poll_s: float = 0.5,
    parent_pid: int | None = None,
) -> None:
    """Run queued jobs one at a time until ``stop`` is set (or SIGTERM/SIGINT, or ``parent_pid`` exits).

    A running job is interrupted at its next cancellation check when the worker stops, and
    ends FAILED ("interrupted"); the worker never outlives the server that started it.
    """
    from backend.runtime import tune_process

    tune_process()
    set_max_pixels(settings.max_image_pixels)
    stop = stop or threading.Event()
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
    if parent_pid is not None:
        threading.Thread(target=_watch_parent, args=(parent_pid, stop, poll_s), daemon=True).start()
    engine = make_engine(settings.resolved_database_url())
    sessions = dispatch_on_commit(session_factory(engine), settings)
    failures = 0
    try:
        with Presence(sessions, WorkerKind.EMBEDDED) as presence:
            log.info("worker %s started", presence.name)
            while not stop.is_set():
                try:
                    job_id = _next_job(sessions, settings)
                except SQLAlchemyError as e:  # locked, or the database is away: wait and try again
                    failures += 1
                    wait = min(poll_s * 2**failures, 30.0)
                    log.warning(
                        "worker: cannot reach the job queue (%s); retrying in %.0f s", str(e).splitlines()[0], wait
                    )
                    stop.wait(wait)
                    continue
                failures = 0
                if job_id is None:
                    stop.wait(poll_s)
                    continue
                presence.job_id = job_id
                try:
                    execute(job_id, sessions, settings, handlers, shutdown=stop)
                except SQLAlchemyError as e:  # could not even claim it: it stays queued for the next turn
                    log.warning("worker: job %s not started (%s)", job_id, str(e).splitlines()[0])
                    stop.wait(poll_s)
                finally:
                    presence.job_id = None
    finally:
        engine.dispose()


def _next_job(sessions: sessionmaker[Session], settings: Settings) -> int | None:
    """Reap jobs whose worker died (their scratch files go too); the oldest queued job's id."""
    with sessions.begin() as s:
        reaped = reap_stale(s, timeout_s=settings.heartbeat_timeout_s, data_dir=settings.data_dir)
        job_id = next_queued(s)
    for jid in reaped:
        log.warning("job %s: its worker stopped responding; marked failed", jid)
    return job_id

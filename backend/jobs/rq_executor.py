"""The RQ executor: jobs go to a Redis queue; `defectloop worker` processes take them.

The job record in the database stays the source of truth; RQ only delivers job ids.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from backend.jobs.dispatch import QUEUE
from backend.settings import Settings

if TYPE_CHECKING:
    from backend.jobs.runner import Handlers


def run(job_id: int, handlers: Handlers) -> str:
    """Executed inside an RQ worker (through ``backend.jobs.dispatch.RQ_ENTRY``)."""
    from backend.db.engine import make_engine, session_factory
    from backend.jobs.dispatch import dispatch_on_commit
    from backend.jobs.runner import execute
    from ml import set_max_pixels

    settings = Settings()
    set_max_pixels(settings.max_image_pixels)
    engine = make_engine(settings.resolved_database_url())
    try:
        status = execute(job_id, dispatch_on_commit(session_factory(engine), settings), settings, handlers)
    finally:
        engine.dispose()
    return status.value if status else "not claimed"


def work(settings: Settings, burst: bool = False, preload: Callable[[], None] | None = None) -> None:
    """Run an RQ worker on the defectloop queue, registered as a worker while it runs (stale jobs
    are reaped by the API when jobs are listed or requested).

    RQ runs each job in a work horse forked from this process: ``preload`` (the composition
    root's) imports what jobs run here, once, so a horse starts with it loaded instead of
    importing it for every job (seconds of CPU per pool-scoring chunk)."""
    from redis import Redis
    from rq import Queue, Worker

    from backend.db.engine import make_engine, session_factory
    from backend.db.tables import WorkerKind
    from backend.jobs.presence import Presence
    from backend.runtime import tune_process

    if not settings.redis_url:
        raise ValueError("an RQ worker needs DEFECTLOOP_REDIS_URL")
    tune_process()
    if preload is not None:
        preload()
    conn = Redis.from_url(settings.redis_url)
    engine = make_engine(settings.resolved_database_url())
    try:
        with Presence(session_factory(engine), WorkerKind.RQ):  # /health counts this worker
            Worker([Queue(QUEUE, connection=conn)], connection=conn).work(burst=burst, with_scheduler=False)
    finally:
        engine.dispose()

"""The RQ executor: jobs go to a Redis queue; `defectloop worker` processes take them.

The job record in the database stays the source of truth; RQ only delivers job ids.
"""

from __future__ import annotations

from backend.settings import Settings

QUEUE = "defectloop"


def submit(settings: Settings, job_id: int) -> None:
    """Put a job id on the Redis queue (no-op for the embedded executor)."""
    if not settings.redis_url:
        return
    from redis import Redis
    from rq import Queue

    Queue(QUEUE, connection=Redis.from_url(settings.redis_url)).enqueue(
        "backend.jobs.rq_executor.run", job_id, job_timeout=24 * 3600, result_ttl=3600, failure_ttl=24 * 3600
    )


def run(job_id: int) -> str:
    """Executed inside an RQ worker."""
    from backend.db.engine import make_engine, session_factory
    from backend.jobs.runner import execute
    from ml.images import set_max_pixels

    settings = Settings()
    set_max_pixels(settings.max_image_pixels)
    engine = make_engine(settings.resolved_database_url())
    try:
        status = execute(job_id, session_factory(engine), settings)
    finally:
        engine.dispose()
    return status.value if status else "not claimed"


def work(settings: Settings, burst: bool = False) -> None:
    """Run an RQ worker on the defectloop queue, registered as a worker while it runs (stale jobs
    are reaped by the API when jobs are listed or requested)."""
    from redis import Redis
    from rq import Queue, Worker

    from backend.db.engine import make_engine, session_factory
    from backend.db.tables import WorkerKind
    from backend.jobs.presence import Presence
    from backend.runtime import tune_process

    tune_process()
    conn = Redis.from_url(settings.redis_url)
    engine = make_engine(settings.resolved_database_url())
    try:
        with Presence(session_factory(engine), WorkerKind.RQ):  # /health counts this worker
            Worker([Queue(QUEUE, connection=conn)], connection=conn).work(burst=burst, with_scheduler=False)
    finally:
        engine.dispose()

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

    settings = Settings()
    engine = make_engine(settings.resolved_database_url())
    try:
        status = execute(job_id, session_factory(engine), settings)
    finally:
        engine.dispose()
    return status.value if status else "not claimed"


def work(settings: Settings, burst: bool = False) -> None:
    """Run an RQ worker on the defectloop queue; it also reaps stale jobs between jobs."""
    from redis import Redis
    from rq import Queue, Worker

    from backend.runtime import tune_process

    tune_process()
    conn = Redis.from_url(settings.redis_url)
    Worker([Queue(QUEUE, connection=conn)], connection=conn).work(burst=burst, with_scheduler=False)

"""Jobs reach their executor once, after the commit that created them.

A job announced before its row is committed can be picked up by a worker that cannot see it
yet; one announced by hand can be forgotten. So no caller announces jobs: sessions made by a
factory passed through :func:`dispatch_on_commit` collect the jobs they insert, and hand them
to the executor when (and only when) the transaction that created them commits. A job whose
savepoint or transaction rolled back is never announced.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import event, inspect
from sqlalchemy.orm import Session, SessionTransaction, sessionmaker

from backend.db.tables import Job
from backend.settings import Settings

_PENDING = "defectloop_jobs_to_dispatch"
QUEUE = "defectloop"
#: What an RQ worker calls with a job id: the composition root's, which hands :func:`run` the handlers.
RQ_ENTRY = "backend.handlers.run_rq_job"


def submit(settings: Settings, job_id: int) -> None:
    """Put a job id on the Redis queue (no-op for the embedded executor)."""
    if not settings.redis_url:
        return
    from redis import Redis
    from rq import Queue

    Queue(QUEUE, connection=Redis.from_url(settings.redis_url)).enqueue(
        RQ_ENTRY, job_id, job_timeout=24 * 3600, result_ttl=3600, failure_ttl=24 * 3600
    )


def dispatch_on_commit(sessions: sessionmaker[Session], settings: Settings) -> sessionmaker[Session]:
    """Make ``sessions`` announce the jobs they create after commit (to RQ when
    ``settings.redis_url`` is set; the embedded worker polls the database and needs no
    announcement). Returns ``sessions``."""
    if not settings.redis_url:
        return sessions

    def collect(session: Session, _ctx: Any) -> None:
        new = [obj for obj in session.new if isinstance(obj, Job)]
        if new:
            session.info.setdefault(_PENDING, []).extend(new)

    def announce(session: Session) -> None:
        if session.in_nested_transaction():  # a savepoint was released: the transaction goes on
            return
        jobs = session.info.pop(_PENDING, [])
        for job in jobs:
            if inspect(job).persistent:  # not rolled back with a savepoint
                submit(settings, job.id)

    def forget(session: Session, previous: SessionTransaction) -> None:
        if not previous.nested:  # the whole transaction is gone, not just a savepoint
            session.info.pop(_PENDING, None)

    event.listen(sessions, "after_flush", collect)
    event.listen(sessions, "after_commit", announce)
    event.listen(sessions, "after_soft_rollback", forget)
    return sessions

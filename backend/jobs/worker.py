"""The embedded executor: one worker process polling the database for queued jobs.

``defectloop serve`` starts it as a child process; ``defectloop worker`` runs it directly
(or an RQ worker when DEFECTLOOP_REDIS_URL is set). It also reaps jobs whose heartbeat
lapsed, so a killed worker's job ends up failed.
"""

from __future__ import annotations

import signal
import threading

from backend.db.engine import make_engine, session_factory
from backend.jobs.queue import next_queued, reap_stale
from backend.jobs.runner import execute
from backend.settings import Settings


def worker_loop(settings: Settings, stop: threading.Event | None = None, poll_s: float = 0.5) -> None:
    """Run queued jobs one at a time until ``stop`` is set (or SIGTERM/SIGINT)."""
    from backend.runtime import tune_process

    tune_process()
    stop = stop or threading.Event()
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
    engine = make_engine(settings.resolved_database_url())
    sessions = session_factory(engine)
    try:
        while not stop.is_set():
            with sessions.begin() as s:
                reap_stale(s, timeout_s=settings.heartbeat_timeout_s)
                job_id = next_queued(s)
            if job_id is None:
                stop.wait(poll_s)
                continue
            execute(job_id, sessions, settings)
    finally:
        engine.dispose()


def main() -> None:
    worker_loop(Settings())


if __name__ == "__main__":
    main()

"""The embedded executor: one worker process polling the database for queued jobs.

``defectloop serve`` starts it as a child process; ``defectloop worker`` runs it directly
(or an RQ worker when DEFECTLOOP_REDIS_URL is set). It also reaps jobs whose heartbeat
lapsed, so a killed worker's job ends up failed.
"""

from __future__ import annotations

import argparse
import os
import signal
import threading

from backend.db.engine import make_engine, session_factory
from backend.jobs.queue import next_queued, reap_stale
from backend.jobs.runner import execute
from backend.settings import Settings


def _watch_parent(parent_pid: int, stop: threading.Event, poll_s: float) -> None:
    """Set ``stop`` once the parent is gone (the worker is then re-parented)."""
    while not stop.wait(poll_s):
        if os.getppid() != parent_pid:
            stop.set()


def worker_loop(
    settings: Settings, stop: threading.Event | None = None, poll_s: float = 0.5, parent_pid: int | None = None
) -> None:
    """Run queued jobs one at a time until ``stop`` is set (or SIGTERM/SIGINT, or ``parent_pid`` exits).

    A running job is interrupted at its next cancellation check when the worker stops, and
    ends FAILED ("interrupted"); the worker never outlives the server that started it.
    """
    from backend.runtime import tune_process

    tune_process()
    stop = stop or threading.Event()
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
    if parent_pid is not None:
        threading.Thread(target=_watch_parent, args=(parent_pid, stop, poll_s), daemon=True).start()
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
            execute(job_id, sessions, settings, shutdown=stop)
    finally:
        engine.dispose()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="The embedded job worker (started by `defectloop serve`).")
    parser.add_argument("--parent-pid", type=int, help="stop when this process exits")
    args = parser.parse_args(argv)
    worker_loop(Settings(), parent_pid=args.parent_pid)


if __name__ == "__main__":
    main()

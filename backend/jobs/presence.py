"""Workers announce themselves: a row per worker process, beaten every few seconds.

``/health`` reads it to say whether any worker is alive (queued jobs wait otherwise), which
works for every executor and wherever the workers run. A failed beat is skipped (the next
one retries); only a long silence makes a worker count as gone.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from datetime import timedelta
from types import TracebackType
from typing import Self, cast

from sqlalchemy import CursorResult, delete, select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from backend.db.tables import Worker, WorkerKind, utcnow

log = logging.getLogger("defectloop.worker")

BEAT_S = 5.0
#: Rows of workers silent this long are deleted (a killed worker never deletes its own).
FORGET_AFTER = timedelta(days=1)


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def alive_workers(session: Session, *, timeout_s: float) -> list[Worker]:
    """Workers whose last beat is younger than ``timeout_s``."""
    cutoff = utcnow() - timedelta(seconds=timeout_s)
    return list(session.scalars(select(Worker).where(Worker.beat_at >= cutoff).order_by(Worker.id)))


class Presence:
    """Register this process as a worker for the duration of a ``with`` block, beating from a
    daemon thread (so a long job does not silence it). ``job_id`` is shown while set."""

    def __init__(self, sessions: sessionmaker[Session], kind: WorkerKind, beat_s: float = BEAT_S) -> None:
        self.sessions, self.kind, self.beat_s = sessions, kind, beat_s
        self.name = worker_name()
        self.job_id: int | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> Self:
        self._write(register=True)
        self._thread = threading.Thread(target=self._run, daemon=True, name="worker-presence")
        self._thread.start()
        return self

    def __exit__(self, _t: type[BaseException] | None, _e: BaseException | None, _tb: TracebackType | None) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.beat_s + 5)
        try:
            with self.sessions.begin() as s:
                s.execute(delete(Worker).where(Worker.name == self.name))
        except SQLAlchemyError as e:  # the row goes stale and is forgotten later
            log.warning("worker %s: could not unregister: %s", self.name, e)

    def _run(self) -> None:
        while not self._stop.wait(self.beat_s):
            self._write()

    def _write(self, register: bool = False) -> None:
        try:
            with self.sessions.begin() as s:
                now = utcnow()
                if register:
                    s.execute(delete(Worker).where((Worker.name == self.name) | (Worker.beat_at < now - FORGET_AFTER)))
                    s.add(Worker(name=self.name, kind=self.kind, started_at=now, beat_at=now))
                else:
                    res = s.execute(
                        update(Worker).where(Worker.name == self.name).values(beat_at=now, job_id=self.job_id)
                    )
                    if cast(CursorResult, res).rowcount == 0:  # the registration itself was not written
                        s.add(Worker(name=self.name, kind=self.kind, started_at=now, beat_at=now, job_id=self.job_id))
        except SQLAlchemyError as e:  # skipped: the next beat retries
            log.warning("worker %s: heartbeat not written: %s", self.name, str(e).splitlines()[0])

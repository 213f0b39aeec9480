"""`serve`'s embedded worker, kept alive: a worker process that dies (a crash, an OOM kill,
``kill -9``) is started again after a backoff that grows while it keeps dying."""

from __future__ import annotations

import logging
import subprocess
import sys
import threading
import time
from collections.abc import Sequence

log = logging.getLogger("defectloop.worker")

#: Waits before restart attempts 1, 2, 3, ...; the last one repeats.
BACKOFF_S = (1.0, 2.0, 5.0, 10.0, 30.0, 60.0)
#: A worker that lived this long counts as healthy: the backoff starts over.
STABLE_AFTER_S = 60.0


class WorkerSupervisor:
    """Run ``command`` as a child process and restart it whenever it exits, until :meth:`stop`."""

    def __init__(self, command: Sequence[str], backoff_s: Sequence[float] = BACKOFF_S, poll_s: float = 0.5) -> None:
        self.command = list(command)
        self.backoff_s, self.poll_s = tuple(backoff_s), poll_s
        self.restarts = 0
        self.process: subprocess.Popen | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @classmethod
    def embedded(cls, parent_pid: int, **kwargs: object) -> WorkerSupervisor:
        """The embedded job worker, stopping by itself when ``parent_pid`` exits."""
        return cls([sys.executable, "-m", "backend.handlers", "--parent-pid", str(parent_pid)], **kwargs)  # type: ignore[arg-type]

    def start(self) -> WorkerSupervisor:
        self.process = subprocess.Popen(self.command)
        self._thread = threading.Thread(target=self._watch, daemon=True, name="worker-supervisor")
        self._thread.start()
        return self

    def _watch(self) -> None:
        failures = 0
        started = time.monotonic()
        while not self._stop.wait(self.poll_s):
            dead = self.process
            code = dead.poll() if dead is not None else None
            if dead is None or code is None:
                continue
            if time.monotonic() - started >= STABLE_AFTER_S:
                failures = 0
            wait = self.backoff_s[min(failures, len(self.backoff_s) - 1)]
            log.error(
                "the job worker (pid %s) exited with code %s; starting a new one in %.0f s",
                dead.pid,
                code,
                wait,
            )
            if self._stop.wait(wait):
                return
            failures += 1
            self.restarts += 1
            self.process = subprocess.Popen(self.command)
            started = time.monotonic()
            log.info("job worker restarted (pid %s, restart %d)", self.process.pid, self.restarts)

    def stop(self, timeout_s: float = 30.0) -> None:
        """Stop supervising, then terminate the worker (its running job ends "interrupted")."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()

"""The API served over real HTTP from a thread of this process.

Label Studio must reach defectloop (webhooks, signed image links) while a command such as
``defectloop simulate`` drives the loop from the same process.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import httpx


class ThreadedServer:
    """uvicorn serving ``app`` on 127.0.0.1:``port`` in a daemon thread."""

    def __init__(self, app: Any, port: int) -> None:
        self.app, self.port = app, port
        self.url = f"http://127.0.0.1:{port}"
        self._server: Any = None

    def start(self, timeout_s: float = 20.0) -> ThreadedServer:
        import uvicorn

        self._server = uvicorn.Server(uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="warning"))
        threading.Thread(target=self._server.run, daemon=True, name=f"api:{self.port}").start()
        deadline = time.monotonic() + timeout_s
        while not self._server.started:
            if time.monotonic() > deadline:
                raise RuntimeError(f"the API did not start on {self.url} within {timeout_s:.0f} s")
            time.sleep(0.05)
        return self

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop serving; returns once the port no longer answers (requests sent now are lost)."""
        if self._server is None:
            return
        self._server.should_exit = True
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                httpx.get(f"{self.url}/health", timeout=0.5)
            except httpx.HTTPError:
                return
            time.sleep(0.1)

"""Loopback ports for the local Label Studio server: a free one, and the one a home last ran on
(taken again when free, so links printed before stay valid).
"""

from __future__ import annotations

import socket
import time
from pathlib import Path


def free_port() -> int:
    """A loopback port nothing is bound to at this moment (the system picks it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_is_free(port: int) -> bool:
    """Nothing listens on ``port`` (connections of a stopped server lingering in TIME_WAIT do
    not count: Label Studio's server binds with SO_REUSEADDR too)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def listening(port: int) -> bool:
    """Something accepts connections on loopback ``port``."""
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def reusable(port: int, wait_s: float = 10.0) -> bool:
    """``port`` can be bound now or within ``wait_s``: a server stopped a moment ago leaves
    its closing connections on the port for a while; a port something listens on is taken."""
    deadline = time.monotonic() + wait_s
    while not port_is_free(port):
        if listening(port) or time.monotonic() > deadline:
            return False
        time.sleep(0.25)
    return True


def remembered_port(home: Path) -> int | None:
    """The port the server of ``home`` last ran on (None: never started)."""
    try:
        return int((home / "port").read_text().strip())
    except (OSError, ValueError):
        return None


def remember_port(home: Path, port: int) -> None:
    """Record ``port`` as the one the server of ``home`` runs on (atomic)."""
    tmp = home / "port.tmp"
    tmp.write_text(f"{port}\n")
    tmp.replace(home / "port")

"""The local Label Studio server as `labelstudio.server` runs it: nothing leaves the machine,
and the port (with every link printed for it) survives a restart."""

from __future__ import annotations

import json
import socket
import subprocess
import time
from pathlib import Path

import httpx
from ls_support import LabelStudioServer

from labelstudio import server

SETTINGS_SCRIPT = """
import json, os, sys
import label_studio
sys.path.insert(0, label_studio.__path__[0])
os.environ["DJANGO_SETTINGS_MODULE"] = "core.settings.label_studio"
from django.conf import settings
print(json.dumps({k: getattr(settings, k) for k in
      ("SENTRY_DSN", "FRONTEND_SENTRY_DSN", "COLLECT_ANALYTICS", "LATEST_VERSION_CHECK", "FEATURE_FLAGS_OFFLINE")}))
"""


def test_telemetry_and_error_reporting_are_off(ls_server: LabelStudioServer, tmp_path: Path) -> None:
    """Label Studio's own settings, read in the environment the server runs with: no Sentry
    (server or browser), no analytics, no version check, feature flags from the package."""
    env = server.server_environment(ls_server.venv, tmp_path, ls_server.creds, ls_server.root)
    res = subprocess.run(
        [str(ls_server.venv / "bin" / "python"), "-c", SETTINGS_SCRIPT],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    got = json.loads(res.stdout.strip().splitlines()[-1])
    assert not got["SENTRY_DSN"] and not got["FRONTEND_SENTRY_DSN"], got
    assert (
        got["COLLECT_ANALYTICS"] is False
        and got["LATEST_VERSION_CHECK"] is False
        and got["FEATURE_FLAGS_OFFLINE"] is True
    )
    page = httpx.get(f"{ls_server.info.url}/user/login/", timeout=30).text
    assert "sentry" not in page.lower() and "googletagmanager" not in page


def test_the_port_survives_restarts_and_moves_only_when_taken(ls_server: LabelStudioServer, tmp_path: Path) -> None:
    home = tmp_path / "home"
    said: list[str] = []
    template = server.default_template_dir(ls_server.venv.parent)

    def start() -> server.ServerInfo:
        return server.start(home, document_root=ls_server.root, venv=ls_server.venv, template=template, say=said.append)

    first = start()
    try:
        assert httpx.get(f"{first.url}/health", timeout=5).status_code == 200
    finally:
        server.stop(home)
    again = start()  # the links printed for the first start still work
    try:
        assert again.port == first.port, said
        assert httpx.get(f"{again.url}/health", timeout=5).status_code == 200
    finally:
        server.stop(home)
    with socket.socket() as taken:  # someone else took the port meanwhile
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        for _ in range(100):  # once the stopped server's connections are closed
            try:
                taken.bind(("127.0.0.1", first.port))
                break
            except OSError:
                time.sleep(0.1)
        taken.listen()
        moved = start()
        try:
            assert moved.port != first.port and any(f"port {first.port}" in s and "taken" in s for s in said), said
        finally:
            server.stop(home)
    assert server.remembered_port(home) == moved.port

"""The local Label Studio server as `labelstudio.server` runs it: nothing leaves the machine,
and the port (with every link printed for it) survives a restart."""

from __future__ import annotations

import json
import subprocess
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
    res = subprocess.run([str(ls_server.venv / "bin" / "python"), "-c", SETTINGS_SCRIPT], env=env, cwd=tmp_path,
                         capture_output=True, text=True, timeout=120, check=False)
    assert res.returncode == 0, res.stderr[-2000:]
    got = json.loads(res.stdout.strip().splitlines()[-1])
    assert not got["SENTRY_DSN"] and not got["FRONTEND_SENTRY_DSN"], got
    assert got["COLLECT_ANALYTICS"] is False and got["LATEST_VERSION_CHECK"] is False and got["FEATURE_FLAGS_OFFLINE"] is True
    page = httpx.get(f"{ls_server.info.url}/user/login/", timeout=30).text
    assert "sentry" not in page.lower() and "googletagmanager" not in page

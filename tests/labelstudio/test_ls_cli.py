"""`defectloop labelstudio start / status / stop` on a data dir, as a user runs them."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
from ls_support import LabelStudioServer


def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "backend.cli", "labelstudio", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_start_status_stop(ls_server: LabelStudioServer, tmp_path: Path) -> None:
    data = tmp_path / "data"
    # seed the home from the migrated template, as the fixture does, so this takes seconds
    template = ls_server.venv.parent / f"labelstudio-template-{ls_server.venv.name.split('-')[1]}"
    shutil.copytree(template / "data", data / "labelstudio" / "data")
    shutil.copy2(template / "credentials.json", data / "labelstudio" / "credentials.json")
    env = {**os.environ, "DEFECTLOOP_DATA_DIR": str(data), "DEFECTLOOP_LABELSTUDIO_ENV": str(ls_server.venv)}

    assert _cli("status", env=env).returncode == 1
    no_root = _cli("start", env={**env, "DEFECTLOOP_IMPORT_ROOTS": "[]"})
    assert no_root.returncode == 2 and "--document-root" in no_root.stderr
    started = _cli("start", "--document-root", str(ls_server.root), env=env)
    try:
        assert started.returncode == 0, started.stderr
        assert "log in as admin@defectloop.local" in started.stdout
        url = started.stdout.split("runs at ", 1)[1].split()[0]
        assert httpx.get(f"{url}/health", timeout=5).status_code == 200
        st = _cli("status", env=env)
        assert st.returncode == 0 and url in st.stdout
    finally:
        stopped = _cli("stop", env=env)
    assert "stopped" in stopped.stdout
    assert _cli("status", env=env).returncode == 1

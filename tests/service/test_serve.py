"""`defectloop serve` as users start it: refuses without a token, serves with one."""

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_serve_refuses_to_start_without_a_token(tmp_path: Path) -> None:
    env = {**os.environ, "DEFECTLOOP_DATA_DIR": str(tmp_path)}
    env.pop("DEFECTLOOP_API_TOKEN", None)
    res = subprocess.run([sys.executable, "-m", "backend.cli", "serve"], env=env, capture_output=True, text=True, timeout=120)
    assert res.returncode == 2 and "DEFECTLOOP_API_TOKEN" in res.stderr


def test_serve_upgrades_the_database_and_answers(tmp_path: Path) -> None:
    port = _free_port()
    env = {**os.environ, "DEFECTLOOP_DATA_DIR": str(tmp_path), "DEFECTLOOP_API_TOKEN": "tok"}
    env.pop("DEFECTLOOP_DATABASE_URL", None)
    env.pop("DEFECTLOOP_REDIS_URL", None)
    proc = subprocess.Popen([sys.executable, "-m", "backend.cli", "serve", "--port", str(port)], env=env)
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                r = httpx.get(f"http://127.0.0.1:{port}/health", timeout=2)
                break
            except httpx.HTTPError:
                assert time.monotonic() < deadline and proc.poll() is None, "server did not come up"
                time.sleep(0.5)
        assert r.json() == {"status": "ok"}
        assert httpx.get(f"http://127.0.0.1:{port}/projects").status_code == 401
        ok = httpx.get(f"http://127.0.0.1:{port}/projects", headers={"Authorization": "Bearer tok"})
        assert ok.status_code == 200 and ok.json() == []
        assert (tmp_path / "defectloop.db").is_file()
    finally:
        proc.terminate()
        proc.wait(30)

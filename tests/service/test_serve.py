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
    res = subprocess.run(
        [sys.executable, "-m", "backend.cli", "serve"],
        env=env,
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 2 and "DEFECTLOOP_API_TOKEN" in res.stderr


def _serve(
    tmp_path: Path,
    token: str | None,
    *args: str,
    ready: str = "ok",
    env_extra: dict[str, str] | None = None,
) -> tuple[subprocess.Popen, int]:
    """Start `defectloop serve` on a free port and wait until /health answers with status ``ready``."""
    port = _free_port()
    env = {**os.environ, "DEFECTLOOP_DATA_DIR": str(tmp_path)}
    for var in ("DEFECTLOOP_DATABASE_URL", "DEFECTLOOP_REDIS_URL", "DEFECTLOOP_API_TOKEN"):
        env.pop(var, None)
    if token:
        env["DEFECTLOOP_API_TOKEN"] = token
    env.update(env_extra or {})
    proc = subprocess.Popen(
        [sys.executable, "-m", "backend.cli", "serve", "--port", str(port), *args],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 90
    while True:
        try:
            r = httpx.get(f"http://127.0.0.1:{port}/health", timeout=2)
            if r.json()["status"] != ready:  # answering, but its job worker has not reported yet
                raise httpx.HTTPError("no worker yet")
            return proc, port
        except httpx.HTTPError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                raise AssertionError(f"server did not come up: {proc.communicate()[1]}") from None
            time.sleep(0.5)


def _local_addresses() -> list[str]:
    """This machine's non-loopback IPv4 addresses (may be empty in a sandbox)."""
    try:
        out = subprocess.run(["hostname", "-I"], check=False, capture_output=True, text=True, timeout=5).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [a for a in out.split() if "." in a and not a.startswith("127.")]


def test_serve_dev_needs_no_token_and_binds_loopback_only(tmp_path: Path) -> None:
    proc, port = _serve(tmp_path, None, "--dev", "--host", "0.0.0.0")
    try:
        assert httpx.get(f"http://127.0.0.1:{port}/projects").status_code == 200  # no token asked
        for addr in _local_addresses():  # not reachable from the network
            try:
                httpx.get(f"http://{addr}:{port}/health", timeout=2)
            except httpx.HTTPError:
                continue
            raise AssertionError(f"--dev server answered on {addr}")
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    assert "binds to 127.0.0.1 instead of 0.0.0.0" in err


def _children(pid: int) -> list[int]:
    """Live child processes of ``pid``, whichever of its threads started them."""
    out = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            out += [int(c) for c in (task / "children").read_text().split()]
        except OSError:  # the thread ended meanwhile
            continue
    return out


def _gone(pid: int, within_s: float) -> bool:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            return True
        if state == "Z":
            return True
        time.sleep(0.2)
    return False


def test_serve_upgrades_the_database_and_answers(tmp_path: Path) -> None:
    proc, port = _serve(tmp_path, "tok")
    workers = _children(proc.pid)
    assert len(workers) == 1  # the embedded job worker
    try:
        assert httpx.get(f"http://127.0.0.1:{port}/projects").status_code == 401
        ok = httpx.get(f"http://127.0.0.1:{port}/projects", headers={"Authorization": "Bearer tok"})
        assert ok.status_code == 200 and ok.json() == []
        assert (tmp_path / "defectloop.db").is_file()
    finally:
        proc.terminate()
        proc.communicate(timeout=30)
    assert _gone(workers[0], 10), "the job worker outlived the server"


def _wait_for(predicate, within_s: float, what: str):
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.3)
    raise AssertionError(f"not within {within_s:.0f} s: {what}")


def _job_status(port: int, job_id: int) -> str:
    return httpx.get(f"http://127.0.0.1:{port}/jobs/{job_id}", headers={"Authorization": "Bearer tok"}).json()["status"]


def _queue_sync(port: int) -> int:
    """A job that any live worker finishes in a moment (it fails: the project has no Label Studio project)."""
    auth = {"Authorization": "Bearer tok"}
    pid = httpx.post(
        f"http://127.0.0.1:{port}/projects", json={"name": f"p{time.monotonic_ns()}"}, headers=auth, timeout=60
    ).json()["id"]  # the first write imports the services (seconds on a busy machine)
    r = httpx.post(f"http://127.0.0.1:{port}/projects/{pid}/labelstudio/sync", headers=auth, timeout=60)
    assert r.status_code == 202, r.text
    return r.json()["id"]


def test_serve_restarts_a_killed_worker_and_queued_jobs_then_run(tmp_path: Path) -> None:
    import signal

    proc, port = _serve(tmp_path, "tok")
    try:
        (first,) = _children(proc.pid)
        os.kill(first, signal.SIGKILL)
        job = _queue_sync(port)  # queued while no worker lives
        second = _wait_for(lambda: [c for c in _children(proc.pid) if c != first], 30, "a new worker process")
        assert len(second) == 1
        assert _wait_for(lambda: _job_status(port, job) in ("succeeded", "failed"), 60, "the queued job ran") is True
        health = httpx.get(f"http://127.0.0.1:{port}/health").json()
        assert health["status"] == "ok" and health["workers"] >= 1  # the killed one counts until its beat lapses
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    assert f"the job worker (pid {first}) exited with code -9" in err and "job worker restarted" in err


def test_health_is_degraded_without_a_worker_until_one_starts(tmp_path: Path) -> None:
    proc, port = _serve(tmp_path, "tok", "--no-workers", ready="degraded")
    worker = None
    try:
        job = _queue_sync(port)
        health = httpx.get(f"http://127.0.0.1:{port}/health").json()
        assert health["workers"] == 0 and health["jobs_queued"] == 1 and "1 queued job(s) wait" in health["detail"]
        time.sleep(2)
        assert _job_status(port, job) == "queued"
        cli_env = {**os.environ, "DEFECTLOOP_SERVER_URL": f"http://127.0.0.1:{port}", "DEFECTLOOP_API_TOKEN": "tok"}
        out = subprocess.run(
            [sys.executable, "-m", "backend.cli", "status", "1"],
            env=cli_env,
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        ).stdout
        assert "note: no job worker has reported" in out and "1 queued job(s) wait" in out
        env = {**os.environ, "DEFECTLOOP_DATA_DIR": str(tmp_path)}
        for var in ("DEFECTLOOP_DATABASE_URL", "DEFECTLOOP_REDIS_URL"):
            env.pop(var, None)
        worker = subprocess.Popen([sys.executable, "-m", "backend.cli", "worker"], env=env, stderr=subprocess.DEVNULL)
        _wait_for(lambda: _job_status(port, job) == "failed", 90, "the queued job ran once a worker started")
        assert httpx.get(f"http://127.0.0.1:{port}/health").json()["status"] == "ok"
        worker.terminate()
        worker.wait(30)
        # a worker that stops cleanly unregisters: degraded again at once
        assert httpx.get(f"http://127.0.0.1:{port}/health").json()["status"] == "degraded"
    finally:
        if worker is not None and worker.poll() is None:
            worker.kill()
        proc.terminate()
        proc.communicate(timeout=30)

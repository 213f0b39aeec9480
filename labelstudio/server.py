"""A local Label Studio server: its own virtual environment, data folder and process.

Label Studio pins Django and many other packages, so it never shares defectloop's
environment: ``ensure_environment`` (:mod:`labelstudio.environment`) builds a separate one
and the server runs as a child process with a clean environment, bound to 127.0.0.1 on a
port checked free first (:mod:`labelstudio.ports`). ``start`` / ``stop`` / ``status`` work on
a *home* folder:

    home/data/              Label Studio's base data dir (SQLite database, media)
    home/credentials.json   admin user, password and legacy API token (mode 0600)
    home/server.json        url, port, pid and document root of the running server
    home/port               the port it last ran on, taken again when free (links stay valid)
    home/server.log         the server's output

A home can be seeded from a *template* home that already holds a migrated database, which
turns the ~40 s first start into a few seconds (the test suite does this).

The environment's and the ports' public names are re-exported here, where callers have
always imported them.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from labelstudio.environment import READY_MARKER as READY_MARKER
from labelstudio.environment import VERSION as VERSION
from labelstudio.environment import ServerError as ServerError
from labelstudio.environment import default_environment_dir as default_environment_dir
from labelstudio.environment import ensure_environment as ensure_environment
from labelstudio.environment import executable as executable
from labelstudio.environment import file_lock
from labelstudio.ports import free_port as free_port
from labelstudio.ports import port_is_free, remember_port, reusable
from labelstudio.ports import remembered_port as remembered_port


@dataclass(frozen=True)
class Credentials:
    """The admin account defectloop creates; ``token`` is a legacy API key."""

    username: str
    password: str
    token: str


@dataclass(frozen=True)
class ServerInfo:
    """A running server as recorded in ``home/server.json``."""

    url: str
    port: int
    pid: int
    document_root: str


def default_template_dir(cache_dir: Path) -> Path:
    """Where the migrated template home (see :func:`prepare_template`) lives under ``cache_dir``."""
    return cache_dir / f"labelstudio-template-{VERSION}"


def _closed_port() -> int:
    """A loopback port nothing listens on: Label Studio's Redis setting points here so it
    runs webhooks and storage syncs in process instead of queueing them for an absent worker."""
    return free_port()


def load_credentials(home: Path) -> Credentials | None:
    path = home / "credentials.json"
    return Credentials(**json.loads(path.read_text())) if path.is_file() else None


def _ensure_credentials(home: Path) -> Credentials:
    found = load_credentials(home)
    if found:
        return found
    creds = Credentials(
        username="admin@defectloop.local", password=secrets.token_urlsafe(12), token=secrets.token_hex(20)
    )
    home.mkdir(parents=True, exist_ok=True)
    path = home / "credentials.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(asdict(creds), indent=1))
    tmp.chmod(0o600)
    tmp.replace(path)
    return creds


def server_environment(venv: Path, home: Path, creds: Credentials, document_root: Path) -> dict[str, str]:
    """The whole environment of the server process (nothing inherited: Label Studio reads
    plain ``HOST``, ``PORT``, ``DEBUG`` ... as settings)."""
    return {
        "PATH": f"{venv / 'bin'}:/usr/local/bin:/usr/bin:/bin",
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "LABEL_STUDIO_BASE_DATA_DIR": str(home / "data"),
        "LABEL_STUDIO_USERNAME": creds.username,
        "LABEL_STUDIO_PASSWORD": creds.password,
        "LABEL_STUDIO_USER_TOKEN": creds.token,
        "LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN": "true",
        "LABEL_STUDIO_DISABLE_SIGNUP_WITHOUT_LINK": "true",
        # nothing leaves the machine: no version check, analytics or error reports (server
        # and browser Sentry; an empty DSN turns each off), feature flags from the package
        "LATEST_VERSION_CHECK": "false",
        "COLLECT_ANALYTICS": "false",
        "SENTRY_DSN": "",
        "FRONTEND_SENTRY_DSN": "",
        "FEATURE_FLAGS_OFFLINE": "true",
        "LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED": "true",
        "LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT": str(document_root),
        # defectloop's webhook receiver and ML backend run on loopback
        "SSRF_PROTECTION_ENABLED": "false",
        "ML_BLOCK_LOCAL_IP": "false",
        "REDIS_LOCATION": f"127.0.0.1:{_closed_port()}",
        "PYTHONUNBUFFERED": "1",
    }


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie child is not alive, unless only its main thread ended (the others still serve)
        with open(f"/proc/{pid}/status") as f:
            fields = dict(line.split(":", 1) for line in f if ":" in line)
        return fields["State"].split()[0] != "Z" or int(fields["Threads"]) > 1
    except (OSError, KeyError, ValueError):
        return True


def _healthy(url: str, timeout: float = 2.0) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(f"{url}/health", timeout=timeout) as r:
            return r.status == 200
    except OSError:
        return False


def recorded(home: Path) -> ServerInfo | None:
    """The server recorded in ``home/server.json`` (running or not), or None."""
    path = home / "server.json"
    return ServerInfo(**json.loads(path.read_text())) if path.is_file() else None


def status(home: Path) -> ServerInfo | None:
    """The running server of ``home``, or None when none runs (stale records are removed)."""
    info = recorded(home)
    if info is None:
        return None
    path = home / "server.json"
    if _pid_alive(info.pid) and _healthy(info.url):
        return info
    if not _pid_alive(info.pid):
        path.unlink(missing_ok=True)
    return None


def _log_tail(home: Path, n: int = 3000) -> str:
    try:
        return (home / "server.log").read_text(errors="replace")[-n:]
    except OSError:
        return ""


def start(
    home: Path,
    *,
    document_root: Path,
    venv: Path,
    port: int | None = None,
    template: Path | None = None,
    timeout_s: float = 240.0,
    say: Callable[[str], None] = lambda _: None,
) -> ServerInfo:
    """Start Label Studio for ``home`` (idempotent: a healthy running server is returned as is).

    ``document_root``: the folder whose files Label Studio may serve as local files (the
    image import root). ``port``: None takes the port ``home`` last ran on when it is free
    (so links printed before stay valid), else a free one; the port used is remembered.
    ``template``: a home with a migrated database and credentials to copy when ``home`` has
    none. Raises ServerError with the server's log tail on failure.
    """
    home = home.resolve()
    document_root = document_root.resolve()
    running = status(home)
    if running:
        if Path(running.document_root) != document_root:
            raise ServerError(
                f"Label Studio already runs for {home} with document root {running.document_root}; "
                f"stop it first to serve {document_root}"
            )
        return running
    if not document_root.is_dir():
        raise ServerError(f"document root {document_root} is not a folder")
    if port is not None and not port_is_free(port):
        raise ServerError(f"port {port} on 127.0.0.1 is taken; choose another with --port")
    exe = ensure_environment(venv, say)
    if template is not None and not (home / "data").exists() and (template / "data").is_dir():
        home.mkdir(parents=True, exist_ok=True)
        shutil.copytree(template / "data", home / "data")
        shutil.copy2(template / "credentials.json", home / "credentials.json")
    creds = _ensure_credentials(home)
    if port is None:
        last = remembered_port(home)
        if last is not None and reusable(last):
            port = last
        else:
            port = free_port()
            if last is not None:
                say(
                    f"port {last} (where Label Studio ran before) is taken: it moves to {port}, so older links "
                    f"to it no longer work"
                )
    (home / "data").mkdir(parents=True, exist_ok=True)
    first = not (home / "data" / "label_studio.sqlite3").exists()
    say(
        f"starting Label Studio {VERSION} on 127.0.0.1:{port}"
        + (" (first start: database setup, about a minute)" if first else "")
    )
    log = (home / "server.log").open("ab")
    proc = subprocess.Popen(
        [str(exe), "start", "--no-browser", "--internal-host", "127.0.0.1", "--port", str(port)],
        env=server_environment(venv, home, creds, document_root),
        cwd=home,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    log.close()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ServerError(f"Label Studio exited with code {proc.returncode} while starting:\n{_log_tail(home)}")
        if _healthy(url, timeout=1.0):
            info = ServerInfo(url=url, port=port, pid=proc.pid, document_root=str(document_root))
            remember_port(home, port)
            tmp = home / "server.json.tmp"
            tmp.write_text(json.dumps(asdict(info)))
            tmp.replace(home / "server.json")
            return info
        time.sleep(0.5)
    _terminate(proc.pid)
    raise ServerError(f"Label Studio did not answer on {url} within {timeout_s:.0f} s:\n{_log_tail(home)}")


def _terminate(pid: int, grace_s: float = 15.0) -> None:
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline and _pid_alive(pid):
        try:  # reap it when it is our own child
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass
        time.sleep(0.2)
    if _pid_alive(pid):
        try:
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def stop(home: Path) -> bool:
    """Stop the server of ``home``; False when none was running."""
    info = recorded(home.resolve())
    if info is None:
        return False
    path = home.resolve() / "server.json"
    was_running = _pid_alive(info.pid)
    _terminate(info.pid)
    path.unlink(missing_ok=True)
    return was_running


def prepare_template(template: Path, *, venv: Path, say: Callable[[str], None] = lambda _: None) -> Path:
    """A migrated, stopped home to copy from (built once, under a lock)."""
    with file_lock(template.with_name(template.name + ".lock")):
        if (template / READY_MARKER).is_file():
            return template
        shutil.rmtree(template, ignore_errors=True)
        scratch = template.parent / f"{template.name}.building"
        shutil.rmtree(scratch, ignore_errors=True)
        scratch.mkdir(parents=True)
        say(f"setting up Label Studio {VERSION}'s database once (a first start on a scratch port, about a minute)")
        start(scratch, document_root=scratch, venv=venv, say=lambda _: None)
        stop(scratch)
        for name in ("server.log", "server.json", "port"):
            (scratch / name).unlink(missing_ok=True)
        (scratch / READY_MARKER).write_text(VERSION)
        scratch.rename(template)
        return template

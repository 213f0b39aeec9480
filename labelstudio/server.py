"""A local Label Studio server: its own virtual environment, data folder and process.

Label Studio pins Django and many other packages, so it never shares defectloop's
environment: ``ensure_environment`` builds a separate one (uv when available, else pip)
and the server runs as a child process with a clean environment, bound to 127.0.0.1 on a
port checked free first. ``start`` / ``stop`` / ``status`` work on a *home* folder:

    home/data/              Label Studio's base data dir (SQLite database, media)
    home/credentials.json   admin user, password and legacy API token (mode 0600)
    home/server.json        url, port, pid and document root of the running server
    home/port               the port it last ran on, taken again when free (links stay valid)
    home/server.log         the server's output

A home can be seeded from a *template* home that already holds a migrated database, which
turns the ~40 s first start into a few seconds (the test suite does this).
"""

from __future__ import annotations

import fcntl
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

VERSION = "1.23.2"
READY_MARKER = ".defectloop-ready"


class ServerError(RuntimeError):
    """Label Studio could not be installed, started or reached; the message says why."""


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


def default_environment_dir(cache_dir: Path) -> Path:
    """Where the Label Studio environment for this Python lives under ``cache_dir``."""
    return cache_dir / f"labelstudio-{VERSION}-py{sys.version_info.major}.{sys.version_info.minor}"


def default_template_dir(cache_dir: Path) -> Path:
    """Where the migrated template home (see :func:`prepare_template`) lives under ``cache_dir``."""
    return cache_dir / f"labelstudio-template-{VERSION}"


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive inter-process lock on ``path`` (several test workers may start at once)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _uv() -> str | None:
    beside = Path(sys.executable).parent / "uv"
    return str(beside) if beside.is_file() else shutil.which("uv")


def executable(venv: Path) -> Path:
    return venv / "bin" / "label-studio"


def ensure_environment(venv: Path, say: Callable[[str], None] = lambda _: None) -> Path:
    """Install Label Studio ``VERSION`` into ``venv`` unless it is already there; return its executable.

    A half-built environment (interrupted install) is removed and rebuilt: the ready
    marker is written only after the installed version has been checked.
    """
    with _locked(venv.with_name(venv.name + ".lock")):
        if (venv / READY_MARKER).is_file() and executable(venv).is_file():
            return executable(venv)
        shutil.rmtree(venv, ignore_errors=True)
        uv = _uv()
        say(
            f"installing Label Studio {VERSION} into {venv} "
            f"({'uv' if uv else 'pip'}; about {'15 s' if uv else '2 min'})"
        )
        # the installers inherit the caller's environment: package index, proxy and CA settings
        try:
            if uv:
                subprocess.run(
                    [uv, "venv", "-q", "--python", sys.executable, str(venv)],
                    check=True,
                    capture_output=True,
                    text=True,
                )
                subprocess.run(
                    [
                        uv,
                        "pip",
                        "install",
                        "-q",
                        "--system-certs",
                        "--compile-bytecode",
                        "--python",
                        str(venv / "bin" / "python"),
                        f"label-studio=={VERSION}",
                    ],
                    check=True,
                    capture_output=True,
                    text=True,
                )
            else:
                subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, capture_output=True, text=True)
                subprocess.run(
                    [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", f"label-studio=={VERSION}"],
                    check=True,
                    capture_output=True,
                    text=True,
                )
                subprocess.run(
                    [str(venv / "bin" / "python"), "-m", "compileall", "-q", str(venv / "lib")],
                    check=False,
                    capture_output=True,
                )
        except subprocess.CalledProcessError as e:
            shutil.rmtree(venv, ignore_errors=True)
            raise ServerError(
                f"installing label-studio=={VERSION} failed: {(e.stderr or '').strip()[-2000:]}"
            ) from None
        # `label-studio --version` would start a server: read the version from the package
        got = subprocess.run(
            [str(venv / "bin" / "python"), "-c", "import label_studio; print(label_studio.__version__)"],
            check=False,
            capture_output=True,
            text=True,
        ).stdout.strip()
        if got != VERSION:
            shutil.rmtree(venv, ignore_errors=True)
            raise ServerError(f"the Label Studio environment holds version {got!r}, expected {VERSION}")
        (venv / READY_MARKER).write_text(VERSION)
        return executable(venv)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _port_is_free(port: int) -> bool:
    """Nothing listens on ``port`` (connections of a stopped server lingering in TIME_WAIT do
    not count: Label Studio's server binds with SO_REUSEADDR too)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def _reusable(port: int, wait_s: float = 10.0) -> bool:
    """``port`` can be bound now or within ``wait_s``: a server stopped a moment ago leaves
    its closing connections on the port for a while; a port something listens on is taken."""
    deadline = time.monotonic() + wait_s
    while not _port_is_free(port):
        if _listening(port) or time.monotonic() > deadline:
            return False
        time.sleep(0.25)
    return True


def remembered_port(home: Path) -> int | None:
    """The port the server of ``home`` last ran on (None: never started)."""
    try:
        return int((home / "port").read_text().strip())
    except (OSError, ValueError):
        return None


def _remember_port(home: Path, port: int) -> None:
    tmp = home / "port.tmp"
    tmp.write_text(f"{port}\n")
    tmp.replace(home / "port")


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
    if port is not None and not _port_is_free(port):
        raise ServerError(f"port {port} on 127.0.0.1 is taken; choose another with --port")
    exe = ensure_environment(venv, say)
    if template is not None and not (home / "data").exists() and (template / "data").is_dir():
        home.mkdir(parents=True, exist_ok=True)
        shutil.copytree(template / "data", home / "data")
        shutil.copy2(template / "credentials.json", home / "credentials.json")
    creds = _ensure_credentials(home)
    if port is None:
        last = remembered_port(home)
        if last is not None and _reusable(last):
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
            _remember_port(home, port)
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
    with _locked(template.with_name(template.name + ".lock")):
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

"""A study's surroundings: the Label Studio its annotator works in and the defectloop
service it drives, started as a user starts them and stopped when the study ends.

The service is the real ``defectloop serve`` in a child process, with its embedded job
worker, on a free port of 127.0.0.1, a token of its own and the study's SQLite database
(``out/service``); the study reaches it only through :class:`backend.client.HttpClient`.
"""

from __future__ import annotations

import ctypes
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from backend.client import ClientError, HttpClient
from backend.settings import Settings
from labelstudio import server
from labelstudio.client import Studio
from simulator.config import SimConfig
from simulator.errors import SimulationError

Say = Callable[[str], None]

#: Settings of the user's environment the study's service must not take over: its jobs run
#: in its own embedded worker (not on RQ), and it is the server, not a client of one.
_NOT_INHERITED = ("DEFECTLOOP_REDIS_URL", "DEFECTLOOP_SERVER_URL")


@dataclass(frozen=True)
class Environment:
    """The study's service (``client``, at ``url``) and the Label Studio it talks to (``studio``,
    where the annotator answers). ``import_dir``: a folder under the service's import roots
    where the study writes the labels CSV it imports."""

    client: HttpClient
    studio: Studio
    url: str
    import_dir: Path


@contextmanager
def environment(cfg: SimConfig, data_root: Path, say: Say) -> Iterator[Environment]:
    """Start (or connect to) Label Studio and serve the API on a free port until the block ends.

    A Label Studio configured with DEFECTLOOP_LABELSTUDIO_URL/TOKEN is used as is; otherwise
    one is started for the study under ``out/labelstudio`` (serving ``data_root``) and stopped
    afterwards. The service is stopped (its worker too) whatever ends the block.
    """
    base = Settings()
    home = (cfg.out / "labelstudio").resolve()
    started = False
    if base.labelstudio_url:
        if not base.labelstudio_token:
            raise SimulationError("DEFECTLOOP_LABELSTUDIO_URL is set but DEFECTLOOP_LABELSTUDIO_TOKEN is not")
        ls_url, ls_token, doc_root = base.labelstudio_url, base.labelstudio_token, base.labelstudio_document_root
    else:
        venv = base.labelstudio_env
        template = server.prepare_template(server.default_template_dir(venv.parent), venv=venv, say=say)
        info = server.start(home, document_root=data_root, venv=venv, template=template, say=say)
        started = True
        creds = server.load_credentials(home)
        if creds is None:
            server.stop(home)
            raise SimulationError(f"Label Studio in {home} has no credentials.json: remove {home} to start anew")
        ls_url, ls_token, doc_root = info.url, creds.token, data_root
    try:
        service_dir = (cfg.out / "service").resolve()
        import_dir = service_dir / "import"
        import_dir.mkdir(parents=True, exist_ok=True)
        port = server.free_port()
        token = secrets.token_urlsafe(24)
        url = f"http://127.0.0.1:{port}"
        env = {k: v for k, v in os.environ.items() if k not in _NOT_INHERITED}
        env.pop("DEFECTLOOP_LABELSTUDIO_DOCUMENT_ROOT", None)
        env.update(
            {
                "DEFECTLOOP_DATA_DIR": str(service_dir),
                "DEFECTLOOP_DATABASE_URL": f"sqlite:///{service_dir / 'defectloop.db'}",
                "DEFECTLOOP_API_TOKEN": token,
                "DEFECTLOOP_IMPORT_ROOTS": json.dumps([str(data_root), str(import_dir)]),
                "DEFECTLOOP_LABELSTUDIO_URL": ls_url,
                "DEFECTLOOP_LABELSTUDIO_TOKEN": ls_token,
                "DEFECTLOOP_PUBLIC_URL": url,
                "DEFECTLOOP_DEVICE": cfg.device,
                **({"DEFECTLOOP_LABELSTUDIO_DOCUMENT_ROOT": str(doc_root)} if doc_root else {}),
            }
        )
        client = HttpClient(url, token)
        proc = _serve(port, env, service_dir / "serve.log")
        try:
            _wait_until_up(client, proc, url, service_dir / "serve.log")
            yield Environment(client, Studio(ls_url, ls_token), url, import_dir)
        finally:
            _stop(proc)
    finally:
        if started:
            server.stop(home)


def _dies_with_parent() -> Callable[[], None] | None:
    """A ``preexec_fn`` that has Linux send the child SIGTERM when this process dies (even by
    SIGKILL), so no service outlives its study; None where that is unavailable. The C library
    is loaded here, so the child only makes the call."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
    except OSError:
        return None
    pr_set_pdeathsig = 1

    def set_death_signal() -> None:
        libc.prctl(pr_set_pdeathsig, signal.SIGTERM)

    return set_death_signal


def _serve(port: int, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """``defectloop serve --port PORT`` with ``env``, its output appended to ``log``."""
    with log.open("ab") as fh:
        return subprocess.Popen(
            [sys.executable, "-m", "backend.cli", "serve", "--port", str(port)],
            env=env,
            stdout=fh,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            preexec_fn=_dies_with_parent(),  # only a prctl call in the child
        )


def _wait_until_up(
    client: HttpClient, proc: subprocess.Popen[bytes], url: str, log: Path, timeout_s: float = 180.0
) -> None:
    """Return once the service answers ``/health``; SimulationError with its log's tail when it
    exits or stays silent for ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            client.health()
            return
        except ClientError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            tail = log.read_text(errors="replace")[-3000:] if log.is_file() else ""
            raise SimulationError(f"the study's service did not start on {url} (log {log}):\n{tail}")
        time.sleep(0.5)


def _stop(proc: subprocess.Popen[bytes], grace_s: float = 60.0) -> None:
    """Stop the service: SIGTERM (it stops its worker, whose running job ends failed), then
    SIGKILL after ``grace_s``."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(grace_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

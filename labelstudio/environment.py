"""Label Studio's own virtual environment: built once per version and Python, never shared.

Label Studio pins Django and many other packages, so it never shares defectloop's
environment: :func:`ensure_environment` builds a separate one (uv when available, else pip)
under a lock, and marks it ready only once the installed version has been checked.
"""

from __future__ import annotations

import fcntl
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

VERSION = "1.23.2"
READY_MARKER = ".defectloop-ready"


class ServerError(RuntimeError):
    """Label Studio could not be installed, started or reached; the message says why."""


def default_environment_dir(cache_dir: Path) -> Path:
    """Where the Label Studio environment for this Python lives under ``cache_dir``."""
    return cache_dir / f"labelstudio-{VERSION}-py{sys.version_info.major}.{sys.version_info.minor}"


@contextmanager
def file_lock(path: Path) -> Iterator[None]:
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
    """The ``label-studio`` command of the environment ``venv``."""
    return venv / "bin" / "label-studio"


def ensure_environment(venv: Path, say: Callable[[str], None] = lambda _: None) -> Path:
    """Install Label Studio ``VERSION`` into ``venv`` unless it is already there; return its executable.

    A half-built environment (interrupted install) is removed and rebuilt: the ready
    marker is written only after the installed version has been checked.
    """
    with file_lock(venv.with_name(venv.name + ".lock")):
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

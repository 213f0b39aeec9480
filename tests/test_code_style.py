"""The code is formatted by `ruff format` and passes the chosen lint rules (pyproject's
[tool.ruff.lint]: pycodestyle at 120 columns, pyflakes, sorted imports, bugbear, pyupgrade)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _ruff(*args: str) -> subprocess.CompletedProcess:
    exe = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")
    assert exe, "ruff is not installed (it is in the [test] extra)"
    return subprocess.run([exe, *args], cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)


def test_code_is_formatted() -> None:
    res = _ruff("format", "--check", ".")
    assert res.returncode == 0, res.stdout + res.stderr


def test_code_passes_the_lint_rules() -> None:
    res = _ruff("check", ".")
    assert res.returncode == 0, res.stdout + res.stderr

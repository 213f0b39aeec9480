"""The whole tree type-checks: mypy on every package reports nothing."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CLEAN = ["ml", "labelstudio", "backend", "simulator", "migrations"]


def test_clean_modules_type_check() -> None:
    exe = shutil.which("mypy", path=str(Path(sys.executable).parent)) or shutil.which("mypy")
    assert exe, "mypy is not installed (it is in the [test] extra)"
    res = subprocess.run(
        [exe, *CLEAN, "--ignore-missing-imports", "--follow-imports=silent", "--no-incremental"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert res.returncode == 0, res.stdout + res.stderr

"""ml stays pure: importing it pulls in no web, database or Label Studio code."""

import json
import subprocess
import sys

FORBIDDEN = ("backend", "labelstudio", "label_studio_sdk", "fastapi", "sqlalchemy", "redis")


def test_ml_imports_nothing_from_outer_layers() -> None:
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    modules = sorted(
        ".".join(p.relative_to(root).with_suffix("").parts) for p in (root / "ml").rglob("*.py") if p.name != "__init__.py"
    )
    code = f"import json, sys; [__import__(m) for m in {modules!r}]; print(json.dumps(sorted(sys.modules)))"
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = json.loads(res.stdout)
    bad = [m for m in loaded if m.split(".")[0] in FORBIDDEN]
    assert not bad, bad


def test_ml_never_reads_the_environment() -> None:
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "ml"
    offenders = [p.name for p in root.rglob("*.py") if "os.environ" in p.read_text() or "getenv" in p.read_text()]
    assert not offenders

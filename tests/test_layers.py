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


def test_routes_never_touch_ml_and_labelstudio_never_imports_ml() -> None:
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    for folder, banned in ((root / "backend" / "api" / "routes", ("from ml", "import ml")), (root / "labelstudio", ("from ml", "import ml"))):
        for p in folder.rglob("*.py"):
            lines = [ln.strip() for ln in p.read_text().splitlines()]
            assert not [ln for ln in lines if ln.startswith(banned)], p


def test_only_settings_reads_the_environment() -> None:
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "backend"
    reads = re.compile(r"os\.getenv|os\.environ\.get|os\.environ\[[^\]]+\](?!\s*=)")
    offenders = [p.name for p in root.rglob("*.py") if p.name != "settings.py" and reads.search(p.read_text())]
    assert not offenders


def test_only_labelstudio_imports_the_sdk() -> None:
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    offenders = [
        str(p.relative_to(root))
        for folder in ("ml", "backend", "migrations")
        for p in (root / folder).rglob("*.py")
        if "label_studio_sdk" in p.read_text()
    ]
    assert not offenders

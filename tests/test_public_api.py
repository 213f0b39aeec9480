"""ml's public API (``from ml import ...``): every name resolves to its home module's object,
the type checkers' imports and the lazy loader's table agree, and ``import ml`` stays cheap."""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import ml

ROOT = Path(__file__).resolve().parents[1]


def _type_checking_imports() -> dict[str, tuple[str, str]]:
    """Public name -> (module, attribute) as imported under ``if TYPE_CHECKING:`` in ml/__init__.py."""
    tree = ast.parse((ROOT / "ml" / "__init__.py").read_text())
    block = next(n for n in tree.body if isinstance(n, ast.If) and ast.unparse(n.test) == "TYPE_CHECKING")
    found: dict[str, tuple[str, str]] = {}
    for node in block.body:
        assert isinstance(node, ast.ImportFrom) and node.module, ast.unparse(node)
        for alias in node.names:
            found[alias.asname or alias.name] = (node.module, alias.name)
    return found


def test_all_the_loader_and_the_type_checking_imports_name_the_same_objects() -> None:
    assert len(ml.__all__) == len(set(ml.__all__))
    assert set(ml.__all__) == set(ml._HOMES)
    assert _type_checking_imports() == ml._HOMES


def test_every_public_name_is_its_home_modules_object() -> None:
    for name, (module, attribute) in ml._HOMES.items():
        assert getattr(ml, name) is getattr(importlib.import_module(module), attribute), name


def test_unknown_names_are_refused() -> None:
    res = subprocess.run(
        [sys.executable, "-c", "from ml import no_such_name"], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert res.returncode != 0 and "cannot import name 'no_such_name'" in res.stderr


def _fresh(code: str) -> str:
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    return res.stdout.strip()


def test_import_ml_loads_neither_torch_nor_numpy() -> None:
    """The CLI imports ml at startup; torch (seconds) comes in with the first name that needs it."""
    assert _fresh("import sys, ml; print(sorted({'torch', 'numpy', 'timm', 'cv2'} & set(sys.modules)))") == "[]"
    assert _fresh("import sys; from ml import Sample, DataError; print('torch' in sys.modules)") == "False"


def test_the_service_and_the_command_line_start_without_torch() -> None:
    """The API process and `defectloop --help` import their modules at startup; torch loads only
    in the code that trains or predicts (a job, a command that runs a model)."""
    code = "import sys, backend.api.app, backend.cli.app; print('torch' in sys.modules)"
    assert _fresh(code) == "False"


def test_evaluate_model_is_the_function_whichever_is_imported_first() -> None:
    """``ml.evaluate`` is the submodule; the function is exported as ``evaluate_model``."""
    out = _fresh("import ml.evaluate; from ml import evaluate_model; print(evaluate_model is ml.evaluate.evaluate)")
    assert out == "True"

"""Every setting is documented in docs/settings.md, and every documented one exists."""

import re
from pathlib import Path

from backend.settings import Settings


def test_settings_are_documented() -> None:
    doc = (Path(__file__).resolve().parents[2] / "docs" / "settings.md").read_text()
    documented = set(re.findall(r"`DEFECTLOOP_([A-Z0-9_]+)`", doc))
    actual = {name.upper() for name in Settings.model_fields}
    assert documented == actual

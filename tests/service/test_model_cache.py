"""The service keeps one loaded model version at a time, and a version's click head once."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from backend.services.labelstudio_link import proposals


@dataclass
class _Version:
    id: int
    artifact_sha256: str
    artifact_path: str = "/models/v"


class _Predictor:
    def __init__(self) -> None:
        self.click_head: Any = object()


@pytest.fixture
def loads(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """Fresh caches, and counts of what was loaded from disk."""
    import ml

    counts = {"model": 0, "head": 0}

    class _Loaded:
        def __init__(self) -> None:
            counts["model"] += 1
            self.predictor = _Predictor()

    def head_of(path: Path) -> object:
        counts["head"] += 1
        return object()

    monkeypatch.setattr(ml, "load_model", lambda path, device: _Loaded(), raising=False)
    monkeypatch.setattr(ml, "click_head_of", head_of, raising=False)
    monkeypatch.setattr(proposals, "_PREDICTORS", proposals.VersionCache())
    monkeypatch.setattr(proposals, "_CLICK_HEADS", proposals.VersionCache())
    return counts


def test_a_head_comes_from_the_loaded_predictor(loads: dict[str, int]) -> None:
    mv: Any = _Version(1, "a")
    predictor = proposals.cached_predictor(mv, "cpu")
    assert proposals.cached_click_head(mv) is predictor.click_head
    assert proposals.cached_predictor(mv, "cpu") is predictor
    assert loads == {"model": 1, "head": 0}


def test_a_predictor_loaded_after_its_head_keeps_that_head(loads: dict[str, int]) -> None:
    mv: Any = _Version(1, "a")
    head = proposals.cached_click_head(mv)
    assert proposals.cached_predictor(mv, "cpu").click_head is head
    assert loads == {"model": 1, "head": 1}


def test_another_version_or_artifact_is_loaded_again(loads: dict[str, int]) -> None:
    first = proposals.cached_predictor(_Version(1, "a"), "cpu")  # type: ignore[arg-type]
    # the same id with another artifact (another database's version 1) is another model
    other: Any = _Version(1, "b")
    assert proposals.cached_predictor(other, "cpu") is not first
    assert proposals.cached_click_head(other) is not first.click_head
    assert loads == {"model": 2, "head": 0}

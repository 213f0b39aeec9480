"""Eight clients writing labels, uploads and webhooks at once against a real `serve` (with its
embedded worker): every request succeeds and /health answers throughout (SQLite and
PostgreSQL). Latency is measured by bench/concurrency.py, not asserted here."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"


@pytest.fixture
def load(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.syspath_prepend(str(BENCH))
    import concurrency

    yield concurrency
    sys.modules.pop("concurrency", None)


def test_eight_concurrent_clients_all_succeed_and_health_answers(load, db_url: str, tmp_path: Path) -> None:
    if db_url.startswith("sqlite"):
        db_url = f"sqlite:///{tmp_path / 'data' / 'defectloop.db'}"
    pid, images, tasks = load.prepare_database(db_url, tmp_path / "images")
    with load.serve(db_url, tmp_path / "data", load.free_port()) as base:
        report = load.run_load(base, pid, images, tasks, clients=8, requests=144)
    assert report.requests == 144
    assert report.errors == 0, report.error_samples
    assert report.health_checks > 0 and report.health_failures == 0

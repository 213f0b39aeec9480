"""The simulator's pieces that need no service: the import CSV it hands the service, how it
tells a lost pool scoring from chunks still to come, and how it waits for a job."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ml.data import Sample, read_dataset
from simulator.errors import SimulationError
from simulator.projects import pool_scoring_lost, wait_for_job, write_import_csv


def _job(i: int, kind: str, status: str, created: str = "2026-01-01T10:00:00", finished: str | None = None) -> dict:
    return {"id": i, "kind": kind, "status": status, "created_at": created, "finished_at": finished, "message": ""}


def test_the_import_csv_reads_back_as_the_test_split_then_the_pool(tmp_path: Path) -> None:
    data = tmp_path / "data"
    (data / "masks").mkdir(parents=True)
    test = [
        Sample(image=data / "t0.png", label=0, split="test"),
        Sample(data / "t1.png", 1, data / "masks/t1.png", True, "test"),
    ]
    pool = [Sample(image=data / "p0.png", label=0, split="train"), Sample(data / "p1.png", 1, None, False, "val")]
    path = tmp_path / "service" / "import" / "labels.csv"
    write_import_csv(path, test, pool)
    back = read_dataset(path).samples
    assert [(s.image, s.label, s.mask, s.has_mask, s.split) for s in back] == [
        (s.image.resolve(), s.label, s.mask.resolve() if s.mask else None, s.has_mask, s.split) for s in test + pool
    ]


def test_a_lost_pool_scoring_is_told_from_chunks_that_ran_later() -> None:
    trained = _job(1, "train", "succeeded")
    interrupted = _job(2, "predict", "failed", finished="2026-01-01T10:05:00")
    assert not pool_scoring_lost([trained, _job(2, "predict", "succeeded")])
    assert pool_scoring_lost([trained, interrupted])
    # a second chunk queued with the first one ran afterwards: the first one's images are still unscored
    assert pool_scoring_lost([trained, interrupted, _job(3, "predict", "succeeded")])
    # queued again after the failure: nothing is lost
    assert not pool_scoring_lost([trained, interrupted, _job(4, "predict", "succeeded", created="2026-01-01T10:06:00")])
    # a failure before the newest training does not count
    assert not pool_scoring_lost([interrupted, _job(5, "train", "succeeded")])
    assert pool_scoring_lost([trained, _job(2, "predict", "cancelled")])  # no end time recorded


class _Jobs:
    """The client's job seams: each job's states in turn, and the project's jobs."""

    def __init__(self, states: list[dict[str, Any]], project: list[dict[str, Any]]) -> None:
        self.states, self.project = iter(states), project

    def job(self, _job_id: int) -> dict[str, Any]:
        return next(self.states)

    def jobs(self, _project_id: int, limit: int = 50) -> list[dict[str, Any]]:
        return self.project


def test_waiting_for_a_job_names_what_failed() -> None:
    done = _job(7, "train", "succeeded")
    assert wait_for_job(_Jobs([_job(7, "train", "running"), done], [done]), 1, 7, "x", poll_s=0) == done
    failed = {**_job(7, "train", "failed"), "message": "failed: worker lost", "error": "no heartbeat"}
    with pytest.raises(SimulationError, match="round 2: job 7 failed: failed: worker lost"):
        wait_for_job(_Jobs([failed], []), 1, 7, "round 2", poll_s=0)
    scoring = {**_job(8, "predict", "failed"), "message": "unreadable"}
    with pytest.raises(SimulationError, match="job 8 \\(predict, queued by job 7\\) failed"):
        wait_for_job(_Jobs([done], [scoring, done]), 1, 7, "bootstrap", poll_s=0)

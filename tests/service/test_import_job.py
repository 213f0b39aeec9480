"""A folder import queued as a job: checked before it is queued, run by a worker with
progress, cancellable between chunks, and queued again after a cancel it ends with the project
one uninterrupted import leaves."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select, update

from backend.api.app import create_app
from backend.db.engine import read_session_factory, session_factory
from backend.db.tables import Image, Job, JobKind, JobStatus
from backend.handlers import job_handlers
from backend.jobs import runner
from backend.jobs.runner import run_here
from backend.services import images as svc
from backend.services import import_job
from backend.settings import Settings

TOKEN = "t0ken"


@pytest.fixture
def setup(migrated: Engine, tmp_path: Path) -> tuple[TestClient, Settings]:
    settings = Settings(data_dir=tmp_path / "data", api_token=TOKEN, import_roots=[tmp_path / "roots"])
    c = TestClient(create_app(settings, engine=migrated))
    c.headers["Authorization"] = f"Bearer {TOKEN}"
    return c, settings


def _folder(root: Path) -> Path:
    """Eight decodable images (one a byte copy of another) and one broken file."""
    folder = root / "roots" / "line"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(7):
        cv2.imwrite(str(folder / f"p{i}.png"), rng.integers(0, 255, (12, 16, 3), dtype=np.uint8))
    (folder / "p7_same_as_p1.png").write_bytes((folder / "p1.png").read_bytes())
    (folder / "p8_broken.png").write_text("not an image")
    return folder


def _project(c: TestClient, name: str) -> int:
    r = c.post("/projects", json={"name": name})
    assert r.status_code == 201, r.text
    return int(r.json()["id"])


def _stored(engine: Engine, project_id: int) -> list[tuple[str, str, str]]:
    with read_session_factory(engine)() as s:
        rows = s.execute(
            select(Image.uri, Image.sha256, Image.split).where(Image.project_id == project_id).order_by(Image.id)
        ).all()
    return [(Path(u).name, h, str(sp)) for u, h, sp in rows]


def _run(job_id: int, engine: Engine, settings: Settings) -> dict:
    run_here(job_id, session_factory(engine), settings, job_handlers())
    with read_session_factory(engine)() as s:
        job = s.get_one(Job, job_id)
        return {"status": job.status, "progress": job.progress, "message": job.message, "result": job.result}


def test_an_import_job_imports_as_the_request_does_with_progress_and_a_small_result(
    setup: tuple[TestClient, Settings], migrated: Engine, tmp_path: Path
) -> None:
    c, settings = setup
    folder = _folder(tmp_path)
    by_job, by_request = _project(c, "by-job"), _project(c, "by-request")
    r = c.post(f"/projects/{by_job}/images/import-jobs", json={"path": str(folder), "labels": "none"})
    assert r.status_code == 202, r.text
    job = r.json()
    assert job["kind"] == "import" and job["status"] == "queued" and job["project_id"] == by_job
    ended = _run(job["id"], migrated, settings)
    assert ended["status"] is JobStatus.SUCCEEDED and ended["progress"] == 1.0
    res = ended["result"]
    assert (res["listed"], res["imported"], res["duplicate"], res["rejected"]) == (9, 7, 1, 1)
    assert [Path(f["file"]).name for f in res["rejected_files"]] == ["p8_broken.png"]
    assert res["rejected_files"][0]["reason"]
    assert c.get(f"/jobs/{job['id']}").json()["result"] == res  # what a client polling the job reads

    sync = c.post(f"/projects/{by_request}/images/import", json={"path": str(folder), "labels": "none"})
    assert sync.status_code == 200 and sync.json()["imported"] == 7
    assert _stored(migrated, by_job) == _stored(migrated, by_request)


def test_a_bad_path_or_labels_value_is_refused_before_a_job_exists(
    setup: tuple[TestClient, Settings], migrated: Engine, tmp_path: Path
) -> None:
    c, _ = setup
    _folder(tmp_path)
    pid = _project(c, "line")
    outside = c.post(f"/projects/{pid}/images/import-jobs", json={"path": str(tmp_path)})
    assert outside.status_code == 403 and "outside the import roots" in outside.json()["detail"]
    missing = c.post(f"/projects/{pid}/images/import-jobs", json={"path": str(tmp_path / "roots" / "nope")})
    assert missing.status_code == 403 and "does not exist" in missing.json()["detail"]
    bad = c.post(f"/projects/{pid}/images/import-jobs", json={"path": str(tmp_path / "roots"), "labels": "some"})
    assert bad.status_code == 422 and "labels" in bad.text
    assert c.post("/projects/999/images/import-jobs", json={"path": str(tmp_path / "roots")}).status_code == 404
    broken = tmp_path / "roots" / "broken-dataset"
    broken.mkdir()
    (broken / "labels.csv").write_text("file,label\nmissing.png,maybe\n")
    bad_csv = c.post(f"/projects/{pid}/images/import-jobs", json={"path": str(broken)})
    assert bad_csv.status_code == 422 and "labels.csv" in bad_csv.text, bad_csv.text
    with read_session_factory(migrated)() as s:
        assert s.scalar(select(func.count()).select_from(Job).where(Job.kind == JobKind.IMPORT)) == 0


def test_a_cancelled_import_keeps_its_chunks_and_queued_again_imports_the_rest(
    setup: tuple[TestClient, Settings], migrated: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    c, settings = setup
    monkeypatch.setattr(svc, "IMPORT_CHUNK", 3)
    folder = _folder(tmp_path)
    pid, whole = _project(c, "interrupted"), _project(c, "whole")
    job_id = c.post(f"/projects/{pid}/images/import-jobs", json={"path": str(folder)}).json()["id"]
    monkeypatch.setattr(runner, "CHECK_S", 0.0)  # every cancellation check reads the database

    def cancelled_after_the_first_chunk(*args: Any, **kw: Any) -> Iterator[Any]:
        for chunk in svc.import_chunks(*args, **kw):
            with session_factory(migrated).begin() as s:  # asked while it runs
                s.execute(update(Job).where(Job.id == job_id).values(cancel_requested=True))
            yield chunk

    monkeypatch.setattr(import_job, "import_chunks", cancelled_after_the_first_chunk)
    ended = _run(job_id, migrated, settings)
    monkeypatch.undo()
    monkeypatch.setattr(svc, "IMPORT_CHUNK", 3)
    assert ended["status"] is JobStatus.CANCELLED
    assert ended["progress"] == pytest.approx(3 / 9)  # the progress it had reached stays
    assert len(_stored(migrated, pid)) == 3

    again = c.post(f"/projects/{pid}/images/import-jobs", json={"path": str(folder)}).json()["id"]
    res = _run(again, migrated, settings)["result"]
    assert (res["imported"], res["duplicate"], res["rejected"]) == (4, 4, 1)  # p0-p2 stored, p7 a copy of p1
    done = c.post(f"/projects/{whole}/images/import-jobs", json={"path": str(folder)}).json()["id"]
    assert _run(done, migrated, settings)["status"] is JobStatus.SUCCEEDED
    assert _stored(migrated, pid) == _stored(migrated, whole)


def test_the_cli_queues_the_job_on_a_service_and_follows_it_to_its_counts(
    setup: tuple[TestClient, Settings], migrated: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    """`defectloop import` against a service: the job is queued, a worker (here a thread)
    runs it, and the command prints the rejected file and the counts from the job's result."""
    import threading

    import backend.cli.project as cp
    from backend.client import HttpClient
    from backend.domain.enums import ImportLabels

    c, settings = setup
    folder = _folder(tmp_path)
    _project(c, "line")
    http = HttpClient(http=c)
    monkeypatch.setattr(cp, "client", lambda: http)
    monkeypatch.setattr(cp.time, "sleep", lambda _s: threading.Event().wait(0.05))

    def worker() -> None:  # claims the job once it is queued
        for _ in range(200):
            with read_session_factory(migrated)() as s:
                job_id = s.scalar(select(Job.id).where(Job.kind == JobKind.IMPORT))
            if job_id is not None:
                run_here(job_id, session_factory(migrated), settings, job_handlers())
                return
            threading.Event().wait(0.05)

    t = threading.Thread(target=worker)
    t.start()
    cp.import_images("line", folder, ImportLabels.ALL, wait=True)
    t.join(timeout=30)
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "import job 1 queued"
    assert out[-2].startswith(f"rejected: {folder / 'p8_broken.png'}: ")
    assert out[-1] == "7 imported, 1 duplicate, 1 rejected"

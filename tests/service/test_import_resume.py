"""A folder import committed chunk by chunk: interrupted after its first chunk it keeps that
chunk, and the same import run again ends with the project one uninterrupted import leaves."""

from __future__ import annotations

import csv
from pathlib import Path

import cv2
import numpy as np
import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from backend.db.engine import read_session_factory, session_factory
from backend.db.tables import Image, Label
from backend.services import images as svc
from backend.services.projects import create_project

CHUNK = 3


class Interrupted(Exception):
    """The import's process stopping between two chunks."""


def _plain_folder(root: Path) -> Path:
    folder = root / "line"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(7):
        cv2.imwrite(str(folder / f"p{i}.png"), rng.integers(0, 255, (12, 16, 3), dtype=np.uint8))
    (folder / "p7_same_as_p1.png").write_bytes((folder / "p1.png").read_bytes())
    (folder / "p8_broken.png").write_text("not an image")
    return folder


def _dataset(root: Path) -> Path:
    """A labels.csv folder: test rows (labelled on import, one with a mask) and train rows."""
    folder = root / "ds"
    (folder / "img").mkdir(parents=True)
    rng = np.random.default_rng(1)
    rows = []
    for i in range(8):
        cv2.imwrite(str(folder / "img" / f"{i}.png"), rng.integers(0, 255, (12, 16, 3), dtype=np.uint8))
        defective = i % 3 == 0
        mask = ""
        if defective and i == 3:
            m = np.zeros((12, 16), np.uint8)
            m[2:5, 3:7] = 255
            cv2.imwrite(str(folder / "img" / f"{i}_mask.png"), m)
            mask = f"img/{i}_mask.png"
        rows.append(
            {"file": f"img/{i}.png", "label": int(defective), "mask": mask, "split": "test" if i < 4 else "train"}
        )
    with (folder / "labels.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["file", "label", "mask", "split"])
        w.writeheader()
        w.writerows(rows)
    return folder


def _stored(s: Session, project_id: int) -> list[tuple]:
    """The project's images in registration (id) order with their labels, ids left out."""
    rows = s.execute(select(Image).where(Image.project_id == project_id).order_by(Image.id)).scalars().all()
    out = []
    for img in rows:
        labels = s.scalars(select(Label).where(Label.image_id == img.id).order_by(Label.id)).all()
        out.append(
            (img.uri, img.sha256, img.width, img.height, img.split, [(lb.is_defective, lb.mask_png) for lb in labels])
        )
    return out


@pytest.mark.parametrize("kind", ["plain", "dataset"])
def test_an_interrupted_import_run_again_ends_as_one_uninterrupted_import(
    migrated: Engine, tmp_path: Path, kind: str
) -> None:
    folder = _plain_folder(tmp_path) if kind == "plain" else _dataset(tmp_path)
    labels = "all" if kind == "plain" else "test"
    sessions, reads = session_factory(migrated), read_session_factory(migrated)
    with sessions.begin() as s:
        whole, resumed = create_project(s, name="whole").id, create_project(s, name="resumed").id

    def run(project_id: int, after_chunk=None) -> list[svc.ImportResult]:
        return svc.import_path_in_chunks(
            sessions,
            project_id=project_id,
            path=folder,
            roots=[tmp_path],
            labels=labels,
            chunk=CHUNK,
            reads=reads,
            after_chunk=after_chunk,
        )

    reference = run(whole)
    listed = [p.name for p in svc.list_import(folder, [tmp_path], labels)]
    assert [r.file for r in reference] == listed and len(listed) > 2 * CHUNK  # every file reported, in order
    seen: list[tuple[int, int]] = []

    def stop_after_first(done: int, total: int) -> None:
        seen.append((done, total))
        raise Interrupted

    with pytest.raises(Interrupted):
        run(resumed, stop_after_first)
    assert seen == [(CHUNK, len(listed))]
    first = [r for r in reference[:CHUNK] if r.status == "imported"]
    with sessions() as s:
        assert [row[0] for row in _stored(s, resumed)] == [row[0] for row in _stored(s, whole)][: len(first)]
    again = run(resumed)
    assert [r.file for r in again] == listed
    with sessions() as s:
        assert _stored(s, resumed) == _stored(s, whole)
        uri = {image_id: u for image_id, u in s.execute(select(Image.id, Image.uri))}
    for ref, res in zip(reference, again, strict=True):
        if ref.status == "imported" and reference.index(ref) < CHUNK:  # stored by the interrupted run
            assert res.status == "duplicate" and uri[res.image_id] == uri[ref.image_id], res
        else:  # the rest: what the uninterrupted import said, about the same files
            assert (res.status, res.reason is None) == (ref.status, ref.reason is None), (ref, res)
            if res.image_id is not None:
                assert uri[res.image_id] == uri[ref.image_id]
    with sessions() as s:  # a third run stores nothing more
        n = s.scalar(select(func.count(Image.id)).where(Image.project_id == resumed))
    assert {r.status for r in run(resumed)} <= {"duplicate", "rejected"}
    with sessions() as s:
        assert s.scalar(select(func.count(Image.id)).where(Image.project_id == resumed)) == n


def test_one_transaction_import_reads_in_chunks_and_stores_what_the_chunked_import_stores(
    migrated: Engine, tmp_path: Path
) -> None:
    folder = _dataset(tmp_path)
    sessions = session_factory(migrated)
    with sessions.begin() as s:
        one, chunked = create_project(s, name="one"), create_project(s, name="chunked")
        ids = one.id, chunked.id
        results = svc.import_path(s, project=one, path=folder, roots=[tmp_path], labels="test", chunk=CHUNK)
    again = svc.import_path_in_chunks(sessions, project_id=ids[1], path=folder, roots=[tmp_path], labels="test")
    assert [(r.file, r.status) for r in results] == [(r.file, r.status) for r in again]
    with sessions() as s:
        assert _stored(s, ids[0]) == _stored(s, ids[1])


def test_stored_content_is_reported_without_being_decoded(migrated: Engine, tmp_path: Path) -> None:
    folder = _plain_folder(tmp_path)
    sessions = session_factory(migrated)
    with sessions.begin() as s:
        project = create_project(s, name="line")
        svc.import_path(s, project=project, path=folder / "p1.png", roots=[tmp_path])
        stored_id = s.scalar(select(Image.id).where(Image.project_id == project.id))

    def never() -> svc.Prepared:
        raise AssertionError("a stored file was read again")

    part = [
        svc.Pending("again.png", folder / "p7_same_as_p1.png", never),
        svc.Pending("new.png", folder / "p2.png", lambda: svc.ImportResult("new.png", "rejected", "checked")),
    ]
    with sessions() as s:
        got = svc.prepare_new(s, project.id, part)
    assert got == [
        svc.ImportResult("again.png", "duplicate", f"same content as image {stored_id}", stored_id),
        svc.ImportResult("new.png", "rejected", "checked"),
    ]

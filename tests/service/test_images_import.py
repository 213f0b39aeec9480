import threading
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import Engine, func, select

from backend.db.engine import session_factory
from backend.db.tables import Image, Label, LabelSource, Split
from backend.errors import ForbiddenPathError
from backend.services.images import import_path, store_upload
from backend.services.labels import current_label, decode_mask
from backend.services.projects import create_project
from ml.data import load_dataset


def _project(Session):
    with Session.begin() as s:
        return create_project(s, name="line-1")


def test_labels_csv_import_brings_labels_and_splits(migrated: Engine, tiny_demo: Path) -> None:
    Session = session_factory(migrated)
    project = _project(Session)
    with Session.begin() as s:
        results = import_path(s, project=project, path=tiny_demo, roots=[tiny_demo.parent])
    assert {r.status for r in results} == {"imported"} and len(results) == 44
    ds = load_dataset(tiny_demo)
    with Session() as s:
        assert s.scalar(select(func.count(Image.id)).where(Image.split == Split.TRAIN)) == 22
        labels = s.scalars(select(Label)).all()
        assert len(labels) == 44 and {lb.source for lb in labels} == {LabelSource.IMPORT}
        defect = next(x for x in ds.samples if x.label == 1)
        img = s.scalars(select(Image).where(Image.uri == str(defect.image))).one()
        cur = current_label(s, image_id=img.id)
        from ml.images import read_mask

        assert cur.is_defective and np.array_equal(decode_mask(cur.mask_png), read_mask(defect.mask))
    with Session.begin() as s:  # importing again: every file is a duplicate
        again = import_path(s, project=project, path=tiny_demo, roots=[tiny_demo.parent])
    assert {r.status for r in again} == {"duplicate"}


def test_paths_outside_the_roots_are_refused(migrated: Engine, tiny_demo: Path, tmp_path: Path) -> None:
    Session = session_factory(migrated)
    project = _project(Session)
    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "escape").symlink_to(tiny_demo / "images")
    with Session.begin() as s:
        with pytest.raises(ForbiddenPathError, match="outside the import roots"):
            import_path(s, project=project, path=root / "sub" / ".." / ".." / "root" / "..", roots=[root])
        with pytest.raises(ForbiddenPathError, match="outside the import roots"):
            import_path(s, project=project, path=root / "sub" / "escape", roots=[root])
        with pytest.raises(ForbiddenPathError, match="no import roots"):
            import_path(s, project=project, path=root, roots=[])
        assert import_path(s, project=project, path=root, roots=[root]) == []  # the link is not followed


def test_bad_files_are_rejected_with_reasons_and_nothing_half_stored(migrated: Engine, tmp_path: Path) -> None:
    Session = session_factory(migrated)
    project = _project(Session)
    folder = tmp_path / "imgs"
    folder.mkdir()
    import cv2

    cv2.imwrite(str(folder / "good.png"), np.full((20, 30, 3), 100, np.uint8))
    (folder / "text.png").write_text("hello")
    ok = (folder / "good.png").read_bytes()
    (folder / "cut.png").write_bytes(ok[: len(ok) // 2])
    with Session.begin() as s:
        results = {Path(r.file).name: r for r in import_path(s, project=project, path=folder, roots=[tmp_path])}
    assert results["good.png"].status == "imported"
    assert results["text.png"].status == "rejected" and "cannot decode" in results["text.png"].reason
    assert results["cut.png"].status == "rejected"
    with Session.begin() as s:
        up = store_upload(s, project=project, data=b"GIF89a broken", filename="x.gif", data_dir=tmp_path / "data")
        assert up.status == "rejected"
        dup = store_upload(s, project=project, data=ok, filename="again.png", data_dir=tmp_path / "data")
        assert dup.status == "duplicate"
    with Session() as s:
        assert s.scalar(select(func.count(Image.id))) == 1
    assert not (tmp_path / "data" / "images").exists() or not any((tmp_path / "data" / "images").rglob("*.gif"))


def test_parallel_imports_of_the_same_files_lose_and_duplicate_nothing(migrated: Engine, tiny_demo: Path) -> None:
    Session = session_factory(migrated)
    project = _project(Session)
    results: list = []
    errors: list = []

    def worker() -> None:
        try:
            with Session.begin() as s:
                results.extend(import_path(s, project=project, path=tiny_demo / "images", roots=[tiny_demo]))
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    with Session() as s:
        n = s.scalar(select(func.count(Image.id)))
    assert n == 44
    assert sum(r.status == "imported" for r in results) == 44


def _comparable(session, results) -> list[tuple]:
    """Results with image ids replaced by the stored image's content, so two projects compare."""
    sha = dict(session.execute(select(Image.id, Image.sha256)).all())
    out = []
    for r in results:
        reason = r.reason
        if r.status == "duplicate":
            reason = reason.replace(f"image {r.image_id}", f"image {sha[r.image_id]}")
        out.append((r.file, r.status, reason, sha.get(r.image_id)))
    return out


def test_chunked_import_equals_one_file_at_a_time(migrated: Engine, tiny_demo: Path, tmp_path: Path) -> None:
    """Unlabelled files go in one INSERT per chunk; labelled files, duplicates (within the import,
    across chunks, already stored) and rejections interleaved with them end as one by one."""
    import cv2

    from backend.services import images as svc

    folder = tmp_path / "pool"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(5):
        cv2.imwrite(str(folder / f"p{i}.png"), rng.integers(0, 255, (12, 16, 3), dtype=np.uint8))
    for name in ("p5_same_as_p1.png", "p6_same_as_p1.png"):
        (folder / name).write_bytes((folder / "p1.png").read_bytes())
    (folder / "p7_broken.png").write_text("not an image")
    roots = [tiny_demo.parent, tmp_path]
    pool = svc.prepare_path(folder, roots)
    dataset = svc.prepare_path(tiny_demo, roots, labels="test")  # labelled test images, then the rest unlabelled
    items = [*pool[:3], *dataset[:2], *pool[3:], *dataset[2:], *pool]  # interleaved, then every pool file again
    Session = session_factory(migrated)
    compared = []
    for name, store in (
        ("chunked", lambda s, p: svc.store_prepared(s, project=p, items=items, chunk=2)),
        ("one chunk", lambda s, p: svc.store_prepared(s, project=p, items=items)),
        ("one by one", lambda s, p: [i if isinstance(i, svc.ImportResult) else svc._store(s, p, i) for i in items]),
    ):
        with Session.begin() as s:
            project = create_project(s, name=name)
            svc.store_prepared(s, project=project, items=pool[4:5])  # stored before the import
            results = store(s, project)
            assert [r.file for r in results] == [i.file if isinstance(i, svc.ImportResult) else i.name for i in items]
            compared.append(_comparable(s, results))
            n_labels = s.scalar(select(func.count(Label.id)).join(Image).where(Image.project_id == project.id))
            assert n_labels == sum(1 for i in items if getattr(i, "is_defective", None) is not None)
    assert compared[0] == compared[1] == compared[2]
    statuses = [status for _, status, _, _ in compared[0]]
    assert statuses.count("imported") == 4 + len(dataset) and statuses.count("rejected") == 2

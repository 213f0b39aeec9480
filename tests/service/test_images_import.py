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

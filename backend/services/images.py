"""Importing images: server folders (under the import roots) and uploaded files.

Every file gets a result: imported, duplicate (same sha256 already in the project) or
rejected with its reason. Each file is stored in its own savepoint, so a bad file never
leaves half a row behind and never stops the others. Labels found in a labels.csv or an
MVTec layout come in as Labels with source=import.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from backend.db.tables import Image, LabelSource, Project, Split
from backend.errors import ForbiddenPathError
from backend.services.labels import LabelIn, add_label
from ml.data import IMAGE_SUFFIXES, Sample, is_dataset, read_dataset, sample_problem
from ml.errors import DataError
from ml.images import read_image, read_mask


@dataclass(frozen=True)
class ImportResult:
    """What happened to one file: status is imported, duplicate or rejected."""

    file: str
    status: str
    reason: str | None = None
    image_id: int | None = None


def resolve_import_path(path: Path, roots: Sequence[Path]) -> Path:
    """``path`` resolved (links followed) if it lies under one of ``roots``; else ForbiddenPathError."""
    if not roots:
        raise ForbiddenPathError("path: no import roots are configured (DEFECTLOOP_IMPORT_ROOTS)")
    try:
        real = Path(path).resolve(strict=True)
    except (FileNotFoundError, RuntimeError):
        raise ForbiddenPathError(f"path: {path} does not exist") from None
    for root in roots:
        if real.is_relative_to(Path(root).resolve()):
            return real
    raise ForbiddenPathError(f"path: {path} is outside the import roots")


def _under_roots(path: Path, roots: Sequence[Path]) -> bool:
    real = path.resolve()
    return any(real.is_relative_to(Path(r).resolve()) for r in roots)


def import_path(
    session: Session, *, project: Project, path: Path, roots: Sequence[Path], labels: str = "all",
) -> list[ImportResult]:
    """Import a folder of images, a labels.csv folder or an MVTec-layout folder from the server.

    ``labels`` (datasets only): ``all`` imports every label; ``test`` only the test split's
    (the fixed evaluation set), every other image going into the pool unlabelled; ``none``
    puts every image into the pool unlabelled.
    """
    if labels not in ("all", "test", "none"):
        raise ValueError(f"labels must be all, test or none, got {labels!r}")
    real = resolve_import_path(path, roots)
    if is_dataset(real):
        dataset = read_dataset(real)
        if labels == "all":
            return import_samples(session, project=project, samples=dataset.samples, roots=roots)
        test = [s for s in dataset.samples if s.split == "test"] if labels == "test" else []
        rest = [s for s in dataset.samples if labels == "none" or s.split != "test"]
        return (import_samples(session, project=project, samples=test, roots=roots)
                + import_samples(session, project=project, samples=rest, roots=roots, with_labels=False))
    if real.is_file():
        files = [real]
    else:
        files = sorted(p for p in real.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    results = []
    for f in files:
        if not _under_roots(f, roots):
            results.append(ImportResult(str(f), "rejected", "links outside the import roots"))
            continue
        try:
            data = f.read_bytes()
        except OSError as e:
            results.append(ImportResult(str(f), "rejected", f"unreadable: {e}"))
            continue
        results.append(_store(session, project, data, str(f), uri=str(f)))
    return results


def import_samples(
    session: Session, *, project: Project, samples: Sequence[Sample], roots: Sequence[Path], with_labels: bool = True,
) -> list[ImportResult]:
    """Import dataset samples; ``with_labels=False`` imports them into the pool unlabelled
    (what a new line's images are), whatever their split and label say."""
    return [_import_sample(session, project, s, roots, with_labels=with_labels) for s in samples]


def _import_sample(
    session: Session, project: Project, s: Sample, roots: Sequence[Path], *, with_labels: bool = True,
) -> ImportResult:
    name = str(s.image)
    if not _under_roots(s.image, roots) or (s.mask is not None and s.mask.exists() and not _under_roots(s.mask, roots)):
        return ImportResult(name, "rejected", "links outside the import roots")
    problem = sample_problem(s)
    if problem:
        return ImportResult(name, "rejected", problem)
    if not with_labels:
        return _store(session, project, s.image.read_bytes(), name, uri=str(s.image))
    if s.label == 0:
        label = LabelIn(is_defective=False, source=LabelSource.IMPORT)
    elif s.pixels_known and s.mask is not None:
        label = LabelIn(is_defective=True, mask=read_mask(s.mask), source=LabelSource.IMPORT)
    else:
        label = LabelIn(is_defective=True, source=LabelSource.IMPORT)
    split = Split(s.split) if s.split in ("train", "val", "test") else Split.POOL
    return _store(session, project, s.image.read_bytes(), name, uri=str(s.image), label=label, split=split)


def _store(
    session: Session,
    project: Project,
    data: bytes,
    name: str,
    *,
    uri: str,
    label: LabelIn | None = None,
    split: Split = Split.POOL,
) -> ImportResult:
    sha = hashlib.sha256(data).hexdigest()
    existing = session.scalar(select(Image.id).where(Image.project_id == project.id, Image.sha256 == sha))
    if existing is not None:
        return ImportResult(name, "duplicate", f"same content as image {existing}", existing)
    try:
        arr = read_image(data, name)
    except DataError as e:
        return ImportResult(name, "rejected", str(e).removeprefix(f"{name}: "))
    h, w = arr.shape[:2]
    try:
        with session.begin_nested():
            img = Image(project_id=project.id, uri=uri, sha256=sha, width=w, height=h, split=split)
            session.add(img)
            session.flush()
            if label is not None:
                add_label(session, image=img, label=label)
    except IntegrityError:  # a concurrent import stored the same content first
        existing = session.scalar(select(Image.id).where(Image.project_id == project.id, Image.sha256 == sha))
        return ImportResult(name, "duplicate", f"same content as image {existing}", existing)
    except ValueError as e:
        return ImportResult(name, "rejected", str(e))
    return ImportResult(name, "imported", None, img.id)


def store_upload(
    session: Session, *, project: Project, data: bytes, filename: str, data_dir: Path
) -> ImportResult:
    """Store uploaded bytes under ``data_dir/images`` (atomically) and register the image."""
    sha = hashlib.sha256(data).hexdigest()
    suffix = Path(filename).suffix.lower() if Path(filename).suffix.lower() in IMAGE_SUFFIXES else ".img"
    target = data_dir / "images" / sha[:2] / f"{sha}{suffix}"
    try:
        read_image(data, filename)
    except DataError as e:
        return ImportResult(filename, "rejected", str(e).removeprefix(f"{filename}: "))
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".upload-")
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, target)
    return _store(session, project, data, filename, uri=str(target))

"""Importing images: server folders (under the import roots) and uploaded files.

Every file gets a result: imported, duplicate (same sha256 already in the project) or
rejected with its reason. A folder is imported :data:`IMPORT_CHUNK` files at a time: a
chunk's files are hashed, those whose content is stored already are reported as duplicates
without being decoded, the others are read and checked without the database (no lock is held
while they decode), then the chunk is registered. :func:`import_path` registers every chunk
in the caller's transaction (an error stores nothing); :func:`import_path_in_chunks` commits
each chunk as it goes, so an import that is interrupted keeps the chunks it finished, and
running it again skips what is stored and finishes the rest. Only one chunk's files are held
at a time. Labels found in a labels.csv or an MVTec layout come in as Labels with source=import.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from backend.db.tables import Image, LabelSource, Project, Split, utcnow
from backend.errors import ForbiddenPathError
from backend.services.labels import LabelError, LabelIn, add_label
from ml import (
    IMAGE_SUFFIXES,
    DataError,
    Sample,
    file_sha256,
    image_size,
    is_dataset,
    read_dataset,
    read_image,
    read_mask,
    sample_problem,
)


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
    except (OSError, RuntimeError):  # missing, a name too long, a link loop
        raise ForbiddenPathError(f"path: {path} does not exist") from None
    for root in roots:
        if real.is_relative_to(Path(root).resolve()):
            return real
    raise ForbiddenPathError(f"path: {path} is outside the import roots")


def _under_roots(path: Path, roots: Sequence[Path]) -> bool:
    real = path.resolve()
    return any(real.is_relative_to(Path(r).resolve()) for r in roots)


@dataclass(frozen=True)
class Candidate:
    """A file checked and ready to be registered: everything but the database work is done."""

    name: str
    uri: str
    sha256: str
    width: int
    height: int
    split: Split = Split.POOL
    is_defective: bool | None = None  # None: import without a label
    mask: Path | None = None


Prepared = Candidate | ImportResult  # an ImportResult here is a file already rejected

#: An import reads, checks and registers this many files at a time (files without a label: one
#: INSERT per chunk); :func:`import_path_in_chunks` commits each chunk.
IMPORT_CHUNK = 1000


@dataclass(frozen=True)
class Pending:
    """One file of an import, listed but not yet read: ``prepare`` reads and checks it (no
    database); ``source`` is the file whose bytes it stores (None: rejected from the listing)."""

    name: str
    source: Path | None
    prepare: Callable[[], Prepared]


def import_path(
    session: Session,
    *,
    project: Project,
    path: Path,
    roots: Sequence[Path],
    labels: str = "all",
    chunk: int = IMPORT_CHUNK,
) -> list[ImportResult]:
    """Import a folder of images, a labels.csv folder or an MVTec-layout folder from the server
    (see :func:`list_import`) in the caller's transaction: an error stores nothing. Files are read
    ``chunk`` at a time and registered before the next chunk is read."""
    results: list[ImportResult] = []
    for part in _batches(list_import(path, roots, labels), chunk):
        results += store_prepared(session, project=project, items=prepare_new(session, project.id, part), chunk=chunk)
    return results


def import_path_in_chunks(
    sessions: sessionmaker[Session],
    *,
    project_id: int,
    path: Path,
    roots: Sequence[Path],
    labels: str = "all",
    chunk: int = IMPORT_CHUNK,
    reads: sessionmaker[Session] | None = None,
    after_chunk: Callable[[int, int], None] | None = None,
) -> list[ImportResult]:
    """:func:`import_path`, committing each chunk of ``chunk`` files in its own transaction.

    An import interrupted after some chunks keeps them; run again, it reports their files as
    duplicates of the stored images (without decoding them) and imports the rest, so the
    project ends as one uninterrupted import leaves it. A failing chunk stores nothing of its
    own. ``reads`` (default ``sessions``): sessions for the check of what is stored, which
    takes no write lock on SQLite; ``after_chunk(done, total)``: called after each commit with
    the files done and listed. The listing (no file read) is done first: ForbiddenPathError
    and DataError (an unreadable labels.csv) raise before anything is stored.
    """
    results: list[ImportResult] = []
    for part, done, total in import_chunks(
        sessions, project_id=project_id, path=path, roots=roots, labels=labels, chunk=chunk, reads=reads
    ):
        results += part
        if after_chunk is not None:
            after_chunk(done, total)
    return results


def import_chunks(
    sessions: sessionmaker[Session],
    *,
    project_id: int,
    path: Path,
    roots: Sequence[Path],
    labels: str = "all",
    chunk: int = IMPORT_CHUNK,
    reads: sessionmaker[Session] | None = None,
) -> Iterator[tuple[list[ImportResult], int, int]]:
    """:func:`import_path_in_chunks` one committed chunk at a time: each chunk's results with
    the files done so far and the files listed, so a caller that keeps only counts holds one
    chunk's results, whatever the folder's size. The listing comes first (see there)."""
    pending = list_import(path, roots, labels)
    done = 0
    for part in _batches(pending, chunk):
        with (reads or sessions).begin() as s:
            items = prepare_new(s, project_id, part)  # only the hashes' lookup holds the session
        with sessions.begin() as s:
            stored = store_prepared(s, project=s.get_one(Project, project_id), items=items, chunk=chunk)
        done += len(part)
        yield stored, done, len(pending)


def _batches(items: Sequence[Pending], size: int) -> Iterator[Sequence[Pending]]:
    for start in range(0, len(items), max(size, 1)):
        yield items[start : start + size]


def prepare_new(session: Session, project_id: int, part: Sequence[Pending]) -> list[Prepared]:
    """Read and check the files of ``part`` (see :func:`Pending`), except those whose content the
    project stores already: they are reported as duplicates of the stored image without being
    decoded (what registering them would report). One query per call."""
    hashes: dict[int, str] = {}
    for pos, p in enumerate(part):
        if p.source is not None:
            try:
                hashes[pos] = file_sha256(p.source)
            except OSError:
                continue  # prepare reports it
    stored: dict[str, int] = {}
    if hashes:
        q = select(Image.sha256, Image.id).where(
            Image.project_id == project_id, Image.sha256.in_(sorted(set(hashes.values())))
        )
        stored = {sha: image_id for sha, image_id in session.execute(q)}
    out: list[Prepared] = []
    for pos, p in enumerate(part):
        image_id = stored.get(hashes.get(pos, ""))
        if image_id is not None:
            out.append(ImportResult(p.name, "duplicate", f"same content as image {image_id}", image_id))
        else:
            out.append(p.prepare())
    return out


def prepare_path(path: Path, roots: Sequence[Path], labels: str = "all") -> list[Prepared]:
    """Read and check every file of an import at once, without the database (see :func:`list_import`)."""
    return [p.prepare() for p in list_import(path, roots, labels)]


def list_import(path: Path, roots: Sequence[Path], labels: str = "all") -> list[Pending]:
    """The files of an import in the order they are registered, none of them read yet.

    ``labels`` (datasets only): ``all`` imports every label; ``test`` only the test split's
    (the fixed evaluation set), every other image going into the pool unlabelled; ``none``
    puts every image into the pool unlabelled. ForbiddenPathError for a path outside ``roots``;
    DataError for a dataset whose labels.csv cannot be parsed.
    """
    if labels not in ("all", "test", "none"):
        raise ValueError(f"labels must be all, test or none, got {labels!r}")
    real = resolve_import_path(path, roots)
    if is_dataset(real):
        dataset = read_dataset(real)
        if labels == "all":
            return list_samples(dataset.samples, roots)
        test = [s for s in dataset.samples if s.split == "test"] if labels == "test" else []
        rest = [s for s in dataset.samples if labels == "none" or s.split != "test"]
        return list_samples(test, roots) + list_samples(rest, roots, with_labels=False)
    if real.is_file():
        files = [real]
    else:
        files = sorted(p for p in real.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    return [_pending_file(f, roots) for f in files]


def _pending_file(f: Path, roots: Sequence[Path]) -> Pending:
    if not _under_roots(f, roots):
        return Pending(str(f), None, _known(ImportResult(str(f), "rejected", "links outside the import roots")))
    return Pending(str(f), f, partial(_read_file, f))


def _known(result: ImportResult) -> Callable[[], Prepared]:
    """A file's result decided from the listing, as a ``Pending.prepare``."""
    return lambda: result


def _read_file(f: Path) -> Prepared:
    try:
        data = f.read_bytes()
    except OSError as e:
        return ImportResult(str(f), "rejected", f"unreadable: {e}")
    return _candidate(data, str(f), uri=str(f))


def import_samples(
    session: Session,
    *,
    project: Project,
    samples: Sequence[Sample],
    roots: Sequence[Path],
    with_labels: bool = True,
) -> list[ImportResult]:
    """Import dataset samples; ``with_labels=False`` imports them into the pool unlabelled
    (what a new line's images are), whatever their split and label say."""
    return store_prepared(session, project=project, items=prepare_samples(samples, roots, with_labels=with_labels))


def prepare_samples(samples: Sequence[Sample], roots: Sequence[Path], *, with_labels: bool = True) -> list[Prepared]:
    """Check dataset samples (no database), every one at once (see :func:`list_samples`)."""
    return [p.prepare() for p in list_samples(samples, roots, with_labels=with_labels)]


def list_samples(samples: Sequence[Sample], roots: Sequence[Path], *, with_labels: bool = True) -> list[Pending]:
    """Dataset samples to import, none read yet. A row naming an image an earlier row named is
    rejected as ``train`` reports it ("duplicate of row N"), whatever its label says."""
    seen: dict[Path, int] = {}
    out: list[Pending] = []
    for s in samples:
        key = s.image.resolve()
        if key in seen:
            rejected = ImportResult(str(s.image), "rejected", f"row {s.row}: duplicate of row {seen[key]}")
            out.append(Pending(str(s.image), None, _known(rejected)))
            continue
        seen[key] = s.row
        source = s.image if _under_roots(s.image, roots) else None  # never read outside the roots, not even to hash
        out.append(Pending(str(s.image), source, partial(_prepare_sample, s, roots, with_labels=with_labels)))
    return out


def _prepare_sample(s: Sample, roots: Sequence[Path], *, with_labels: bool) -> Prepared:
    name = str(s.image)
    if not _under_roots(s.image, roots) or (s.mask is not None and s.mask.exists() and not _under_roots(s.mask, roots)):
        return ImportResult(name, "rejected", "links outside the import roots")
    problem = sample_problem(s)  # decodes the image and its mask
    if problem:
        return ImportResult(name, "rejected", problem)
    try:
        sha = file_sha256(s.image)
        h, w = image_size(s.image)
    except (OSError, DataError) as e:
        return ImportResult(name, "rejected", str(e).removeprefix(f"{name}: "))
    if not with_labels:
        return Candidate(name, str(s.image), sha, w, h)
    split = Split(s.split) if s.split in ("train", "val", "test") else Split.POOL
    mask = s.mask if s.label == 1 and s.pixels_known and s.mask is not None else None
    return Candidate(name, str(s.image), sha, w, h, split, bool(s.label), mask)


def _candidate(data: bytes, name: str, *, uri: str) -> Prepared:
    try:
        arr = read_image(data, name)
    except DataError as e:
        return ImportResult(name, "rejected", str(e).removeprefix(f"{name}: "))
    h, w = arr.shape[:2]
    return Candidate(name, uri, hashlib.sha256(data).hexdigest(), w, h)


def store_prepared(
    session: Session, *, project: Project, items: Sequence[Prepared], chunk: int = IMPORT_CHUNK
) -> list[ImportResult]:
    """Register checked files (duplicates by content are reported, not stored), in order.

    Files without a label (a line's pool) are inserted ``chunk`` at a time, one statement per
    chunk that skips content already stored (by this import, an earlier one or a concurrent
    one: such files are reported as duplicates of the stored image); a file with a label gets
    its own savepoint. Either way a concurrent importer of the same content costs only those
    files, and an error raised here leaves the caller's transaction to roll back as a whole.
    """
    results: list[ImportResult | None] = [None] * len(items)
    run: list[tuple[int, Candidate]] = []

    def flush_run() -> None:
        for pos, res in _store_unlabelled(session, project, run).items():
            results[pos] = res
        run.clear()

    for pos, item in enumerate(items):
        if isinstance(item, ImportResult):
            results[pos] = item
        elif item.is_defective is None:
            run.append((pos, item))
            if len(run) >= chunk:
                flush_run()
        else:  # what came before is stored first, so duplicates resolve in file order
            flush_run()
            results[pos] = _store(session, project, item)
    flush_run()
    return [r for r in results if r is not None]


def _insert_skipping_stored(session: Session) -> Any:
    """``INSERT INTO image ... ON CONFLICT (project_id, sha256) DO NOTHING`` for this database,
    or None where the dialect has no such statement."""
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert(Image).on_conflict_do_nothing(index_elements=["project_id", "sha256"])
    if dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        return sqlite_insert(Image).on_conflict_do_nothing(index_elements=["project_id", "sha256"])
    return None


def _store_unlabelled(
    session: Session, project: Project, run: Sequence[tuple[int, Candidate]]
) -> dict[int, ImportResult]:
    """Register unlabelled files with one INSERT (and one SELECT for those already stored);
    their results by position. The first file of each content is imported, the others are
    duplicates of it, as one by one."""
    insert_stmt = _insert_skipping_stored(session) if run else None
    if insert_stmt is None:
        return {pos: _store(session, project, c) for pos, c in run}
    first: dict[str, int] = {}
    for pos, c in run:
        first.setdefault(c.sha256, pos)
    by_pos = dict(run)
    now = utcnow()
    rows = [
        {
            "project_id": project.id,
            "uri": by_pos[pos].uri,
            "sha256": sha,
            "width": by_pos[pos].width,
            "height": by_pos[pos].height,
            "split": by_pos[pos].split,
            "added_at": now,
        }
        for sha, pos in first.items()
    ]
    inserted = {
        sha: image_id for image_id, sha in session.execute(insert_stmt.values(rows).returning(Image.id, Image.sha256))
    }
    stored = [sha for sha in first if sha not in inserted]
    existing: dict[str, int] = {}
    for start in range(0, len(stored), IMPORT_CHUNK):
        part = stored[start : start + IMPORT_CHUNK]
        q = select(Image.sha256, Image.id).where(Image.project_id == project.id, Image.sha256.in_(part))
        existing.update({sha: image_id for sha, image_id in session.execute(q)})
    out: dict[int, ImportResult] = {}
    for pos, c in run:
        if first[c.sha256] == pos and c.sha256 in inserted:
            out[pos] = ImportResult(c.name, "imported", None, inserted[c.sha256])
        else:
            image_id = inserted.get(c.sha256, existing.get(c.sha256))
            out[pos] = ImportResult(c.name, "duplicate", f"same content as image {image_id}", image_id)
    return out


def _store(session: Session, project: Project, c: Candidate) -> ImportResult:
    existing = session.scalar(select(Image.id).where(Image.project_id == project.id, Image.sha256 == c.sha256))
    if existing is not None:
        return ImportResult(c.name, "duplicate", f"same content as image {existing}", existing)
    label = None
    if c.is_defective is not None:
        try:
            mask = read_mask(c.mask) if c.mask is not None else None
        except DataError as e:
            return ImportResult(c.name, "rejected", f"mask {e}")
        label = LabelIn(is_defective=c.is_defective, mask=mask, source=LabelSource.IMPORT)
    try:
        with session.begin_nested():
            img = Image(
                project_id=project.id, uri=c.uri, sha256=c.sha256, width=c.width, height=c.height, split=c.split
            )
            session.add(img)
            session.flush()
            if label is not None:
                add_label(session, image=img, label=label)
    except IntegrityError:  # a concurrent import stored the same content first
        existing = session.scalar(select(Image.id).where(Image.project_id == project.id, Image.sha256 == c.sha256))
        return ImportResult(c.name, "duplicate", f"same content as image {existing}", existing)
    except LabelError as e:
        return ImportResult(c.name, "rejected", str(e))
    return ImportResult(c.name, "imported", None, img.id)


def store_upload(session: Session, *, project: Project, data: bytes, filename: str, data_dir: Path) -> ImportResult:
    """Store uploaded bytes under ``data_dir/images`` (atomically) and register the image."""
    return store_prepared(session, project=project, items=[prepare_upload(data, filename, data_dir)])[0]


def prepare_upload(data: bytes, filename: str, data_dir: Path) -> Prepared:
    """Check uploaded bytes and keep them under ``data_dir/images`` by content (no database);
    a rejection names the file."""
    prepared = _candidate(data, filename, uri="")
    if isinstance(prepared, ImportResult):
        return prepared
    suffix = Path(filename).suffix.lower() if Path(filename).suffix.lower() in IMAGE_SUFFIXES else ".img"
    target = data_dir / "images" / prepared.sha256[:2] / f"{prepared.sha256}{suffix}"
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".upload-")
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, target)
    return Candidate(filename, str(target), prepared.sha256, prepared.width, prepared.height)

"""A folder import as a job: the same chunked import as the synchronous route, run by a worker
with progress (``importing N of M files``: one stage word, so a follower that prints a line
per stage prints one every 30 s, not one per chunk), cancellable before and between chunks,
and a worker's memory and a result that stay small however large the folder (one chunk's
results held at a time; counts, and the first rejected files with their reasons).

Interrupted (cancelled, the worker killed), it keeps the chunks it committed; the same import
queued again reports those files as duplicates without decoding them and imports the rest
(:func:`backend.services.images.import_path_in_chunks`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from backend.db.tables import Job, JobKind
from backend.domain.jobs import ImportPayload
from backend.jobs.queue import enqueue
from backend.jobs.runner import JobContext
from backend.services import images
from backend.services.images import ImportResult, import_chunks, list_import

#: at most this many rejected files are listed in a job's result (all are counted)
MAX_LISTED_REJECTIONS = 1000


def request_import(session: Session, *, project_id: int, payload: ImportPayload, roots: list[Path]) -> Job:
    """Queue an import of ``payload.path`` for the project. The folder is listed now (no file
    is read), so a bad path (ForbiddenPathError: missing or outside ``roots``) or an unreadable
    labels.csv (DataError) is refused before a job exists; the worker lists it again, checked
    against its own import roots."""
    list_import(Path(payload.path), roots, payload.labels.value)
    return enqueue(session, kind=JobKind.IMPORT, project_id=project_id, payload=payload)


class ImportTally:
    """Counts by status and the first :data:`MAX_LISTED_REJECTIONS` rejected files, fed a
    chunk's results at a time."""

    def __init__(self) -> None:
        self.counts = {"imported": 0, "duplicate": 0, "rejected": 0}
        self.rejected_files: list[dict[str, str | None]] = []

    def add(self, results: list[ImportResult]) -> None:
        for r in results:
            self.counts[r.status] += 1
            if r.status == "rejected" and len(self.rejected_files) < MAX_LISTED_REJECTIONS:
                self.rejected_files.append({"file": r.file, "reason": r.reason})

    def summary(self, listed: int) -> dict[str, Any]:
        """A job's result: ``listed`` files, the counts and the first rejected files."""
        return {"listed": listed, **self.counts, "rejected_files": self.rejected_files}


def run_import_job(ctx: JobContext) -> dict[str, Any]:
    """Import the payload's folder a chunk at a time, reporting ``importing N of M files``
    after each committed chunk and stopping before and between chunks when cancelled; the
    worker holds one chunk's results at a time."""
    payload = ImportPayload.model_validate(ctx.payload)
    ctx.progress(0.0, f"importing: listing {payload.path}", force=True)
    ctx.check_cancel()
    tally, listed = ImportTally(), 0
    for results, done, listed in import_chunks(
        ctx.sessions,
        project_id=ctx.project_id,
        path=Path(payload.path),
        roots=ctx.settings.import_roots,
        labels=payload.labels.value,
        reads=ctx.read_sessions,
        chunk=images.IMPORT_CHUNK,
    ):
        tally.add(results)
        ctx.progress(done / listed, f"importing {done:,} of {listed:,} files", force=True)  # one write a chunk
        if done < listed:
            ctx.check_cancel()
    return tally.summary(listed)

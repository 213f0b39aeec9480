"""A folder import as a job: the same chunked import as the synchronous route, run by a worker
with progress (``importing N of M files``: one stage word, so a follower that prints a line
per stage prints one every 30 s, not one per chunk), cancellable before and between chunks,
and a result that stays small however large the folder (counts, and the first rejected files
with their reasons).

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
from backend.services.images import ImportResult, import_path_in_chunks, list_import

#: at most this many rejected files are listed in a job's result (all are counted)
MAX_LISTED_REJECTIONS = 1000


def request_import(session: Session, *, project_id: int, payload: ImportPayload, roots: list[Path]) -> Job:
    """Queue an import of ``payload.path`` for the project. The folder is listed now (no file
    is read), so a bad path (ForbiddenPathError: missing or outside ``roots``) or an unreadable
    labels.csv (DataError) is refused before a job exists; the worker lists it again, checked
    against its own import roots."""
    list_import(Path(payload.path), roots, payload.labels.value)
    return enqueue(session, kind=JobKind.IMPORT, project_id=project_id, payload=payload)


def import_summary(results: list[ImportResult], listed: int) -> dict[str, Any]:
    """A job's result: counts by status, ``listed`` files, and the first
    :data:`MAX_LISTED_REJECTIONS` rejected files with their reasons."""
    rejected = [{"file": r.file, "reason": r.reason} for r in results if r.status == "rejected"]
    return {
        "listed": listed,
        "imported": sum(r.status == "imported" for r in results),
        "duplicate": sum(r.status == "duplicate" for r in results),
        "rejected": len(rejected),
        "rejected_files": rejected[:MAX_LISTED_REJECTIONS],
    }


def run_import_job(ctx: JobContext) -> dict[str, Any]:
    """Import the payload's folder a chunk at a time, reporting ``done of listed files`` after
    each committed chunk and stopping between chunks when cancelled."""
    payload = ImportPayload.model_validate(ctx.payload)
    ctx.progress(0.0, f"importing: listing {payload.path}", force=True)
    ctx.check_cancel()
    listed = 0

    def after_chunk(done: int, total: int) -> None:
        nonlocal listed
        listed = total
        ctx.progress(
            done / total if total else 1.0, f"importing {done:,} of {total:,} files", force=True
        )  # one write a chunk
        if done < total:
            ctx.check_cancel()

    results = import_path_in_chunks(
        ctx.sessions,
        project_id=ctx.project_id,
        path=Path(payload.path),
        roots=ctx.settings.import_roots,
        labels=payload.labels.value,
        reads=ctx.read_sessions,
        after_chunk=after_chunk,
        chunk=images.IMPORT_CHUNK,
    )
    return import_summary(results, listed)

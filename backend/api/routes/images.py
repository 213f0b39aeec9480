from __future__ import annotations

from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, File, Query, UploadFile
from fastapi.responses import FileResponse, Response
from sqlalchemy import select

from backend.api.deps import MAX_ID, IdPath, SessionDep, SessionFactoriesDep, SettingsDep
from backend.api.routes.jobs import job_out
from backend.api.schemas import ImageOut, ImportRequest, ImportResultOut, ImportSummary, JobOut
from backend.db.tables import Image, Split
from backend.domain.jobs import ImportPayload
from backend.errors import NotFoundError
from backend.services import images as svc
from backend.services.import_job import request_import
from backend.services.overlays import overlay_png
from backend.services.projects import get_project

router = APIRouter(prefix="/projects/{project_id}/images", tags=["images"])

MAX_UPLOAD_BYTES = 200 << 20


def _summary(results: list[svc.ImportResult]) -> ImportSummary:
    return ImportSummary(
        imported=sum(r.status == "imported" for r in results),
        duplicate=sum(r.status == "duplicate" for r in results),
        rejected=sum(r.status == "rejected" for r in results),
        results=[ImportResultOut(**r.__dict__) for r in results],
    )


@router.post("/import")
def import_images(
    project_id: IdPath, body: ImportRequest, sessions: SessionFactoriesDep, settings: SettingsDep
) -> ImportSummary:
    """Import a server folder (plain images, labels.csv or MVTec layout) under an import root.

    Files are read, checked and stored a chunk at a time (1,000), each chunk committed when
    stored: an import interrupted part-way keeps the chunks it finished, and the same import
    run again reports them as duplicates (without decoding them again) and imports the rest.
    A chunk that fails stores nothing of its own."""
    with sessions.reads.begin() as s:
        get_project(s, project_id=project_id)
    results = svc.import_path_in_chunks(
        sessions.writes,
        project_id=project_id,
        path=Path(body.path),
        roots=settings.import_roots,
        labels=body.labels,
        reads=sessions.reads,
    )
    return _summary(results)


@router.post("/import-jobs", status_code=202)
def import_images_job(project_id: IdPath, body: ImportRequest, session: SessionDep, settings: SettingsDep) -> JobOut:
    """Queue the same import as a job, for folders too large to wait for in one request.

    The path is checked now (403 outside the import roots or missing); the job imports a
    chunk at a time with progress (``GET /jobs/{id}``: files done of files listed), can be
    cancelled between chunks (``POST /jobs/{id}/cancel``) and keeps the chunks it committed;
    its result counts imported, duplicate and rejected files and lists the first 1,000
    rejected ones with their reasons. Queued again, it imports what is still missing."""
    get_project(session, project_id=project_id)
    payload = ImportPayload(path=body.path, labels=body.labels)
    return job_out(request_import(session, project_id=project_id, payload=payload, roots=settings.import_roots))


@router.post("/upload")
def upload_images(
    project_id: IdPath,
    files: Annotated[list[UploadFile], File(description="Image files")],
    session: SessionDep,
    settings: SettingsDep,
) -> ImportSummary:
    """Upload image files; each is checked, deduplicated and stored under the data directory.

    A plain ``def``: decoding and database work run in the thread pool, never on the event loop."""
    prepared: list[svc.Prepared] = []
    for f in files:
        name = f.filename or "upload"
        data = f.file.read(MAX_UPLOAD_BYTES + 1)
        if len(data) > MAX_UPLOAD_BYTES:
            prepared.append(svc.ImportResult(name, "rejected", f"larger than {MAX_UPLOAD_BYTES >> 20} MiB"))
            continue
        prepared.append(svc.prepare_upload(data, name, settings.data_dir))
    project = get_project(session, project_id=project_id)
    return _summary(svc.store_prepared(session, project=project, items=prepared))


@router.get("")
def list_images(
    project_id: IdPath,
    session: SessionDep,
    split: Split | None = None,
    offset: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    after_id: Annotated[
        int | None,
        Query(ge=0, le=MAX_ID, description="Only images with a larger id: the last id of the previous page."),
    ] = None,
) -> list[ImageOut]:
    """The project's images by id, ``limit`` at a time. Page with ``after_id`` (the last id of the
    previous page): each page costs the same however deep it lies, where ``offset`` pages cost
    more the further they go (the database skips every row before them)."""
    get_project(session, project_id=project_id)
    q = select(Image).where(Image.project_id == project_id)
    if split is not None:
        q = q.where(Image.split == split)
    if after_id is not None:
        q = q.where(Image.id > after_id)
    rows = session.scalars(q.order_by(Image.id).offset(offset).limit(limit))
    return [ImageOut.model_validate(r) for r in rows]


def get_image(session, project_id: int, image_id: int) -> Image:
    img = session.get(Image, image_id)
    if img is None or img.project_id != project_id:
        raise NotFoundError(f"image {image_id} not found in project {project_id}")
    return img


@router.get("/{image_id}")
def image_info(project_id: IdPath, image_id: IdPath, session: SessionDep) -> ImageOut:
    return ImageOut.model_validate(get_image(session, project_id, image_id))


@router.get("/{image_id}/file")
def image_file(project_id: IdPath, image_id: IdPath, session: SessionDep) -> FileResponse:
    """The image's bytes as stored."""
    img = get_image(session, project_id, image_id)
    path = Path(img.uri)
    if not path.is_file():
        raise NotFoundError(f"image {image_id}: file {path} is gone from the server")
    return FileResponse(path)


@router.get("/{image_id}/overlay", responses={200: {"content": {"image/png": {}}}})
def image_overlay(project_id: IdPath, image_id: IdPath, session: SessionDep) -> Response:
    """The image with the active model version's anomaly map (and pseudo-mask outline) drawn over it."""
    img = get_image(session, project_id, image_id)
    return Response(content=overlay_png(session, image=img), media_type="image/png")

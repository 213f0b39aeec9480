from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Form, Query, Response, UploadFile
from sqlalchemy import func, select

from backend.api.deps import IdPath, SessionDep, SettingsDep
from backend.api.routes.images import get_image
from backend.api.schemas import LabelCounts, LabelHistory, LabelOut
from backend.db.tables import Image, Label
from backend.errors import NotFoundError
from backend.services import labels as svc
from backend.services import rounds
from backend.services.projects import get_project

router = APIRouter(prefix="/projects/{project_id}", tags=["labels"])


def label_out(row: Label) -> LabelOut:
    return LabelOut(
        id=row.id,
        image_id=row.image_id,
        is_defective=row.is_defective,
        has_mask=row.mask_png is not None,
        retracted=row.retracted,
        source=row.source.value,
        annotator=row.annotator,
        ls_annotation_id=row.ls_annotation_id,
        lead_time=row.lead_time,
        review_reason=row.review_reason,
        created_at=row.created_at,
        kind="retracted" if row.retracted else svc.label_kind(row),
        mask_origin=row.mask_origin,
        proposal_iou=row.proposal_iou,
        mask_edit=row.mask_edit,
    )


@router.get("/images/{image_id}/label")
def get_label(project_id: IdPath, image_id: IdPath, session: SessionDep) -> LabelHistory:
    """The current label and every earlier version (oldest first)."""
    get_image(session, project_id, image_id)
    cur = svc.current_label(session, image_id=image_id)
    return LabelHistory(
        current=label_out(cur) if cur else None,
        history=[label_out(r) for r in svc.label_history(session, image_id=image_id)],
    )


@router.get("/images/{image_id}/label/mask", response_class=Response, responses={200: {"content": {"image/png": {}}}})
def get_label_mask(project_id: IdPath, image_id: IdPath, session: SessionDep) -> Response:
    """The current label's mask as a 0/255 PNG at the image's resolution (404 without one)."""
    get_image(session, project_id, image_id)
    cur = svc.current_label(session, image_id=image_id)
    if cur is None or cur.mask_png is None:
        raise NotFoundError(f"image {image_id} has no current mask label")
    return Response(content=cur.mask_png, media_type="image/png")


@router.put("/images/{image_id}/label")
def put_label(
    project_id: IdPath,
    image_id: IdPath,
    session: SessionDep,
    settings: SettingsDep,
    is_defective: Annotated[bool, Form()],
    mask: Annotated[UploadFile | None, File(description="PNG mask at the image's size (0/255)")] = None,
    annotator: Annotated[str | None, Form()] = None,
    lead_time: Annotated[float | None, Form(ge=0, allow_inf_nan=False)] = None,
) -> LabelOut:
    """Add a label version: image-level, or with a mask PNG. The previous version stays.

    A plain ``def``: the database work runs in the thread pool, never on the event loop (a
    request waiting for SQLite's write lock must not block the request that holds it)."""
    arr = svc.parse_mask_upload(mask.file.read()) if mask is not None else None  # decoded before the lock is taken
    svc.check_api_label(is_defective, arr)
    img = get_image(session, project_id, image_id)
    row = svc.add_label(
        session,
        image=img,
        label=svc.LabelIn(is_defective=is_defective, mask=arr, annotator=annotator, lead_time=lead_time),
    )
    out = label_out(row)
    rounds.after_labels(session, settings, project_id=project_id)  # may close the round: its retrain is queued
    return out


@router.get("/labels")
def list_labels(
    project_id: IdPath,
    session: SessionDep,
    kind: Annotated[str | None, Query(pattern="^(normal|image|mask)$")] = None,
    source: str | None = None,
) -> list[LabelOut]:
    """Current labels of the project, optionally of one kind (normal, image, mask) or source."""
    get_project(session, project_id=project_id)
    rows = svc.current_labels(session, project_id=project_id)
    out = []
    for r in rows:
        if (kind is None or svc.label_kind(r) == kind) and (source is None or r.source.value == source):
            out.append(label_out(r))
    return out


@router.get("/labels/counts")
def label_counts(project_id: IdPath, session: SessionDep) -> LabelCounts:
    get_project(session, project_id=project_id)
    rows = svc.current_labels(session, project_id=project_id)
    n_images = session.scalar(select(func.count(Image.id)).where(Image.project_id == project_id)) or 0
    from collections import Counter

    kinds = Counter(svc.label_kind(r) for r in rows)
    return LabelCounts(
        images=n_images,
        labelled=len(rows),
        normal=kinds["normal"],
        image_level=kinds["image"],
        mask=kinds["mask"],
        review=kinds["unknown"],
        by_source=dict(Counter(r.source.value for r in rows)),
    )

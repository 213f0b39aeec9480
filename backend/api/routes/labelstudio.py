"""Label Studio: project setup, batches out, sync (bearer auth), and the endpoints Label
Studio itself calls (webhook, ML backend, signed image links: a secret instead of a token)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Body, HTTPException, Query
from fastapi.responses import FileResponse, Response
from sqlalchemy.orm import Session

from backend.api.deps import MAX_ID, IdPath, ReadSessionDep, SessionDep, SettingsDep
from backend.api.routes.jobs import job_out
from backend.api.schemas import JobOut, LinksRequest, PushRequest
from backend.db.tables import Image, Job, JobKind
from backend.errors import ConflictError
from backend.jobs import queue
from backend.services import labelstudio_link as link
from backend.services import link_signing, rounds
from backend.services.projects import get_project
from backend.services.retrain_request import request_retrain
from backend.settings import Settings
from labelstudio.events import ls_project_ref

router = APIRouter(tags=["labelstudio"])
callbacks = APIRouter(tags=["labelstudio callbacks"])


@router.post("/projects/{project_id}/labelstudio/setup")
def setup(project_id: IdPath, session: SessionDep, settings: SettingsDep) -> dict[str, Any]:
    """Create or update the project's Label Studio project (config, instructions, webhook)."""
    project = get_project(session, project_id=project_id)
    return {"ls_project_id": link.setup_project(session, settings, project)}


@router.post("/projects/{project_id}/labelstudio/push")
def push(project_id: IdPath, body: PushRequest, session: SessionDep, settings: SettingsDep) -> dict[str, Any]:
    """Send a ranked batch as pre-annotated tasks, in rank order (one bulk request)."""
    project = get_project(session, project_id=project_id)
    report = link.push_batch(
        session, settings, project, body.image_ids, asks=body.asks, include_labelled=body.include_labelled
    )
    return report.to_json()


@router.post("/projects/{project_id}/labelstudio/sync", status_code=202)
def sync(project_id: IdPath, session: SessionDep, settings: SettingsDep) -> JobOut:
    """Queue a reconcile job that pulls every annotation and repairs what webhooks missed."""
    get_project(session, project_id=project_id)
    job = queue.enqueue(session, kind=JobKind.SYNC, project_id=project_id)
    return job_out(job)


@router.post("/projects/{project_id}/labelstudio/connect")
def connect(project_id: IdPath, session: SessionDep, settings: SettingsDep) -> dict[str, Any]:
    """Register this service as the project's ML backend (fresh proposals inside Label Studio)."""
    return link.connect_ml_backend(session, settings, get_project(session, project_id=project_id))


def _check(settings: Any, secret: str) -> None:
    if not link.secret_matches(settings, secret):
        raise HTTPException(status_code=403, detail="wrong Label Studio callback secret")


@callbacks.post("/labelstudio/{secret}/webhook")
def webhook(
    secret: str, session: SessionDep, settings: SettingsDep, body: Annotated[Any, Body()] = None
) -> dict[str, Any]:
    """Annotation events (created, updated, deleted) and "Start training"."""
    _check(settings, secret)
    report = link.handle_webhook(session, body)
    if report["project_id"] is None:
        return report
    project = get_project(session, project_id=report["project_id"])
    job: Job | None
    try:
        if report["action"] == "START_TRAINING":  # closes the open round, or a plain retrain
            has_round = rounds.open_round(session, project_id=project.id) is not None
            job = (
                rounds.close_round(session, settings, project=project)[1]
                if has_round
                else request_retrain(session, settings, project_id=project.id)
            )
        else:
            job = rounds.auto_close(session, settings, project=project)
    except ConflictError as e:
        report["job_id"], report["note"] = e.job_id, str(e)
        return report
    if job is not None:
        report["job_id"] = job.id
    return report


@callbacks.get("/labelstudio/{secret}/health")
def ml_health(secret: str, settings: SettingsDep) -> dict[str, str]:
    _check(settings, secret)
    return {"status": "UP", "model_class": "SuperSimpleNet"}


@callbacks.post("/labelstudio/{secret}/setup")
def ml_setup(
    secret: str, session: ReadSessionDep, settings: SettingsDep, body: Annotated[Any, Body()] = None
) -> dict[str, str]:
    """Label Studio connecting: answer with the active model version's name."""
    _check(settings, secret)
    ls_id = ls_project_ref((body or {}).get("project")) if isinstance(body, dict) else None
    mv = None
    if ls_id is not None:
        mv = link.active_model_version(session, link.project_for_ls(session, ls_id).id)
    return {"model_version": mv.name if mv is not None else "none"}


@callbacks.post("/labelstudio/{secret}/predict")
def ml_predict(
    secret: str, session: ReadSessionDep, settings: SettingsDep, body: Annotated[Any, Body()] = None
) -> dict[str, Any]:
    """One proposal per task (choice, brush mask at full resolution, score)."""
    _check(settings, secret)
    if not isinstance(body, dict):
        raise HTTPException(status_code=422, detail="predict body: expected an object with 'tasks'")
    return link.predict_for_tasks(session, settings, body)


@router.post("/projects/{project_id}/labelstudio/links")
def links(
    project_id: IdPath, session: SessionDep, settings: SettingsDep, body: LinksRequest | None = None
) -> dict[str, Any]:
    """Sign the links in the project's Label Studio tasks anew (a new lifetime); with ``rotate``,
    first revoke every link of the project by giving it a new key (also when Label Studio is down)."""
    project = get_project(session, project_id=project_id)
    rotate = bool(body and body.rotate)
    if rotate:
        link_signing.rotate_key(settings, project.id)
    return {"rotated": rotate, "tasks_updated": link.refresh_links(session, settings, project)}


Expiry = Annotated[int, Query(ge=0, le=MAX_ID, description="Unix time the link expires at.")]


def _signed(session: Session, settings: Settings, kind: str, image_id: int, exp: int, sig: str) -> Image:
    """The image a signed link opens, or 403 saying why it does not (an unknown image alike)."""
    image = session.get(Image, image_id)
    why = (
        "wrong or revoked link signature"
        if image is None
        else link_signing.refusal(settings, image.project_id, kind, image_id, exp, sig)
    )
    if why is not None or image is None:
        raise HTTPException(status_code=403, detail=why or "wrong or revoked link signature")
    return image


@callbacks.get("/labelstudio/overlays/{image_id}", response_class=Response)
def signed_overlay(image_id: IdPath, exp: Expiry, sig: str, session: SessionDep, settings: SettingsDep) -> Response:
    """The model's view of an image (heatmap and region, JPEG) for verdict tasks, authorised by its signature."""
    jpeg = link.overlay_jpeg(session, _signed(session, settings, "overlays", image_id, exp, sig))
    if jpeg is None:
        raise HTTPException(
            status_code=404, detail=f"image {image_id} has no anomaly map from the active model version"
        )
    return Response(jpeg, media_type="image/jpeg")


@callbacks.get("/labelstudio/images/{image_id}", response_class=FileResponse)
def signed_image(image_id: IdPath, exp: Expiry, sig: str, session: SessionDep, settings: SettingsDep) -> FileResponse:
    """An image for annotators' browsers, authorised by its signature alone (until it expires)."""
    image = _signed(session, settings, "images", image_id, exp, sig)
    if not Path(image.uri).is_file():
        raise HTTPException(status_code=404, detail=f"image {image_id} not found")
    return FileResponse(image.uri)

"""Label Studio calling us as its ML backend: fresh proposals for tasks, and one-click masks from a
clicked point or a drawn box."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from backend.db.tables import (
    Image,
    ModelVersion,
    Prediction,
    Project,
)
from backend.domain.enums import AskKind
from backend.services.labelstudio_link.ingest import project_for_ls, task_record
from backend.services.labelstudio_link.proposals import Proposal, cached_click_head, cached_predictor, stored_proposal
from backend.services.model_versions import active_model_version
from backend.settings import Settings
from labelstudio.conversions import (
    PayloadError,
    brush_result,
    click_from_context,
    prediction_result,
)
from labelstudio.events import (
    ls_project_ref,
)
from ml import AssistError, Click, assist_mask, read_image


# ---- Label Studio calling us: the ML backend ----------------------------------------------
@dataclass(frozen=True)
class TaskRef:
    """A task Label Studio asks about: its image (None: not one of this project's) and what it asks."""

    image: Image | None
    ask: AskKind


def task_refs(
    session: Session, project: Project, ls_project_id: int | None, tasks: list[dict[str, Any]]
) -> list[TaskRef]:
    """The image and ask of each task (by defectloop's task record, else the id in the task
    data); an image of another project is never returned."""
    out: list[TaskRef] = []
    for t in tasks:
        image, data = None, (t.get("data") if isinstance(t, dict) else None) or {}
        tid = t.get("id") if isinstance(t, dict) else None
        rec = (
            task_record(session, ls_project_id, tid)
            if ls_project_id is not None and isinstance(tid, int) and 0 < tid < 2**31
            else None
        )
        if rec is not None:
            image, ask = session.get(Image, rec.image_id), rec.ask
        else:
            iid = data.get("defectloop_image_id")
            image = session.get(Image, iid) if isinstance(iid, int) and 0 < iid < 2**63 else None
            ask = AskKind(data["ask"]) if data.get("ask") in tuple(AskKind) else AskKind.VERDICT
        out.append(TaskRef(image if image is not None and image.project_id == project.id else None, ask))
    return out


def live_proposals(mv: ModelVersion, images: list[Image], device: str) -> list[Proposal]:
    """Run ``mv`` on images that have no stored prediction (one cached predictor per version)."""
    preds = cached_predictor(mv, device).predict([read_image(Path(im.uri)) for im in images])
    return [Proposal(p.score, p.decision, p.pred_mask if p.decision else None) for p in preds]


def predict_for_tasks(session: Session, settings: Settings, body: dict[str, Any]) -> dict[str, Any]:
    """The ML backend's /predict: one result per task from the active model version (a verdict
    task's result carries the verdict only). With a click or box in ``context`` (Label Studio's
    interactive pre-annotation), the mask of the defect there instead (:func:`assist_result`)."""
    tasks = body.get("tasks")
    if not isinstance(tasks, list):
        raise PayloadError("tasks: expected a list")
    ls_id = ls_project_ref(body.get("project"))
    project = project_for_ls(session, ls_id)
    mv = active_model_version(session, project.id)
    if mv is None:
        return {"results": [{"result": [], "score": 0.0, "model_version": "none"} for _ in tasks]}
    refs = task_refs(session, project, ls_id, tasks)
    context = body.get("context") or (body.get("params") or {}).get("context")
    if context:
        return {"results": [assist_result(mv, r, context) for r in refs]}
    images = [r.image for r in refs if r.image is not None]
    stored = {
        p.image_id: p
        for p in session.scalars(
            select(Prediction).where(
                Prediction.model_version_id == mv.id, Prediction.image_id.in_([im.id for im in images])
            )
        )
    }
    wants_mask = {r.image.id for r in refs if r.image is not None and r.ask is AskKind.MASK}
    proposals: dict[int, Proposal] = {
        im.id: stored_proposal(stored[im.id], mv, im, refined=im.id in wants_mask) for im in images if im.id in stored
    }
    todo = [im for im in images if im.id not in proposals]
    if todo:
        proposals.update({im.id: p for im, p in zip(todo, live_proposals(mv, todo, settings.device), strict=True)})
    results = []
    for r in refs:
        if r.image is None:
            results.append({"result": [], "score": 0.0, "model_version": mv.name})
            continue
        p = proposals[r.image.id]
        mask = p.mask if r.ask is AskKind.MASK else None
        results.append({"result": prediction_result(p.is_defective, mask), "score": p.score, "model_version": mv.name})
    return {"results": results}


def assist_result(mv: ModelVersion, ref: TaskRef, context: Any) -> dict[str, Any]:
    """One task's interactive pre-annotation: the brush mask of the defect at the click (or in
    the box) that ``context`` carries (``ml.assist``; a point by the model's click head when it has one)."""
    if ref.image is None:
        return {"result": [], "score": 0.0, "model_version": mv.name}
    image = ref.image
    c = click_from_context(context, image.width, image.height)
    try:
        mask = assist_mask(read_image(Path(image.uri)), Click(c.x, c.y, c.x2, c.y2), cached_click_head(mv))
    except AssistError as e:
        raise PayloadError(f"context: {e}") from None
    return {"result": [brush_result(mask)], "score": 1.0, "model_version": mv.name}

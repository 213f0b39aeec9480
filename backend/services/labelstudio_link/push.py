"""Out: a ranked, pre-annotated batch pushed as tasks (one request), earlier unanswered tasks
retired, and the service registered as the project's ML backend."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from backend.db.tables import (
    Image,
    LabelSource,
    LsTask,
    Prediction,
    Project,
)
from backend.domain.enums import AskKind
from backend.errors import NotFoundError, ServiceError
from backend.services.anomaly_maps import has_map
from backend.services.labels import (
    current_labels,
    encode_mask,
)
from backend.services.labelstudio_link.connection import (
    callback_base,
    document_root,
    image_link,
    overlay_link,
    refresh_links,
    setup_project,
    studio,
)
from backend.services.labelstudio_link.proposals import stored_proposal
from backend.services.model_versions import active_model_version
from backend.settings import Settings
from labelstudio.client import TaskOut
from labelstudio.conversions import (
    prediction_result,
)


def human_labelled(session: Session, project_id: int, image_ids: Collection[int] | None = None) -> set[int]:
    """The project's images (those among ``image_ids`` only, when given) whose current label
    comes from a person."""
    current = current_labels(session, project_id=project_id, image_ids=image_ids)
    return {r.image_id for r in current if r.source is LabelSource.HUMAN}


@dataclass
class PushReport:
    pushed: list[int] = field(default_factory=list)
    task_ids: list[int] = field(default_factory=list)
    already_in_labelstudio: list[int] = field(default_factory=list)
    already_labelled: list[int] = field(default_factory=list)
    mask_upgrades: list[int] = field(default_factory=list)
    with_prediction: int = 0
    model_version: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "pushed": len(self.pushed),
            "task_ids": self.task_ids,
            "image_ids": self.pushed,
            "mask_upgrades": self.mask_upgrades,
            "already_in_labelstudio": self.already_in_labelstudio,
            "already_labelled": self.already_labelled,
            "with_prediction": self.with_prediction,
            "model_version": self.model_version,
        }


def push_batch(
    session: Session,
    settings: Settings,
    project: Project,
    image_ids: list[int],
    *,
    asks: dict[int, AskKind] | None = None,
    include_labelled: bool = False,
) -> PushReport:
    """Create tasks for ``image_ids`` in this (rank) order, each pre-annotated with the
    active model version's proposal. Images already in Label Studio are not pushed again,
    except that an image whose task there asked for a verdict gets a second task when
    ``asks`` wants its mask (a mask upgrade); images with a human label are skipped unless
    ``include_labelled``."""
    if len(set(image_ids)) != len(image_ids):
        raise ServiceError("image_ids: the ranking lists an image twice")
    images = {
        im.id: im
        for im in session.scalars(select(Image).where(Image.id.in_(image_ids), Image.project_id == project.id))
    }
    missing = [i for i in image_ids if i not in images]
    if missing:
        raise NotFoundError(f"image_ids: not images of project {project.id}: {missing[:20]}")
    st = studio(settings)
    ls_id = setup_project(session, settings, project, st)
    report = PushReport()
    in_ls: dict[int, set[AskKind]] = {}
    for image_id, asked in session.execute(
        select(LsTask.image_id, LsTask.ask).where(LsTask.ls_project_id == ls_id, LsTask.image_id.in_(image_ids))
    ):
        in_ls.setdefault(image_id, set()).add(asked)
    labelled = set() if include_labelled else human_labelled(session, project.id, image_ids)
    mv = active_model_version(session, project.id)
    preds: dict[int, Prediction] = {}
    if mv is not None:
        report.model_version = mv.name
        preds = {
            p.image_id: p
            for p in session.scalars(
                select(Prediction).where(Prediction.model_version_id == mv.id, Prediction.image_id.in_(image_ids))
            )
        }
    root = document_root(settings)
    tasks: list[TaskOut] = []
    proposals: dict[int, np.ndarray | None] = {}  # the mask each task shows (mask asks only)
    folders: set[Path] = set()
    for rank, image_id in enumerate(image_ids, start=1):
        wanted = (asks or {}).get(image_id, AskKind.VERDICT)
        if wanted not in tuple(AskKind):
            raise ServiceError(f"asks[{image_id}]: expected 'verdict' or 'mask', got {wanted!r}")
        ask = AskKind(wanted)
        upgrade = ask is AskKind.MASK and in_ls.get(image_id) == {AskKind.VERDICT}
        if image_id in in_ls and not upgrade:
            report.already_in_labelstudio.append(image_id)
            continue
        if image_id in labelled:
            report.already_labelled.append(image_id)
            continue
        if upgrade:
            report.mask_upgrades.append(image_id)
        image = images[image_id]
        url, folder = image_link(settings, image, root)
        if folder is not None:
            folders.add(folder)
        result = score = shown = overlay = None
        if mv is not None and image_id in preds:
            prop = stored_proposal(preds[image_id], mv, image, refined=ask is AskKind.MASK)
            shown = (
                prop.mask
                if ask is AskKind.MASK and prop.is_defective and prop.mask is not None and prop.mask.any()
                else None
            )
            result, score = prediction_result(prop.is_defective, shown), prop.score
            if ask is AskKind.VERDICT and prop.is_defective and has_map(preds[image_id]):
                overlay = overlay_link(settings, image)
            report.with_prediction += 1
        proposals[image_id] = shown
        tasks.append(
            TaskOut(
                image_id=image_id,
                image_url=url,
                rank=rank,
                ask=ask,
                score=score,
                prediction=result,
                model_version=mv.name if mv is not None else None,
                overlay_url=overlay,
            )
        )
    st.ensure_local_storages(ls_id, folders)  # one listing per batch, one storage per new folder
    ids = st.import_tasks(ls_id, tasks)
    for t, tid in zip(tasks, ids, strict=True):
        shown = proposals.get(t.image_id)
        session.add(
            LsTask(
                project_id=project.id,
                image_id=t.image_id,
                ls_project_id=ls_id,
                ls_task_id=tid,
                rank=t.rank,
                ask=t.ask,
                model_version_id=mv.id if (mv is not None and t.prediction is not None) else None,
                proposal_png=encode_mask(shown) if shown is not None else None,
            )
        )
        report.pushed.append(t.image_id)
        report.task_ids.append(tid)
    session.flush()
    if report.already_in_labelstudio:  # pushed again: their tasks' links get a new lifetime
        refresh_links(session, settings, project, image_ids=set(report.already_in_labelstudio), st=st)
    return report


def retire_open_tasks(session: Session, settings: Settings, project: Project) -> list[int]:
    """Remove from Label Studio every task defectloop pushed that nobody has answered (a skipped
    task counts as unanswered), and forget them; their ids. A new round calls this before it
    pushes its batch, so Label Studio serves that batch alone, in rank order with unique ranks,
    and an image selected again gets a fresh task with the active model's proposal. Tasks
    with an answer, and tasks defectloop did not create, stay."""
    if project.ls_project_id is None:
        return []
    st = studio(settings)
    ls_id = project.ls_project_id
    unanswered = {t.task_id for t in st.open_tasks(ls_id)}
    ours = list(session.scalars(select(LsTask).where(LsTask.ls_project_id == ls_id, LsTask.ls_task_id.in_(unanswered))))
    st.delete_tasks(ls_id, sorted(t.ls_task_id for t in ours))
    for t in ours:
        session.delete(t)
    session.flush()
    return sorted(t.ls_task_id for t in ours)


def connect_ml_backend(session: Session, settings: Settings, project: Project) -> dict[str, int]:
    """Register this service as the project's ML backend; Label Studio adds a webhook to the
    backend's /webhook, which ``ensure_webhook`` then keeps to a single one."""
    st = studio(settings)
    ls_id = setup_project(session, settings, project, st)
    backend_id = st.connect_ml_backend(ls_id, callback_base(settings), title="defectloop")
    st.ensure_webhook(ls_id, f"{callback_base(settings)}/webhook")
    return {"ls_project_id": ls_id, "ml_backend_id": backend_id}

"""In: answers, exactly once, from webhooks and the reconcile sync.

Answers arrive by webhook and by the reconcile sync; both go through ``ingest_record`` /
``ingest_deletion``, which keep one ``LsAnnotation`` row per Label Studio annotation. That
row makes ingestion idempotent and order-safe: an event whose ``updated_at`` is not newer
than the last one taken, or any event after a deletion, changes nothing. An image answered
twice (a verdict, then its mask on a second task) has as current label its most recent answer
by Label Studio's timestamps, whatever order the webhooks came in (``settle_current``).
Labels themselves stay append-only (a deletion appends the answer that is current again, or
a retraction).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from backend.db.tables import (
    Image,
    Label,
    LabelSource,
    LsAnnotation,
    LsTask,
    ModelVersion,
    Prediction,
    Project,
)
from backend.domain.enums import AskKind
from backend.errors import ServiceError
from backend.jobs.runner import JobContext
from backend.services.labels import (
    LabelIn,
    add_label,
    current_label,
    decode_mask,
    mask_provenance,
)
from backend.services.labelstudio_link.connection import LabelStudioUnavailable, studio
from backend.services.labelstudio_link.proposals import stored_proposal
from backend.settings import Settings
from labelstudio.client import StudioError
from labelstudio.conversions import (
    PayloadError,
    parse_result,
)
from labelstudio.events import (
    ANNOTATION_ACTIONS,
    TRAINING_ACTION,
    AnnotationRecord,
    Export,
    parse_event,
)


# ---- in: answers, exactly once ------------------------------------------------------------
def _utc(t: datetime) -> datetime:
    """``t`` in UTC (a naive time is taken as UTC, as SQLite returns stored times)."""
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


@dataclass(frozen=True)
class Outcome:
    """What happened to one annotation: stored, ignored (duplicate, older, after deletion),
    retracted, or rejected (with the reason; nothing stored)."""

    annotation_id: int
    status: str
    reason: str = ""
    label_id: int | None = None


def _annotation_row(
    session: Session, project: Project, ls_project_id: int, annotation_id: int
) -> tuple[LsAnnotation, bool]:
    """The row of an annotation, created when new (safe against a concurrent creator)."""
    q = select(LsAnnotation).where(
        LsAnnotation.ls_project_id == ls_project_id, LsAnnotation.ls_annotation_id == annotation_id
    )
    row = session.scalars(q.with_for_update()).first()
    if row is not None:
        return row, False
    row = LsAnnotation(project_id=project.id, ls_project_id=ls_project_id, ls_annotation_id=annotation_id)
    try:
        with session.begin_nested():
            session.add(row)
            session.flush()
    except IntegrityError:
        return session.scalars(q.with_for_update()).one(), False
    return row, True


def task_record(session: Session, ls_project_id: int, task_id: int) -> LsTask | None:
    return session.scalars(
        select(LsTask).where(LsTask.ls_project_id == ls_project_id, LsTask.ls_task_id == task_id)
    ).first()


def task_proposal(session: Session, task: LsTask, image: Image) -> np.ndarray | None:
    """The mask ``task`` showed as its proposal (None: none). Tasks pushed before proposals were
    kept showed the stored map's unrefined region, recomputed here."""
    if task.proposal_png is not None:
        return decode_mask(task.proposal_png)
    if task.model_version_id is None:
        return None
    mv = session.get(ModelVersion, task.model_version_id)
    pred = session.scalars(
        select(Prediction).where(Prediction.model_version_id == task.model_version_id, Prediction.image_id == image.id)
    ).first()
    if mv is None or pred is None:
        return None
    return stored_proposal(pred, mv, image, refined=False).mask


def ingest_record(session: Session, project: Project, rec: AnnotationRecord) -> Outcome:
    """Store one annotation's current state as a Label (see the module docstring). A task that
    asked for a verdict yields a verdict only, whatever brush its answer carries; a mask answered
    on a mask task records its provenance against the task's proposal."""
    task = task_record(session, rec.ls_project_id, rec.task_id)
    if task is None:
        return Outcome(rec.annotation_id, "rejected", f"task {rec.task_id} is not a task defectloop created")
    image = session.get(Image, task.image_id)
    if image is None:
        return Outcome(rec.annotation_id, "rejected", f"task {rec.task_id}: its image {task.image_id} is gone")
    try:  # read before touching the database, so a bad answer stores nothing
        answer = (
            None
            if rec.was_cancelled
            else parse_result(rec.result, image.height, image.width, with_mask=task.ask is AskKind.MASK)
        )
        provenance = (
            None
            if answer is None or answer.mask is None
            else mask_provenance(answer.mask, task_proposal(session, task, image))
        )
    except PayloadError as e:
        return Outcome(rec.annotation_id, "rejected", f"annotation {rec.annotation_id} on task {rec.task_id}: {e}")
    row, _ = _annotation_row(session, project, rec.ls_project_id, rec.annotation_id)
    if row.deleted:
        return Outcome(rec.annotation_id, "ignored", "the annotation was deleted")
    updated = _utc(rec.updated_at)
    if row.ls_updated_at is not None and updated <= _utc(row.ls_updated_at):
        return Outcome(rec.annotation_id, "ignored", "not newer than the version already stored", row.label_id)
    row.image_id = image.id
    row.ls_updated_at = updated
    if answer is None:  # the annotator skipped the task: no verdict to store
        session.flush()
        return Outcome(rec.annotation_id, "ignored", "skipped by the annotator")
    label = add_label(
        session,
        image=image,
        label=LabelIn(
            is_defective=answer.is_defective,
            mask=answer.mask,
            source=LabelSource.HUMAN,
            annotator=rec.annotator,
            ls_annotation_id=rec.annotation_id,
            ls_updated_at=updated,
            lead_time=rec.lead_time,
            review_reason=answer.review_reason,
            provenance=provenance,
        ),
    )
    row.label_id = label.id
    session.flush()
    current = settle_current(session, image)
    if current is None or current.ls_annotation_id != rec.annotation_id:
        return Outcome(rec.annotation_id, "stored", "kept in the history: a more recent answer stays current", label.id)
    return Outcome(rec.annotation_id, "stored", answer.review_reason or "", label.id)


def ingest_deletion(session: Session, project: Project, ls_project_id: int, annotation_id: int) -> Outcome:
    """A deleted annotation: the image's current label becomes its most recent remaining answer
    (a retraction when none remains; history kept)."""
    row, created = _annotation_row(session, project, ls_project_id, annotation_id)
    if row.deleted:
        return Outcome(annotation_id, "ignored", "already deleted")
    row.deleted = True
    session.flush()
    if created or row.label_id is None or row.image_id is None:
        return Outcome(annotation_id, "retracted", "nothing stored for it yet")
    before = current_label(session, image_id=row.image_id)
    image = session.get(Image, row.image_id)
    after = settle_current(session, image) if image is not None else None
    if before is not None and after is not None and before.id == after.id:
        return Outcome(annotation_id, "retracted", "a more recent answer was already current")
    return Outcome(annotation_id, "retracted", "", after.id if after is not None else None)


def _answer_time(label: Label, ls_row: LsAnnotation | None) -> datetime:
    """When an answer was given: Label Studio's own ``updated_at`` for its annotations, the
    row's ``created_at`` for every other label (API, import)."""
    return _utc(ls_row.ls_updated_at if ls_row is not None and ls_row.ls_updated_at else label.created_at)


def settle_current(session: Session, image: Image) -> Label | None:
    """Make the image's current label its most recent answer, whatever order answers arrived in.

    Candidates: the stored version of every live (not deleted) Label Studio annotation of the
    image, timed by Label Studio's ``updated_at``, and the newest label from anywhere else,
    timed by its ``created_at``. When the winner is not the newest row already, a copy of it is
    appended (labels stay append-only; "newest row is current" stays true); when no candidate
    remains, a retraction is. Returns the current label (None: unlabelled)."""
    cands: list[tuple[datetime, int, Label]] = []
    for ls_row in session.scalars(
        select(LsAnnotation).where(
            LsAnnotation.image_id == image.id, LsAnnotation.deleted.is_(False), LsAnnotation.label_id.is_not(None)
        )
    ):
        label = session.get(Label, ls_row.label_id)
        if label is not None and not label.retracted:
            cands.append((_answer_time(label, ls_row), label.id, label))
    other = session.scalars(
        select(Label)
        .where(Label.image_id == image.id, Label.ls_annotation_id.is_(None))
        .order_by(Label.id.desc())
        .limit(1)
    ).first()
    if other is not None and not other.retracted:
        cands.append((_answer_time(other, None), other.id, other))
    cur = current_label(session, image_id=image.id)
    if not cands:
        if cur is not None:
            add_label(session, image=image, label=LabelIn(is_defective=None, retracted=True, source=LabelSource.HUMAN))
        return None
    _, _, win = max(cands, key=lambda c: (c[0], c[1]))
    if cur is not None and cur.id == win.id:
        return cur
    copy = Label(**{c: getattr(win, c) for c in _LABEL_COPY})
    session.add(copy)
    session.flush()
    if win.ls_annotation_id is not None:  # the annotation's stored version is now the copy
        session.execute(update(LsAnnotation).where(LsAnnotation.label_id == win.id).values(label_id=copy.id))
    return copy


#: What a settled copy keeps of the answer it repeats (``created_at`` too: its answer time).
_LABEL_COPY = (
    "image_id",
    "is_defective",
    "mask_png",
    "retracted",
    "source",
    "annotator",
    "ls_annotation_id",
    "ls_updated_at",
    "lead_time",
    "review_reason",
    "mask_origin",
    "proposal_iou",
    "mask_edit",
    "created_at",
)


def project_for_ls(session: Session, ls_project_id: int | None) -> Project:
    if ls_project_id is None:
        raise PayloadError("the event names no Label Studio project")
    project = session.scalars(select(Project).where(Project.ls_project_id == ls_project_id)).first()
    if project is None:
        raise PayloadError(f"Label Studio project {ls_project_id} is not linked to a defectloop project")
    return project


def handle_webhook(session: Session, body: Any) -> dict[str, Any]:
    """Ingest one webhook delivery; PayloadError when it cannot be used at all.

    Returns ``{"action", "project_id", "outcomes": [...]}``; START_TRAINING is reported as
    ``{"action": "START_TRAINING", "project_id"}`` for the caller to act on.
    """
    event = parse_event(body)
    if event.action not in (*ANNOTATION_ACTIONS, TRAINING_ACTION):
        return {"action": event.action, "project_id": None, "outcomes": [], "note": "event not used"}
    project = project_for_ls(session, event.ls_project_id)
    ls_id = project.ls_project_id
    if ls_id is None:  # project_for_ls found the project by it: never the case
        raise PayloadError("the event names no Label Studio project")
    outcomes = [ingest_record(session, project, r) for r in event.records]
    outcomes += [ingest_deletion(session, project, ls_id, a) for a in event.deleted]
    return {"action": event.action, "project_id": project.id, "outcomes": [o.__dict__ for o in outcomes]}


def sync_project(session: Session, settings: Settings, project: Project) -> dict[str, Any]:
    """Reconcile with Label Studio: take every annotation (what webhooks missed is stored,
    what they delivered is ignored as not newer), retract annotations deleted there, adopt
    tasks defectloop created but never recorded, and forget tasks deleted there."""
    if project.ls_project_id is None:
        raise ServiceError(f"project {project.name!r} has no Label Studio project yet: push a batch first")
    return apply_export(session, project, studio(settings).export_annotations(project.ls_project_id))


def apply_export(session: Session, project: Project, export: Export) -> dict[str, Any]:
    """Store what an export of the project's Label Studio project holds (see :func:`sync_project`)."""
    ls_id = project.ls_project_id
    if ls_id is None:
        raise ServiceError(f"project {project.name!r} has no Label Studio project yet: push a batch first")
    known = {t.ls_task_id: t for t in session.scalars(select(LsTask).where(LsTask.ls_project_id == ls_id))}
    adopted = 0
    for tid, image_id in export.tasks.items():
        if tid in known or image_id is None:
            continue
        image = session.get(Image, image_id)
        ask = AskKind(export.asks.get(tid, AskKind.VERDICT))
        taken = session.scalars(
            select(LsTask).where(LsTask.ls_project_id == ls_id, LsTask.image_id == image_id, LsTask.ask == ask)
        ).first()
        if image is not None and image.project_id == project.id and taken is None:
            known[tid] = LsTask(project_id=project.id, image_id=image_id, ls_project_id=ls_id, ls_task_id=tid, ask=ask)
            session.add(known[tid])
            adopted += 1
    session.flush()
    gone = [t for tid, t in known.items() if tid not in export.tasks]
    # oldest first: an image with two answered tasks (a verdict, then its mask) ends with the newer answer
    records = sorted(export.records, key=lambda r: (_utc(r.updated_at), r.annotation_id))
    outcomes = [ingest_record(session, project, r) for r in records]
    live = {r.annotation_id for r in export.records}
    stale = session.scalars(
        select(LsAnnotation.ls_annotation_id).where(
            LsAnnotation.ls_project_id == ls_id, LsAnnotation.deleted.is_(False)
        )
    ).all()
    outcomes += [ingest_deletion(session, project, ls_id, a) for a in stale if a not in live]
    for t in gone:
        session.delete(t)
    session.flush()
    counts: dict[str, int] = {}
    for o in outcomes:
        counts[o.status] = counts.get(o.status, 0) + 1
    return {
        "annotations": len(export.records),
        "tasks": len(export.tasks),
        "tasks_adopted": adopted,
        "tasks_gone": len(gone),
        "counts": counts,
        "rejected": [o.__dict__ for o in outcomes if o.status == "rejected"],
    }


def sync_before_retrain(session: Session, settings: Settings, project: Project) -> dict[str, Any] | None:
    """Bring labels up to date before a retrain freezes them (None: no Label Studio project)."""
    if project.ls_project_id is None:
        return None
    try:
        return sync_project(session, settings, project)
    except StudioError as e:
        raise LabelStudioUnavailable(
            f"{e}; a retrain now could miss answers: retry when Label Studio is back, or retrain with skip_sync"
        ) from None


def run_sync_job(ctx: JobContext) -> dict[str, Any]:
    """The reconcile sync as a job (``defectloop labelstudio sync``, the API)."""
    ctx.progress(0.1, "exporting annotations from Label Studio", force=True)
    with ctx.reads() as s:
        project = s.get(Project, ctx.project_id)
        if project is None:
            raise ServiceError(f"project {ctx.project_id} is gone")
        ls_id, name = project.ls_project_id, project.name
    if ls_id is None:
        raise ServiceError(f"project {name!r} has no Label Studio project yet: push a batch first")
    export = studio(ctx.settings).export_annotations(ls_id)  # no database lock held while Label Studio answers
    ctx.progress(0.6, "storing the answers", force=True)
    with ctx.sessions.begin() as s:
        return apply_export(s, s.get_one(Project, ctx.project_id), export)

"""defectloop <-> Label Studio: project setup, ranked batches out, answers in.

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

import hmac
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import cv2
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
from backend.errors import NotFoundError, ServiceError
from backend.jobs.runner import JobContext
from backend.services.labels import (
    LabelIn,
    add_label,
    current_label,
    current_labels,
    decode_mask,
    encode_mask,
    mask_provenance,
)
from backend.services.link_signing import resign, secret_file, signed_link
from backend.settings import Settings
from labelstudio.client import Studio, StudioError, TaskOut
from labelstudio.conversions import (
    PayloadError,
    brush_result,
    click_from_context,
    parse_result,
    prediction_result,
)
from labelstudio.events import (
    ANNOTATION_ACTIONS,
    TRAINING_ACTION,
    AnnotationRecord,
    Export,
    ls_project_ref,
    parse_event,
)
from labelstudio.server import (
    ServerInfo,
    default_template_dir,
    load_credentials,
    prepare_template,
    recorded,
)
from labelstudio.server import start as start_server
from labelstudio.server import status as server_status
from ml.assist import AssistError, Click, assist_mask
from ml.errors import DataError
from ml.images import read_image
from ml.overlay import heatmap_overlay
from ml.refine import DEFAULT_METHOD, RefineMethod, refine_mask


class LabelStudioUnavailable(ServiceError):
    """Label Studio is not configured or cannot be reached."""

    status_code = 503


# ---- connection and secrets ---------------------------------------------------------------
def home(settings: Settings) -> Path:
    """Where `defectloop labelstudio start` keeps the local server's data and records."""
    return settings.data_dir / "labelstudio"


def start_local(
    settings: Settings,
    server_home: Path,
    *,
    document_root: Path,
    port: int | None = None,
    say: Callable[[str], None] = lambda _: None,
) -> ServerInfo:
    """Start (or find running) a local Label Studio for ``server_home``, copying the migrated
    template kept beside its environment (built once), so a new home starts in seconds."""
    venv = settings.labelstudio_env
    template = prepare_template(default_template_dir(venv.parent), venv=venv, say=say)
    return start_server(server_home, document_root=document_root, venv=venv, port=port, template=template, say=say)


def studio(settings: Settings) -> Studio:
    """A client for the configured Label Studio, or the locally started one."""
    if settings.labelstudio_url:
        if not settings.labelstudio_token:
            raise LabelStudioUnavailable("DEFECTLOOP_LABELSTUDIO_URL is set but DEFECTLOOP_LABELSTUDIO_TOKEN is not")
        return Studio(settings.labelstudio_url, settings.labelstudio_token)
    info, creds = server_status(home(settings)), load_credentials(home(settings))
    if info is None or creds is None:
        raise LabelStudioUnavailable(
            "no Label Studio is running: start one with `defectloop labelstudio start` "
            "or set DEFECTLOOP_LABELSTUDIO_URL and DEFECTLOOP_LABELSTUDIO_TOKEN"
        )
    return Studio(info.url, creds.token)


def document_root(settings: Settings) -> Path | None:
    """The folder Label Studio serves local files from (None: every image is a signed link)."""
    if settings.labelstudio_document_root:
        return settings.labelstudio_document_root.resolve()
    if settings.labelstudio_url:
        return None
    info = recorded(home(settings))
    return Path(info.document_root) if info is not None else None


def webhook_secret(settings: Settings) -> str:
    """The secret in every URL Label Studio calls back on (generated once when not configured)."""
    if settings.webhook_secret:
        return settings.webhook_secret
    return secret_file(home(settings) / "webhook_secret")


def secret_matches(settings: Settings, given: str) -> bool:
    return hmac.compare_digest(given.encode(), webhook_secret(settings).encode())


def callback_base(settings: Settings) -> str:
    """The URL prefix of the webhook and ML backend endpoints, secret included."""
    return f"{settings.public_url.rstrip('/')}/labelstudio/{webhook_secret(settings)}"


def overlay_link(settings: Settings, image: Image) -> str:
    """The signed link of an image's model's-view picture (:func:`verdict_overlay`; expires, see
    ``link_signing``)."""
    return signed_link(settings, image.project_id, "overlays", image.id)


def overlay_jpeg(session: Session, image: Image) -> bytes | None:
    """The model's-view picture of ``image`` from the active model version (None: no map)."""
    mv = active_model_version(session, image.project_id)
    pred = (
        None
        if mv is None
        else session.scalars(
            select(Prediction).where(Prediction.model_version_id == mv.id, Prediction.image_id == image.id)
        ).first()
    )
    return None if pred is None else verdict_overlay(pred, mv, image)


def image_link(settings: Settings, image: Image, root: Path | None) -> tuple[str, Path | None]:
    """How Label Studio shows ``image``: a local-files URL (plus the storage folder that
    grants it) when the file is in a subfolder of the document root, else a signed link
    (expires, see ``link_signing``)."""
    path = Path(image.uri).resolve()
    if root is not None and path.is_relative_to(root) and len(path.relative_to(root).parts) > 1:
        rel = path.relative_to(root)
        return f"/data/local-files/?d={rel.as_posix()}", root / rel.parts[0]
    return signed_link(settings, image.project_id, "images", image.id), None


def refresh_links(
    session: Session,
    settings: Settings,
    project: Project,
    *,
    image_ids: set[int] | None = None,
    st: Studio | None = None,
) -> int:
    """Re-sign the signed links in the project's Label Studio tasks (every task, or those of
    ``image_ids``) with a new expiry and the project's current key; the number of tasks updated."""
    if project.ls_project_id is None:
        return 0
    st = st or studio(settings)
    tasks = st.task_data(project.ls_project_id)
    wanted = {i for d in tasks.values() if isinstance(i := d.get("defectloop_image_id"), int)}
    if image_ids is not None:
        wanted &= image_ids
    mine = wanted & set(session.scalars(select(Image.id).where(Image.project_id == project.id)))
    updated = 0
    for task_id, data in tasks.items():
        if data.get("defectloop_image_id") not in mine:
            continue
        new = {
            k: resign(v, settings, project.id, mine.__contains__)
            if k in ("image", "overlay") and isinstance(v, str)
            else v
            for k, v in data.items()
        }
        if new != data:
            st.update_task_data(task_id, new)
            updated += 1
    return updated


# ---- project setup ------------------------------------------------------------------------
def setup_project(session: Session, settings: Settings, project: Project, st: Studio | None = None) -> int:
    """Create or update the project's Label Studio project and its webhook; its id."""
    st = st or studio(settings)
    ls_id = st.ensure_project(project.ls_project_id, title=f"defectloop: {project.name}")
    if ls_id != project.ls_project_id:
        project.ls_project_id = ls_id
        session.flush()
    st.ensure_webhook(ls_id, f"{callback_base(settings)}/webhook")
    return ls_id


# ---- out: a ranked, pre-annotated batch ---------------------------------------------------
@dataclass(frozen=True)
class Proposal:
    """The model's proposal for one image: ``mask`` bool ``(H, W)`` at full resolution or None."""

    score: float
    is_defective: bool
    mask: np.ndarray | None


def stored_map(prediction: Prediction, image: Image) -> np.ndarray | None:
    """The stored anomaly map float32 ``(H, W)`` in [0, 1] at the image's resolution (None: none on disk)."""
    if not prediction.anomaly_map_path or not Path(prediction.anomaly_map_path).is_file():
        return None
    amap = cv2.imread(prediction.anomaly_map_path, cv2.IMREAD_GRAYSCALE)
    if amap is None:
        return None
    if amap.shape != (image.height, image.width):
        amap = cv2.resize(amap, (image.width, image.height), interpolation=cv2.INTER_LINEAR)
    return amap.astype(np.float32) / 255.0


def mask_method(mv: ModelVersion) -> RefineMethod:
    """How ``mv``'s proposals turn its anomaly maps into masks (recorded in its model directory)."""
    return RefineMethod(mv.config.get("mask_method", DEFAULT_METHOD))


def stored_proposal(prediction: Prediction, mv: ModelVersion, image: Image, *, refined: bool = True) -> Proposal:
    """A proposal from a pool-scoring Prediction: for a likely defect, the stored anomaly map's
    region at the pixel threshold refined with the image (``refined=False``: the region as it is;
    also when the image file cannot be read any more)."""
    mask = None
    amap = stored_map(prediction, image) if prediction.decision else None
    if amap is not None:
        threshold = float(mv.thresholds.get("pixel", 0.5))
        mask = amap >= threshold
        method = mask_method(mv) if refined else RefineMethod.COARSE
        if method is not RefineMethod.COARSE:
            try:
                rgb = read_image(Path(image.uri))
            except DataError:
                rgb = None
            if rgb is not None and rgb.shape[:2] == amap.shape:
                mask = refine_mask(rgb, amap, threshold, method)
    return Proposal(float(prediction.score), bool(prediction.decision), mask)


#: the longer side of the model's-view picture on a verdict task
OVERLAY_SIDE = 384


def verdict_overlay(prediction: Prediction, mv: ModelVersion, image: Image) -> bytes | None:
    """A small JPEG of the image with the stored anomaly map as a heatmap and the region at the
    pixel threshold outlined: what a verdict task shows of the model's view (None: no map or
    no readable image)."""
    amap = stored_map(prediction, image)
    if amap is None:
        return None
    try:
        rgb = read_image(Path(image.uri))
    except DataError:
        return None
    if rgb.shape[:2] != amap.shape:
        return None
    over = heatmap_overlay(rgb, amap, amap >= float(mv.thresholds.get("pixel", 0.5)))
    f = min(1.0, OVERLAY_SIDE / max(over.shape[:2]))
    if f < 1:
        over = cv2.resize(over, (round(over.shape[1] * f), round(over.shape[0] * f)), interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(".jpg", over[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 80])
    return buf.tobytes() if ok else None


def active_model_version(session: Session, project_id: int) -> ModelVersion | None:
    return session.scalars(
        select(ModelVersion).where(ModelVersion.project_id == project_id, ModelVersion.is_active)
    ).first()


def human_labelled(session: Session, project_id: int) -> set[int]:
    """The project's images whose current label comes from a person."""
    return {r.image_id for r in current_labels(session, project_id=project_id) if r.source is LabelSource.HUMAN}


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
    asks: dict[int, str] | None = None,
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
    in_ls: dict[int, set[str]] = {}
    for image_id, asked in session.execute(
        select(LsTask.image_id, LsTask.ask).where(LsTask.ls_project_id == ls_id, LsTask.image_id.in_(image_ids))
    ):
        in_ls.setdefault(image_id, set()).add(asked)
    labelled = set() if include_labelled else human_labelled(session, project.id)
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
        ask = (asks or {}).get(image_id, "verdict")
        if ask not in ("verdict", "mask"):
            raise ServiceError(f"asks[{image_id}]: expected 'verdict' or 'mask', got {ask!r}")
        upgrade = ask == "mask" and in_ls.get(image_id) == {"verdict"}
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
            prop = stored_proposal(preds[image_id], mv, image, refined=ask == "mask")
            shown = (
                prop.mask if ask == "mask" and prop.is_defective and prop.mask is not None and prop.mask.any() else None
            )
            result, score = prediction_result(prop.is_defective, shown), prop.score
            if ask == "verdict" and prop.is_defective and preds[image_id].anomaly_map_path:
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
    for folder in sorted(folders):
        st.ensure_local_storage(ls_id, folder)
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


# ---- in: answers, exactly once ------------------------------------------------------------
def _utc(t: datetime | None) -> datetime | None:
    if t is None:
        return None
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


def _task(session: Session, ls_project_id: int, task_id: int) -> LsTask | None:
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
    task = _task(session, rec.ls_project_id, rec.task_id)
    if task is None:
        return Outcome(rec.annotation_id, "rejected", f"task {rec.task_id} is not a task defectloop created")
    image = session.get(Image, task.image_id)
    try:  # read before touching the database, so a bad answer stores nothing
        answer = (
            None
            if rec.was_cancelled
            else parse_result(rec.result, image.height, image.width, with_mask=task.ask == "mask")
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
    after = settle_current(session, session.get(Image, row.image_id))
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
    outcomes = [ingest_record(session, project, r) for r in event.records]
    outcomes += [ingest_deletion(session, project, event.ls_project_id, a) for a in event.deleted]
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
    known = {t.ls_task_id: t for t in session.scalars(select(LsTask).where(LsTask.ls_project_id == ls_id))}
    adopted = 0
    for tid, image_id in export.tasks.items():
        if tid in known or image_id is None:
            continue
        image = session.get(Image, image_id)
        ask = export.asks.get(tid, "verdict")
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


# ---- Label Studio calling us: the ML backend ----------------------------------------------
@dataclass(frozen=True)
class TaskRef:
    """A task Label Studio asks about: its image (None: not one of this project's) and what it asks."""

    image: Image | None
    ask: str


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
            _task(session, ls_project_id, tid)
            if ls_project_id is not None and isinstance(tid, int) and 0 < tid < 2**31
            else None
        )
        if rec is not None:
            image, ask = session.get(Image, rec.image_id), rec.ask
        else:
            iid = data.get("defectloop_image_id")
            image = session.get(Image, iid) if isinstance(iid, int) and 0 < iid < 2**63 else None
            ask = data.get("ask") if data.get("ask") in ("verdict", "mask") else "verdict"
        out.append(TaskRef(image if image is not None and image.project_id == project.id else None, ask))
    return out


_PREDICTORS: dict[int, Any] = {}


def cached_predictor(mv: ModelVersion, device: str) -> Any:
    """``mv``'s loaded predictor, kept for the next call (one version at a time)."""
    from ml.artifact import load_model

    if mv.id not in _PREDICTORS:
        _PREDICTORS.clear()
        _PREDICTORS[mv.id] = load_model(Path(mv.artifact_path), device=device).predictor
    return _PREDICTORS[mv.id]


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
    wants_mask = {r.image.id for r in refs if r.image is not None and r.ask == "mask"}
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
        mask = p.mask if r.ask == "mask" else None
        results.append({"result": prediction_result(p.is_defective, mask), "score": p.score, "model_version": mv.name})
    return {"results": results}


def assist_result(mv: ModelVersion, ref: TaskRef, context: Any) -> dict[str, Any]:
    """One task's interactive pre-annotation: the brush mask of the defect at the click (or in
    the box) that ``context`` carries, made from the image there (``ml.assist``)."""
    if ref.image is None:
        return {"result": [], "score": 0.0, "model_version": mv.name}
    image = ref.image
    c = click_from_context(context, image.width, image.height)
    try:
        mask = assist_mask(read_image(Path(image.uri)), Click(c.x, c.y, c.x2, c.y2))
    except AssistError as e:
        raise PayloadError(f"context: {e}") from None
    return {"result": [brush_result(mask)], "score": 1.0, "model_version": mv.name}


def run_sync_job(ctx: JobContext) -> dict[str, Any]:
    """The reconcile sync as a job (``defectloop labelstudio sync``, the API)."""
    ctx.progress(0.1, "exporting annotations from Label Studio", force=True)
    with ctx.read_sessions() as s:
        project = s.get(Project, ctx.project_id)
        ls_id, name = project.ls_project_id, project.name
    if ls_id is None:
        raise ServiceError(f"project {name!r} has no Label Studio project yet: push a batch first")
    export = studio(ctx.settings).export_annotations(ls_id)  # no database lock held while Label Studio answers
    ctx.progress(0.6, "storing the answers", force=True)
    with ctx.sessions.begin() as s:
        return apply_export(s, s.get(Project, ctx.project_id), export)

"""Active-learning rounds: bootstrap, select and push a batch, close (sync, retrain), record.

Round 0 (bootstrap) trains UNSUPERVISED on the unlabelled pool presumed normal
(pseudo-normal samples, never Labels) and scores the pool. Round k selects a batch with the
project's acquisition strategy from the active ModelVersion's pool predictions, pushes it to
Label Studio pre-annotated with what to ask (verdict or mask), and waits; closing it syncs
the answers, retrains with the regime the labels allow (UNSUPERVISED until they hold
``min_defects_supervised`` defective images), evaluates on the fixed test split and records
the round's point on the label-efficiency curves (see :func:`curve_point`).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from backend.db.tables import (
    Job,
    JobStatus,
    ModelVersion,
    Project,
    Round,
    RoundStatus,
    utcnow,
)
from backend.domain.jobs import TrainPayload
from backend.domain.rounds import RoundParams
from backend.errors import ConflictError, NotFoundError
from backend.errors import RoundError as RoundError
from backend.services.labels import current_labels
from backend.services.pool_candidates import DEFAULT_MIN_DEFECTS_SUPERVISED as DEFAULT_MIN_DEFECTS_SUPERVISED
from backend.services.pool_candidates import DEFAULT_PSEUDO_NORMAL_FRACTION as DEFAULT_PSEUDO_NORMAL_FRACTION
from backend.services.pool_candidates import candidates as candidates
from backend.services.pool_candidates import (
    count_pseudo_normals,
    pseudo_normals_query,
    require_active,
    setting_or,
    unlabelled_pool_query,
)
from backend.services.pool_candidates import pseudo_normals as pseudo_normals
from backend.services.round_metrics import audit as audit
from backend.services.round_metrics import curve_point as curve_point
from backend.services.round_metrics import label_cost as label_cost
from backend.settings import Settings
from ml import STRATEGIES, AskKind, AskPolicy, Costs, Regime, staged_ask
from ml import select as acquire

STRATEGY_NAMES = tuple(STRATEGIES)
OPEN = (RoundStatus.PLANNED, RoundStatus.ANNOTATING, RoundStatus.TRAINING)


def _reconcile(session: Session, rnd: Round) -> Round:
    """A TRAINING round whose job ended without running its handler (cancelled while queued,
    reaped after its worker died) is FAILED: the job record is the truth."""
    job_id = rnd.params.job_id
    if rnd.status is RoundStatus.TRAINING and job_id is not None:
        job = session.get(Job, int(job_id))
        if job is None or job.status in (JobStatus.FAILED, JobStatus.CANCELLED):
            rnd.status = RoundStatus.FAILED
            rnd.message = (
                f"retrain job {job_id} {job.status.value if job else 'vanished'}: {job.message if job else ''}"[:500]
            )
    return rnd


def rounds_of(session: Session, *, project_id: int) -> list[Round]:
    rows = session.scalars(select(Round).where(Round.project_id == project_id).order_by(Round.index))
    return [_reconcile(session, r) for r in rows]


def open_round(session: Session, *, project_id: int) -> Round | None:
    rnd = session.scalars(
        select(Round).where(Round.project_id == project_id, Round.status.in_(OPEN)).order_by(Round.index.desc())
    ).first()
    return None if rnd is None or _reconcile(session, rnd).status not in OPEN else rnd


def _next_index(session: Session, project_id: int) -> int:
    last = session.scalar(select(func.max(Round.index)).where(Round.project_id == project_id))
    return 0 if last is None else last + 1


# Whether refinement helps was measured with bench/pseudo_normal.py (docs/RESULTS.md).
DEFAULT_BOOTSTRAP_REFINE_FRACTION = 0.5


def bootstrap(session: Session, settings: Settings, *, project: Project, seed: int = 0) -> tuple[Round, Job]:
    """Round 0: queue an UNSUPERVISED train on the unlabelled pool presumed normal.

    With ``train_defaults.bootstrap_refine_fraction`` F > 0 the model is trained twice:
    the second time on the fraction F of the pool the first model scores lowest, so hidden
    defects in the pool stop being taught as normal (0 turns it off).
    """
    from backend.services.retrain_request import request_retrain

    existing = rounds_of(session, project_id=project.id)
    retry = len(existing) == 1 and existing[0].status is RoundStatus.FAILED  # a failed bootstrap runs again
    if existing and not retry:
        raise RoundError(f"project {project.id} has rounds already: the bootstrap is round 0")
    pool = unlabelled_pool_query(session, project_id=project.id)  # described, not listed: any pool size
    n_pool = count_pseudo_normals(session, project_id=project.id, pool=pool)
    if not n_pool:
        raise RoundError("the pool holds no unlabelled image: import the line's images first")
    rnd = existing[0] if retry else Round(project_id=project.id, index=0, strategy="bootstrap", budget=0)
    rnd.status, rnd.message, rnd.started_at = RoundStatus.TRAINING, "", utcnow()
    keep = setting_or(project.train_defaults.bootstrap_refine_fraction, DEFAULT_BOOTSTRAP_REFINE_FRACTION)
    rnd.params = RoundParams(seed=seed, pseudo_normal=n_pool, refine_keep=keep)
    session.add(rnd)
    session.flush()
    job = request_retrain(
        session,
        settings,
        project_id=project.id,
        skip_sync=True,
        payload=TrainPayload(
            round_id=rnd.id,
            pseudo_normal=pool,
            regime=Regime.UNSUPERVISED,
            seed=seed,
            refine_keep=keep or None,
        ),
    )
    rnd.params = rnd.params.model_copy(update={"job_id": job.id})
    return rnd, job


def resolve_ask(session: Session, *, project_id: int, ask: AskPolicy) -> AskPolicy:
    """The concrete ask policy (AUTO, VERDICT or MASK) of the next round.

    STAGED is decided from the project's finished rounds (see :func:`ml.acquisition.staged_ask`):
    their evaluation image AP in round order, and whether a staged round already asked for masks.
    """
    ask = AskPolicy(ask)
    if ask is not AskPolicy.STAGED:
        return ask
    done = [r for r in rounds_of(session, project_id=project_id) if r.status is RoundStatus.DONE]
    image_ap = [((r.metrics or {}).get("metrics") or {}).get("image_ap") for r in done]
    started = any(r.params.ask is AskPolicy.STAGED and r.params.ask_used is AskPolicy.AUTO for r in done)
    return staged_ask(image_ap, masks_started=started)


def start_round(
    session: Session,
    settings: Settings,
    *,
    project: Project,
    budget: float | None = None,
    strategy: str | None = None,
    ask: AskPolicy = AskPolicy.AUTO,
    seed: int | None = None,
    push: bool = True,
) -> Round:
    """Round k: select a batch from the active ModelVersion's pool scores and push it pre-annotated."""
    ask = AskPolicy(ask)
    if (r := open_round(session, project_id=project.id)) is not None:
        if r.status is RoundStatus.TRAINING:
            raise busy(r, project)
        raise ConflictError(
            f"round {r.index} is still {r.status.value}: close it first (defectloop round {project.name} --close)"
        )
    mv = require_active(session, project.id)
    index = _next_index(session, project.id)
    strategy = strategy or project.strategy
    budget = float(project.round_budget if budget is None else budget)
    seed = index if seed is None else seed
    ask_used = resolve_ask(session, project_id=project.id, ask=ask)
    try:
        asks = acquire(
            candidates(session, project_id=project.id, mv=mv),
            strategy=strategy,
            budget=budget,
            costs=Costs(project.cost_image_label, project.cost_mask_label),
            mask_share=project.mask_share,
            ask=ask_used,
            seed=seed,
        )
    except ValueError as e:
        raise RoundError(str(e)) from None
    if not asks:
        raise RoundError("nothing to ask: every pool image is labelled (or the budget buys no label)")
    rnd = Round(
        project_id=project.id,
        index=index,
        strategy=strategy,
        budget=round(budget),
        status=RoundStatus.ANNOTATING,
        params=RoundParams(
            seed=seed,
            ask=ask,
            ask_used=ask_used,
            mask_share=project.mask_share,
            model_version_id=mv.id,
            asks=tuple((a.image_id, a.kind) for a in asks),
        ),
        started_at=utcnow(),
    )
    session.add(rnd)
    session.flush()
    if push:
        from backend.services.labelstudio_link import push_batch, retire_open_tasks

        # the earlier batches' unanswered tasks go: Label Studio serves this batch alone, in rank order
        retired = retire_open_tasks(session, settings, project)
        report = push_batch(
            session,
            settings,
            project,
            [a.image_id for a in asks],
            asks={a.image_id: a.kind for a in asks},
            include_labelled=True,
        )
        rnd.params = rnd.params.model_copy(update={"pushed": len(report.pushed), "retired_tasks": len(retired)})
        policy = f"; staged: {ask_used}" if ask is AskPolicy.STAGED else ""
        gone = f"; {len(retired)} unanswered tasks of earlier rounds removed" if retired else ""
        rnd.message = (
            f"{len(report.pushed)} tasks in Label Studio ({sum(a.kind is AskKind.MASK for a in asks)} ask for a "
            f"mask{policy}{gone})"
        )
    return rnd


def busy(rnd: Round, project: Project) -> ConflictError:
    """The conflict while ``rnd`` trains: which job to wait for, and how (never "start" or "close")."""
    job_id = rnd.params.job_id
    what = "round 0 (the bootstrap) is training" if rnd.index == 0 else f"round {rnd.index} is closed and retraining"
    return ConflictError(
        f"{what} (job {job_id}): wait for it with `defectloop round {project.name} --wait` (or watch "
        f"`defectloop status {project.name}`), then run `defectloop round {project.name}` for the next batch",
        int(job_id) if job_id is not None else None,
    )


def _utc(t: datetime) -> datetime:
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


def new_answers(session: Session, *, round_: Round) -> int:
    """How many of the round's asked images were answered since it started (their current
    label is newer than the round; an image asked again for its mask counts once answered again)."""
    asked = round_.params.asked_ids()
    since = _utc(round_.started_at or round_.created_at)
    return sum(
        1
        for lb in current_labels(session, project_id=round_.project_id, image_ids=asked)
        if _utc(lb.created_at) >= since
    )


def close_round(
    session: Session,
    settings: Settings,
    *,
    project: Project,
    skip_sync: bool = False,
    force: bool = False,
) -> tuple[Round, Job]:
    """Sync the answers, then retrain on them; the round is recorded when the model is registered.

    A round none of whose images was answered (after the sync) is not closed: RoundError says
    so, unless ``force`` retrains on the labels as they are.
    """
    from backend.services.labelstudio_link import sync_before_retrain
    from backend.services.retrain_request import request_retrain, sync_counts

    rnd = open_round(session, project_id=project.id)
    if rnd is not None and rnd.status is RoundStatus.TRAINING:
        raise busy(rnd, project)
    if rnd is None or rnd.status is not RoundStatus.ANNOTATING:
        failed = session.scalars(
            select(Round)
            .where(Round.project_id == project.id, Round.status == RoundStatus.FAILED)
            .order_by(Round.index.desc())
        ).first()
        if failed is not None and failed.index == 0 and rnd is None:
            raise RoundError(f"the bootstrap (round 0) failed: run it again with defectloop round {project.name}")
        if rnd is None and failed is not None and failed.index == _next_index(session, project.id) - 1:
            rnd = failed  # a failed retrain may be closed again
        else:
            what = "no round is open" if rnd is None else f"round {rnd.index} is {rnd.status.value}"
            raise RoundError(f"{what}: start one with defectloop round {project.name}")
    sync = None if skip_sync else sync_before_retrain(session, settings, project)
    if not force and new_answers(session, round_=rnd) == 0:
        raise RoundError(
            f"round {rnd.index} has no answers yet, so there is nothing new to train on: answer its tasks in Label "
            f"Studio first, or retrain anyway with `defectloop round {project.name} --close --force` (API: force=true)"
        )
    pseudo = pseudo_normals_query(session, project=project)
    n_pseudo = 0 if pseudo is None else count_pseudo_normals(session, project_id=project.id, pool=pseudo)
    min_defects = int(setting_or(project.train_defaults.min_defects_supervised, DEFAULT_MIN_DEFECTS_SUPERVISED))
    job = request_retrain(
        session,
        settings,
        project_id=project.id,
        skip_sync=True,
        payload=TrainPayload(
            round_id=rnd.id,
            seed=rnd.params.seed,
            pseudo_normal=pseudo,
            min_defects_supervised=min_defects,
            sync=sync_counts(sync) if sync else None,
        ),
    )
    rnd.params = rnd.params.model_copy(update={"pseudo_normal": n_pseudo, "min_defects_supervised": min_defects})
    rnd.status, rnd.message = RoundStatus.TRAINING, f"retraining (job {job.id})"
    rnd.params = rnd.params.model_copy(update={"job_id": job.id})
    return rnd, job


def answered(session: Session, *, round_: Round) -> int:
    """How many of the round's asked images have a current label."""
    asked = round_.params.asked_ids()
    return len(current_labels(session, project_id=round_.project_id, image_ids=asked))


def auto_close(session: Session, settings: Settings, *, project: Project) -> Job | None:
    """Close the open round once ``project.auto_round_labels`` of its images are answered
    (or all of them, when fewer were asked); None when it is not time yet."""
    rnd = open_round(session, project_id=project.id)
    if project.auto_round_labels is None or rnd is None or rnd.status is not RoundStatus.ANNOTATING:
        return None
    needed = min(project.auto_round_labels, len(rnd.params.asks))
    if answered(session, round_=rnd) < needed:
        return None
    return close_round(session, settings, project=project, skip_sync=True)[1]


def after_labels(session: Session, settings: Settings, *, project_id: int) -> Job | None:
    """Labels arrived: close the open round if it is time (:func:`auto_close`). A retrain
    already running is not an error here: the round closes with a later answer or by hand."""
    try:
        return auto_close(session, settings, project=session.get_one(Project, project_id))
    except ConflictError:
        return None


def finish_round(
    session: Session, *, round_id: int, mv: ModelVersion, pseudo_normal: int | None = None, note: str = ""
) -> None:
    """Called when a round's retrain registered ``mv``: link it and record the curve point.

    ``pseudo_normal``: how many pseudo-normal images the final model trained on, when the
    training itself decided it (a refined bootstrap keeps part of the pool). ``note``: why
    the regime is what it is, when a rule chose it (shown in the round's message).
    """
    rnd = session.get(Round, round_id)
    if rnd is None:
        return
    if pseudo_normal is not None:
        rnd.params = rnd.params.model_copy(update={"pseudo_normal": pseudo_normal})
    mv.round_id = rnd.id
    project = session.get_one(Project, rnd.project_id)
    rnd.metrics = curve_point(session, project=project, mv=mv, round_=rnd)
    why = f": {note}" if note else ""
    rnd.status, rnd.finished_at, rnd.message = RoundStatus.DONE, utcnow(), f"trained {mv.name} ({mv.regime}{why})"


def fail_round(session: Session, *, round_id: int, message: str) -> None:
    rnd = session.get(Round, round_id)
    if rnd is not None and rnd.status is not RoundStatus.DONE:
        rnd.status, rnd.message = RoundStatus.FAILED, message[:500]


def get_round(session: Session, *, project_id: int, index: int) -> Round:
    rnd = session.scalars(select(Round).where(Round.project_id == project_id, Round.index == index)).first()
    if rnd is None:
        raise NotFoundError(f"project {project_id} has no round {index}")
    return rnd


def round_json(rnd: Round) -> dict[str, Any]:
    def ts(d: datetime | None) -> str | None:
        return d.isoformat() if d else None

    return {
        "id": rnd.id,
        "index": rnd.index,
        "strategy": rnd.strategy,
        "budget": rnd.budget,
        "status": rnd.status.value,
        "message": rnd.message,
        "asks": [[i, kind.value] for i, kind in rnd.params.asks],
        "metrics": rnd.metrics,
        "created_at": ts(rnd.created_at),
        "started_at": ts(rnd.started_at),
        "finished_at": ts(rnd.finished_at),
    }

"""The pool a round works on: the candidates it chooses from (scored by the active model version,
with what is labelled already and which defective verdicts may still be asked for their mask)
and the pseudo-normal images it trains on."""

from __future__ import annotations

import numpy as np
from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from backend.db.tables import Image, Label, LsTask, ModelVersion, Prediction, Project, Split
from backend.domain.jobs import PoolRule, PseudoNormalPool
from backend.errors import RoundError
from backend.services.anomaly_maps import pixel_threshold
from backend.services.labels import current_labels
from backend.services.model_versions import active_model_version
from backend.services.predictions import embedding_matrix
from ml import AskKind, Candidates


def candidates(session: Session, *, project_id: int, mv: ModelVersion) -> Candidates:
    """The pool as the active ModelVersion scored it, with what is labelled already.

    Raises RoundError while pool images still lack a prediction of ``mv`` (scoring running).
    """
    pool = list(
        session.scalars(
            select(Image.id).where(Image.project_id == project_id, Image.split == Split.POOL).order_by(Image.id)
        )
    )
    # the columns selection needs, not Prediction rows: no ORM object per pool image
    scored = {
        image_id: (score, uncertainty or {}, embedding)
        for image_id, score, uncertainty, embedding in session.execute(
            select(Prediction.image_id, Prediction.score, Prediction.uncertainty, Prediction.embedding).where(
                Prediction.model_version_id == mv.id
            )
        )
    }
    missing = [i for i in pool if i not in scored]
    if missing:
        raise RoundError(f"{len(missing)} pool images are not scored by {mv.name} yet: wait for the pool scoring job")
    current = {lb.image_id: lb for lb in current_labels(session, project_id=project_id)}
    mask_asked = set(
        session.scalars(select(LsTask.image_id).where(LsTask.project_id == project_id, LsTask.ask == AskKind.MASK))
    )
    ids = np.array(pool, np.int64)
    rows = [scored[i] for i in pool]
    upgradable = np.array([i in current and _upgradable(current[i], i in mask_asked) for i in pool], bool)
    labelled = np.array([i in current for i in pool], bool) & ~upgradable
    emb = embedding_matrix([r[2] for r in rows])
    lab_emb = emb[labelled | upgradable] if len(pool) else np.zeros((0, emb.shape[1]), np.float32)
    return Candidates(
        ids=ids,
        scores=np.array([r[0] for r in rows], float),
        map_max=np.array([r[1].get("map_max", 0.0) for r in rows], float),
        map_entropy=np.array([r[1].get("map_region_entropy", 0.0) for r in rows], float),
        embeddings=emb,
        labelled=labelled,
        upgradable=upgradable,
        image_threshold=float(mv.thresholds.get("image", 0.5)),
        pixel_threshold=pixel_threshold(mv),
        labelled_embeddings=lab_emb,
    )


def _upgradable(label: Label, mask_asked: bool) -> bool:
    """A defective verdict without a mask, whose mask was never asked for in Label Studio
    (an image answered there with a verdict gets a second task that asks for the mask; a
    mask task answered without one is not asked again)."""
    return bool(label.is_defective) and label.mask_png is None and not mask_asked


def unlabelled_pool(session: Session, project_id: int) -> list[int]:
    """The pool images without a current label, in id order."""
    return list(session.scalars(_unlabelled_ids(project_id).order_by(Image.id)))


def _unlabelled_ids(project_id: int, *, max_image_id: int | None = None, max_label_id: int | None = None) -> Select:
    """``SELECT image.id`` of the project's pool images whose current label is absent or a
    retraction; with cutoffs, as they stood when the newest image and label had those ids
    (one statement with no list of ids in it, whatever the pool's size)."""
    newest = (
        select(func.max(Label.id))
        .join(Image, Image.id == Label.image_id)
        .where(Image.project_id == project_id)
        .group_by(Label.image_id)
    )
    if max_label_id is not None:
        newest = newest.where(Label.id <= max_label_id)
    labelled = select(Label.image_id).where(Label.id.in_(newest), Label.retracted.is_(False))
    q = select(Image.id).where(Image.project_id == project_id, Image.split == Split.POOL, Image.id.not_in(labelled))
    return q if max_image_id is None else q.where(Image.id <= max_image_id)


def _cutoffs(session: Session, project_id: int) -> tuple[int, int]:
    """The newest image id and label id of the project now (0 where none)."""
    max_image = session.scalar(select(func.max(Image.id)).where(Image.project_id == project_id))
    max_label = session.scalar(
        select(func.max(Label.id)).join(Image, Image.id == Label.image_id).where(Image.project_id == project_id)
    )
    return int(max_image or 0), int(max_label or 0)


def unlabelled_pool_query(session: Session, *, project_id: int) -> PseudoNormalPool:
    """The unlabelled pool as it stands now, as a description a job resolves later to the same ids."""
    max_image, max_label = _cutoffs(session, project_id)
    return PseudoNormalPool(rule=PoolRule.UNLABELLED, max_image_id=max_image, max_label_id=max_label)


def count_pseudo_normals(session: Session, *, project_id: int, pool: PseudoNormalPool) -> int:
    """How many images :func:`resolve_pseudo_normals` gives, counted in the database."""
    unlabelled = _unlabelled_ids(project_id, max_image_id=pool.max_image_id, max_label_id=pool.max_label_id)
    n = int(session.scalar(select(func.count()).select_from(unlabelled.subquery())) or 0)
    if pool.rule is PoolRule.UNLABELLED:
        return n
    return len(_lowest_scored(session, project_id=project_id, pool=pool, unlabelled=n))


def resolve_pseudo_normals(session: Session, *, project_id: int, pool: PseudoNormalPool) -> list[int]:
    """The image ids ``pool`` describes, in id order (see :class:`PseudoNormalPool`); the
    same ids whenever it is resolved, since images and labels are only ever appended."""
    unlabelled = _unlabelled_ids(project_id, max_image_id=pool.max_image_id, max_label_id=pool.max_label_id)
    if pool.rule is PoolRule.UNLABELLED:
        return list(session.scalars(unlabelled.order_by(Image.id)))
    n = int(session.scalar(select(func.count()).select_from(unlabelled.subquery())) or 0)
    return sorted(_lowest_scored(session, project_id=project_id, pool=pool, unlabelled=n))


def _lowest_scored(session: Session, *, project_id: int, pool: PseudoNormalPool, unlabelled: int) -> list[int]:
    """The ``int(fraction * unlabelled)`` unlabelled pool images ``pool.model_version_id``
    scored lowest (ties by id; unscored images are never among them)."""
    if pool.model_version_id is None or pool.fraction is None:
        raise ValueError("a lowest-scored pseudo-normal pool names its model version and fraction")
    keep = int(pool.fraction * unlabelled)
    if keep <= 0:
        return []
    ids = _unlabelled_ids(project_id, max_image_id=pool.max_image_id, max_label_id=pool.max_label_id)
    q = (
        select(Prediction.image_id)
        .where(Prediction.model_version_id == pool.model_version_id, Prediction.image_id.in_(ids))
        .order_by(Prediction.score, Prediction.image_id)
        .limit(keep)
    )
    return list(session.scalars(q))


def require_active(session: Session, project_id: int) -> ModelVersion:
    """The active model version (RoundError: none yet)."""
    mv = active_model_version(session, project_id)
    if mv is None:
        raise RoundError("no active model version: run the bootstrap round first (defectloop round PROJECT)")
    return mv


DEFAULT_PSEUDO_NORMAL_FRACTION = 0.5


def setting_or(value: float | None, default: float) -> float:
    """A project's training setting, or its default when unset (0 is a setting: it turns a rule off)."""
    return default if value is None else value


# Rounds train UNSUPERVISED until the labels hold this many defective images
# (ml.regimes.loop_regime; the crossover measured in docs/RESULTS.md, "Few labelled defects").
DEFAULT_MIN_DEFECTS_SUPERVISED = 20


def pseudo_normals_query(session: Session, *, project: Project) -> PseudoNormalPool | None:
    """The pseudo-normal images of a round's retrain, described for its job: the unlabelled pool
    images the active model scores lowest, the lowest ``train_defaults.pseudo_normal_fraction``
    (default 0.5; 0 turns it off: None) of the *unlabelled* pool.

    They join the round's training as normal samples (pseudo-labels, never Labels), so a
    supervised round still sees the line's normal variation, not only the few answered images.
    The share is taken of what is still unlabelled, not of the whole pool: labelling removes
    images (most of them normal) from the pool while its hidden defects stay, so a fixed count
    would take a growing share of the unlabelled images, and with it more of their defects
    (docs/RESULTS.md, "Pseudo-normals in later rounds").
    """
    fraction = float(setting_or(project.train_defaults.pseudo_normal_fraction, DEFAULT_PSEUDO_NORMAL_FRACTION))
    mv = require_active(session, project.id) if fraction > 0 else None
    if mv is None:
        return None
    max_image, max_label = _cutoffs(session, project.id)
    return PseudoNormalPool(
        rule=PoolRule.LOWEST_SCORED,
        max_image_id=max_image,
        max_label_id=max_label,
        model_version_id=mv.id,
        fraction=fraction,
    )


def pseudo_normals(session: Session, *, project: Project) -> list[int]:
    """The ids :func:`pseudo_normals_query` describes, now, in id order."""
    pool = pseudo_normals_query(session, project=project)
    return [] if pool is None else resolve_pseudo_normals(session, project_id=project.id, pool=pool)

"""The tables (SQLAlchemy 2 typed mappings). Labels and model versions are never rewritten:
a new answer is a new Label row; a ModelVersion is immutable once registered.
"""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    DateTime,
    Enum,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        dict[str, Any]: JSON,
        list[Any]: JSON,
        datetime: DateTime(timezone=True),
    }


def _enum(cls: type[enum.Enum], name: str) -> Enum:
    return Enum(
        cls,
        name=name,
        native_enum=False,
        create_constraint=True,
        length=16,
        values_callable=lambda e: [m.value for m in e],
    )


class Split(enum.StrEnum):
    POOL = "pool"
    TRAIN = "train"
    VAL = "val"
    TEST = "test"


class LabelSource(enum.StrEnum):
    HUMAN = "human"
    IMPORT = "import"
    PSEUDO = "pseudo"


class MaskOrigin(enum.StrEnum):
    """How an answered mask came to be, against the proposal its task showed."""

    ACCEPTED = "accepted"  # the proposal submitted unchanged
    EDITED = "edited"  # the proposal corrected
    DRAWN = "drawn"  # painted without a proposal


class MaskCostModel(enum.StrEnum):
    """What a mask label costs: ``flat`` always ``cost_mask_label``; ``edit`` a verdict's cost plus
    the share of the mask the annotator had to change (``Label.mask_edit``) of the difference, so a
    mask drawn from nothing costs ``cost_mask_label`` and an accepted proposal a verdict's cost."""

    FLAT = "flat"
    EDIT = "edit"


class RoundStatus(enum.StrEnum):
    PLANNED = "planned"
    ANNOTATING = "annotating"
    TRAINING = "training"
    DONE = "done"
    FAILED = "failed"


class JobKind(enum.StrEnum):
    TRAIN = "train"
    PREDICT = "predict"
    EVALUATE = "evaluate"
    SYNC = "sync"


class JobStatus(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


class Project(Base):
    __tablename__ = "project"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    image_height: Mapped[int] = mapped_column(Integer, default=256)
    image_width: Mapped[int] = mapped_column(Integer, default=256)
    backbone: Mapped[str] = mapped_column(String(100), default="tf_efficientnet_lite0")
    profile: Mapped[str] = mapped_column(String(20), default="fast")
    train_defaults: Mapped[dict[str, Any]] = mapped_column(default=dict)
    cost_image_label: Mapped[float] = mapped_column(Float, default=1.0)
    cost_mask_label: Mapped[float] = mapped_column(Float, default=10.0)
    strategy: Mapped[str] = mapped_column(String(50), default="hybrid", server_default="hybrid")
    round_budget: Mapped[float] = mapped_column(Float, default=30.0, server_default=text("30"))
    mask_share: Mapped[float] = mapped_column(Float, default=0.5, server_default=text("0.5"))
    mask_cost_model: Mapped[MaskCostModel] = mapped_column(
        _enum(MaskCostModel, "mask_cost_model"), default=MaskCostModel.EDIT, server_default=MaskCostModel.EDIT.value
    )
    auto_round_labels: Mapped[int | None] = mapped_column(Integer, nullable=True)
    ls_project_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    images: Mapped[list[Image]] = relationship(back_populates="project", lazy="raise")


class Image(Base):
    __tablename__ = "image"
    __table_args__ = (UniqueConstraint("project_id", "sha256"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("project.id", ondelete="CASCADE"), index=True)
    uri: Mapped[str] = mapped_column(String(2000))
    sha256: Mapped[str] = mapped_column(String(64))
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    split: Mapped[Split] = mapped_column(_enum(Split, "split"), default=Split.POOL)
    added_at: Mapped[datetime] = mapped_column(default=utcnow)

    project: Mapped[Project] = relationship(back_populates="images", lazy="raise")
    labels: Mapped[list[Label]] = relationship(back_populates="image", lazy="raise", order_by="Label.id")


class Label(Base):
    """One answer about an image. The newest row of an image is its current label.

    ``is_defective`` is null only on a retraction (the annotation was deleted) or on an
    answer flagged for review whose verdict could not be read; ``mask_png``
    is a lossless PNG at the image's resolution, or null for an image-level label.
    ``review_reason`` marks answers stored but needing a human look (e.g. OK with a brush).
    A mask answered on a task that asked for one records its origin against the task's
    proposal (``mask_origin``), their IoU (``proposal_iou``, null when drawn) and the share
    of the mask that had to change (``mask_edit``: differing pixels over the answer's pixels,
    at most 1; 1 when drawn).
    """

    __tablename__ = "label"
    __table_args__ = (
        CheckConstraint(
            "retracted OR is_defective IS NOT NULL OR review_reason IS NOT NULL", name="verdict_or_retraction"
        ),
        Index("ix_label_image_id_id", "image_id", "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("image.id", ondelete="CASCADE"))
    is_defective: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    mask_png: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    retracted: Mapped[bool] = mapped_column(Boolean, default=False, server_default=text("false"))
    source: Mapped[LabelSource] = mapped_column(_enum(LabelSource, "label_source"))
    annotator: Mapped[str | None] = mapped_column(String(200), nullable=True)
    ls_annotation_id: Mapped[int | None] = mapped_column(Integer, nullable=True, index=True)
    ls_updated_at: Mapped[datetime | None] = mapped_column(nullable=True)
    lead_time: Mapped[float | None] = mapped_column(Float, nullable=True)
    review_reason: Mapped[str | None] = mapped_column(String(500), nullable=True)
    mask_origin: Mapped[MaskOrigin | None] = mapped_column(_enum(MaskOrigin, "mask_origin"), nullable=True)
    proposal_iou: Mapped[float | None] = mapped_column(Float, nullable=True)
    mask_edit: Mapped[float | None] = mapped_column(Float, nullable=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    image: Mapped[Image] = relationship(back_populates="labels", lazy="raise")


class Round(Base):
    __tablename__ = "round"
    __table_args__ = (UniqueConstraint("project_id", "index"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("project.id", ondelete="CASCADE"))
    index: Mapped[int] = mapped_column(Integer)
    strategy: Mapped[str] = mapped_column(String(50))
    budget: Mapped[int] = mapped_column(Integer)
    status: Mapped[RoundStatus] = mapped_column(_enum(RoundStatus, "round_status"), default=RoundStatus.PLANNED)
    params: Mapped[dict[str, Any]] = mapped_column(default=dict)  # seed, ask policy, mask share, the asks
    metrics: Mapped[dict[str, Any]] = mapped_column(default=dict)  # the round's point on the curves
    message: Mapped[str] = mapped_column(String(500), default="", server_default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(nullable=True)


class ModelVersion(Base):
    """An immutable trained artifact. At most one per project is active."""

    __tablename__ = "model_version"
    __table_args__ = (
        UniqueConstraint("project_id", "name"),
        Index(
            "uq_model_version_one_active",
            "project_id",
            unique=True,
            sqlite_where=text("is_active"),
            postgresql_where=text("is_active"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("project.id", ondelete="CASCADE"))
    round_id: Mapped[int | None] = mapped_column(ForeignKey("round.id", ondelete="SET NULL"), nullable=True)
    name: Mapped[str] = mapped_column(String(100))
    regime: Mapped[str] = mapped_column(String(20))
    profile: Mapped[str] = mapped_column(String(20))
    config: Mapped[dict[str, Any]] = mapped_column()
    artifact_path: Mapped[str] = mapped_column(String(2000))
    artifact_sha256: Mapped[str] = mapped_column(String(64))
    thresholds: Mapped[dict[str, Any]] = mapped_column()
    metrics: Mapped[dict[str, Any]] = mapped_column(default=dict)
    label_ids: Mapped[list[Any]] = mapped_column(default=list)
    is_active: Mapped[bool] = mapped_column(Boolean, default=False, server_default=text("false"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Prediction(Base):
    """A model version's score of one image. ``uncertainty``: the statistics acquisition ranks by
    (``ml.predict.Prediction.uncertainty``); ``embedding``: the pooled features as little-endian
    float32 bytes (``backend.services.predictions``); the anomaly map lies on disk
    (``backend.services.anomaly_maps``)."""

    __tablename__ = "prediction"
    __table_args__ = (UniqueConstraint("model_version_id", "image_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    model_version_id: Mapped[int] = mapped_column(ForeignKey("model_version.id", ondelete="CASCADE"))
    image_id: Mapped[int] = mapped_column(ForeignKey("image.id", ondelete="CASCADE"), index=True)
    score: Mapped[float] = mapped_column(Float)
    decision: Mapped[bool] = mapped_column(Boolean)
    uncertainty: Mapped[dict[str, Any]] = mapped_column(default=dict)
    embedding: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    anomaly_map_path: Mapped[str | None] = mapped_column(String(2000), nullable=True)
    anomaly_map_sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Job(Base):
    """Infrastructure: a unit of background work with its status and progress."""

    __tablename__ = "job"
    __table_args__ = (
        CheckConstraint("progress >= 0 AND progress <= 1", name="progress_range"),
        # one retrain per project at a time, enforced by the database itself
        Index(
            "uq_job_one_active_train",
            "project_id",
            unique=True,
            sqlite_where=text("kind = 'train' AND status IN ('queued', 'running')"),
            postgresql_where=text("kind = 'train' AND status IN ('queued', 'running')"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[JobKind] = mapped_column(_enum(JobKind, "job_kind"))
    project_id: Mapped[int] = mapped_column(ForeignKey("project.id", ondelete="CASCADE"), index=True)
    status: Mapped[JobStatus] = mapped_column(_enum(JobStatus, "job_status"), default=JobStatus.QUEUED)
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    message: Mapped[str] = mapped_column(String(500), default="")
    error: Mapped[str | None] = mapped_column(String(4000), nullable=True)
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    result: Mapped[dict[str, Any]] = mapped_column(default=dict)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False, server_default=text("false"))
    heartbeat_at: Mapped[datetime | None] = mapped_column(nullable=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(nullable=True)


class WorkerKind(enum.StrEnum):
    EMBEDDED = "embedded"  # the polling worker `serve` starts (or `defectloop worker` without Redis)
    RQ = "rq"  # an RQ worker process


class Worker(Base):
    """Infrastructure: a job worker process, alive while ``beat_at`` is fresher than the
    heartbeat timeout. Rows are removed when a worker stops cleanly; a killed one's row just
    goes stale."""

    __tablename__ = "worker"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)  # host:pid
    kind: Mapped[WorkerKind] = mapped_column(_enum(WorkerKind, "worker_kind"))
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    beat_at: Mapped[datetime] = mapped_column(default=utcnow)
    job_id: Mapped[int | None] = mapped_column(Integer, nullable=True)


class LsTask(Base):
    """An image's task in the project's Label Studio project: at most one per image and
    ask, so an image answered with a verdict can get a second task that asks for its mask.
    ``proposal_png``: the mask proposal the task was pushed with (mask asks only; null: none),
    what an answer's mask is compared with."""

    __tablename__ = "ls_task"
    __table_args__ = (
        UniqueConstraint("ls_project_id", "ls_task_id"),
        UniqueConstraint("ls_project_id", "image_id", "ask"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("project.id", ondelete="CASCADE"), index=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("image.id", ondelete="CASCADE"))
    ls_project_id: Mapped[int] = mapped_column(Integer)
    ls_task_id: Mapped[int] = mapped_column(Integer)
    rank: Mapped[int | None] = mapped_column(Integer, nullable=True)
    ask: Mapped[str] = mapped_column(String(16), default="verdict")
    model_version_id: Mapped[int | None] = mapped_column(
        ForeignKey("model_version.id", ondelete="SET NULL"), nullable=True
    )
    proposal_png: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class LsAnnotation(Base):
    """What defectloop last took from one Label Studio annotation: the guard that makes
    webhook deliveries and syncs idempotent and order-safe (older ``updated_at`` and events
    after a deletion are ignored)."""

    __tablename__ = "ls_annotation"
    __table_args__ = (UniqueConstraint("ls_project_id", "ls_annotation_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("project.id", ondelete="CASCADE"), index=True)
    ls_project_id: Mapped[int] = mapped_column(Integer)
    ls_annotation_id: Mapped[int] = mapped_column(Integer)
    image_id: Mapped[int | None] = mapped_column(ForeignKey("image.id", ondelete="CASCADE"), nullable=True)
    ls_updated_at: Mapped[datetime | None] = mapped_column(nullable=True)
    label_id: Mapped[int | None] = mapped_column(ForeignKey("label.id", ondelete="SET NULL"), nullable=True)
    deleted: Mapped[bool] = mapped_column(Boolean, default=False, server_default=text("false"))

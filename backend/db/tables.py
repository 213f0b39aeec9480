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
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship, validates

from backend.db.json_types import ModelJSON

# the domain's enums, re-exported: the tables are where most code meets them
from backend.domain.enums import LabelSource as LabelSource
from backend.domain.enums import MaskCostModel as MaskCostModel
from backend.domain.enums import MaskOrigin as MaskOrigin
from backend.domain.enums import RoundStatus as RoundStatus
from backend.domain.enums import Split as Split
from backend.domain.project_settings import DEFAULT_SETTINGS as D
from backend.domain.project_settings import TrainDefaults
from backend.domain.rounds import RoundParams
from ml import AskKind, ProfileName, Regime

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


def _enum(cls: type[enum.Enum], name: str, *, length: int = 16, check: bool = True) -> Enum:
    """A string column holding ``cls``'s values (``check``: with a CHECK constraint listing them)."""
    return Enum(
        cls,
        name=name,
        native_enum=False,
        create_constraint=check,
        length=length,
        values_callable=lambda e: [m.value for m in e],
    )


class JobKind(enum.StrEnum):
    TRAIN = "train"
    PREDICT = "predict"
    EVALUATE = "evaluate"
    SYNC = "sync"
    IMPORT = "import"  # a server folder imported chunk by chunk, with progress


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
    # the defaults are backend.domain.project_settings.DEFAULT_SETTINGS (the server defaults are
    # the migrations' and must agree with it)
    image_height: Mapped[int] = mapped_column(Integer, default=D.image_height)
    image_width: Mapped[int] = mapped_column(Integer, default=D.image_width)
    backbone: Mapped[str] = mapped_column(String(100), default=D.backbone)
    profile: Mapped[ProfileName] = mapped_column(
        _enum(ProfileName, "profile", length=20, check=False), default=D.profile
    )
    train_defaults: Mapped[TrainDefaults] = mapped_column(ModelJSON(TrainDefaults), default=TrainDefaults)
    cost_image_label: Mapped[float] = mapped_column(Float, default=D.cost_image_label)
    cost_mask_label: Mapped[float] = mapped_column(Float, default=D.cost_mask_label)
    strategy: Mapped[str] = mapped_column(String(50), default=D.strategy, server_default="hybrid")
    round_budget: Mapped[float] = mapped_column(Float, default=D.round_budget, server_default=text("30"))
    mask_share: Mapped[float] = mapped_column(Float, default=D.mask_share, server_default=text("0.5"))
    mask_cost_model: Mapped[MaskCostModel] = mapped_column(
        _enum(MaskCostModel, "mask_cost_model"), default=D.mask_cost_model, server_default=MaskCostModel.EDIT.value
    )
    auto_round_labels: Mapped[int | None] = mapped_column(Integer, nullable=True)
    ls_project_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    images: Mapped[list[Image]] = relationship(back_populates="project", lazy="raise")

    @validates("train_defaults")
    def _typed_train_defaults(self, _: str, value: TrainDefaults | dict[str, Any]) -> TrainDefaults:
        return value if isinstance(value, TrainDefaults) else TrainDefaults.model_validate(value)


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
    params: Mapped[RoundParams] = mapped_column(ModelJSON(RoundParams), default=RoundParams)
    metrics: Mapped[dict[str, Any]] = mapped_column(default=dict)  # the round's point on the curves
    message: Mapped[str] = mapped_column(String(500), default="", server_default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(nullable=True)

    @validates("params")
    def _typed_params(self, _: str, value: RoundParams | dict[str, Any]) -> RoundParams:
        return value if isinstance(value, RoundParams) else RoundParams.model_validate(value)


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
    regime: Mapped[Regime] = mapped_column(_enum(Regime, "regime", length=20, check=False))
    profile: Mapped[str] = mapped_column(String(20))  # a ProfileName, or an experiment's own profile
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
    ask: Mapped[AskKind] = mapped_column(_enum(AskKind, "ask_kind", check=False), default=AskKind.VERDICT)
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

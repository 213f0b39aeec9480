"""The payloads of the service's jobs (``Job.payload``), one model per job kind."""

from __future__ import annotations

import enum

from pydantic import BaseModel, ConfigDict, Field

from backend.domain.enums import ImportLabels
from ml import Regime


class _Payload(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SyncCounts(_Payload):
    """What the Label Studio sync before a retrain found."""

    annotations: int
    counts: dict[str, int]


class PoolRule(enum.StrEnum):
    """Which unlabelled pool images a retrain trains on as normal (:class:`PseudoNormalPool`)."""

    UNLABELLED = "unlabelled"  # all of them (the bootstrap)
    LOWEST_SCORED = "lowest_scored"  # the lowest-scored share by a model version (a round's close)


class PseudoNormalPool(_Payload):
    """The pseudo-normal images of a retrain, described by a query instead of listed, so a pool
    of any size costs the job a few numbers.

    The pool as it stood when the retrain was requested: the project's pool images with id <=
    ``max_image_id`` whose current label among the labels with id <= ``max_label_id`` is
    absent or a retraction (labels are append-only, so these cutoffs freeze it; 0: none then).
    ``LOWEST_SCORED`` keeps the ``int(fraction * n)`` of those ``n`` images that
    ``model_version_id`` scored lowest (ties by image id). Resolved by
    ``backend.services.pool_candidates.resolve_pseudo_normals``, in image id order.
    """

    rule: PoolRule
    max_image_id: int = Field(ge=0)
    max_label_id: int = Field(ge=0)
    model_version_id: int | None = None
    fraction: float | None = Field(default=None, ge=0, le=1)


class TrainPayload(_Payload):
    """A retrain: the label snapshot to train on, and what a round adds to it.

    ``label_ids``: the frozen snapshot (None: the labels current when the job runs);
    ``pseudo_normal``: the unlabelled pool images trained on as normal (``pseudo_normal_ids``
    lists them instead in jobs queued by earlier versions; both are honoured); ``regime``: forced
    (None: the labels decide, with ``min_defects_supervised`` keeping rounds unsupervised
    until enough defects are labelled); ``refine_keep``: the bootstrap's refinement fraction.
    """

    label_ids: tuple[int, ...] | None = None
    pseudo_normal_ids: tuple[int, ...] | None = None
    pseudo_normal: PseudoNormalPool | None = None
    round_id: int | None = None
    regime: Regime | None = None
    seed: int = 0
    refine_keep: float | None = None
    min_defects_supervised: int | None = None
    sync: SyncCounts | None = None


class PredictPayload(_Payload):
    """Pool scoring: by ``model_version_id`` (None: the active version), of ``image_ids``
    (None: the whole pool)."""

    model_version_id: int | None = None
    image_ids: tuple[int, ...] | None = None


class ImportPayload(_Payload):
    """A server folder (plain images, a labels.csv folder or the MVTec layout) imported a chunk
    at a time: ``path`` as the request gave it, checked against the worker's import roots when
    the job runs; ``labels``: which of a dataset's labels are kept."""

    path: str = Field(min_length=1, max_length=4096)
    labels: ImportLabels = ImportLabels.ALL


class SyncPayload(_Payload):
    """A reconcile with Label Studio: nothing to say beyond the project."""

"""The payloads of the service's jobs (``Job.payload``), one model per job kind."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from ml import Regime


class _Payload(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SyncCounts(_Payload):
    """What the Label Studio sync before a retrain found."""

    annotations: int
    counts: dict[str, int]


class TrainPayload(_Payload):
    """A retrain: the label snapshot to train on, and what a round adds to it.

    ``label_ids``: the frozen snapshot (None: the labels current when the job runs);
    ``pseudo_normal_ids``: unlabelled pool images trained on as normal; ``regime``: forced
    (None: the labels decide, with ``min_defects_supervised`` keeping rounds unsupervised
    until enough defects are labelled); ``refine_keep``: the bootstrap's refinement fraction.
    """

    label_ids: tuple[int, ...] | None = None
    pseudo_normal_ids: tuple[int, ...] | None = None
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


class SyncPayload(_Payload):
    """A reconcile with Label Studio: nothing to say beyond the project."""

"""Asking for a retrain: sync Label Studio, freeze the labels, queue the train job."""

from __future__ import annotations

from sqlalchemy.orm import Session

from backend.db.tables import Job, JobKind
from backend.domain.jobs import SyncCounts, TrainPayload
from backend.jobs import queue
from backend.services.labelstudio_link import sync_before_retrain
from backend.services.projects import get_project
from backend.services.snapshot import freeze_label_ids
from backend.settings import Settings


def request_retrain(
    session: Session,
    settings: Settings,
    *,
    project_id: int,
    skip_sync: bool = False,
    payload: TrainPayload | None = None,
) -> Job:
    """Queue a train job on the labels as they are now (ConflictError when one is active).

    ``payload``: what a round adds (``round_id``, ``pseudo_normal_ids``, ``regime``, ``seed``...);
    the label snapshot and the sync's counts are filled in here.

    A project linked to Label Studio syncs first, so answers whose webhook was lost are in
    the snapshot; ``skip_sync`` trains on the stored labels when Label Studio is down.
    """
    project = get_project(session, project_id=project_id)
    queue.reap_stale(session, timeout_s=settings.heartbeat_timeout_s, data_dir=settings.data_dir)
    sync = None if skip_sync else sync_before_retrain(session, settings, project)
    # the training snapshot is the labels as they are now; later answers wait for the next round
    label_ids = freeze_label_ids(session, project_id=project_id)
    update: dict[str, object] = {"label_ids": tuple(label_ids)}
    if sync is not None:
        update["sync"] = sync_counts(sync)
    body = (payload or TrainPayload()).model_copy(update=update)
    return queue.enqueue(session, kind=JobKind.TRAIN, project_id=project_id, payload=body)


def sync_counts(sync: dict) -> SyncCounts:
    """What a train job records of the Label Studio sync before it."""
    return SyncCounts(annotations=int(sync["annotations"]), counts=dict(sync["counts"]))

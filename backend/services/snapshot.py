"""Freezing a project's current labels into an ML training set.

ORM rows never reach ``ml``: labels become :class:`ml.data.Sample` values whose masks are
written as PNG files into a snapshot folder.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from backend.db.batches import in_chunks
from backend.db.tables import Image, Label, LabelSource, Split
from backend.services.labels import current_labels
from ml import PSEUDO_COLUMN, Sample


@dataclass(frozen=True)
class Snapshot:
    """The frozen label set of a retrain: samples by split, and the ids of the labels that
    shaped the model (train and val: training and threshold calibration; test labels only
    evaluate it)."""

    train: list[Sample]
    val: list[Sample]
    test: list[Sample]
    label_ids: list[int]


def freeze_label_ids(session: Session, *, project_id: int) -> list[int]:
    """The ids of the project's current human and imported labels (pseudo-labels never)."""
    return sorted(lb.id for lb in current_labels(session, project_id=project_id) if lb.source != LabelSource.PSEUDO)


def take_snapshot(
    session: Session,
    *,
    project_id: int,
    folder: Path,
    label_ids: Sequence[int] | None = None,
    pseudo_normal_ids: Sequence[int] | None = None,
) -> Snapshot:
    """The training set from the frozen ``label_ids`` (default: the current labels), masks
    written under ``folder``. Labels written after the freeze are not in it.

    A labelled pool image is training data (that is how annotated images enter training).
    ``pseudo_normal_ids``: unlabelled pool images presumed normal; they join training as
    normal samples marked ``pseudo`` and never count as labels (an image with a label in
    the snapshot keeps its label). Either list may be as long as the pool: it is read
    :data:`backend.db.batches.IN_CHUNK` ids at a time."""
    folder.mkdir(parents=True, exist_ok=True)
    if label_ids is None:
        label_ids = freeze_label_ids(session, project_id=project_id)
    labels = sorted(
        (
            lb
            for part in in_chunks(sorted(label_ids))
            for lb in session.scalars(select(Label).where(Label.id.in_(part)))
        ),
        key=lambda lb: (lb.image_id, lb.id),
    )
    images = {
        img.id: img
        for part in in_chunks(sorted({lb.image_id for lb in labels}))
        for img in session.scalars(select(Image).where(Image.id.in_(part)))
    }
    by_split: dict[Split, list[Sample]] = {Split.TRAIN: [], Split.VAL: [], Split.TEST: []}
    used: list[int] = []
    for lb in labels:
        img = images[lb.image_id]
        split = Split.TRAIN if img.split is Split.POOL else img.split
        if split not in by_split or lb.review_reason:
            continue  # flagged answers wait for review
        by_split[split].append(_sample(lb, img, split, folder))
        if split is not Split.TEST:
            used.append(lb.id)
    if pseudo_normal_ids:
        labelled = {lb.image_id for lb in labels}
        wanted = sorted({i for i in pseudo_normal_ids if i not in labelled})
        by_split[Split.TRAIN] += [
            Sample(
                image=Path(uri),
                label=0,
                mask=None,
                has_mask=True,
                split="train",
                row=image_id,
                extra=(("image_id", str(image_id)), (PSEUDO_COLUMN, "normal")),
            )
            for part in in_chunks(wanted)  # ascending ids, each chunk in id order: the whole in id order
            for image_id, uri in session.execute(
                select(Image.id, Image.uri)
                .where(Image.id.in_(part), Image.project_id == project_id, Image.split == Split.POOL)
                .order_by(Image.id)
            )
        ]
    return Snapshot(by_split[Split.TRAIN], by_split[Split.VAL], by_split[Split.TEST], sorted(used))


def _sample(lb: Label, img: Image, split: Split, folder: Path) -> Sample:
    mask_path = None
    if lb.is_defective and lb.mask_png is not None:
        mask_path = folder / f"label-{lb.id}.png"
        mask_path.write_bytes(lb.mask_png)
    return Sample(
        image=Path(img.uri),
        label=1 if lb.is_defective else 0,
        mask=mask_path,
        has_mask=mask_path is not None or not lb.is_defective,
        split=split.value,
        row=img.id,
        extra=(("image_id", str(img.id)), ("label_id", str(lb.id))),
    )

"""Labels are append-only: a new answer is a new row; the newest row is the current label."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime

import cv2
import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from backend.db.tables import Image, Label, LabelSource, MaskOrigin


class LabelError(ValueError):
    """A label cannot be stored as given (the message names the field)."""


def encode_mask(mask: np.ndarray) -> bytes:
    """A bool/0-1 mask ``(H, W)`` as a lossless 8-bit PNG (0/255)."""
    ok, buf = cv2.imencode(".png", (mask.astype(bool).astype(np.uint8) * 255), [cv2.IMWRITE_PNG_COMPRESSION, 6])
    if not ok:
        raise LabelError("mask: PNG encoding failed")
    return buf.tobytes()


def parse_mask_upload(data: bytes) -> np.ndarray:
    """An uploaded mask as bool ``(H, W)``: one channel (or colour with equal channels), values
    0 and 1, or 0 and the bit depth's maximum (255, 65535); LabelError naming the field otherwise
    (values in between would be binarised silently, so they are refused)."""
    from ml import DataError, read_mask, read_mask_values

    try:
        values = read_mask_values(data, "mask")
        mask = read_mask(data, "mask")
    except DataError as e:
        raise LabelError(str(e)) from None
    found = values.tolist()
    top = max(found, default=0)
    if top not in (0, 1, 255, 65535) or not set(found) <= {0, top}:
        shown = ", ".join(str(v) for v in found[:6]) + (", ..." if len(found) > 6 else "")
        raise LabelError(f"mask: values must be 0 and 1, or 0 and 255 (found {shown})")
    return mask


def check_api_label(is_defective: bool, mask: np.ndarray | None) -> None:
    """What the dataset loader demands of a label, for labels given through the API: a normal
    label has no mask; a defective label's mask marks the defect (LabelError naming the field)."""
    if mask is None:
        return
    if not is_defective:
        raise LabelError("mask: a normal label (is_defective=false) carries no mask")
    if not mask.any():
        raise LabelError(
            "mask: all zero; a defective label's mask must mark the defect (omit it for an image-level label)"
        )


def decode_mask(png: bytes) -> np.ndarray:
    arr = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_GRAYSCALE)
    if arr is None:
        raise LabelError("mask: not a decodable PNG")
    return arr > 127


@dataclass(frozen=True)
class LabelIn:
    """What an annotator (or an import) says about one image."""

    is_defective: bool | None
    mask: np.ndarray | None = None
    source: LabelSource = LabelSource.HUMAN
    annotator: str | None = None
    ls_annotation_id: int | None = None
    ls_updated_at: datetime | None = None
    lead_time: float | None = None
    review_reason: str | None = None
    retracted: bool = False
    provenance: MaskProvenance | None = None


@dataclass(frozen=True)
class MaskProvenance:
    """How a mask answer relates to the proposal its task showed (see ``Label``)."""

    origin: MaskOrigin
    proposal_iou: float | None
    edit: float


def mask_provenance(answer: np.ndarray, proposal: np.ndarray | None) -> MaskProvenance:
    """Compare an answered mask with the proposal shown (bool ``(H, W)`` each; None or empty: no
    proposal). ``edit`` is the share of the answer that had to change: pixels that differ over the
    answer's pixels, at most 1 (a mask drawn from nothing: 1; the proposal accepted unchanged: 0)."""
    a = np.asarray(answer, bool)
    if proposal is None or not np.asarray(proposal).any():
        return MaskProvenance(MaskOrigin.DRAWN, None, 1.0)
    p = np.asarray(proposal, bool)
    if p.shape != a.shape:
        raise LabelError(f"mask: proposal size {p.shape} differs from the answer's {a.shape}")
    differ = int(np.logical_xor(a, p).sum())
    union = int(np.logical_or(a, p).sum())
    iou = float(np.logical_and(a, p).sum() / union) if union else 1.0
    edit = min(1.0, differ / max(int(a.sum()), 1))
    return MaskProvenance(MaskOrigin.ACCEPTED if differ == 0 else MaskOrigin.EDITED, iou, edit)


def add_label(session: Session, *, image: Image, label: LabelIn) -> Label:
    """Append a label version for ``image`` (validated; nothing stored on error)."""
    if label.retracted and label.mask is not None:
        raise LabelError("mask: a retraction carries no mask")
    if not label.retracted and label.is_defective is None and not label.review_reason:
        raise LabelError("is_defective: required unless the label is a retraction or flagged for review")
    if label.provenance is not None and label.mask is None:
        raise LabelError("mask: provenance given for a label without a mask")
    png = None
    if label.mask is not None:
        if label.mask.shape != (image.height, image.width):
            raise LabelError(
                f"mask: size {label.mask.shape[1]}x{label.mask.shape[0]} differs from the image's "
                f"{image.width}x{image.height}"
            )
        png = encode_mask(label.mask)
    row = Label(
        image_id=image.id,
        is_defective=label.is_defective,
        mask_png=png,
        retracted=label.retracted,
        source=label.source,
        annotator=label.annotator,
        ls_annotation_id=label.ls_annotation_id,
        ls_updated_at=label.ls_updated_at,
        lead_time=label.lead_time,
        review_reason=label.review_reason,
        mask_origin=label.provenance.origin if label.provenance else None,
        proposal_iou=label.provenance.proposal_iou if label.provenance else None,
        mask_edit=label.provenance.edit if label.provenance else None,
    )
    session.add(row)
    session.flush()
    return row


def label_kind(row: Label) -> str:
    """``normal``, ``image`` (defective, image-level), ``mask`` (defective with a mask), or
    ``unknown`` (flagged for review without a readable verdict)."""
    if row.is_defective is None:
        return "unknown"
    if not row.is_defective:
        return "normal"
    return "mask" if row.mask_png is not None else "image"


def current_label(session: Session, *, image_id: int) -> Label | None:
    """The newest label version of an image (None when never labelled or retracted)."""
    row = session.scalars(select(Label).where(Label.image_id == image_id).order_by(Label.id.desc()).limit(1)).first()
    return None if row is None or row.retracted else row


def label_history(session: Session, *, image_id: int) -> list[Label]:
    """Every label version of an image, oldest first."""
    return list(session.scalars(select(Label).where(Label.image_id == image_id).order_by(Label.id)))


def current_labels(session: Session, *, project_id: int, image_ids: Collection[int] | None = None) -> list[Label]:
    """The current (newest, not retracted) label of every labelled image of a project
    (of those among ``image_ids`` only, when given)."""
    newest = (
        select(func.max(Label.id))
        .join(Image, Image.id == Label.image_id)
        .where(Image.project_id == project_id)
        .group_by(Label.image_id)
    )
    if image_ids is not None:
        newest = newest.where(Label.image_id.in_(list(image_ids)))
    rows = session.scalars(select(Label).where(Label.id.in_(newest)).order_by(Label.image_id))
    return [r for r in rows if not r.retracted]

"""Anomaly-map overlays of images for people."""

from __future__ import annotations

from pathlib import Path

import cv2
from sqlalchemy import select
from sqlalchemy.orm import Session

from backend.db.tables import Image, ModelVersion, Prediction
from backend.errors import NotFoundError
from backend.services.anomaly_maps import has_map, read_map, region
from ml import heatmap_overlay, read_image


def overlay_png(session: Session, *, image: Image) -> bytes:
    """PNG of ``image`` with the active model version's anomaly map and its region outlined
    (``anomaly_maps.region``: what a mask task is proposed)."""
    pred = session.scalars(
        select(Prediction)
        .join(ModelVersion, ModelVersion.id == Prediction.model_version_id)
        .where(Prediction.image_id == image.id, ModelVersion.is_active)
    ).first()
    if pred is None or not has_map(pred):
        raise NotFoundError(f"image {image.id} has no anomaly map from the active model version yet")
    mv = session.get(ModelVersion, pred.model_version_id)
    rgb = read_image(Path(image.uri))
    amap = read_map(pred, rgb.shape[0], rgb.shape[1])
    if amap is None or mv is None:
        raise NotFoundError(f"image {image.id}: its anomaly map is not a readable PNG")
    over = heatmap_overlay(rgb, amap, region(amap, mv, bool(pred.decision)))
    ok, buf = cv2.imencode(".png", over[:, :, ::-1])
    if not ok:
        raise RuntimeError("PNG encoding of the overlay failed")
    return buf.tobytes()

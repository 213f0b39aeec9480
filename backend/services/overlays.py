"""Anomaly-map overlays of images for people."""

from __future__ import annotations

from pathlib import Path

import cv2
from sqlalchemy import select
from sqlalchemy.orm import Session

from backend.db.tables import Image, ModelVersion, Prediction
from backend.errors import NotFoundError
from ml.images import read_image
from ml.overlay import heatmap_overlay


def overlay_png(session: Session, *, image: Image) -> bytes:
    """PNG of ``image`` with the active model version's anomaly map and pseudo-mask outline."""
    pred = session.scalars(
        select(Prediction)
        .join(ModelVersion, ModelVersion.id == Prediction.model_version_id)
        .where(Prediction.image_id == image.id, ModelVersion.is_active)
    ).first()
    if pred is None or not pred.anomaly_map_path or not Path(pred.anomaly_map_path).is_file():
        raise NotFoundError(f"image {image.id} has no anomaly map from the active model version yet")
    mv = session.get(ModelVersion, pred.model_version_id)
    rgb = read_image(Path(image.uri))
    amap = cv2.imread(pred.anomaly_map_path, cv2.IMREAD_GRAYSCALE).astype("float32") / 255.0
    if amap.shape != rgb.shape[:2]:
        amap = cv2.resize(amap, (rgb.shape[1], rgb.shape[0]))
    over = heatmap_overlay(rgb, amap, amap >= float(mv.thresholds.get("pixel", 0.5)))
    ok, buf = cv2.imencode(".png", over[:, :, ::-1])
    if not ok:
        raise RuntimeError("PNG encoding of the overlay failed")
    return buf.tobytes()

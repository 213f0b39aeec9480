"""The one place anomaly maps are written, read and thresholded.

Pool scoring stores each image's map as an 8-bit grayscale PNG (0..255 for scores 0..1) under
``<data_dir>/maps/<model version id>/<image id>.png``, with its path and SHA-256 on the
Prediction row. Readers get the map back as float32 ``(H, W)`` in [0, 1] at the image's own
resolution; the region a model version calls defective is the map at or above its pixel
threshold, or, in an image it judges defective whose map stays under that, at a cut near the
map's peak.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from backend.db.tables import ModelVersion, Prediction
from ml import region_threshold

#: the pixel threshold of a model version that recorded none
DEFAULT_PIXEL_THRESHOLD = 0.5


@dataclass(frozen=True)
class StoredMap:
    """Where a written map lies and the SHA-256 of its PNG bytes."""

    path: Path
    sha256: str


def encode_map(pred_map: np.ndarray) -> bytes:
    """PNG bytes of a float map ``(H, W)`` (values clipped to [0, 1], stored as 0..255)."""
    ok, buf = cv2.imencode(".png", (np.clip(pred_map, 0.0, 1.0) * 255).astype(np.uint8))
    if not ok:
        raise RuntimeError("PNG encoding of an anomaly map failed")
    return buf.tobytes()


def write_map(data_dir: Path, model_version_id: int, image_id: int, pred_map: np.ndarray) -> StoredMap:
    """Store ``pred_map`` (float ``(H, W)``) for one image and model version, atomically: a reader
    sees the old file or the new one, never half of it."""
    folder = data_dir / "maps" / str(model_version_id)
    folder.mkdir(parents=True, exist_ok=True)
    png = encode_map(pred_map)
    path = folder / f"{image_id}.png"
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(png)
    tmp.replace(path)
    return StoredMap(path, hashlib.sha256(png).hexdigest())


def has_map(prediction: Prediction) -> bool:
    """Whether ``prediction``'s map is on disk."""
    path = prediction.anomaly_map_path
    return bool(path) and Path(str(path)).is_file()


def read_map(prediction: Prediction, height: int, width: int) -> np.ndarray | None:
    """The stored map of ``prediction`` as float32 ``(height, width)`` in [0, 1], resized bilinearly
    when it was stored at another size (None: no map on disk, or not a readable PNG)."""
    path = prediction.anomaly_map_path
    if not path or not Path(path).is_file():
        return None
    amap = cv2.imread(path, cv2.IMREAD_GRAYSCALE)
    if amap is None:
        return None
    if amap.shape != (height, width):
        amap = cv2.resize(amap, (width, height), interpolation=cv2.INTER_LINEAR)
    return amap.astype(np.float32) / 255.0


def pixel_threshold(mv: ModelVersion) -> float:
    """The score at or above which ``mv`` calls a pixel defective."""
    return float((mv.thresholds or {}).get("pixel", DEFAULT_PIXEL_THRESHOLD))


def region_cut(amap: np.ndarray, mv: ModelVersion, defective: bool) -> float:
    """Where ``mv``'s region in ``amap`` (float32 ``(H, W)``) is cut: its pixel threshold; for an
    image judged ``defective`` whose map stays under it, the per-image cut near the map's peak
    (``ml.region_threshold``), so that a defect verdict shows where the model looks."""
    return region_threshold(amap, pixel_threshold(mv), defective)


def region(amap: np.ndarray, mv: ModelVersion, defective: bool) -> np.ndarray:
    """Bool ``(H, W)``: the pixels of ``amap`` at or above :func:`region_cut`, what ``mv``
    calls defective in an image it judges ``defective`` or not."""
    return amap >= region_cut(amap, mv, defective)

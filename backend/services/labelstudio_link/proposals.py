"""What the model proposes for a task: the verdict and a mask refined from the stored anomaly map,
and the picture a verdict task shows of the model's view."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from backend.db.tables import (
    Image,
    ModelVersion,
    Prediction,
)
from backend.services.anomaly_maps import read_map, region, region_cut
from ml import DEFAULT_METHOD, DataError, RefineMethod, heatmap_overlay, read_image, refine_mask


# ---- out: a ranked, pre-annotated batch ---------------------------------------------------
@dataclass(frozen=True)
class Proposal:
    """The model's proposal for one image: ``mask`` bool ``(H, W)`` at full resolution or None."""

    score: float
    is_defective: bool
    mask: np.ndarray | None


def stored_map(prediction: Prediction, image: Image) -> np.ndarray | None:
    """The stored anomaly map float32 ``(H, W)`` in [0, 1] at the image's resolution (None: none on disk)."""
    return read_map(prediction, image.height, image.width)


def mask_method(mv: ModelVersion) -> RefineMethod:
    """How ``mv``'s proposals turn its anomaly maps into masks (recorded in its model directory)."""
    return RefineMethod(mv.config.get("mask_method", DEFAULT_METHOD))


class VersionCache:
    """What was loaded from one model version's directory, kept for the next call: one version at
    a time, known by its id and artifact digest (another database's version 1 is another
    model). Requests run in a thread pool, so one thread loads while the others wait."""

    def __init__(self) -> None:
        self._key: tuple[int, str] | None = None
        self._value: Any = None
        self._lock = threading.Lock()

    def get(self, mv: ModelVersion, load: Callable[[], Any]) -> Any:
        """The value kept for ``mv``, or ``load()``'s, kept instead of the last version's."""
        key = (mv.id, mv.artifact_sha256)
        with self._lock:
            if self._key != key:
                self._value, self._key = load(), key
            return self._value

    def peek(self, mv: ModelVersion) -> Any:
        """The value kept for ``mv``, or None when another version's (or nothing) is kept."""
        with self._lock:
            return self._value if self._key == (mv.id, mv.artifact_sha256) else None


_PREDICTORS = VersionCache()
_CLICK_HEADS = VersionCache()


def cached_predictor(mv: ModelVersion, device: str) -> Any:
    """``mv``'s loaded predictor (its click head included), kept for the next call; a head
    already kept by :func:`cached_click_head` replaces the copy the predictor loaded."""
    from ml import load_model

    def load() -> Any:
        predictor = load_model(Path(mv.artifact_path), device=device).predictor
        head = _CLICK_HEADS.peek(mv)
        if head is not None:
            predictor.click_head = head
        return predictor

    return _PREDICTORS.get(mv, load)


def cached_click_head(mv: ModelVersion) -> Any:
    """``mv``'s click head (None: it has none), kept for the next call: the loaded predictor's
    when :func:`cached_predictor` holds one for ``mv``, else the head alone (a click needs no
    detector), so a version's head is in memory once."""
    from ml import click_head_of

    def load() -> Any:
        predictor = _PREDICTORS.peek(mv)
        return predictor.click_head if predictor is not None else click_head_of(Path(mv.artifact_path))

    return _CLICK_HEADS.get(mv, load)


def stored_proposal(prediction: Prediction, mv: ModelVersion, image: Image, *, refined: bool = True) -> Proposal:
    """A proposal from a pool-scoring Prediction: for a likely defect, the stored anomaly map's
    region (``anomaly_maps.region``) refined with the image (``refined=False``: the region as it
    is; also when the image file cannot be read any more)."""
    mask = None
    amap = stored_map(prediction, image) if prediction.decision else None
    if amap is not None:
        threshold = region_cut(amap, mv, defective=True)
        mask = amap >= threshold
        method = mask_method(mv) if refined else RefineMethod.COARSE
        if method is not RefineMethod.COARSE:
            try:
                rgb = read_image(Path(image.uri))
            except DataError:
                rgb = None
            if rgb is not None and rgb.shape[:2] == amap.shape:
                head = cached_click_head(mv) if method is RefineMethod.CLICK_HEAD else None
                mask = refine_mask(rgb, amap, threshold, method, head)
    return Proposal(float(prediction.score), bool(prediction.decision), mask)


#: the longer side of the model's-view picture on a verdict task
OVERLAY_SIDE = 384


def verdict_overlay(prediction: Prediction, mv: ModelVersion, image: Image) -> bytes | None:
    """A small JPEG of the image with the stored anomaly map as a heatmap and its region outlined
    (``anomaly_maps.region``: where a mask task's proposal is refined from): what a verdict task
    shows of the model's view (None: no map or no readable image)."""
    amap = stored_map(prediction, image)
    if amap is None:
        return None
    try:
        rgb = read_image(Path(image.uri))
    except DataError:
        return None
    if rgb.shape[:2] != amap.shape:
        return None
    over = heatmap_overlay(rgb, amap, region(amap, mv, bool(prediction.decision)))
    f = min(1.0, OVERLAY_SIDE / max(over.shape[:2]))
    if f < 1:
        over = cv2.resize(over, (round(over.shape[1] * f), round(over.shape[0] * f)), interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(".jpg", over[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 80])
    return buf.tobytes() if ok else None

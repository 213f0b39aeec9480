"""A verdict task's picture and a mask task's proposal show the same region of the model's map,
also for a defect verdict whose map stays under the pixel threshold."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from backend.db.tables import Image, ModelVersion, Prediction
from backend.services.anomaly_maps import region, write_map
from backend.services.labelstudio_link.proposals import stored_proposal, verdict_overlay
from ml import RefineMethod

SIDE = 96


def _case(tmp_path: Path, decision: bool) -> tuple[Prediction, ModelVersion, Image]:
    """A grey image whose map rises to 0.4 on a blob at (60, 30): under the pixel threshold 0.7."""
    path = tmp_path / "part.png"
    cv2.imwrite(str(path), np.full((SIDE, SIDE, 3), 128, np.uint8))
    amap = np.full((SIDE, SIDE), 0.05, np.float32)
    cv2.circle(amap, (60, 30), 8, 0.4, -1)
    stored = write_map(tmp_path, 1, 1, cv2.GaussianBlur(amap, (0, 0), 2))
    mv = ModelVersion(id=1, thresholds={"pixel": 0.7}, config={"mask_method": RefineMethod.COARSE.value})
    pred = Prediction(score=0.9, decision=decision, anomaly_map_path=str(stored.path))
    image = Image(id=1, uri=str(path), width=SIDE, height=SIDE)
    return pred, mv, image


def _outline(jpeg: bytes | None) -> np.ndarray:
    """Bool ``(H, W)``: the white outline in a verdict picture (the heatmap is never white)."""
    assert jpeg is not None
    pic = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    return (pic > 215).all(axis=2)


def test_a_defect_verdict_under_the_pixel_threshold_shows_the_region_its_mask_task_proposes(tmp_path: Path) -> None:
    pred, mv, image = _case(tmp_path, decision=True)
    proposal = stored_proposal(pred, mv, image)
    assert proposal.mask is not None and proposal.mask[30, 60] and not proposal.mask[80, 10]
    outline = _outline(verdict_overlay(pred, mv, image))
    ys, xs = np.nonzero(outline)
    assert len(xs) > 20 and abs(xs.mean() - 60) < 4 and abs(ys.mean() - 30) < 4
    amap = cv2.imread(str(pred.anomaly_map_path), cv2.IMREAD_GRAYSCALE) / 255.0
    assert (region(amap, mv, True) == proposal.mask).all()


def test_a_normal_verdict_shows_no_region_under_the_pixel_threshold(tmp_path: Path) -> None:
    pred, mv, image = _case(tmp_path, decision=False)
    assert stored_proposal(pred, mv, image).mask is None
    assert not _outline(verdict_overlay(pred, mv, image)).any()

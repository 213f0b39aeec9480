"""Helpers shared by tests: small image and CSV writers, generated defects, the shared datasets' location."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

SHARED_DATASETS = Path(
    os.environ.get("DEFECTLOOP_DATASETS", Path(__file__).resolve().parents[2] / "shared" / "datasets")
)


def write_png(path: Path, arr: np.ndarray) -> Path:
    import cv2

    path.parent.mkdir(parents=True, exist_ok=True)
    img = arr[:, :, ::-1] if arr.ndim == 3 and arr.shape[2] == 3 else arr
    assert cv2.imwrite(str(path), img)
    return path


def write_csv(path: Path, rows: list[list[object]], header: str = "file,label,mask,has_mask,split") -> Path:
    path.write_text(header + "\n" + "\n".join(",".join(str(c) for c in r) for r in rows) + "\n")
    return path


def striped_defect(seed: int, h: int = 128, w: int = 160) -> tuple[np.ndarray, np.ndarray]:
    """A smooth gray surface holding one patch of fine stripes, as bright as the surface on
    average (so gray-level rules see little), of random size, shape and place: image uint8
    (h, w, 3), mask bool (h, w)."""
    import cv2

    rng = np.random.default_rng(seed)
    g = 128 + 12 * cv2.GaussianBlur(rng.standard_normal((h, w)).astype(np.float32), (0, 0), 5)
    mask = np.zeros((h, w), np.uint8)
    cy, cx = int(rng.integers(30, h - 30)), int(rng.integers(30, w - 30))
    axes = (int(rng.integers(6, 24)), int(rng.integers(6, 24)))
    cv2.ellipse(mask, (cx, cy), axes, float(rng.uniform(0, 180)), 0, 360, 1, -1)
    yy, xx = np.mgrid[0:h, 0:w]
    stripes = 40 * np.sin((xx + yy) * 1.3).astype(np.float32)
    g = np.clip(g + stripes * mask + 3 * rng.standard_normal((h, w)), 0, 255).astype(np.uint8)
    return np.repeat(g[:, :, None], 3, axis=2), mask > 0

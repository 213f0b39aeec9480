"""Helpers shared by tests: small image and CSV writers, the shared datasets' location."""

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

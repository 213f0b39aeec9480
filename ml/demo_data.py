"""A deterministic generator of a small, realistic surface-defect dataset (format A).

Textured surfaces (brushed metal, cast grain, woven fabric-like patterns) with
illumination gradients and sensor noise; defects are scratches, spots and cracks,
low-contrast enough that a model has to learn the texture to find them. Each defective
image comes with a pixel-exact mask. The same seed always writes the same bytes.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt

DEFECT_KINDS = ("scratch", "spot", "crack")


@dataclass(frozen=True)
class DemoSpec:
    """Sizes of the generated splits (normal, defective) and image geometry."""

    train_normal: int = 120
    train_defective: int = 24
    val_normal: int = 20
    val_defective: int = 10
    test_normal: int = 40
    test_defective: int = 20
    size: int = 256
    mask_fraction: float = 1.0  # share of defective train images that get a mask
    seed: int = 0


def _texture(rng: np.random.Generator, size: int) -> np.ndarray:
    kind = rng.integers(0, 3)
    noise = rng.normal(0.0, 1.0, (size, size)).astype(np.float32)
    if kind == 0:  # brushed: strong directional blur
        k = int(rng.integers(15, 31))
        tex = cv2.blur(noise, (k, 1))
    elif kind == 1:  # cast grain: isotropic multi-scale blobs
        tex = cv2.GaussianBlur(noise, (0, 0), 1.5) + 0.6 * cv2.GaussianBlur(noise, (0, 0), 4.0)
    else:  # woven: periodic pattern with jitter
        yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
        period = float(rng.uniform(7, 11))
        tex = np.sin(2 * np.pi * xx / period) * np.sin(2 * np.pi * yy / period) + 0.4 * cv2.GaussianBlur(
            noise, (0, 0), 1.0
        )
    tex = (tex - tex.mean()) / (tex.std() + 1e-6)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    gx, gy = rng.uniform(-0.15, 0.15, 2)
    shade = 0.5 + gx * (xx - 0.5) + gy * (yy - 0.5)
    img = shade + 0.07 * tex + rng.normal(0.0, 0.01, (size, size)).astype(np.float32)
    return img.astype(np.float32)


def _draw_defect(rng: np.random.Generator, size: int, kind: str) -> np.ndarray:
    """A float mask in [0, 1] shaped like the defect (soft edges)."""
    m = np.zeros((size, size), np.float32)
    margin = size // 8
    x0, y0 = rng.integers(margin, size - margin, 2)
    if kind == "scratch":
        ang = rng.uniform(0, np.pi)
        length = rng.uniform(0.15, 0.4) * size
        x1 = int(np.clip(x0 + length * np.cos(ang), 2, size - 3))
        y1 = int(np.clip(y0 + length * np.sin(ang), 2, size - 3))
        cv2.line(m, (int(x0), int(y0)), (x1, y1), 1.0, int(rng.integers(2, 4)), lineType=cv2.LINE_AA)
    elif kind == "spot":
        axes = (int(rng.integers(4, 12)), int(rng.integers(4, 12)))
        cv2.ellipse(m, (int(x0), int(y0)), axes, float(rng.uniform(0, 180)), 0, 360, 1.0, -1, cv2.LINE_AA)
    else:  # crack: a jagged random walk
        pts = [(float(x0), float(y0))]
        ang = rng.uniform(0, 2 * np.pi)
        for _ in range(int(rng.integers(8, 16))):
            ang += rng.normal(0, 0.6)
            step = rng.uniform(4, 9)
            x, y = pts[-1]
            pts.append(
                (
                    float(np.clip(x + step * np.cos(ang), 1, size - 2)),
                    float(np.clip(y + step * np.sin(ang), 1, size - 2)),
                )
            )
        cv2.polylines(m, [np.array(pts, np.int32)], False, 1.0, 2, cv2.LINE_AA)
    return m


def make_image(rng: np.random.Generator, size: int, defective: bool) -> tuple[np.ndarray, np.ndarray, str]:
    """One image ``uint8 (size, size, 3)``, its mask ``uint8 0/255 (size, size)`` and kind."""
    img = _texture(rng, size)
    mask: npt.NDArray[np.uint8] = np.zeros((size, size), np.uint8)
    kind = "good"
    if defective:
        kind = DEFECT_KINDS[int(rng.integers(0, len(DEFECT_KINDS)))]
        soft = _draw_defect(rng, size, kind)
        sign = -1.0 if rng.random() < 0.7 else 1.0
        contrast = float(rng.uniform(0.10, 0.2))
        img = img + sign * contrast * soft
        mask = (soft > 0.5).astype(np.uint8) * 255
        if not mask.any():  # antialiased strokes thinner than a pixel: keep the core
            mask = (soft >= soft.max() * 0.5).astype(np.uint8) * 255
    tint = np.array([1.0, 0.98, 0.95], np.float32) * rng.uniform(0.95, 1.05)
    rgb = np.clip(img[:, :, None] * tint[None, None, :], 0, 1)
    return (rgb * 255 + 0.5).astype(np.uint8), mask, kind


def generate(out_dir: Path, spec: DemoSpec = DemoSpec()) -> Path:
    """Write images/, masks/ and labels.csv under ``out_dir``; returns the CSV path."""
    out_dir = Path(out_dir)
    (out_dir / "images").mkdir(parents=True, exist_ok=True)
    (out_dir / "masks").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(spec.seed)
    plan = [
        ("train", spec.train_normal, spec.train_defective),
        ("val", spec.val_normal, spec.val_defective),
        ("test", spec.test_normal, spec.test_defective),
    ]
    rows = []
    idx = 0
    for split, n_norm, n_def in plan:
        flags = [False] * n_norm + [True] * n_def
        n_masked = round(spec.mask_fraction * n_def) if split == "train" else n_def
        seen_def = 0
        for defective in flags:
            img, mask, kind = make_image(rng, spec.size, defective)
            name = f"part_{idx:04d}"  # neutral: the file name must not tell annotators the answer
            idx += 1
            cv2.imwrite(str(out_dir / "images" / f"{name}.png"), img[:, :, ::-1])
            cv2.imwrite(str(out_dir / "masks" / f"{name}.png"), mask)
            has_mask = 1
            if defective:
                has_mask = 1 if seen_def < n_masked else 0
                seen_def += 1
            rows.append([f"images/{name}.png", int(defective), f"masks/{name}.png", has_mask, split, kind])
    csv_path = out_dir / "labels.csv"
    with csv_path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["file", "label", "mask", "has_mask", "split", "defect_type"])
        w.writerows(rows)
    return csv_path

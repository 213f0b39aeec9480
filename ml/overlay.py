"""Rendering anomaly maps for people: heatmap overlays and mask PNGs."""

from __future__ import annotations

import cv2
import numpy as np


def heatmap_overlay(
    image: np.ndarray, pred_map: np.ndarray, pred_mask: np.ndarray | None = None, alpha: float = 0.45
) -> np.ndarray:
    """Blend a JET heatmap of ``pred_map`` (H, W) in [0, 1] over ``image`` uint8 (H, W, 3) RGB.

    The pseudo-mask outline, when given, is drawn in white. Returns uint8 RGB (H, W, 3).
    """
    heat = cv2.applyColorMap((np.clip(pred_map, 0, 1) * 255).astype(np.uint8), cv2.COLORMAP_JET)[:, :, ::-1]
    out = cv2.addWeighted(image, 1 - alpha, heat, alpha, 0)
    if pred_mask is not None and pred_mask.any():
        contours, _ = cv2.findContours(pred_mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(out, contours, -1, (255, 255, 255), max(1, image.shape[0] // 256))
    return out


def mask_png(pred_mask: np.ndarray) -> np.ndarray:
    """A bool mask as uint8 0/255."""
    return pred_mask.astype(np.uint8) * 255

"""SuperSimpleNet losses: truncated L1 + focal on the map, focal on the score.

Pixels whose ground truth is unknown (image-level-only defective images) are excluded
by a ``known`` weight of 0: they never count as normal.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.ndimage import distance_transform_edt


def focal_loss(
    logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None, gamma: float = 4.0
) -> torch.Tensor:
    """Binary focal loss (no alpha) averaged over elements with nonzero ``weight``."""
    p = torch.sigmoid(logits)
    bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, target, reduction="none")
    pt = p * target + (1 - p) * (1 - target)
    loss = (1 - pt) ** gamma * bce
    if weight is None:
        return loss.mean()
    denom = (weight > 0).sum().clamp(min=1)
    return (loss * weight).sum() / denom


def truncated_l1(logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor, margin: float = 0.5) -> torch.Tensor:
    """mean(relu(s + m)) over normal pixels + mean(relu(-s + m)) over anomalous ones.

    ``weight`` ``(B, 1, h, w)``: 0 for unknown pixels; anomalous pixels may carry a
    distance-transform weight (the term is then a weighted mean).
    """
    known = weight > 0
    normal = known & (target < 0.5)
    anom = known & (target >= 0.5)
    loss = logits.new_zeros(())
    if normal.any():
        loss = loss + torch.clamp(logits[normal] + margin, min=0).mean()
    if anom.any():
        w = weight[anom]
        loss = loss + (torch.clamp(-logits[anom] + margin, min=0) * w).sum() / w.sum()
    return loss


def supersimplenet_loss(
    pred_map: torch.Tensor,
    pred_score: torch.Tensor,
    gt_map: torch.Tensor,
    gt_label: torch.Tensor,
    pixel_weight: torch.Tensor,
    seg_weight: float = 1.0,
) -> torch.Tensor:
    """Total loss ``seg_weight * segmentation + classification``.

    ``pred_map``/``gt_map``/``pixel_weight`` ``(B, 1, h, w)``; ``pred_score``/``gt_label`` ``(B,)``.
    """
    seg = truncated_l1(pred_map, gt_map, pixel_weight)
    if (pixel_weight > 0).any():
        seg = seg + focal_loss(pred_map, gt_map, pixel_weight)
    return seg_weight * seg + focal_loss(pred_score, gt_label)


def distance_weights(mask: np.ndarray, w_pos: float = 3.0, power: float = 2.0) -> np.ndarray:
    """SegDecNet distance-transform weights ``(h, w)`` float32 for one mask ``(h, w)`` bool.

    Defect pixel weight ``w_pos * (d / d_max) ** power`` with ``d`` the distance to the
    defect border; background weight 1. Masks are at feature resolution, where thin
    defects are one or two pixels wide and so keep the full weight ``w_pos``.
    """
    m = mask.astype(bool)
    weights = np.ones(mask.shape, np.float32)
    if not m.any():
        return weights
    d = distance_transform_edt(m)
    d_max = d.max()
    weights[m] = (w_pos * (d[m] / d_max) ** power).astype(np.float32)
    weights[m] = np.maximum(weights[m], 1e-3)  # keep every known defect pixel counted
    return weights

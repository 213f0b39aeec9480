"""Image and pixel metrics as inspection teams report them; every value is in [0, 1].

Image: AUROC, average precision, F1 at a given threshold. Pixel: AUROC, average
precision and AUPRO (per-region overlap integrated over FPR 0..0.3, normalised by 0.3).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.ndimage import label as connected_components
from sklearn.metrics import average_precision_score, roc_auc_score


def _both_classes(y: np.ndarray) -> bool:
    return bool(y.any()) and not bool(y.all())


def image_metrics(scores: np.ndarray, labels: np.ndarray, threshold: float) -> dict[str, float | None]:
    """AUROC, AP (None when one class is missing) and F1 of ``scores >= threshold``."""
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels).astype(bool)
    pred = scores >= threshold
    tp = int((pred & labels).sum())
    fp = int((pred & ~labels).sum())
    fn = int((~pred & labels).sum())
    f1 = 2 * tp / (2 * tp + fp + fn) if (2 * tp + fp + fn) else 0.0
    if not _both_classes(labels):
        return {"image_auroc": None, "image_ap": None, "image_f1": f1}
    return {
        "image_auroc": float(roc_auc_score(labels, scores)),
        "image_ap": float(average_precision_score(labels, scores)),
        "image_f1": float(f1),
    }


def best_f1_threshold(scores: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """(threshold, F1) maximising F1 of ``scores >= threshold``; labels must hold both classes."""
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels).astype(bool)
    order = np.argsort(-scores, kind="mergesort")
    s, y = scores[order], labels[order]
    tp = np.cumsum(y)
    fp = np.cumsum(~y)
    last = np.r_[np.flatnonzero(np.diff(s) != 0), len(s) - 1]  # the last index of each tied score
    tp, fp, thr = tp[last], fp[last], s[last]
    fn = y.sum() - tp
    f1 = 2 * tp / np.maximum(2 * tp + fp + fn, 1)
    best = int(np.argmax(f1))
    return float(thr[best]), float(f1[best])


def aupro(maps: Sequence[np.ndarray], masks: Sequence[np.ndarray], fpr_limit: float = 0.3) -> float:
    """Area under the per-region-overlap curve up to ``fpr_limit``, normalised to [0, 1].

    ``maps``: float arrays ``(H, W)``; ``masks``: bool arrays of the same shapes. Each
    connected defect region counts equally (PRO = mean over regions of the covered share);
    FPR is over all normal pixels. Exact: computed over every distinct score.
    """
    scores, pro_w, is_normal = [], [], []
    regions: list[tuple[int, np.ndarray]] = []
    for m, g in zip(maps, masks, strict=True):
        g = g.astype(bool)
        lab, n = connected_components(g, structure=np.ones((3, 3)))
        scores.append(m.ravel())
        is_normal.append(~g.ravel())
        regions.append((n, lab.ravel()))
    n_regions = sum(n for n, _ in regions)
    if n_regions == 0:
        raise ValueError("aupro needs at least one defect region")
    for n, lab in regions:
        w = np.zeros(lab.shape, dtype=np.float64)
        if n:
            sizes = np.bincount(lab, minlength=n + 1).astype(np.float64)
            inside = lab > 0
            w[inside] = 1.0 / (sizes[lab[inside]] * n_regions)
        pro_w.append(w)
    s = np.concatenate(scores)
    normal = np.concatenate(is_normal)
    w = np.concatenate(pro_w)
    n_normal = normal.sum()
    if n_normal == 0:
        raise ValueError("aupro needs normal pixels")
    order = np.argsort(-s, kind="mergesort")
    s, normal, w = s[order], normal[order], w[order]
    fpr = np.cumsum(normal) / n_normal
    pro = np.cumsum(w)
    last = np.r_[np.flatnonzero(np.diff(s) != 0), len(s) - 1]
    fpr = np.r_[0.0, fpr[last]]
    pro = np.r_[0.0, pro[last]]
    # integrate up to fpr_limit, interpolating the crossing point
    cut = np.searchsorted(fpr, fpr_limit, side="right")
    f, p = fpr[:cut], pro[:cut]
    if cut < len(fpr):
        x0, x1, y0, y1 = fpr[cut - 1], fpr[cut], pro[cut - 1], pro[cut]
        y = y0 + (y1 - y0) * (fpr_limit - x0) / (x1 - x0) if x1 > x0 else y1
        f, p = np.r_[f, fpr_limit], np.r_[p, y]
    area = float(np.sum((f[1:] - f[:-1]) * (p[1:] + p[:-1]) / 2))
    return area / fpr_limit


def pixel_metrics(maps: Sequence[np.ndarray], masks: Sequence[np.ndarray]) -> dict[str, float | None]:
    """Pixel AUROC, AP and AUPRO over images with known masks (None without defect pixels)."""
    if not maps:
        return {"pixel_auroc": None, "pixel_aupro": None, "pixel_ap": None}
    s = np.concatenate([m.ravel() for m in maps]).astype(np.float32)
    y = np.concatenate([g.ravel() for g in masks]).astype(bool)
    if not _both_classes(y):
        return {"pixel_auroc": None, "pixel_aupro": None, "pixel_ap": None}
    return {
        "pixel_auroc": float(roc_auc_score(y, s)),
        "pixel_aupro": float(aupro(maps, masks)),
        "pixel_ap": float(average_precision_score(y, s)),
    }

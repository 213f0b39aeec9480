"""Running a predictor over samples: evaluation metrics and threshold calibration.

Pixel metrics are computed at the model's input size (maps and masks resized there),
over the images whose pixels are known (normal images and defective images with masks).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from ml.data import Sample, load_sample_mask
from ml.feature_cache import mask_to_feature_grid
from ml.images import read_image, resize_rgb
from ml.metrics import image_metrics, pixel_metrics
from ml.predict import Predictor, Thresholds, calibrate

MAX_CALIBRATION_PIXELS = 4_000_000


@dataclass
class SampleOutputs:
    """Predictions for samples at input size: scores ``(N,)``, maps ``(N, H, W)``,
    embeddings ``(N, C)``, gt masks (bool ``(H, W)`` or None when unknown)."""

    scores: np.ndarray
    maps: np.ndarray
    embeddings: np.ndarray
    gt_masks: list[np.ndarray | None]
    labels: np.ndarray


def load_resized(sample: Sample, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray | None]:
    """The sample's image resized to ``size`` (uint8 ``(H, W, 3)``) and its ground truth at
    that size (bool ``(H, W)``; None when its pixels are unknown)."""
    img = read_image(sample.image)
    mask = load_sample_mask(sample, img.shape[:2])
    small = resize_rgb(img, size)
    if mask is None:
        return small, None
    return small, mask_to_feature_grid(mask.astype(np.float32), size) > 0


def run_samples(
    predictor: Predictor,
    samples: Sequence[Sample],
    batch_size: int = 16,
    progress: Callable[[int, int], None] | None = None,
) -> SampleOutputs:
    """Predict every sample (images read and resized in two threads)."""
    size = predictor.image_size
    scores, maps, embs, gts = [], [], [], []
    with ThreadPoolExecutor(max_workers=2) as pool:
        for start in range(0, len(samples), batch_size):
            chunk = samples[start : start + batch_size]
            loaded = list(pool.map(lambda s: load_resized(s, size), chunk))
            s, m, e = predictor.raw([img for img, _ in loaded])
            scores.append(s)
            maps.append(m.astype(np.float16))
            embs.append(e)
            gts += [g for _, g in loaded]
            if progress:
                progress(min(start + batch_size, len(samples)), len(samples))
    if not samples:
        return SampleOutputs(np.zeros(0), np.zeros((0, *size)), np.zeros((0, 0)), [], np.zeros(0))
    return SampleOutputs(
        np.concatenate(scores),
        np.concatenate(maps),
        np.concatenate(embs),
        gts,
        np.array([s.label for s in samples]),
    )


def _known_masks(out: SampleOutputs) -> dict[int, np.ndarray]:
    """The ground-truth masks that are known, bool ``(H, W)``, by row of ``out`` (in row order)."""
    return {i: g for i, g in enumerate(out.gt_masks) if g is not None}


def metrics_from_outputs(out: SampleOutputs, threshold: float) -> dict:
    """The evaluation JSON: image metrics, pixel metrics (None without masks), counts."""
    result: dict = dict(image_metrics(out.scores, out.labels, threshold))
    known = _known_masks(out)
    has_defect_mask = any(g.any() for g in known.values())
    if has_defect_mask:
        result.update(pixel_metrics([out.maps[i].astype(np.float32) for i in known], list(known.values())))
    else:
        result.update({"pixel_auroc": None, "pixel_aupro": None, "pixel_ap": None})
    result["threshold"] = float(threshold)
    result["n_normal"] = int((out.labels == 0).sum())
    result["n_defective"] = int((out.labels == 1).sum())
    result["n_pixel_images"] = len(known)
    return result


def evaluate(
    predictor: Predictor, samples: Sequence[Sample], progress: Callable[[int, int], None] | None = None
) -> dict:
    """Metrics of ``predictor`` on ``samples`` at its stored image threshold."""
    out = run_samples(predictor, samples, progress=progress)
    return metrics_from_outputs(out, predictor.thresholds.image)


def calibrate_outputs(out: SampleOutputs, mode: str = "f1", seed: int = 0) -> Thresholds:
    """Thresholds from validation outputs (pixels subsampled to a fixed budget, seeded)."""
    known = _known_masks(out)
    px_s = px_y = None
    if known:
        px_s = np.concatenate([out.maps[i].astype(np.float32).ravel() for i in known])
        px_y = np.concatenate([g.ravel() for g in known.values()])
        if len(px_s) > MAX_CALIBRATION_PIXELS:
            rng = np.random.default_rng(seed)
            pick = rng.choice(len(px_s), MAX_CALIBRATION_PIXELS, replace=False)
            # keep every defect pixel: they are rare and decide the threshold
            pick = np.union1d(pick, np.flatnonzero(px_y))
            px_s, px_y = px_s[pick], px_y[pick]
    return calibrate(out.scores, out.labels, px_s, px_y, mode=mode)

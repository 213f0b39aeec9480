"""Mask proposals at the image's own resolution, refined from the coarse anomaly map with the image.

The model's anomaly map comes from 1/8-resolution features blurred with a sigma-4 Gaussian:
thresholded as it is (``RefineMethod.COARSE``) it gives a blob several times wider than a thin
scratch. Each other method keeps the map as the prior (where to look) and lets the image
decide the boundary (which pixels):

- ``PEAK``: a per-image threshold halfway between the pixel threshold and the map's peak.
- ``CONTRAST``: pixels that deviate from the local background (gray level minus a large median
  filter, signed by what the map's core shows) beyond Otsu's threshold inside the region, kept
  where connected to the map's core.
- ``GRABCUT``: OpenCV GrabCut on a crop around the region, seeded from the map (core: sure
  defect, region: probable, ring: probable background, outside: sure background).
- ``RANDOM_WALKER``: scikit-image's random walker on that crop, seeded the same way.
- ``SLIC``: SLIC superpixels of the crop kept where their mean map value passes the threshold.
- ``AUTO``: CONTRAST's mask where it stands out from the rest of the region (a crisp spot,
  hole or line), else the map's blobs that reach its peak (a large, low-contrast defect,
  where contrast picks texture): measured best over all regimes and defect types.
- ``CLICK_HEAD``: AUTO finds where, the model's click head (:mod:`ml.click_head`, taught by
  the training masks) the shape: each of AUTO's two largest components is replaced by the
  head's mask clicked at its innermost point (the maximum of its distance transform), which
  may reach past the map's region; where the head finds nothing there, and for smaller
  components, AUTO's pixels stay. Without a head: AUTO.

Every method works on a crop around the thresholded region, so its time depends on the size
of the suspected defect, not of the image, and returns the coarse mask unchanged when the map
holds no region. Contracts: ``image`` uint8 ``(H, W, 3)`` RGB, ``pred_map`` float ``(H, W)`` in
[0, 1] (the same size), ``threshold`` the model's pixel threshold; masks are bool ``(H, W)``.
"""

from __future__ import annotations

import enum
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING

import cv2
import numpy as np
from scipy.ndimage import distance_transform_edt

if TYPE_CHECKING:  # torch loads only where a head is used
    from ml.click_head import ClickHead

#: at most this many pixels along the longer side of a crop the iterative methods work on
WORK_SIDE = 160
#: CLICK_HEAD clicks the head in at most this many of AUTO's components (the largest): a click
#: costs about 100 ms on one core
MAX_CLICKS = 2
#: an image judged defective whose map holds no pixel at the pixel threshold is proposed the
#: region at this share of the way from the map's median to its peak (:func:`region_threshold`)
FALLBACK_SHARE = 0.5
#: CONTRAST keeps pixels whose evidence reaches this share of the region's strongest (99th percentile)
STRONG_SHARE = 0.5
#: ... in components that hold a pixel at this share of it
SEED_SHARE = 0.9


class RefineMethod(enum.StrEnum):
    COARSE = "coarse"
    PEAK = "peak"
    CONTRAST = "contrast"
    GRABCUT = "grabcut"
    RANDOM_WALKER = "random_walker"
    SLIC = "slic"
    AUTO = "auto"
    CLICK_HEAD = "click_head"


#: the method `predict` and the Label Studio proposals use (chosen by bench/refine_masks.py)
DEFAULT_METHOD = RefineMethod.AUTO
#: AUTO takes CONTRAST's mask where its mean evidence is at least this many times that of the rest
#: of the region (a crisp defect standing out), else the map's region
STANDS_OUT = 6.0


@dataclass(frozen=True)
class Crop:
    """A window ``[y0:y1, x0:x1]`` of the image."""

    y0: int
    y1: int
    x0: int
    x1: int

    def of(self, a: np.ndarray) -> np.ndarray:
        return a[self.y0 : self.y1, self.x0 : self.x1]

    @property
    def shape(self) -> tuple[int, int]:
        return self.y1 - self.y0, self.x1 - self.x0


def gray(image: np.ndarray) -> np.ndarray:
    """uint8 ``(H, W)`` gray levels of an RGB (or already gray) uint8 image."""
    return image if image.ndim == 2 else cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2GRAY)


def crop_around(mask: np.ndarray, margin: float = 0.5, min_margin: int = 8) -> Crop:
    """The bounding box of ``mask`` grown by ``margin`` of its size (at least ``min_margin`` px)."""
    ys, xs = np.nonzero(mask)
    h, w = mask.shape
    my = max(min_margin, int(margin * (ys.max() - ys.min() + 1)))
    mx = max(min_margin, int(margin * (xs.max() - xs.min() + 1)))
    return Crop(max(0, ys.min() - my), min(h, ys.max() + my + 1), max(0, xs.min() - mx), min(w, xs.max() + mx + 1))


def _odd(n: float) -> int:
    k = max(3, int(n))
    return k if k % 2 else k + 1


def background_deviation(g: np.ndarray, scale: int) -> np.ndarray:
    """float32 ``(H, W)``: gray level minus its ``scale``-pixel median (the local background)."""
    k = _odd(min(scale, 255))
    pad = k // 2
    padded = cv2.copyMakeBorder(g, pad, pad, pad, pad, cv2.BORDER_REFLECT)
    bg = cv2.medianBlur(padded, k)[pad:-pad, pad:-pad]
    return g.astype(np.float32) - bg.astype(np.float32)


def otsu(values: np.ndarray) -> float:
    """Otsu's threshold of 1-D float values (their mean when they are all equal)."""
    lo, hi = float(values.min()), float(values.max())
    if hi - lo < 1e-6:
        return hi
    q = np.round((values - lo) / (hi - lo) * 255).astype(np.uint8)
    t, _ = cv2.threshold(q.reshape(-1, 1), 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    return lo + float(t) / 255 * (hi - lo)


def keep_touching(mask: np.ndarray, seeds: np.ndarray) -> np.ndarray:
    """The connected components (8-connected) of ``mask`` that contain a ``seeds`` pixel."""
    n, lab = cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)
    if n <= 1:
        return mask.astype(bool)
    hit = np.unique(lab[seeds & mask])
    hit = hit[hit > 0]
    return np.isin(lab, hit)


def defect_evidence(g: np.ndarray, core: np.ndarray, scale: int) -> np.ndarray:
    """float32 ``(H, W)`` >= 0: how far each pixel departs from the local background in the
    direction (darker or brighter) in which the ``core``'s most extreme pixels depart further
    (its 2nd and 98th percentiles compared)."""
    dev = background_deviation(g, scale)
    sign = -1.0
    if core.any():
        lo, hi = np.quantile(dev[core], [0.02, 0.98])
        sign = 1.0 if hi > -lo else -1.0
    return np.maximum(sign * dev, 0.0)


def _contrast(g: np.ndarray, region: np.ndarray, core: np.ndarray, scale: int, auto: bool = False) -> np.ndarray:
    ev = defect_evidence(g, core, scale)
    vals = ev[region]
    if vals.size < 4:
        return region
    strong = float(np.quantile(vals, 0.99))
    mask = (ev > max(otsu(vals), STRONG_SHARE * strong, 1.0)) & region
    mask = cv2.morphologyEx(mask.astype(np.uint8), cv2.MORPH_CLOSE, np.ones((3, 3), np.uint8)).astype(bool) & region
    mask = keep_touching(mask, (ev >= SEED_SHARE * strong) & region)
    if auto:
        rest = region & ~mask
        stands_out = mask.any() and float(ev[mask].mean()) >= STANDS_OUT * (
            float(ev[rest].mean()) + 1.0 if rest.any() else 1.0
        )
        return mask if stands_out else region
    return mask


def _shrink(a: np.ndarray, factor: float, interp: int) -> np.ndarray:
    if factor >= 1:
        return a
    h, w = a.shape[:2]
    return cv2.resize(a, (max(2, round(w * factor)), max(2, round(h * factor))), interpolation=interp)


def _grow(m: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    if m.shape == shape:
        return m
    return cv2.resize(m.astype(np.uint8), (shape[1], shape[0]), interpolation=cv2.INTER_NEAREST).astype(bool)


def _grabcut(img: np.ndarray, region: np.ndarray, core: np.ndarray) -> np.ndarray:
    """GrabCut on a crop ``img`` uint8 ``(h, w[, 3])`` seeded from bool ``(h, w)`` masks: ``core``
    sure defect, ``region`` probable, a ring around it probable background, the rest sure
    background. Returns bool ``(h, w)``; ``region`` itself when the seeds leave nothing to cut."""
    f = min(1.0, WORK_SIDE / max(region.shape))
    im = _shrink(np.ascontiguousarray(img), f, cv2.INTER_AREA)
    reg, cor = (
        _shrink(region.astype(np.uint8), f, cv2.INTER_NEAREST) > 0,
        _shrink(core.astype(np.uint8), f, cv2.INTER_NEAREST) > 0,
    )
    ring = cv2.dilate(reg.astype(np.uint8), np.ones((9, 9), np.uint8)) > 0
    gc = np.full(reg.shape, cv2.GC_BGD, np.uint8)
    gc[ring] = cv2.GC_PR_BGD
    gc[reg] = cv2.GC_PR_FGD
    gc[cor] = cv2.GC_FGD
    if (gc == cv2.GC_BGD).sum() < 16 or not (gc == cv2.GC_FGD).any():
        return region
    bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    im3 = im if im.ndim == 3 else cv2.cvtColor(im, cv2.COLOR_GRAY2RGB)
    cv2.grabCut(im3, gc, (0, 0, 0, 0), bgd, fgd, 3, cv2.GC_INIT_WITH_MASK)  # the rect is unused with a mask
    return _grow((gc == cv2.GC_FGD) | (gc == cv2.GC_PR_FGD), region.shape)


def _random_walker(g: np.ndarray, region: np.ndarray, core: np.ndarray) -> np.ndarray:
    from skimage.segmentation import random_walker

    f = min(1.0, WORK_SIDE / max(region.shape))
    gs = _shrink(g, f, cv2.INTER_AREA).astype(np.float32) / 255.0
    reg, cor = (
        _shrink(region.astype(np.uint8), f, cv2.INTER_NEAREST) > 0,
        _shrink(core.astype(np.uint8), f, cv2.INTER_NEAREST) > 0,
    )
    labels = np.zeros(gs.shape, np.int32)
    labels[~reg] = 1
    labels[cor] = 2
    if not (labels == 1).any() or not (labels == 2).any():
        return region
    with warnings.catch_warnings():  # its loose tolerance lets probabilities stray outside [0, 1] by a hair
        warnings.simplefilter("ignore", UserWarning)
        out = random_walker(gs, labels, beta=200, mode="cg_j", tol=1e-2)
    return _grow(out == 2, region.shape)


def _slic(img: np.ndarray, pm: np.ndarray, threshold: float) -> np.ndarray:
    from skimage.segmentation import slic

    f = min(1.0, WORK_SIDE / max(pm.shape))
    im = _shrink(np.ascontiguousarray(img), f, cv2.INTER_AREA)
    pms = _shrink(pm.astype(np.float32), f, cv2.INTER_AREA)
    segs = slic(
        im, n_segments=max(16, pms.size // 64), compactness=10, start_label=0, channel_axis=-1 if im.ndim == 3 else None
    )
    sums = np.bincount(segs.ravel(), weights=pms.ravel())
    counts = np.bincount(segs.ravel())
    keep = sums / np.maximum(counts, 1) >= threshold
    return _grow(keep[segs], pm.shape)


def region_threshold(pred_map: np.ndarray, threshold: float, defective: bool) -> float:
    """The threshold a proposal's region is cut at (``pred_map`` float ``(H, W)``): ``threshold``;
    for an image judged ``defective`` whose map holds no pixel at it, a per-image one
    :data:`FALLBACK_SHARE` of the way from the map's median to its peak, so that a defect
    verdict comes with where the model looks (the map's peak lies on the defect more often
    than the pixel threshold, calibrated over all pixels, lets through). A flat map: ``threshold``."""
    pm = np.asarray(pred_map, dtype=np.float32)
    peak = float(pm.max())
    if not defective or peak >= threshold:
        return threshold
    median = float(np.median(pm))
    if peak - median < 1e-6:
        return threshold
    return median + FALLBACK_SHARE * (peak - median)


def refine_mask(
    image: np.ndarray,
    pred_map: np.ndarray,
    threshold: float,
    method: RefineMethod | str = DEFAULT_METHOD,
    head: ClickHead | None = None,
) -> np.ndarray:
    """A defect mask bool ``(H, W)`` for ``image`` from its anomaly map (see the module docstring).

    The region is ``pred_map >= threshold``; the core, where the method is surest, is the part of
    the region at or above halfway to the map's peak. Every method but COARSE keeps only the
    region's blobs that reach the core. Pixels outside the region's crop are never set, but by
    CLICK_HEAD (``head``: the model's click head; None: CLICK_HEAD is AUTO). Empty region: an
    empty mask, for every method.
    """
    method = RefineMethod(method)
    if method is RefineMethod.CLICK_HEAD and head is None:
        method = RefineMethod.AUTO
    pm = np.asarray(pred_map, dtype=np.float32)
    if image.shape[:2] != pm.shape:
        raise ValueError(f"image {image.shape[:2]} and anomaly map {pm.shape} differ in size")
    region = pm >= threshold
    if method is RefineMethod.COARSE or not region.any():
        return region
    peak = float(pm.max())
    core = pm >= threshold + 0.5 * (peak - threshold)
    if method is RefineMethod.PEAK:
        return core
    region = keep_touching(region, core)  # the map's blobs that reach its peak; weaker ones are noise
    c = crop_around(region)
    reg, cor = c.of(region), c.of(core)
    if method in (RefineMethod.CONTRAST, RefineMethod.AUTO, RefineMethod.CLICK_HEAD):
        scale = max(15, max(c.shape) // 2)
        part = _contrast(gray(c.of(image)), reg, cor, scale, auto=method is not RefineMethod.CONTRAST)
    elif method is RefineMethod.GRABCUT:
        part = _grabcut(c.of(image), reg, cor)
    elif method is RefineMethod.RANDOM_WALKER:
        part = _random_walker(gray(c.of(image)), reg, cor)
    else:
        part = _slic(c.of(image), c.of(pm), threshold)
    out = np.zeros_like(region)
    c.of(out)[...] = part
    out = out if out.any() else region
    if method is RefineMethod.CLICK_HEAD and head is not None:
        return _clicked(image, out, head)
    return out


def _clicked(image: np.ndarray, found: np.ndarray, head: ClickHead) -> np.ndarray:
    """``found`` (AUTO's mask) with each of its :data:`MAX_CLICKS` largest components replaced by
    the head's mask clicked at the component's innermost point; a component stays as it is
    where the head finds nothing at its point, and so do the smaller ones. The clicks run as
    one batch (``ml.click_head.find_all``)."""
    from ml.click_head import find_all

    n, labels, stats, _ = cv2.connectedComponentsWithStats(found.astype(np.uint8))
    parts = [labels == k for k in sorted(range(1, n), key=lambda k: -stats[k, cv2.CC_STAT_AREA])[:MAX_CLICKS]]
    points = [innermost(part) for part in parts]
    out = found.copy()
    for part, mask in zip(parts, find_all(head, image, [(float(x), float(y)) for x, y in points]), strict=True):
        if mask is not None:
            out = (out & ~part) | mask
    return out


def innermost(mask: np.ndarray) -> tuple[int, int]:
    """``(x, y)`` of the maximum of ``mask``'s distance transform (bool ``(H, W)``, not empty;
    the image's edge is not background), computed on the mask's bounding box."""
    ys, xs = np.nonzero(mask)
    y0, x0 = max(0, int(ys.min()) - 1), max(0, int(xs.min()) - 1)
    y1, x1 = int(ys.max()) + 2, int(xs.max()) + 2
    depth = distance_transform_edt(mask[y0:y1, x0:x1])
    y, x = np.unravel_index(int(np.argmax(depth)), depth.shape)
    return int(x) + x0, int(y) + y0


#: fewer calibration defects with masks than this: no choice, the default method
MIN_CHOICE_SAMPLES = 5


@dataclass(frozen=True)
class MethodChoice:
    """The mask method chosen on calibration defects (val split, holdout or cross-fitted), and
    every candidate's mean IoU there."""

    method: RefineMethod
    mean_iou: dict[str, float]
    n: int
    note: str


def choose_method(
    cases: list[tuple[np.ndarray, np.ndarray, np.ndarray]],
    threshold: float,
    candidates: tuple[RefineMethod, ...] = tuple(RefineMethod),
    head: ClickHead | None = None,
) -> MethodChoice:
    """The candidate with the highest mean IoU over ``cases`` (image uint8 ``(H, W, 3)``, anomaly
    map float ``(H, W)``, true mask bool ``(H, W)``, each at the image's resolution); the default
    method when there are fewer than :data:`MIN_CHOICE_SAMPLES` cases or it ties with the best.
    CLICK_HEAD is a candidate only with a ``head``."""
    if head is None:
        candidates = tuple(m for m in candidates if m is not RefineMethod.CLICK_HEAD)
    if len(cases) < MIN_CHOICE_SAMPLES:
        return MethodChoice(
            DEFAULT_METHOD,
            {},
            len(cases),
            f"{len(cases)} calibration defects with masks (< {MIN_CHOICE_SAMPLES}): the default",
        )
    scores: dict[str, float] = {}
    for m in candidates:
        ious = []
        for image, pred_map, truth in cases:
            mask = refine_mask(image, pred_map, threshold, m, head)
            union = np.logical_or(mask, truth).sum()
            ious.append(float(np.logical_and(mask, truth).sum() / union) if union else 1.0)
        scores[m.value] = float(np.mean(ious))
    best = max(scores, key=lambda k: (scores[k], k == DEFAULT_METHOD.value))
    return MethodChoice(RefineMethod(best), scores, len(cases), f"best mean IoU on {len(cases)} calibration defects")

"""One-click masks: the defect under an annotator's click (or inside a dragged box).

The click says *which* defect; the anomaly map says roughly how large it is; the image says
where its boundary runs. A window around the click is sized from the map's blob under the
click (or a default share of the image where the map sees nothing there); inside it, the pixels
that depart from the local background the way the clicked pixels do (darker or brighter), beyond
Otsu's threshold of that window, form the mask, kept where connected to the click. A box is the
window itself, seeded from its centre.

Contracts: ``image`` uint8 ``(H, W, 3)``, ``pred_map`` float ``(H, W)`` in [0, 1] (the same size);
points are ``(x, y)`` pixels of the image; the mask is bool ``(H, W)``, never empty for a click
inside the image (at least the clicked pixel's neighbourhood).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from ml.refine import STRONG_SHARE, Crop, defect_evidence, gray, keep_touching, otsu

#: the window around a click where the map sees nothing: this share of the image's shorter side
DEFAULT_WINDOW = 0.25
#: the radius (px) of the disc around a click taken as certainly defective
SEED_RADIUS = 2
#: a mask that reaches the window's edge is looked for again in a window twice as large, this often
MAX_GROWTH = 2
#: the flood fill of an even area takes gray levels within this many robust deviations of the click's
FILL_TOLERANCE = 1.0


class AssistError(ValueError):
    """A click or box that cannot be used (outside the image, empty box); the message says why."""


@dataclass(frozen=True)
class Click:
    """A point ``(x, y)`` on a defect; with ``x2, y2`` the box from ``(x, y)`` to ``(x2, y2)``."""

    x: float
    y: float
    x2: float | None = None
    y2: float | None = None

    @property
    def is_box(self) -> bool:
        return self.x2 is not None and self.y2 is not None


def _check(click: Click, h: int, w: int) -> None:
    pts = [(click.x, click.y)] + ([(click.x2, click.y2)] if click.is_box else [])
    for x, y in pts:
        if not (np.isfinite(x) and np.isfinite(y) and 0 <= x < w and 0 <= y < h):
            raise AssistError(f"point ({x:g}, {y:g}) is outside the {w}x{h} image")


def click_window(pred_map: np.ndarray, x: int, y: int) -> Crop:
    """The window around ``(x, y)``: the map's blob there (pixels at or above half the map's
    value at the click, connected to it) grown by its own size, at least 24 px; where the map
    is flat there, a square of :data:`DEFAULT_WINDOW` of the shorter side."""
    h, w = pred_map.shape
    v = float(pred_map[y, x])
    blob = None
    if v > 0.05 and v >= 0.25 * float(pred_map.max()):
        region = pred_map >= 0.5 * v
        n, lab = cv2.connectedComponents(region.astype(np.uint8), connectivity=8)
        if n > 1 and lab[y, x] > 0:
            blob = lab == lab[y, x]
    if blob is None or blob.sum() > 0.25 * h * w:
        half = max(12, int(DEFAULT_WINDOW * min(h, w) / 2))
        return Crop(max(0, y - half), min(h, y + half + 1), max(0, x - half), min(w, x + half + 1))
    ys, xs = np.nonzero(blob)
    hy = max(12, ys.max() - ys.min() + 1)
    hx = max(12, xs.max() - xs.min() + 1)
    return Crop(max(0, ys.min() - hy // 2), min(h, ys.max() + hy // 2 + 1),
                max(0, xs.min() - hx // 2), min(w, xs.max() + hx // 2 + 1))


def _segment(g: np.ndarray, seed: np.ndarray) -> np.ndarray:
    """The pixels of window ``g`` that belong with ``seed``: where the seed departs from the local
    background, the pixels departing the same way beyond Otsu's threshold of the window and
    half the seed's departure; where
    it does not (the click is inside a large, even area), the smoothed gray levels within a
    tolerance of the seed's (a flood fill). Either way connected to the seed."""
    ev = defect_evidence(g, seed, max(15, max(g.shape)))
    t = max(otsu(ev.ravel()), 1.0)
    at_seed = float(np.median(ev[seed]))
    if at_seed > t:
        mask = ev > max(t, STRONG_SHARE * at_seed)
        mask = cv2.morphologyEx(mask.astype(np.uint8), cv2.MORPH_CLOSE, np.ones((3, 3), np.uint8)).astype(bool)
        return keep_touching(mask, seed) | seed
    smooth = cv2.GaussianBlur(g, (0, 0), 2.0).astype(np.float32)
    level = float(np.median(smooth[seed]))
    spread = float(np.median(np.abs(smooth - np.median(smooth)))) * 1.4826  # robust std of the window
    mask = np.abs(smooth - level) <= max(FILL_TOLERANCE * spread, 2.0)
    mask = cv2.morphologyEx(mask.astype(np.uint8), cv2.MORPH_OPEN, np.ones((5, 5), np.uint8)).astype(bool)
    return keep_touching(mask, seed) | seed


def _touches_border(mask: np.ndarray, win: Crop, h: int, w: int) -> bool:
    """Whether ``mask`` (of the window) reaches a window edge that is not an image edge."""
    return bool((win.y0 > 0 and mask[0].any()) or (win.y1 < h and mask[-1].any())
                or (win.x0 > 0 and mask[:, 0].any()) or (win.x1 < w and mask[:, -1].any()))


def _grown(win: Crop, h: int, w: int) -> Crop:
    """``win`` twice as large about its centre, within the image."""
    cy, cx = (win.y0 + win.y1) // 2, (win.x0 + win.x1) // 2
    hy, hx = win.shape[0], win.shape[1]
    return Crop(max(0, cy - hy), min(h, cy + hy), max(0, cx - hx), min(w, cx + hx))


def assist_mask(image: np.ndarray, pred_map: np.ndarray, click: Click) -> np.ndarray:
    """The mask of the defect at ``click`` (a point or a box); AssistError for a point outside the image."""
    h, w = image.shape[:2]
    if pred_map.shape != (h, w):
        raise ValueError(f"image {(h, w)} and anomaly map {pred_map.shape} differ in size")
    _check(click, h, w)
    g = gray(image)
    if click.is_box:
        x0, x1 = sorted((int(click.x), int(click.x2)))
        y0, y1 = sorted((int(click.y), int(click.y2)))
        win = Crop(y0, y1 + 1, x0, x1 + 1)
        cy, cx = (y0 + y1) // 2, (x0 + x1) // 2
    else:
        cx, cy = int(click.x), int(click.y)
        win = click_window(np.asarray(pred_map, np.float32), cx, cy)
    for attempt in range(MAX_GROWTH + 1):
        seed = np.zeros(win.shape, np.uint8)
        cv2.circle(seed, (cx - win.x0, cy - win.y0), SEED_RADIUS, 1, -1)
        part = _segment(win.of(g), seed > 0)
        if click.is_box or attempt == MAX_GROWTH or not _touches_border(part, win, h, w):
            break
        win = _grown(win, h, w)  # the defect runs past the window: look wider
    out = np.zeros((h, w), bool)
    win.of(out)[...] = part
    return out

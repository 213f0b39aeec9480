"""One-click masks: the defect under an annotator's click (or inside a dragged box).

With a click head (:mod:`ml.click_head`, kept in the model directory when the model was
trained with at least 20 masks), a click is segmented by it: median IoU 0.71-0.75 against
this rule's 0.36-0.38 on the same clicks (docs/RESULTS.md, "One-click masks with a click
head"). Without one (too few masks yet), the rule:

The click says *which* defect; the image says where its boundary runs. In a window of
:data:`CLICK_WINDOW` pixels around the click (or the dragged box), the pixels that depart from
the window's background (its median gray level) the way the clicked pixels do, darker or
brighter, beyond Otsu's threshold of the window and half the click's own departure, form the
mask, kept where connected to the click. Where the click does not depart from the background
(inside a large, even area), the smoothed gray levels within a tolerance of the click's are
flooded instead. A box is segmented by GrabCut initialised with it (outside: background).

The model's anomaly map is not used: measured on magnetic-tile and bsdata test defects,
windows sized from the map's blob under the click, and windows grown while the mask reached
their edge, both did worse than this fixed window (docs/RESULTS.md, "One-click masks"), and
without the model a click costs milliseconds.

Contracts: ``image`` uint8 ``(H, W, 3)``; points are ``(x, y)`` pixels of the image; the mask is
bool ``(H, W)``, never empty for a click inside the image (at least the clicked pixel's
neighbourhood).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import cv2
import numpy as np

from ml.refine import STRONG_SHARE, WORK_SIDE, Crop, defect_evidence, gray, keep_touching, otsu

if TYPE_CHECKING:  # torch loads only where a head is used
    from ml.click_head import ClickHead

#: the side (px) of the square window around a click
CLICK_WINDOW = 128
#: the radius (px) of the disc around a click taken as certainly defective
SEED_RADIUS = 2
#: the flood fill of an even area takes gray levels within this many robust deviations of the click's
FILL_TOLERANCE = 1.0


class AssistError(ValueError):
    """A click or box that cannot be used (outside the image); the message says why."""


@dataclass(frozen=True)
class Click:
    """A point ``(x, y)`` on a defect; with ``x2, y2`` the box from ``(x, y)`` to ``(x2, y2)``."""

    x: float
    y: float
    x2: float | None = None
    y2: float | None = None

    @property
    def is_box(self) -> bool:
        return self.corner is not None

    @property
    def corner(self) -> tuple[float, float] | None:
        """The box's second corner ``(x2, y2)``; None for a point."""
        return None if self.x2 is None or self.y2 is None else (self.x2, self.y2)


def _check(click: Click, h: int, w: int) -> None:
    corner = click.corner
    pts = [(click.x, click.y)] + ([corner] if corner is not None else [])
    for x, y in pts:
        if not (np.isfinite(x) and np.isfinite(y) and 0 <= x < w and 0 <= y < h):
            raise AssistError(f"point ({x:g}, {y:g}) is outside the {w}x{h} image")


def _segment(g: np.ndarray, seed: np.ndarray) -> np.ndarray:
    """The pixels of window ``g`` that belong with ``seed`` (see the module docstring)."""
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


def box_mask(image: np.ndarray, box: Crop) -> np.ndarray:
    """GrabCut initialised with ``box`` (outside it: background) on a crop around it, at most
    :data:`ml.refine.WORK_SIDE` px on its longer side; the box itself where GrabCut finds nothing."""
    h, w = image.shape[:2]
    my, mx = max(8, box.shape[0] // 4), max(8, box.shape[1] // 4)
    c = Crop(max(0, box.y0 - my), min(h, box.y1 + my), max(0, box.x0 - mx), min(w, box.x1 + mx))
    f = min(1.0, WORK_SIDE / max(c.shape))
    crop = np.ascontiguousarray(c.of(image if image.ndim == 3 else cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)))
    small = cv2.resize(
        crop, (max(2, round(c.shape[1] * f)), max(2, round(c.shape[0] * f))), interpolation=cv2.INTER_AREA
    )
    rect = (
        int((box.x0 - c.x0) * f),
        int((box.y0 - c.y0) * f),
        max(1, int(box.shape[1] * f)),
        max(1, int(box.shape[0] * f)),
    )
    gc = np.zeros(small.shape[:2], np.uint8)
    out = np.zeros((h, w), bool)
    if rect[2] < 2 or rect[3] < 2 or (rect[2] >= small.shape[1] and rect[3] >= small.shape[0]):
        box.of(out)[...] = True
        return out
    cv2.grabCut(small, gc, rect, np.zeros((1, 65)), np.zeros((1, 65)), 4, cv2.GC_INIT_WITH_RECT)
    fg = ((gc == cv2.GC_FGD) | (gc == cv2.GC_PR_FGD)).astype(np.uint8)
    part = cv2.resize(fg, (c.shape[1], c.shape[0]), interpolation=cv2.INTER_NEAREST) > 0
    c.of(out)[...] = part
    out &= np.pad(np.ones(box.shape, bool), ((box.y0, h - box.y1), (box.x0, w - box.x1)))
    if not out.any():
        box.of(out)[...] = True
    return out


def assist_mask(image: np.ndarray, click: Click, head: ClickHead | None = None) -> np.ndarray:
    """The mask of the defect at ``click`` (a point or a box); AssistError for a point outside the
    image. ``head``: the model's click head, which segments a point (a box stays GrabCut's)."""
    h, w = image.shape[:2]
    _check(click, h, w)
    if (corner := click.corner) is not None:
        x0, x1 = sorted((int(click.x), int(corner[0])))
        y0, y1 = sorted((int(click.y), int(corner[1])))
        return box_mask(image, Crop(y0, y1 + 1, x0, x1 + 1))
    if head is not None:
        from ml.click_head import segment

        return segment(head, image, click.x, click.y)
    cx, cy = int(click.x), int(click.y)
    half = CLICK_WINDOW // 2
    win = Crop(max(0, cy - half), min(h, cy + half), max(0, cx - half), min(w, cx + half))
    seed = np.zeros(win.shape, np.uint8)
    cv2.circle(seed, (cx - win.x0, cy - win.y0), SEED_RADIUS, 1, -1)
    out = np.zeros((h, w), bool)
    win.of(out)[...] = _segment(win.of(gray(image)), seed > 0)
    return out

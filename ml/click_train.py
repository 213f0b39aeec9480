"""Teaching a :class:`~ml.click_head.ClickNet` the line's defects from its mask labels.

Each step draws a batch of windows: a true mask, a click inside it (half the time its innermost
point, the maximum of the distance transform, as an annotator aims; otherwise any point at least
half as deep), a window of 0.7 to 6 times the mask's extent around a point near the click (so
both a first, wide window and a zoomed one are seen), turned by a multiple of 90 degrees plus up
to 10, mirrored at random, with brightness and contrast jitter. The target is the true mask in
the window; the loss is binary cross-entropy plus soft Dice. AdamW with a one-cycle schedule.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from scipy.ndimage import distance_transform_edt

from ml.click_head import (
    FIRST_FACTOR,
    INPUT_SIDE,
    ClickHead,
    ClickHeadInfo,
    ClickNet,
    click_disc,
    image_tensor,
    window,
)
from ml.errors import TrainingError

#: fewer masks than this: no click head by default (one click then uses the image alone,
#: ``ml.assist``). Measured on magnetic-tile: a head taught by 5 masks is worse than the image
#: rule on the defect types it never saw (median IoU 0.13 against 0.36); by 20, better (0.69).
MIN_MASKS = 20
#: a head is never taught by fewer masks than this, whatever a config asks
FLOOR_MASKS = 2
#: the window's side is drawn log-uniformly in this range of the mask's extent
SCALE_RANGE = (0.7, 6.0)


@dataclass(frozen=True)
class ClickTrainConfig:
    """The schedule of a click head's training."""

    steps: int = 800
    batch: int = 12
    lr: float = 1e-3
    seed: int = 0


#: a case keeps the image within this many mask extents of the mask (the widest window reaches 3.25)
KEEP_AROUND = 4.0


@dataclass(frozen=True)
class ClickCase:
    image: np.ndarray  # uint8 (h, w, 3): the part of the image around the mask
    mask: np.ndarray  # bool (h, w), not empty
    depth: np.ndarray  # float32 (h, w): the mask's distance transform
    extent: float  # the longer side of the mask's bounding box (px)
    widest: float  # the widest window: 1.5 times the whole image's longer side (px)


def click_case(image: np.ndarray, mask: np.ndarray) -> ClickCase | None:
    """What training keeps of a labelled image (uint8 ``(H, W, 3)``, its mask bool ``(H, W)``): the
    part within :data:`KEEP_AROUND` mask extents of the mask; None for an empty mask."""
    if not mask.any():
        return None
    ys, xs = np.nonzero(mask)
    extent = float(max(np.ptp(ys), np.ptp(xs)) + 1)
    r = int(KEEP_AROUND * extent)
    y0, y1 = max(0, ys.min() - r), min(mask.shape[0], ys.max() + 1 + r)
    x0, x1 = max(0, xs.min() - r), min(mask.shape[1], xs.max() + 1 + r)
    part = np.ascontiguousarray(mask[y0:y1, x0:x1])
    depth = distance_transform_edt(part).astype(np.float32)
    return ClickCase(np.ascontiguousarray(image[y0:y1, x0:x1]), part, depth, extent, 1.5 * max(mask.shape))


def _draw(case: ClickCase, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One training window: image ``(3, S, S)``, click ``(1, S, S)``, target ``(1, S, S)``."""
    d = case.depth
    if rng.random() < 0.5:
        y, x = np.unravel_index(int(np.argmax(d)), d.shape)
    else:
        deep = np.flatnonzero(d.ravel() >= 0.5 * d.max())
        y, x = np.unravel_index(int(deep[rng.integers(len(deep))]), d.shape)
    k = math.exp(rng.uniform(math.log(SCALE_RANGE[0]), math.log(SCALE_RANGE[1])))
    side = float(np.clip(case.extent * k, 24.0, case.widest))
    jx, jy = rng.uniform(-0.25, 0.25, 2) * side
    angle = float(rng.choice([0, 90, 180, 270])) + rng.uniform(-10, 10)
    m = window(x + jx, y + jy, side, angle, bool(rng.random() < 0.5))
    size = (INPUT_SIDE, INPUT_SIDE)
    crop = cv2.warpAffine(case.image, m, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
    target = cv2.warpAffine(case.mask.astype(np.float32), m, size, flags=cv2.INTER_LINEAR) > 0.5
    px, py = m @ np.array([x, y, 1.0])
    crop = np.clip(crop.astype(np.float32) * rng.uniform(0.7, 1.3) + rng.uniform(-25, 25), 0, 255)
    return (
        image_tensor(crop),
        torch.from_numpy(click_disc(px, py))[None],
        torch.from_numpy(target.astype(np.float32))[None],
    )


def _dice_loss(logit: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    p = torch.sigmoid(logit)
    inter = (p * target).sum((1, 2, 3))
    return (1 - (2 * inter + 1) / (p.sum((1, 2, 3)) + target.sum((1, 2, 3)) + 1)).mean()


def train_click_head(
    cases: Sequence[ClickCase],
    cfg: ClickTrainConfig = ClickTrainConfig(),
    progress: Callable[[int, int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    pretrained: bool = True,
    device: torch.device | None = None,
    min_masks: int = MIN_MASKS,
) -> ClickHead:
    """A head fine-tuned on ``cases`` (:func:`click_case`). TrainingError with fewer than
    ``min_masks`` (and :data:`FLOOR_MASKS`) cases.
    ``progress(step, steps)`` after every 25 steps; ``should_stop`` is checked as often. Trains on
    ``device`` (default the CPU); the head returned is on the CPU, where clicks are segmented."""
    device = device or torch.device("cpu")
    usable = list(cases)
    need = max(min_masks, FLOOR_MASKS)
    if len(usable) < need:
        raise TrainingError(f"a click head needs at least {need} masks, got {len(usable)}")
    rng = np.random.default_rng(cfg.seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        net = ClickNet(pretrained=pretrained)
    net.to(device).train()
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=cfg.steps, pct_start=0.1)
    t0 = time.perf_counter()
    loss = torch.zeros(())
    for step in range(cfg.steps):
        batch = [_draw(usable[int(rng.integers(len(usable)))], rng) for _ in range(cfg.batch)]
        image, click, target = (torch.stack(t).to(device) for t in zip(*batch, strict=True))
        logit = net(image, click)
        loss = F.binary_cross_entropy_with_logits(logit, target) + _dice_loss(logit, target)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if (step + 1) % 25 == 0 or step + 1 == cfg.steps:
            if progress:
                progress(step + 1, cfg.steps)
            if should_stop and should_stop():
                raise TrainingError("click head training stopped")
    extents = [c.extent for c in usable]
    info = ClickHeadInfo(
        n_masks=len(usable),
        steps=cfg.steps,
        first_side=FIRST_FACTOR * float(np.median(extents)),
        median_extent=float(np.median(extents)),
        seconds=round(time.perf_counter() - t0, 1),
        final_loss=round(float(loss.item()), 4),
    )
    return ClickHead(net.cpu().eval(), info)

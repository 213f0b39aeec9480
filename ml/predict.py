"""Inference: image scores, anomaly maps, pseudo-masks, embeddings, uncertainty; thresholds.

Anomaly maps: segmentation logits upsampled bilinearly to the model's input size,
Gaussian-blurred (sigma 4, kernel 25, as published), passed through a sigmoid, then
resized to the image's original resolution. Scores are sigmoid(classification logit).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from ml.click_head import ClickHead
from ml.images import resize_rgb, to_tensor_batch
from ml.metrics import best_f1_threshold
from ml.refine import DEFAULT_METHOD, RefineMethod, refine_mask, region_threshold
from ml.supersimplenet.features import FeatureExtractor
from ml.supersimplenet.model import SuperSimpleNet

FALLBACK_IMAGE_QUANTILE = 0.99
FALLBACK_PIXEL_QUANTILE = 0.999


@dataclass(frozen=True)
class Thresholds:
    """Decision thresholds on the sigmoid scale and how each was chosen."""

    image: float = 0.5
    pixel: float = 0.5
    image_method: str = "default 0.5 (not calibrated)"
    pixel_method: str = "default 0.5 (not calibrated)"
    notes: tuple[str, ...] = ()

    def to_json(self) -> dict:
        d = asdict(self)
        d["notes"] = list(self.notes)
        return d

    @classmethod
    def from_json(cls, d: dict) -> Thresholds:
        return cls(**{**d, "notes": tuple(d.get("notes", ()))})


@dataclass
class Prediction:
    """One image's prediction. ``pred_map`` float32 ``(H, W)`` in [0, 1] and ``pred_mask``
    bool ``(H, W)`` at the image's original resolution (the map's region refined with the
    image by the predictor's ``mask_method``); ``embedding`` float32 ``(C,)``."""

    score: float
    decision: bool
    pred_map: np.ndarray
    pred_mask: np.ndarray
    embedding: np.ndarray
    uncertainty: dict[str, float] = field(default_factory=dict)


def gaussian_kernel1d(sigma: float = 4.0, size: int = 25) -> torch.Tensor:
    x = torch.arange(size, dtype=torch.float32) - size // 2
    k = torch.exp(-(x**2) / (2 * sigma**2))
    return k / k.sum()


def blur(maps: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Separable Gaussian blur of ``(B, 1, H, W)`` with reflect padding."""
    k = kernel.to(maps.device, maps.dtype)
    pad = k.numel() // 2
    x = F.pad(maps, (pad, pad, 0, 0), mode="reflect")
    x = F.conv2d(x, k.view(1, 1, 1, -1))
    x = F.pad(x, (0, 0, pad, pad), mode="reflect")
    return F.conv2d(x, k.view(1, 1, -1, 1))


def _entropy(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return -(p * np.log2(p) + (1 - p) * np.log2(1 - p))


def _region_entropy(m: np.ndarray, pixel_threshold: float) -> float:
    """Mean binary entropy of the map over its suspicious region (``m >= pixel_threshold / 2``),
    0 where no pixel is suspicious: how unsure the map is about the extent of a defect."""
    region = m >= pixel_threshold / 2
    return float(_entropy(m[region]).mean()) if region.any() else 0.0


class Predictor:
    """Runs a trained model on images of any size.

    ``raw(images)`` returns batched arrays at the model's input size; ``predict(images)``
    returns :class:`Prediction` objects at each image's original resolution.
    """

    def __init__(
        self,
        extractor: FeatureExtractor,
        model: SuperSimpleNet,
        image_size: tuple[int, int],
        thresholds: Thresholds | None = None,
        device: torch.device | None = None,
        image_score: str = "head",
        mask_method: RefineMethod | str = DEFAULT_METHOD,
        click_head: ClickHead | None = None,
    ) -> None:
        """``image_score``: "head" (sigmoid of the classification logit) or "map_max" (maximum
        of the blurred, sigmoid anomaly map), as the model was trained to be read.
        ``mask_method``: how ``pred_mask`` is made from the map and the image (``ml.refine``);
        ``click_head``: the model's click head, which the CLICK_HEAD method uses."""
        if image_score not in ("head", "map_max"):
            raise ValueError(f"image_score must be 'head' or 'map_max', got {image_score!r}")
        self.image_score = image_score
        self.mask_method = RefineMethod(mask_method)
        self.click_head = click_head
        self.device = device or next(model.parameters()).device
        self.extractor = extractor.to(self.device).eval()
        self.model = model.to(self.device).eval()
        self.extractor.to(memory_format=torch.channels_last)
        self.model.to(memory_format=torch.channels_last)
        h, w = image_size  # a list too (read from JSON)
        self.image_size: tuple[int, int] = (h, w)
        self.thresholds = thresholds or Thresholds()
        self.kernel = gaussian_kernel1d()

    @torch.inference_mode()
    def forward_tensor(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``x`` float ``(B, 3, H, W)`` in [0, 1] at the input size -> scores ``(B,)``,
        maps ``(B, H, W)`` (sigmoid, blurred) and embeddings ``(B, C)``, on the device."""
        x = x.to(self.device).contiguous(memory_format=torch.channels_last)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.device.type == "cuda"):
            feats = self.extractor(x)
            out = self.model(feats)
        seg = F.interpolate(out.pred_map.float(), size=self.image_size, mode="bilinear", align_corners=False)
        maps = torch.sigmoid(blur(seg, self.kernel))[:, 0]
        scores = maps.amax(dim=(1, 2)) if self.image_score == "map_max" else torch.sigmoid(out.pred_score.float())
        return scores, maps, out.adapted.float().mean(dim=(2, 3))

    def raw(self, images: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Scores ``(B,)``, maps ``(B, H, W)`` at input size (sigmoid), embeddings ``(B, C)``.

        ``images``: uint8 ``(h, w, 3)`` arrays of any sizes.
        """
        x = to_tensor_batch([resize_rgb(im, self.image_size) for im in images])
        scores, maps, emb = self.forward_tensor(x)
        return scores.cpu().numpy(), maps.cpu().numpy(), emb.cpu().numpy()

    def predict(self, images: Sequence[np.ndarray], *, refine: bool = True) -> list[Prediction]:
        """One Prediction per uint8 ``(h, w, 3)`` image; ``refine=False`` leaves ``pred_mask`` the
        map's thresholded region (for callers that keep only the map, e.g. pool scoring).
        Refined, an image judged defective whose map holds no region at the pixel threshold is
        proposed the region near its peak (:func:`ml.refine.region_threshold`)."""
        scores, maps, emb = self.raw(images)
        th = self.thresholds
        out = []
        for im, s, m, e in zip(images, scores, maps, emb, strict=True):
            h, w = im.shape[:2]
            full = m if m.shape == (h, w) else cv2.resize(m, (w, h), interpolation=cv2.INTER_LINEAR)
            mmax = float(m.max())
            unc = {
                "score_margin": float(abs(s - th.image)),
                "score_entropy": float(_entropy(np.array([s]))[0]),
                "map_max": mmax,
                "map_score_disagreement": float(abs(float(s >= th.image) - float(mmax >= th.pixel))),
                "map_score_gap": float(abs(s - mmax)),
                "map_uncertain_fraction": float((np.abs(m - th.pixel) < 0.1).mean()),
                "map_entropy": float(_entropy(m).mean()),
                "map_region_entropy": _region_entropy(m, th.pixel),
            }
            full = full.astype(np.float32)
            decision = bool(s >= th.image)
            if refine:
                cut = region_threshold(full, th.pixel, decision)
                mask = refine_mask(im, full, cut, self.mask_method, self.click_head)
            else:
                mask = full >= th.pixel
            out.append(Prediction(float(s), decision, full, mask, e, unc))
        return out


def calibrate(
    scores: np.ndarray,
    labels: np.ndarray,
    pixel_scores: np.ndarray | None = None,
    pixel_labels: np.ndarray | None = None,
    mode: str = "f1",
) -> Thresholds:
    """Choose thresholds on validation predictions.

    ``mode``: ``f1`` (maximum F1), ``fpr:X`` (false-positive rate at most X on normal
    images) or ``fnr:X`` (false-negative rate at most X on defective images); the same rule
    applies to pixels. Fallbacks, stated in the returned ``notes``: without defective
    validation images the image threshold is the larger of 0.5 and the 99th percentile of
    normal scores (about 1% false alarms); without defect pixels the pixel threshold is the
    larger of 0.5 and the 99.9th percentile of normal pixels; without any validation data
    both stay 0.5.
    """
    notes: list[str] = []
    labels = np.asarray(labels).astype(bool)
    scores = np.asarray(scores, dtype=np.float64)
    img_t, img_m = _choose(scores, labels, mode, FALLBACK_IMAGE_QUANTILE, "image", notes)
    if pixel_scores is None or pixel_labels is None or len(pixel_scores) == 0:
        px_t, px_m = 0.5, "default 0.5 (no validation pixels)"
        notes.append("no validation images with known pixels: pixel threshold 0.5")
    else:
        px_t, px_m = _choose(
            np.asarray(pixel_scores, np.float64),
            np.asarray(pixel_labels).astype(bool),
            mode,
            FALLBACK_PIXEL_QUANTILE,
            "pixel",
            notes,
        )
    return Thresholds(img_t, px_t, img_m, px_m, tuple(notes))


def _choose(s: np.ndarray, y: np.ndarray, mode: str, q: float, what: str, notes: list[str]) -> tuple[float, str]:
    if len(s) == 0:
        notes.append(f"no validation data: {what} threshold 0.5")
        return 0.5, "default 0.5 (no validation data)"
    if not y.any():
        t = max(0.5, float(np.quantile(s, q)))
        notes.append(
            f"no defective validation {what}s: {what} threshold = max(0.5, {q:.3g} quantile of normal scores) = {t:.4f}"
        )
        return t, f"fallback max(0.5, q{q:g} of normal)"
    if y.all():
        notes.append(f"no normal validation {what}s: {what} threshold 0.5")
        return 0.5, "default 0.5 (no normal validation data)"
    if mode == "f1":
        t, f1 = best_f1_threshold(s, y)
        return t, f"max F1 on validation ({f1:.3f})"
    kind, _, val = mode.partition(":")
    try:
        rate = float(val)
    except ValueError:
        raise ValueError(f"threshold mode must be f1, fpr:X or fnr:X, got {mode!r}") from None
    if kind == "fpr":
        neg = np.sort(s[~y])
        k = int(np.floor(rate * len(neg)))  # at most k normal samples may be at/above t
        t = float(np.nextafter(neg[-k - 1], np.inf)) if k < len(neg) else float(neg[0])
        return t, f"FPR <= {rate:g} on validation"
    if kind == "fnr":
        pos = np.sort(s[y])
        k = int(np.floor(rate * len(pos)))  # at most k defects may fall below t
        t = float(pos[min(k, len(pos) - 1)])
        return t, f"FNR <= {rate:g} on validation"
    raise ValueError(f"threshold mode must be f1, fpr:X or fnr:X, got {mode!r}")

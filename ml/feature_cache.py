"""Backbone features computed once per image (and flip variant), kept compactly.

The backbone is frozen, so training only needs its output. Features are stored as
float16 ``(N, C, h, w)``: in memory when they fit ``memory_limit_bytes``, otherwise in a
memory-mapped file under ``spill_dir`` that is streamed batch by batch.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from ml.data import Sample, load_sample_mask
from ml.images import read_image, resize_rgb, to_tensor_batch
from ml.supersimplenet.features import FeatureExtractor

# flip variants: identity, vertical flip, horizontal flip, 180-degree rotation
VARIANTS = ("id", "vflip", "hflip", "rot180")


def apply_variant(arr: np.ndarray, variant: str) -> np.ndarray:
    """Apply a flip variant to an ``(H, W, ...)`` array."""
    if variant == "vflip":
        return np.ascontiguousarray(arr[::-1])
    if variant == "hflip":
        return np.ascontiguousarray(arr[:, ::-1])
    if variant == "rot180":
        return np.ascontiguousarray(arr[::-1, ::-1])
    return arr


@dataclass
class CachedSet:
    """Training tensors, one row per (sample, variant).

    features ``(N, C, h, w)`` float16 (tensor or memmap); gt_mask ``(N, 1, h, w)`` float32 {0,1};
    known ``(N,)`` bool (pixel ground truth known); label ``(N,)`` float32; sample_index ``(N,)``
    int64 (row in the sample list); variant ``(N,)`` int64 (index into ``VARIANTS``).
    """

    features: torch.Tensor | np.ndarray
    gt_mask: torch.Tensor
    known: torch.Tensor
    label: torch.Tensor
    sample_index: torch.Tensor
    variant: torch.Tensor

    def __len__(self) -> int:
        return int(self.label.shape[0])

    def feature_batch(self, idx: torch.Tensor) -> torch.Tensor:
        """float32 features ``(B, C, h, w)`` for row indices ``idx``."""
        if isinstance(self.features, np.ndarray):
            order = np.sort(idx.numpy())
            block = torch.from_numpy(np.ascontiguousarray(self.features[order]))
            inverse = torch.from_numpy(np.searchsorted(order, idx.numpy()))
            return block[inverse].float()
        return self.features[idx].float()


def load_preprocessed(sample: Sample, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray | None]:
    """The image resized to ``size`` (uint8 HxWx3) and its mask resized (float32 HxW) or None."""
    img = read_image(sample.image)
    mask = load_sample_mask(sample, img.shape[:2])
    img_r = resize_rgb(img, size)
    mask_r = None
    if mask is not None:
        mask_r = cv2.resize(mask.astype(np.float32), (size[1], size[0]), interpolation=cv2.INTER_AREA)
    return img_r, mask_r


def mask_to_feature_grid(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize a float mask ``(H, W)`` to ``size`` bilinearly and binarise at 0.5.

    A defect thinner than a feature cell would vanish at 0.5; then the cells holding at
    least half of the strongest coverage are kept, so a defective mask never becomes empty.
    """
    small = cv2.resize(mask.astype(np.float32), (size[1], size[0]), interpolation=cv2.INTER_LINEAR)
    out = small > 0.5
    if not out.any() and mask.any():
        if small.max() <= 0:  # tiny defect missed by the bilinear taps: area coverage instead
            small = cv2.resize(mask.astype(np.float32), (size[1], size[0]), interpolation=cv2.INTER_AREA)
        out = small >= 0.5 * small.max()
    return out.astype(np.float32)


def build_cache(
    samples: Sequence[Sample],
    variants_for: Callable[[Sample], Sequence[str]],
    extractor: FeatureExtractor,
    image_size: tuple[int, int],
    device: torch.device,
    batch_size: int = 16,
    memory_limit_bytes: int = 6 << 30,
    spill_dir: Path | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> CachedSet:
    """Run the frozen backbone over every (sample, variant) once.

    Masks are resized to the feature size bilinearly and thresholded at 0.5 (as published).
    """
    rows: list[tuple[int, int]] = [(i, VARIANTS.index(v)) for i, s in enumerate(samples) for v in variants_for(s)]
    n = len(rows)
    h, w = image_size
    with torch.no_grad():
        probe = extractor(torch.zeros(1, 3, h, w, device=device))
    _, c, fh, fw = probe.shape
    nbytes = n * c * fh * fw * 2
    if nbytes <= memory_limit_bytes:
        feats: torch.Tensor | np.ndarray = torch.empty((n, c, fh, fw), dtype=torch.float16)
    else:
        spill = Path(spill_dir or tempfile.gettempdir())
        spill.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix="defectloop-features-", suffix=".f16", dir=spill)
        os.close(fd)  # open_memmap opens the file by name
        feats = np.lib.format.open_memmap(name, mode="w+", dtype=np.float16, shape=(n, c, fh, fw))
        Path(name).unlink()  # the mapping keeps the data alive; nothing is left behind on exit
    gt = torch.zeros((n, 1, fh, fw), dtype=torch.float32)
    known = torch.zeros(n, dtype=torch.bool)
    label = torch.zeros(n, dtype=torch.float32)
    needed = sorted({i for i, _ in rows})
    pos = 0
    with ThreadPoolExecutor(max_workers=2) as pool:
        for start in range(0, len(needed), batch_size):
            chunk = needed[start : start + batch_size]
            loaded = list(pool.map(lambda i: load_preprocessed(samples[i], image_size), chunk))
            imgs, masks, meta = [], [], []
            for i, (img, mask) in zip(chunk, loaded, strict=True):
                for v in variants_for(samples[i]):
                    imgs.append(apply_variant(img, v))
                    masks.append(None if mask is None else apply_variant(mask, v))
                    meta.append(i)
            x = to_tensor_batch(imgs).to(device)
            x = x.contiguous(memory_format=torch.channels_last)
            with torch.no_grad(), torch.autocast(device.type, enabled=device.type == "cuda"):
                f = extractor(x).float().cpu()
            k = len(imgs)
            if isinstance(feats, np.ndarray):
                feats[pos : pos + k] = f.half().numpy()
            else:
                feats[pos : pos + k] = f.half()
            for j, (i, m) in enumerate(zip(meta, masks, strict=True)):
                label[pos + j] = float(samples[i].label)
                if m is not None:
                    gt[pos + j, 0] = torch.from_numpy(mask_to_feature_grid(m, (fh, fw)))
                    known[pos + j] = True
            pos += k
            if progress:
                progress(min(start + batch_size, len(needed)), len(needed))
    return CachedSet(
        features=feats,
        gt_mask=gt,
        known=known,
        label=label,
        sample_index=torch.tensor([i for i, _ in rows], dtype=torch.int64),
        variant=torch.tensor([v for _, v in rows], dtype=torch.int64),
    )

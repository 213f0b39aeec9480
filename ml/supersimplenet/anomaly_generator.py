"""Perlin-masked Gaussian noise in feature space: SuperSimpleNet's synthetic anomalies."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def _fade(t: torch.Tensor) -> torch.Tensor:
    return 6 * t**5 - 15 * t**4 + 10 * t**3


def perlin_2d(shape: tuple[int, int], res: tuple[int, int], generator: torch.Generator) -> torch.Tensor:
    """2D Perlin noise ``(H, W)`` in about [-1, 1]; ``H``, ``W`` multiples of ``res``."""
    h, w = shape
    ry, rx = res
    dy, dx = h // ry, w // rx
    angles = 2 * math.pi * torch.rand(ry + 1, rx + 1, generator=generator)
    grads = torch.stack((torch.cos(angles), torch.sin(angles)), dim=-1)
    ys = torch.arange(h, dtype=torch.float32) / dy
    xs = torch.arange(w, dtype=torch.float32) / dx
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    y0, x0 = gy.floor().long(), gx.floor().long()
    fy, fx = gy - y0, gx - x0

    def dot(oy: int, ox: int) -> torch.Tensor:
        g = grads[y0 + oy, x0 + ox]
        return g[..., 0] * (fx - ox) + g[..., 1] * (fy - oy)

    uy, ux = _fade(fy), _fade(fx)
    top = torch.lerp(dot(0, 0), dot(0, 1), ux)
    bottom = torch.lerp(dot(1, 0), dot(1, 1), ux)
    return math.sqrt(2) * torch.lerp(top, bottom, uy)


def perlin_mask(
    size: tuple[int, int], threshold: float, generator: torch.Generator, max_scale_exp: int = 6
) -> torch.Tensor:
    """One binary Perlin mask ``(h, w)`` float {0, 1}.

    Noise is generated on a grid of the next power of two of the feature size with scale
    ``2**k`` per axis, ``k`` uniform in ``0 .. max_scale_exp - 1``, resized bilinearly to
    ``size`` and binarised at ``> threshold``.
    """
    h, w = size
    side = 1 << max(h - 1, w - 1, 1).bit_length()
    ky = int(torch.randint(0, max_scale_exp, (1,), generator=generator))
    kx = int(torch.randint(0, max_scale_exp, (1,), generator=generator))
    res = (min(2**ky, side), min(2**kx, side))
    noise = perlin_2d((side, side), res, generator)
    noise = F.interpolate(noise[None, None], size=(h, w), mode="bilinear", align_corners=False)[0, 0]
    return (noise > threshold).float()


def synthetic_masks(
    batch: int,
    size: tuple[int, int],
    threshold: float,
    generator: torch.Generator,
    gt_masks: torch.Tensor | None = None,
    empty_probability: float = 0.5,
) -> torch.Tensor:
    """Synthetic anomaly masks ``(B, 1, h, w)`` float {0, 1}.

    Each mask is emptied with ``empty_probability``. Where ``gt_masks`` ``(B, 1, h, w)`` marks a
    real defect (or unknown pixels, set to 1 by the caller), no synthetic anomaly is put.
    """
    masks = torch.stack([perlin_mask(size, threshold, generator) for _ in range(batch)])[:, None]
    keep = (torch.rand(batch, generator=generator) >= empty_probability).float().view(batch, 1, 1, 1)
    masks = masks * keep
    if gt_masks is not None:
        masks = masks * (1.0 - gt_masks.clamp(0, 1))
    return masks


def feature_noise(
    masks: torch.Tensor, channels: int, sigma: float, generator: torch.Generator
) -> torch.Tensor:
    """Gaussian noise ``(B, C, h, w)`` with std ``sigma`` where ``masks`` ``(B, 1, h, w)`` is 1."""
    b, _, h, w = masks.shape
    noise = torch.randn(b, channels, h, w, generator=generator) * sigma
    return noise * masks

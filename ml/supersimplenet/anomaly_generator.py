"""Perlin-masked Gaussian noise in feature space: SuperSimpleNet's synthetic anomalies.

Everything is drawn on the device of the ``torch.Generator`` passed in, batched: on a GPU
the masks and the noise of a training batch cost a few kernel launches instead of a
CPU loop (at the paper's feature resolution the CPU noise alone took longer than the
network's step).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def _fade(t: torch.Tensor) -> torch.Tensor:
    return 6 * t**5 - 15 * t**4 + 10 * t**3


def perlin_masks(
    n: int, size: tuple[int, int], threshold: float, generator: torch.Generator, max_scale_exp: int = 6
) -> torch.Tensor:
    """``n`` binary Perlin masks ``(n, h, w)`` float {0, 1}, drawn in one batched computation.

    Each noise is generated on a square grid of the next power of two of the feature size
    with scale ``2**k`` per axis, ``k`` uniform in ``0 .. max_scale_exp - 1`` (per mask and
    axis), resized bilinearly to ``size`` and binarised at ``> threshold``.
    """
    h, w = size
    dev = generator.device
    side = 1 << max(h - 1, w - 1, 1).bit_length()
    ks = torch.randint(0, max_scale_exp, (n, 2), generator=generator, device=dev)
    res = torch.clamp(2**ks, max=side).float()  # (n, 2) lattice cells per axis
    rmax = min(2 ** (max_scale_exp - 1), side)
    angles = 2 * math.pi * torch.rand(n, rmax + 1, rmax + 1, generator=generator, device=dev)
    grads = torch.stack((torch.cos(angles), torch.sin(angles)), dim=-1)  # (n, rmax+1, rmax+1, 2)
    coords = torch.arange(side, dtype=torch.float32, device=dev)[None, :] / side
    gy, gx = coords * res[:, :1], coords * res[:, 1:]  # (n, side) lattice coordinates
    y0, x0 = gy.floor().long(), gx.floor().long()
    fy, fx = (gy - y0)[:, :, None], (gx - x0)[:, None, :]  # (n, side, 1), (n, 1, side)
    y0, x0 = y0[:, :, None], x0[:, None, :]
    b = torch.arange(n, device=dev)[:, None, None]

    def dot(oy: int, ox: int) -> torch.Tensor:
        g = grads[b, y0 + oy, x0 + ox]  # (n, side, side, 2)
        return g[..., 0] * (fx - ox) + g[..., 1] * (fy - oy)

    uy, ux = _fade(fy), _fade(fx)
    top = torch.lerp(dot(0, 0), dot(0, 1), ux)
    bottom = torch.lerp(dot(1, 0), dot(1, 1), ux)
    noise = math.sqrt(2) * torch.lerp(top, bottom, uy)
    noise = F.interpolate(noise[:, None], size=(h, w), mode="bilinear", align_corners=False)[:, 0]
    return (noise > threshold).float()


def perlin_mask(
    size: tuple[int, int], threshold: float, generator: torch.Generator, max_scale_exp: int = 6
) -> torch.Tensor:
    """One binary Perlin mask ``(h, w)`` float {0, 1} (see :func:`perlin_masks`)."""
    return perlin_masks(1, size, threshold, generator, max_scale_exp)[0]


def synthetic_masks(
    batch: int,
    size: tuple[int, int],
    threshold: float,
    generator: torch.Generator,
    gt_masks: torch.Tensor | None = None,
    empty_probability: float = 0.5,
) -> torch.Tensor:
    """Synthetic anomaly masks ``(B, 1, h, w)`` float {0, 1}, on the generator's device.

    Each mask is emptied with ``empty_probability``. Where ``gt_masks`` ``(B, 1, h, w)`` marks a
    real defect (or unknown pixels, set to 1 by the caller), no synthetic anomaly is put.
    """
    dev = generator.device
    masks = perlin_masks(batch, size, threshold, generator)[:, None]
    keep = (torch.rand(batch, generator=generator, device=dev) >= empty_probability).float().view(batch, 1, 1, 1)
    masks = masks * keep
    if gt_masks is not None:
        masks = masks * (1.0 - gt_masks.to(dev).clamp(0, 1))
    return masks


def feature_noise(masks: torch.Tensor, channels: int, sigma: float, generator: torch.Generator) -> torch.Tensor:
    """Gaussian noise ``(B, C, h, w)`` with std ``sigma`` where ``masks`` ``(B, 1, h, w)`` is 1.

    Drawn on the generator's device (``masks`` is moved there).
    """
    b, _, h, w = masks.shape
    dev = generator.device
    noise = torch.randn(b, channels, h, w, generator=generator, device=dev) * sigma
    return noise * masks.to(dev)

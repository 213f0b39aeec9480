"""The SuperSimpleNet network (adaptor + heads), with no I/O and no training logic.

Shapes: features ``F`` are ``(B, C, h, w)`` from :class:`~ml.supersimplenet.features.FeatureExtractor`.
The segmentation head yields one logit per feature pixel ``(B, 1, h, w)``; the
classification head one logit per image ``(B,)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class HeadConfig:
    """Widths of the trainable parts. The paper: seg_hidden 1024, cls_hidden 128, kernel 5."""

    channels: int
    seg_hidden: int = 1024
    cls_hidden: int = 128
    cls_kernel: int = 5
    journal_cls_input: bool = True  # journal: the cls head sees un-adapted (noised) features


class HeadOutput(NamedTuple):
    pred_map: torch.Tensor  # (B, 1, h, w) segmentation logits
    pred_score: torch.Tensor  # (B,) classification logits
    adapted: torch.Tensor  # (B, C, h, w) adapted features


def _init(m: nn.Module) -> None:
    if isinstance(m, (nn.Conv2d, nn.Linear)):
        nn.init.xavier_normal_(m.weight)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.BatchNorm2d):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)


class SegmentationHead(nn.Module):
    """1x1 conv C->hidden, BN, LeakyReLU(0.2), 1x1 conv hidden->1 (no bias)."""

    def __init__(self, channels: int, hidden: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(channels, hidden, 1),
            nn.BatchNorm2d(hidden),
            nn.LeakyReLU(0.2),
            nn.Conv2d(hidden, 1, 1, bias=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class ClassificationHead(nn.Module):
    """kxk conv (C+1)->hidden, BN, ReLU; [gmax, gavg] of it + [max, avg] of the map -> Linear."""

    def __init__(self, channels: int, hidden: int, kernel: int) -> None:
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(channels + 1, hidden, kernel, padding=kernel // 2),
            nn.BatchNorm2d(hidden),
            nn.ReLU(),
        )
        self.fc = nn.Linear(2 * hidden + 2, 1)

    def forward(self, features: torch.Tensor, seg_map: torch.Tensor) -> torch.Tensor:
        z = self.conv(torch.cat([features, seg_map], dim=1))
        pooled = torch.cat(
            [
                F.adaptive_max_pool2d(z, 1).flatten(1),
                F.adaptive_avg_pool2d(z, 1).flatten(1),
                F.adaptive_max_pool2d(seg_map, 1).flatten(1),
                F.adaptive_avg_pool2d(seg_map, 1).flatten(1),
            ],
            dim=1,
        )
        return self.fc(pooled).squeeze(1)


class SuperSimpleNet(nn.Module):
    """Adaptor + segmentation head + classification head over precomputed features.

    ``forward(features, noise=None, stop_grad=False)``: ``noise`` ``(B, C, h, w)`` is added to
    the features (training only; zero outside synthetic-anomaly masks). ``stop_grad`` detaches
    the segmentation map fed to the classification head (unsupervised regime).
    """

    feature_mean: torch.Tensor  # buffer (C,)
    feature_std: torch.Tensor  # buffer (C,)

    def __init__(self, cfg: HeadConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.adaptor = nn.Conv2d(cfg.channels, cfg.channels, 1)
        self.seg_head = SegmentationHead(cfg.channels, cfg.seg_hidden)
        self.cls_head = ClassificationHead(cfg.channels, cfg.cls_hidden, cfg.cls_kernel)
        self.apply(_init)
        # per-channel feature statistics of the training set (identity until ``set_feature_stats``)
        self.register_buffer("feature_mean", torch.zeros(cfg.channels))
        self.register_buffer("feature_std", torch.ones(cfg.channels))

    def set_feature_stats(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        """Standardise features per channel from now on: ``(f - mean) / std``, both ``(C,)``."""
        self.feature_mean.copy_(mean.to(self.feature_mean))
        self.feature_std.copy_(std.clamp_min(1e-6).to(self.feature_std))

    def forward(self, features: torch.Tensor, noise: torch.Tensor | None = None, stop_grad: bool = False) -> HeadOutput:
        features = (features - self.feature_mean.view(1, -1, 1, 1)) / self.feature_std.view(1, -1, 1, 1)
        adapted = self.adaptor(features)
        if noise is not None:
            adapted = adapted + noise
            cls_features = features + noise if self.cfg.journal_cls_input else adapted
        else:
            cls_features = features if self.cfg.journal_cls_input else adapted
        seg = self.seg_head(adapted)
        seg_for_cls = seg.detach() if stop_grad else seg
        score = self.cls_head(cls_features, seg_for_cls)
        return HeadOutput(seg, score, adapted)

    def param_groups(self, adaptor_lr: float, head_lr: float) -> list[dict]:
        """AdamW groups as published: adaptor (wd 0.01), seg head and cls head (wd 1e-5)."""
        return [
            {"params": self.adaptor.parameters(), "lr": adaptor_lr, "weight_decay": 0.01},
            {"params": self.seg_head.parameters(), "lr": head_lr, "weight_decay": 1e-5},
            {"params": self.cls_head.parameters(), "lr": head_lr, "weight_decay": 1e-5},
        ]

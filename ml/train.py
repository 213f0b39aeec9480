"""The SuperSimpleNet training loop over cached features, and the regime rules applied.

``fit`` is the entry point: samples in, a :class:`TrainedModel` out (network, feature
extractor, settings, thresholds). The network stays an ``nn.Module`` with no I/O; this
module owns sampling, synthetic anomalies, the optimiser and the schedule.

What decides a run (:class:`~ml.train_config.TrainConfig`, the profiles) lives in
:mod:`ml.train_config`, the threshold holdout in :mod:`ml.splits`; both are re-exported
here, where callers have always imported them.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from ml.errors import TrainingError
from ml.feature_cache import VARIANTS, CachedSet, build_cache
from ml.images import read_mask
from ml.regimes import AUTO, Regime, RegimeSettings, apply_regime, derive_regime, perlin_for_masks
from ml.samples import Sample
from ml.splits import holdout_split as holdout_split
from ml.supersimplenet.anomaly_generator import feature_noise, synthetic_masks
from ml.supersimplenet.features import FeatureExtractor, get_backbone_spec
from ml.supersimplenet.loss import distance_weights, supersimplenet_loss
from ml.supersimplenet.model import HeadConfig, SuperSimpleNet
from ml.train_config import PROFILES as PROFILES
from ml.train_config import Profile as Profile
from ml.train_config import TrainConfig as TrainConfig

ProgressFn = Callable[[str, int, int, dict], None]
"""progress(stage, done, total, info): stage is "features", "train" or "calibrate"."""


@dataclass
class TrainedModel:
    """A trained network with what is needed to run and describe it."""

    model: SuperSimpleNet
    extractor: FeatureExtractor
    config: TrainConfig
    regime: Regime
    settings: RegimeSettings
    head_config: HeadConfig
    losses: list[float] = field(default_factory=list)
    train_seconds: float = 0.0
    feature_seconds: float = 0.0
    n_train: dict[str, int] = field(default_factory=dict)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise TrainingError("--device cuda asked for, but no CUDA device is available")
    if name not in ("cpu", "cuda"):
        raise TrainingError(f"unknown device {name!r}; use auto, cpu or cuda")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


# ----------------------------------------------------------------------------- sampling


def epoch_size(cache: CachedSet, settings: RegimeSettings) -> int:
    """Samples per epoch (before the batch duplication)."""
    n_def = int((cache.label == 1).sum())
    n_norm = len(cache) - n_def
    return 2 * n_def if settings.balanced and n_def else n_norm + n_def


def masked_share(cache: CachedSet) -> float:
    """The share of the defective rows whose pixels are known (0 without defective rows)."""
    defective = cache.label == 1
    n_def = int(defective.sum())
    return float((defective & cache.known).sum()) / n_def if n_def else 0.0


def step_budget(prof: Profile, mask_share: float) -> int | None:
    """The optimiser steps a fixed-budget profile gives a training set with ``mask_share`` of
    its defects masked: ``max_steps * (1 + mask_steps * mask_share)``; None for an
    epoch-based profile."""
    if prof.max_steps is None:
        return None
    return round(prof.max_steps * (1.0 + prof.mask_steps * min(max(mask_share, 0.0), 1.0)))


def effective_epochs(prof: Profile, samples_per_epoch: int, mask_share: float = 0.0) -> int:
    """The profile's epochs, or as many as fill its step budget (:func:`step_budget`; at least one)."""
    budget = step_budget(prof, mask_share)
    if budget is None:
        return prof.epochs
    steps = max(1, math.ceil(samples_per_epoch / prof.batch_size))
    return max(1, budget // steps)


def epoch_order(cache: CachedSet, settings: RegimeSettings, rng: np.random.Generator, seen: np.ndarray) -> np.ndarray:
    """Row indices of one epoch.

    Unsupervised: every normal row once. Supervised: every defective row (all flip
    variants) once, plus as many normal rows, least-seen first (SegDecNet's rule that every
    normal image is seen about equally often). ``seen`` (per row) is updated in place.
    """
    label = cache.label.numpy()
    normal = np.flatnonzero(label == 0)
    defective = np.flatnonzero(label == 1)
    if not settings.balanced or len(defective) == 0:
        order = np.concatenate([normal, defective])
    else:
        jitter = rng.random(len(normal))
        pick = normal[np.lexsort((jitter, seen[normal]))][: len(defective)]
        if len(pick) < len(defective):  # fewer normal images than defective samples
            pick = rng.choice(normal, size=len(defective), replace=True)
        order = np.concatenate([defective, pick])
    seen[order] += 1
    return rng.permutation(order)


def training_targets(
    gt_mask: torch.Tensor,
    known: torch.Tensor,
    label: torch.Tensor,
    dt_weight: torch.Tensor,
    channels: int,
    settings: RegimeSettings,
    sigma: float,
    generator: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Synthetic anomalies and targets for a batch already duplicated to 2B.

    Inputs ``gt_mask``/``dt_weight`` ``(2B, 1, h, w)``, ``known``/``label`` ``(2B,)``. Returns
    ``noise (2B, C, h, w)``, ``target_map (2B, 1, h, w)``, ``target_label (2B,)`` and
    ``pixel_weight (2B, 1, h, w)``, which is 0 on every pixel of an image whose pixels are
    unknown (image-level-only defect): such images get the score loss only. Everything is
    computed on ``generator``'s device.
    """
    b, _, h, w = gt_mask.shape
    dev = generator.device
    gt_mask, known, label, dt_weight = (t.to(dev) for t in (gt_mask, known, label, dt_weight))
    unknown = (~known).float().view(b, 1, 1, 1).expand(b, 1, h, w)
    blocked = torch.maximum(gt_mask, unknown)
    synth = synthetic_masks(b, (h, w), settings.perlin_threshold, generator, gt_masks=blocked)
    noise = feature_noise(synth, channels, sigma, generator)
    target_map = torch.maximum(gt_mask, synth)
    target_label = torch.maximum(label, (synth.flatten(1).amax(1) > 0).float())
    pixel_weight = known.float().view(b, 1, 1, 1) * torch.where(gt_mask > 0, dt_weight, torch.ones_like(dt_weight))
    return noise, target_map, target_label, pixel_weight


def _dt_weights(cache: CachedSet, settings: RegimeSettings, cfg: TrainConfig) -> torch.Tensor:
    w = torch.ones_like(cache.gt_mask)
    if not settings.distance_weighting:
        return w
    for i in torch.nonzero(cache.gt_mask.flatten(1).amax(1) > 0).flatten().tolist():
        w[i, 0] = torch.from_numpy(distance_weights(cache.gt_mask[i, 0].numpy() > 0, cfg.dt_w_pos, cfg.dt_power))
    return w


# ----------------------------------------------------------------------------- the loop


def train_heads(
    cache: CachedSet,
    model: SuperSimpleNet,
    cfg: TrainConfig,
    settings: RegimeSettings,
    device: torch.device,
    progress: ProgressFn | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> list[float]:
    """Train adaptor and heads on cached features; returns the mean loss of each epoch."""
    prof = cfg.profile_spec()
    rng = np.random.default_rng(cfg.seed)
    gen = torch.Generator(device=device).manual_seed(cfg.seed)  # synthetic anomalies drawn on the device
    model.to(device).train()
    model.to(memory_format=torch.channels_last)  # faster 1x1 and kxk convs on CPU and GPU
    opt = torch.optim.AdamW(model.param_groups(prof.adaptor_lr, prof.head_lr))
    epochs = effective_epochs(prof, epoch_size(cache, settings), masked_share(cache))
    milestones = [int(epochs * 0.8), int(epochs * 0.9)]
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=milestones, gamma=0.4)
    dt = _dt_weights(cache, settings, cfg)
    # targets on the device once; features too when they fit (no host copy per step)
    gt_all, known_all, label_all, dt_all = (t.to(device) for t in (cache.gt_mask, cache.known, cache.label, dt))
    feats_all = _on_device(cache.features, device)
    seen = np.zeros(len(cache), dtype=np.int64)
    channels = int(cache.features.shape[1])
    losses: list[float] = []
    t0 = time.perf_counter()
    for epoch in range(epochs):
        order = torch.from_numpy(epoch_order(cache, settings, rng, seen))
        total, count = torch.zeros((), device=device), 0
        for start in range(0, len(order), prof.batch_size):
            idx = order[start : start + prof.batch_size]
            if len(idx) < 2 and len(order) > 1:
                continue  # a 1-sample batch breaks BatchNorm statistics
            idx_d = idx.to(device)
            feats = feats_all[idx_d].float() if feats_all is not None else cache.feature_batch(idx)

            def two(t: torch.Tensor) -> torch.Tensor:  # the published batch duplication
                return torch.cat([t, t])

            noise, tmap, tlabel, pw = training_targets(
                two(gt_all[idx_d]),
                two(known_all[idx_d]),
                two(label_all[idx_d]),
                two(dt_all[idx_d]),
                channels,
                settings,
                settings.noise_sigma,
                gen,
            )
            x = two(feats).to(device).contiguous(memory_format=torch.channels_last)
            noise = noise.to(device).contiguous(memory_format=torch.channels_last)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
                out = model(x, noise=noise, stop_grad=settings.stop_grad)
            loss = supersimplenet_loss(
                out.pred_map.float(),
                out.pred_score.float(),
                tmap.to(device),
                tlabel.to(device),
                pw.to(device),
                settings.seg_weight,
            )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if settings.clip_grad is not None:
                torch.nn.utils.clip_grad_norm_(model.parameters(), settings.clip_grad)
            opt.step()
            total += loss.detach() * len(idx)  # no host sync per step
            count += len(idx)
            if should_stop is not None and should_stop():
                raise TrainingError("training cancelled")
        sched.step()
        losses.append(float(total) / max(count, 1))
        if progress:
            elapsed = time.perf_counter() - t0
            eta = elapsed / (epoch + 1) * (epochs - epoch - 1)
            progress("train", epoch + 1, epochs, {"loss": losses[-1], "eta_s": eta})
    model.eval()
    return losses


def _on_device(features: torch.Tensor | np.ndarray, device: torch.device) -> torch.Tensor | None:
    """The cached features ``(N, C, h, w)`` copied to ``device`` when they should live there for
    training (an in-memory tensor, CUDA, under half its free memory); None: read batch by batch."""
    if device.type != "cuda" or not isinstance(features, torch.Tensor):
        return None
    free, _ = torch.cuda.mem_get_info(device)
    return features.to(device) if features.numel() * features.element_size() < free // 2 else None


def variants_rule(settings: RegimeSettings) -> Callable[[Sample], Sequence[str]]:
    """Which flip variants of a sample training sees."""

    def rule(s: Sample) -> Sequence[str]:
        return VARIANTS if (settings.flips and s.label == 1) else ("id",)

    return rule


def build_extractor(cfg: TrainConfig, device: torch.device) -> FeatureExtractor:
    spec = get_backbone_spec(cfg.backbone)
    ext = FeatureExtractor(spec, cfg.backbone_weights, upscale=cfg.profile_spec().upscale).to(device)
    ext.to(memory_format=torch.channels_last)
    return ext.eval()


def sized_to_masks(
    cfg: TrainConfig, regime: Regime, settings: RegimeSettings, samples: Sequence[Sample]
) -> RegimeSettings:
    """``settings`` with a MIXED or FULL run's Perlin threshold chosen from the size of its known
    defects (:func:`ml.regimes.perlin_for_masks`), unless ``cfg`` sets one."""
    if cfg.perlin_threshold is not None or regime not in (Regime.MIXED, Regime.FULL):
        return settings
    areas = [float(read_mask(s.mask).mean()) for s in samples if s.label == 1 and s.pixels_known and s.mask]
    return replace(settings, perlin_threshold=perlin_for_masks(areas, settings.perlin_threshold))


def feature_stats(cache: CachedSet, max_rows: int = 512) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and std ``(C,)`` of the cached training features (up to ``max_rows`` rows,
    evenly spaced); TrainingError for an empty cache."""
    if len(cache) == 0:
        raise TrainingError("no cached features to take statistics of")
    idx = torch.linspace(0, len(cache) - 1, min(len(cache), max_rows)).long().unique()

    def moments(chunk: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, int]:
        """Sums of ``f`` and ``f * f`` per channel (float64 ``(C,)``) over rows ``chunk``, and the count."""
        f = cache.feature_batch(chunk).double()
        return f.sum((0, 2, 3)), (f * f).sum((0, 2, 3)), f.shape[0] * f.shape[2] * f.shape[3]

    chunks = idx.split(64)
    sums, sq, n = moments(chunks[0])
    for chunk in chunks[1:]:
        s1, s2, k = moments(chunk)
        sums, sq, n = sums + s1, sq + s2, n + k
    mean = sums / n
    std = (sq / n - mean * mean).clamp_min(0).sqrt()
    return mean.float(), std.float()


def fit(
    train_samples: Sequence[Sample],
    cfg: TrainConfig,
    progress: ProgressFn | None = None,
    should_stop: Callable[[], bool] | None = None,
    spill_dir: Path | None = None,
) -> TrainedModel:
    """Train SuperSimpleNet on ``train_samples`` with the regime their labels allow (or the forced one)."""
    if not train_samples:
        raise TrainingError("no training images (split=train is empty)")
    seed_everything(cfg.seed)
    device = resolve_device(cfg.device)
    regime = derive_regime(train_samples) if cfg.regime == AUTO else Regime(cfg.regime)
    samples = apply_regime(list(train_samples), regime)
    settings = sized_to_masks(cfg, regime, cfg.regime_settings(regime), samples)
    prof = cfg.profile_spec()
    extractor = build_extractor(cfg, device)
    t0 = time.perf_counter()
    cache = build_cache(
        samples,
        variants_rule(settings),
        extractor,
        cfg.image_size,
        device,
        spill_dir=spill_dir,
        progress=(lambda d, t: progress("features", d, t, {})) if progress else None,
    )
    t1 = time.perf_counter()
    head_cfg = HeadConfig(
        channels=extractor.channels, seg_hidden=prof.seg_hidden, cls_hidden=prof.cls_hidden, cls_kernel=prof.cls_kernel
    )
    model = SuperSimpleNet(head_cfg)
    if settings.standardize:
        model.set_feature_stats(*feature_stats(cache))
    losses = train_heads(cache, model, cfg, settings, device, progress, should_stop)
    counts = {"normal": 0, "mask": 0, "image": 0}
    for s in samples:
        counts[s.label_kind] += 1
    return TrainedModel(
        model=model,
        extractor=extractor,
        config=cfg,
        regime=regime,
        settings=settings,
        head_config=head_cfg,
        losses=losses,
        train_seconds=time.perf_counter() - t1,
        feature_seconds=t1 - t0,
        n_train=counts,
    )

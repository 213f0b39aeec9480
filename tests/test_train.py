from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from ml.data import load_dataset
from ml.errors import TrainingError
from ml.feature_cache import CachedSet, mask_to_feature_grid
from ml.regimes import REGIME_DEFAULTS, Regime, apply_regime, derive_regime
from ml.train import (
    PROFILES,
    Profile,
    TrainConfig,
    effective_epochs,
    epoch_order,
    fit,
    holdout_split,
    masked_share,
    sized_to_masks,
    step_budget,
)

TINY = {"backbone_weights": "random", "image_size": (64, 64), "seed": 0}


def _train_samples(root: Path, regime: Regime):
    samples = list(load_dataset(root).select("train").samples)
    if regime is Regime.UNSUPERVISED:
        return [s for s in samples if s.label == 0]
    if regime is Regime.WEAK:
        return [replace(s, has_mask=False) if s.label else s for s in samples]
    if regime is Regime.MIXED:
        seen = 0
        out = []
        for s in samples:
            if s.label:
                seen += 1
                s = s if seen <= 2 else replace(s, has_mask=False)
            out.append(s)
        return out
    return samples


@pytest.mark.parametrize("regime", list(Regime))
def test_each_regime_is_derived_trains_and_the_loss_falls(tiny_demo: Path, regime: Regime) -> None:
    samples = _train_samples(tiny_demo, regime)
    assert derive_regime(samples) is regime
    trained = fit(samples, TrainConfig(**TINY, epochs=12))
    assert trained.regime is regime
    cfg = TrainConfig(**TINY)
    assert trained.settings == sized_to_masks(cfg, regime, cfg.regime_settings(regime), samples)
    if trained.settings.standardize:  # standardised features: the model holds their statistics
        assert trained.model.feature_mean.abs().sum() > 0
    losses = trained.losses
    assert len(losses) == 12 and all(np.isfinite(losses))
    assert np.mean(losses[-3:]) < np.mean(losses[:3]), losses


def test_supervised_regimes_size_their_synthetic_anomalies_to_the_masks(tmp_path: Path) -> None:
    from ml.regimes import PERLIN_SMALL_DEFECTS, perlin_for_masks
    from ml.samples import Sample

    assert perlin_for_masks([], 0.4) == 0.4  # no mask: the regime's default
    assert perlin_for_masks([0.003, 0.004, 0.002, 0.005, 0.003], 0.4) == PERLIN_SMALL_DEFECTS  # bsdata-like pits
    assert perlin_for_masks([0.003, 0.004, 0.002, 0.005], 0.4) == 0.4  # four masks say too little
    assert perlin_for_masks([0.003, 0.2, 0.002, 0.005, 0.003], 0.4) == 0.4  # magnetic-tile-like: some large
    small, large = np.zeros((100, 100), np.uint8), np.zeros((100, 100), np.uint8)
    small[10:13, 10:13] = 255  # 0.09% of the image
    large[20:60, 20:60] = 255  # 16%
    cv2.imwrite(str(tmp_path / "small.png"), small)
    cv2.imwrite(str(tmp_path / "large.png"), large)
    normal = Sample(tmp_path / "n.png", 0)
    pits = [normal, Sample(tmp_path / "b.png", 1)]
    pits += [Sample(tmp_path / f"a{i}.png", 1, tmp_path / "small.png", True) for i in range(5)]
    cfg = TrainConfig()
    for regime in (Regime.MIXED, Regime.FULL):
        base = cfg.regime_settings(regime)
        assert sized_to_masks(cfg, regime, base, pits).perlin_threshold == PERLIN_SMALL_DEFECTS
        mixed = [*pits, *(Sample(tmp_path / f"c{i}.png", 1, tmp_path / "large.png", True) for i in range(2))]
        assert sized_to_masks(cfg, regime, base, mixed).perlin_threshold == base.perlin_threshold == 0.4
        forced = TrainConfig(perlin_threshold=0.5)  # an explicit threshold always wins
        assert sized_to_masks(forced, regime, forced.regime_settings(regime), pits).perlin_threshold == 0.5
    weak = cfg.regime_settings(Regime.WEAK)
    assert sized_to_masks(cfg, Regime.WEAK, weak, pits) == weak  # WEAK never reads a mask


def test_noise_scale_and_score_follow_backbone_and_regime() -> None:
    lite = TrainConfig(backbone="tf_efficientnet_lite0")
    unsup = lite.regime_settings(Regime.UNSUPERVISED)
    assert (unsup.noise_sigma, unsup.standardize, unsup.image_score) == (0.5, True, "map_max")
    for regime in (Regime.WEAK, Regime.MIXED, Regime.FULL):  # real defects train the head: its score
        s = lite.regime_settings(regime)
        assert (s.noise_sigma, s.standardize, s.image_score) == (0.5, True, "head")
        assert s.perlin_threshold == REGIME_DEFAULTS[regime].perlin_threshold
    for regime in Regime:  # the paper's backbone keeps the published settings
        assert TrainConfig(backbone="wide_resnet50_2").regime_settings(regime) == REGIME_DEFAULTS[regime]
    forced = TrainConfig(noise_sigma=0.1, standardize_features=False, image_score="head").regime_settings(
        Regime.UNSUPERVISED
    )
    assert (forced.noise_sigma, forced.standardize, forced.image_score) == (0.1, False, "head")
    with pytest.raises(TrainingError, match="image_score"):
        TrainConfig(image_score="mean").regime_settings(Regime.FULL)


def test_training_is_reproducible(tiny_demo: Path) -> None:
    samples = list(load_dataset(tiny_demo).select("train").samples)
    a = fit(samples, TrainConfig(**TINY, epochs=2))
    b = fit(samples, TrainConfig(**TINY, epochs=2))
    assert a.losses == b.losses
    for (ka, va), (kb, vb) in zip(a.model.state_dict().items(), b.model.state_dict().items(), strict=True):
        assert ka == kb and torch.equal(va, vb)


def test_forced_regimes_and_their_errors(tiny_demo: Path) -> None:
    samples = list(load_dataset(tiny_demo).select("train").samples)
    assert all(s.label == 0 for s in apply_regime(samples, Regime.UNSUPERVISED))
    assert not any(s.pixels_known for s in apply_regime(samples, Regime.WEAK) if s.label)
    normals = [s for s in samples if s.label == 0]
    with pytest.raises(TrainingError, match="needs defective"):
        apply_regime(normals, Regime.FULL)
    with pytest.raises(TrainingError, match="no normal"):
        apply_regime([s for s in samples if s.label], Regime.WEAK)
    with pytest.raises(TrainingError, match="empty"):
        fit([], TrainConfig(**TINY))


def _cache(labels: list[int]) -> CachedSet:
    n = len(labels)
    return CachedSet(
        torch.zeros(n, 1, 2, 2, dtype=torch.float16),
        torch.zeros(n, 1, 2, 2),
        torch.ones(n, dtype=torch.bool),
        torch.tensor(labels, dtype=torch.float32),
        torch.arange(n),
        torch.zeros(n, dtype=torch.int64),
    )


def test_balanced_epochs_pair_defects_with_least_seen_normals() -> None:
    cache = _cache([0] * 10 + [1] * 3)
    rng = np.random.default_rng(0)
    seen = np.zeros(13, dtype=np.int64)
    settings = REGIME_DEFAULTS[Regime.FULL]
    for _ in range(10):
        order = epoch_order(cache, settings, rng, seen)
        assert len(order) == 6 and (cache.label[order].sum() == 3)
    assert seen[:10].max() - seen[:10].min() <= 1  # every normal image seen about equally often
    unsup = epoch_order(_cache([0] * 7), REGIME_DEFAULTS[Regime.UNSUPERVISED], rng, np.zeros(7, dtype=np.int64))
    assert sorted(unsup.tolist()) == list(range(7))


def test_fast_profile_has_a_fixed_step_budget_and_paper_fixed_epochs() -> None:
    assert effective_epochs(PROFILES["paper"], 10_000) == 300
    fast = PROFILES["fast"]
    assert effective_epochs(fast, 100) == fast.max_steps // 4  # few samples: more epochs, same step budget
    assert effective_epochs(fast, 10_000) * (10_000 // fast.batch_size) <= fast.max_steps
    assert effective_epochs(Profile(10, 32, 1, 8, 8, 3, max_steps=1), 10_000) == 1


def test_the_fast_step_budget_grows_with_the_share_of_masked_defects() -> None:
    fast = PROFILES["fast"]
    assert fast.max_steps is not None
    cache = _cache([0] * 6 + [1] * 4)
    cache.known[6:8] = False  # two of four defects without a mask
    assert masked_share(cache) == 0.5
    cache.known[6:] = False
    assert masked_share(cache) == 0.0  # normal rows' known pixels do not count
    assert masked_share(_cache([0] * 3)) == 0.0
    assert step_budget(fast, 0.0) == fast.max_steps  # image labels only: the published budget
    assert step_budget(fast, 1.0) == 2 * fast.max_steps  # every defect masked: twice
    assert fast.max_steps < step_budget(fast, 0.25) < step_budget(fast, 0.5) < 2 * fast.max_steps
    assert step_budget(PROFILES["paper"], 1.0) is None  # epoch-based: untouched
    assert step_budget(replace(fast, mask_steps=0.0), 1.0) == fast.max_steps
    assert effective_epochs(fast, 320, 1.0) == 2 * effective_epochs(fast, 320, 0.0)


def test_learning_rates_come_from_the_profile_unless_overridden() -> None:
    paper = TrainConfig(profile="paper").profile_spec()
    assert (paper.adaptor_lr, paper.head_lr) == (1e-4, 2e-4)  # as published
    fast = TrainConfig().profile_spec()
    assert fast.adaptor_lr > paper.adaptor_lr and fast.head_lr > paper.head_lr  # short schedule, larger steps
    forced = TrainConfig(adaptor_lr=5e-4, epochs=3).profile_spec()
    assert (forced.adaptor_lr, forced.head_lr, forced.epochs) == (5e-4, fast.head_lr, 3)


def test_thin_defects_survive_mask_downsampling() -> None:
    mask = np.zeros((64, 64), np.float32)
    mask[10, 5:60] = 1.0  # one pixel wide scratch
    small = mask_to_feature_grid(mask, (8, 8))
    assert small.any() and small.sum() < 16


def test_holdout_takes_the_same_share_of_every_label_kind(tiny_demo: Path) -> None:
    samples = _train_samples(tiny_demo, Regime.MIXED)
    train, hold = holdout_split(samples, 0.25, seed=0)
    assert len(train) + len(hold) == len(samples) and not set(map(id, train)) & set(map(id, hold))
    for kind in ("normal", "mask", "image"):
        n = sum(s.label_kind == kind for s in samples)
        assert n > 1, kind
        assert sum(s.label_kind == kind for s in hold) == min(n * 25 // 100, n - 1), kind
        assert any(s.label_kind == kind for s in train), kind  # every kind still trains


def test_pseudo_normals_train_and_never_calibrate(tiny_demo: Path) -> None:
    samples = _train_samples(tiny_demo, Regime.MIXED)
    normal = [i for i, s in enumerate(samples) if s.label == 0][:6]
    presumed = [replace(samples[i], extra=(("pseudo", "normal"),)) for i in normal]
    humans = [s for i, s in enumerate(samples) if i not in normal]
    assert any(s.label == 0 for s in humans) and all(p.is_pseudo for p in presumed)
    train, hold = holdout_split(humans + presumed, 0.25, seed=0)
    assert all(p in train for p in presumed) and not any(s.is_pseudo for s in hold)
    assert any(s.label == 0 for s in hold)  # the human-labelled normals calibrate
    # too few human-labelled normals to hold one out (a bootstrap has none): presumed ones calibrate too
    defects = [s for s in humans if s.label == 1]
    for few in ([], [s for s in humans if s.label == 0][:3]):
        _, hold = holdout_split(defects + few + presumed, 0.25, seed=0, trains_on_defects=False)
        assert any(s.is_pseudo for s in hold)


def test_a_weak_holdout_calibrates_on_image_level_defects(tiny_demo: Path) -> None:
    samples = _train_samples(tiny_demo, Regime.WEAK)
    train, hold = holdout_split(samples, 0.25, seed=0)
    assert any(s.label == 1 for s in hold) and any(s.label == 1 for s in train)


def test_an_unsupervised_holdout_calibrates_on_every_defect(tiny_demo: Path) -> None:
    samples = _train_samples(tiny_demo, Regime.MIXED)
    train, hold = holdout_split(samples, 0.25, seed=0, trains_on_defects=False)
    assert all(s.label == 0 for s in train)
    assert [s for s in samples if s.label == 1] == [s for s in hold if s.label == 1]
    assert any(s.label == 0 for s in hold)  # normal images calibrate too


def test_loop_regime_stays_unsupervised_below_the_defect_count(tiny_demo: Path) -> None:
    from ml.regimes import loop_regime

    samples = _train_samples(tiny_demo, Regime.MIXED)
    n_def = sum(s.label for s in samples)
    assert n_def > 1
    assert loop_regime(samples, n_def + 1) is Regime.UNSUPERVISED
    assert loop_regime(samples, n_def) is None and loop_regime(samples, 0) is None
    with pytest.raises(TrainingError, match="min_defects"):
        loop_regime(samples, -1)


def test_feature_cache_streams_from_disk_when_memory_is_short(tiny_demo: Path, tmp_path: Path) -> None:
    from ml.feature_cache import build_cache
    from ml.supersimplenet.features import FeatureExtractor, get_backbone_spec

    samples = list(load_dataset(tiny_demo).select("train").samples)[:6]
    ext = FeatureExtractor(get_backbone_spec("tf_efficientnet_lite0"), "random", upscale=1)

    def rule(_sample):
        return ("id", "hflip")

    ram = build_cache(samples, rule, ext, (64, 64), torch.device("cpu"))
    disk = build_cache(samples, rule, ext, (64, 64), torch.device("cpu"), memory_limit_bytes=0, spill_dir=tmp_path)
    assert isinstance(disk.features, np.ndarray) and isinstance(ram.features, torch.Tensor)
    assert list(tmp_path.iterdir()) == []  # the spill file is unlinked; nothing is left behind
    idx = torch.tensor([5, 0, 3])
    assert torch.equal(ram.feature_batch(idx), disk.feature_batch(idx))
    assert ram.features.dtype == torch.float16 and len(ram) == 12


def test_training_can_be_cancelled(tiny_demo: Path) -> None:
    samples = list(load_dataset(tiny_demo).select("train").samples)
    with pytest.raises(TrainingError, match="cancelled"):
        fit(samples, TrainConfig(**TINY, epochs=50), should_stop=lambda: True)

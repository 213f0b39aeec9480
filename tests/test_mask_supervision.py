"""Masks never cost detection: on generated data, a MIXED model trained on the same images
as a WEAK one, with masks on a third of its defective images, detects at least as well and
localises at least as well (two seeds averaged).

At the paper's Perlin threshold for MIXED (0.6, smaller synthetic anomalies) this data
showed what magnetic-tile showed (docs/RESULTS.md, "Masks and detection"): image AP 90.1
against WEAK's 92.4, and this test failed. These defects cover about 2% of their images, so
MIXED now trains at 0.4 (``ml.regimes.perlin_for_masks``).
"""

from pathlib import Path

import pytest

from ml.artifact import load_model
from ml.data import load_dataset
from ml.demo_data import DemoSpec, generate
from ml.evaluate import evaluate
from ml.pipeline import train_and_save
from ml.regimes import Regime
from ml.train import TrainConfig

SEEDS = (0, 1)
SPEC = DemoSpec(
    train_normal=60,
    train_defective=12,
    val_normal=12,
    val_defective=6,
    test_normal=40,
    test_defective=20,
    size=96,
    mask_fraction=1 / 3,
    seed=5,
)


@pytest.mark.slow
def test_mixed_with_masks_is_not_worse_than_weak(tmp_path: Path) -> None:
    generate(tmp_path / "data", SPEC)
    ds = load_dataset(tmp_path / "data")
    test = list(ds.select("test").samples)
    means: dict[Regime, dict[str, float]] = {}
    for regime in (Regime.WEAK, Regime.MIXED):
        rows = []
        for seed in SEEDS:
            cfg = TrainConfig(image_size=(96, 96), regime=regime, seed=seed, device="cpu")
            summary = train_and_save(ds, tmp_path / f"{regime.value}_{seed}", cfg)
            assert summary.trained.regime is regime
            assert summary.trained.n_train.get("mask", 0) == (4 if regime is Regime.MIXED else 0)
            assert summary.trained.settings.perlin_threshold == 0.4
            rows.append(evaluate(load_model(summary.model_dir).predictor, test))
        means[regime] = {k: sum(r[k] for r in rows) / len(rows) for k in ("image_ap", "image_auroc", "pixel_aupro")}
    weak, mixed = means[Regime.WEAK], means[Regime.MIXED]
    assert mixed["image_ap"] >= weak["image_ap"] - 0.01, (weak, mixed)
    assert mixed["image_auroc"] >= weak["image_auroc"] - 0.005, (weak, mixed)
    assert mixed["pixel_aupro"] >= weak["pixel_aupro"], (weak, mixed)

"""A working model beats a deliberately broken one by a clear margin (fast profile, demo data)."""

from pathlib import Path

import pytest

from ml.data import load_dataset
from ml.evaluate import evaluate
from ml.pipeline import train_and_save
from ml.train import TrainConfig


@pytest.mark.slow
def test_fast_profile_beats_a_random_backbone(demo_dataset: Path, tmp_path: Path) -> None:
    """The broken model is what a silent fallback to random backbone weights would produce."""
    from ml.artifact import load_model

    ds = load_dataset(demo_dataset)
    test = list(ds.select("test").samples)
    scores = {}
    for name, weights in (("working", "pretrained"), ("broken", "random")):
        cfg = TrainConfig(backbone_weights=weights, profile="fast", epochs=20, seed=0)
        train_and_save(ds, tmp_path / name, cfg)
        scores[name] = evaluate(load_model(tmp_path / name, backbone_weights=weights).predictor, test)
    working, broken = scores["working"], scores["broken"]
    assert working["image_auroc"] >= 0.8, working
    assert working["image_auroc"] >= broken["image_auroc"] + 0.1, (working, broken)
    assert working["pixel_aupro"] >= broken["pixel_aupro"] + 0.1, (working, broken)

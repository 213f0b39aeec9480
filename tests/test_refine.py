"""Pseudo-normal refinement of an unsupervised model trained on a pool that hides defects."""

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from ml.data import Dataset, load_dataset
from ml.errors import TrainingError
from ml.evaluate import run_samples
from ml.pipeline import refine_unsupervised, train_and_save
from ml.predict import Predictor
from ml.train import TrainConfig, fit

CFG = TrainConfig(backbone_weights="random", image_size=(64, 64), seed=0, epochs=2, regime="unsupervised")


def _pool(tiny_demo: Path) -> list:
    """Every train image presumed normal, as the bootstrap sees an unlabelled pool."""
    return [replace(s, label=0, mask=None, has_mask=False) for s in load_dataset(tiny_demo).select("train").samples]


def test_refinement_retrains_on_the_lowest_scoring_fraction(tiny_demo: Path) -> None:
    pool = _pool(tiny_demo)
    first = fit(pool, CFG)
    pred = Predictor(first.extractor, first.model, CFG.image_size, image_score=first.settings.image_score)
    scores = run_samples(pred, pool).scores
    second, kept = refine_unsupervised(first, pool, keep=0.5)
    assert len(kept) == round(0.5 * len(pool))
    kept_ids = {s.image for s in kept}
    kept_scores = [sc for s, sc in zip(pool, scores, strict=True) if s.image in kept_ids]
    left_out = [sc for s, sc in zip(pool, scores, strict=True) if s.image not in kept_ids]
    assert max(kept_scores) <= min(left_out)  # the highest-scoring images are the ones left out
    assert second.n_train["normal"] == len(kept) and second.model is not first.model
    with pytest.raises(TrainingError, match="fraction"):
        refine_unsupervised(first, pool, keep=0.0)


def test_train_and_save_refines_only_unsupervised_models(tiny_demo: Path, tmp_path: Path) -> None:
    ds = load_dataset(tiny_demo)
    pool = _pool(tiny_demo)
    unsup = Dataset(root=ds.root, samples=tuple(pool + list(ds.select("val").samples)), source="pool")
    refined = train_and_save(unsup, tmp_path / "a", CFG, refine_keep=0.5)
    assert refined.n_train == round(0.5 * len(pool)) and refined.trained.n_train["normal"] == refined.n_train
    supervised = train_and_save(ds, tmp_path / "b", replace(CFG, regime="auto"), refine_keep=0.5)
    n_train = len(ds.select("train").samples)
    assert supervised.n_train == n_train and supervised.trained.regime.value != "unsupervised"
    assert np.isfinite(refined.trained.losses).all()


def test_a_refined_training_reports_progress_that_never_goes_back(tiny_demo: Path, tmp_path: Path) -> None:
    """The second pass reports stages of its own, so neither a stage's bar nor the train job's
    fraction (what `round --wait` and the demo show) starts over when it begins."""
    from backend.services.retrain import job_fraction

    ds = load_dataset(tiny_demo)
    unsup = Dataset(root=ds.root, samples=tuple(_pool(tiny_demo) + list(ds.select("val").samples)), source="pool")
    seen: list[tuple[str, int, int]] = []
    train_and_save(unsup, tmp_path / "m", CFG, refine_keep=0.5, progress=lambda st, d, t, _: seen.append((st, d, t)))
    stages = list(dict.fromkeys(st for st, _, _ in seen))
    assert stages[:5] == ["features", "train", "refine_score", "refine_features", "refine_train"], stages
    for stage in stages:  # each stage runs once, counting up
        runs = [i for i, (st, _, _) in enumerate(seen) if st == stage]
        assert runs == list(range(runs[0], runs[-1] + 1)), stage
        assert [d for st, d, _ in seen if st == stage] == sorted(d for st, d, _ in seen if st == stage), stage
    fractions = [job_fraction(st, d, t, refined=True) for st, d, t in seen]
    assert fractions == sorted(fractions) and fractions[-1] <= 1.0
